"""The nodes in a real ComfyUI, over its HTTP API (see conftest.py for how to run it)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from latentfix_comfyui_client import SIZE, PromptRejected, advanced_defaults, pixels, simple_settings, txt2img
from lib_latentfix import settings as lf_settings


def diff(a, b) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


@pytest.fixture(scope="module")
def off(comfy):
    return comfy.images(comfy.run(txt2img(comfy.checkpoint(), prefix="lf_off")), "8")[0]


def test_the_three_nodes_are_registered_with_the_settings_table(comfy):
    info = comfy.get_json("/object_info")
    assert info["LatentFix"]["display_name"] == "LatentFix (SDXL latent correction)"
    assert info["LatentFixLatentView"]["display_name"] == "LatentFix latent view"
    assert info["LatentFixLatentView"]["output"] == ["IMAGE", "IMAGE"]
    required = info["LatentFixAdvanced"]["input"]["required"]
    for field in lf_settings.FIELDS:
        if field.group in ("clamp", "center", "maximize") and field.kind == "float":
            options = required[field.name][1]
            assert (options["min"], options["max"], options["default"]) == (field.minimum, field.maximum, field.default)


def test_on_changes_the_image_and_a_correction_that_does_nothing_leaves_it_bit_identical(comfy, off):
    ckpt = comfy.checkpoint()
    on = comfy.images(comfy.run(txt2img(ckpt, latentfix=simple_settings(comfy), prefix="lf_on")), "8")[0]
    nothing = dict(advanced_defaults(comfy), clamp_enabled=False, center_enabled=False, maximize_enabled=False)
    none = comfy.images(comfy.run(txt2img(ckpt, latentfix=nothing, advanced=True, prefix="lf_none")), "8")[0]
    assert on.size == off.size == (SIZE, SIZE)
    assert diff(on, off) > 10
    assert diff(none, off) == 0
    if "strength" in comfy.get_json("/object_info/LatentFix")["LatentFix"]["input"]["required"]:
        zero = comfy.images(comfy.run(txt2img(ckpt, latentfix=simple_settings(comfy, strength=0.0),
                                              prefix="lf_zero")), "8")[0]
        assert diff(zero, off) == 0


def test_the_workflow_in_the_png_restores_the_settings(comfy, off):
    values = dict(advanced_defaults(comfy), maximize_boundary=3.5, center_channels="0,1,2", center_strength=0.7)
    prompt = txt2img(comfy.checkpoint(), latentfix=values, advanced=True, prefix="lf_png")
    workflow = {"note": "stand-in for the frontend's graph", "nodes": [{"id": 5, "type": "LatentFixAdvanced"}]}
    image = comfy.images(comfy.run(prompt, workflow), "8")[0]
    stored = json.loads(image.text["prompt"])
    assert stored["5"]["class_type"] == "LatentFixAdvanced"
    assert {k: v for k, v in stored["5"]["inputs"].items() if k != "model"} == values
    assert json.loads(image.text["workflow"]) == workflow
    # queueing the stored prompt again (what loading the PNG and pressing Queue does) gives the same picture,
    # computed anew: ComfyUI's caches are emptied first
    comfy.free()
    again = comfy.images(comfy.run(dict(stored, **{"8": dict(stored["8"], inputs=dict(stored["8"]["inputs"],
                                                                             filename_prefix="lf_png_again"))})), "8")[0]
    assert diff(again, image) == 0 and diff(image, off) > 0


@pytest.mark.parametrize("name,value,error_type,text", [
    ("clamp_ratio", 2.0, "value_bigger_than_max", "Value 2.0 bigger than max of 1.0"),
    ("maximize_t_min", -5.0, "value_smaller_than_min", "Value -5.0 smaller than min of 0"),
    ("center_channels", "0,9", "custom_validation_failed", "unknown channel '9'"),
])
def test_an_invalid_value_gets_comfyuis_own_validation_message(comfy, name, value, error_type, text):
    values = dict(advanced_defaults(comfy), **{name: value})
    with pytest.raises(PromptRejected) as rejected:
        comfy.queue(txt2img(comfy.checkpoint(), latentfix=values, advanced=True, prefix="lf_bad"))
    errors = rejected.value.body["node_errors"]["5"]["errors"]
    assert any(e["type"] == error_type and (text in e["message"] or text in e["details"]) for e in errors), errors


def test_an_unknown_preset_is_refused_as_not_in_list(comfy):
    with pytest.raises(PromptRejected) as rejected:
        comfy.queue(txt2img(comfy.checkpoint(), latentfix=simple_settings(comfy, preset="Nope"), prefix="lf_bad"))
    assert rejected.value.body["node_errors"]["5"]["errors"][0]["type"] == "value_not_in_list"


def test_each_image_of_a_batch_gets_what_it_gets_alone(comfy):
    ckpt = comfy.checkpoint()
    single = comfy.images(comfy.run(txt2img(ckpt, latentfix=simple_settings(comfy), prefix="lf_b1")), "8")[0]
    pair = comfy.images(comfy.run(txt2img(ckpt, latentfix=simple_settings(comfy), batch=2, prefix="lf_b2")), "8")
    assert len(pair) == 2
    assert diff(pair[0], single) <= 2  # the first noise row is the same; UNet batch arithmetic may differ in the last bit
    assert diff(pair[1], single) > 10


def test_latent_view_shows_channels_and_the_rgb_approximation(comfy):
    entry = comfy.run(txt2img(comfy.checkpoint(), latentfix=simple_settings(comfy), view=True, prefix="lf_view"))
    channels, rgb = comfy.images(entry, "10")[0], comfy.images(entry, "11")[0]
    assert rgb.size == (SIZE, SIZE)
    assert channels.width > 4 * SIZE // 8 and channels.height > SIZE // 8
    assert pixels(rgb).std() > 1


def inpaint(comfy, latentfix: bool) -> dict:
    prompt = txt2img(comfy.checkpoint(), latentfix=simple_settings(comfy) if latentfix else None, prefix="lf_inpaint")
    prompt["12"] = {"class_type": "LoadImage", "inputs": {"image": "lf_inpaint.png"}}
    prompt["13"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["12", 0], "vae": ["1", 2]}}
    prompt["14"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["13", 0], "mask": ["12", 1]}}
    prompt["6"]["inputs"].update(latent_image=["14", 0], denoise=0.8)
    return prompt


def test_inpainting_with_a_noise_mask_runs_and_is_corrected(comfy):
    if "lf_inpaint.png" not in comfy.get_json("/object_info/LoadImage")["LoadImage"]["input"]["required"]["image"][0]:
        pytest.skip("input/lf_inpaint.png (an RGBA image with a transparent centre) is not on the server")
    on = comfy.images(comfy.run(inpaint(comfy, True)), "8")[0]
    plain = comfy.images(comfy.run(inpaint(comfy, False)), "8")[0]
    assert diff(on, plain) > 0


def test_two_sampler_refiner_workflow(comfy, off):
    prompt = txt2img(comfy.checkpoint(), latentfix=simple_settings(comfy), prefix="lf_refiner")
    common = {k: prompt["6"]["inputs"][k] for k in ("model", "cfg", "sampler_name", "scheduler", "positive", "negative")}
    prompt["6"] = {"class_type": "KSamplerAdvanced", "inputs": dict(
        common, add_noise="enable", noise_seed=1234, steps=12, latent_image=["4", 0], start_at_step=0, end_at_step=8,
        return_with_leftover_noise="enable")}
    prompt["15"] = {"class_type": "KSamplerAdvanced", "inputs": dict(
        common, add_noise="disable", noise_seed=1234, steps=12, latent_image=["6", 0], start_at_step=8,
        end_at_step=10000, return_with_leftover_noise="disable")}
    prompt["7"]["inputs"]["samples"] = ["15", 0]
    two_stage = comfy.images(comfy.run(copy.deepcopy(prompt)), "8")[0]
    assert diff(two_stage, off) > 10
