"""What a user of a running WebUI notices, over the HTTP API (see conftest.py for how to run this suite).

Every test compares images the WebUI returns for the same request with the extension off and on (or with
two settings), so it holds for any checkpoint; the thresholds are in 8-bit pixel levels.
"""

from __future__ import annotations

import numpy as np
import pytest

from latentfix_webui_client import (
    INFOTEXT_KEYS,
    SEED,
    SIZE,
    STEPS,
    assert_differs,
    assert_valid_image,
    encode_png,
    latentfix_keys_in,
    max_abs_diff,
    mean_abs_diff,
    txt2img_payload,
    with_latentfix,
)

pytestmark = pytest.mark.integration

ON = {"enabled": True}
# Batched vs alone may differ by a rounding level or two after the extension stretches the range (maximize):
# a batch-mixing bug shows as tens of levels.
BATCH_SLACK = 2


def assert_no_latentfix_keys(infotext: str, what: str) -> None:
    assert "LatentFix" not in infotext, f"{what}: the infotext mentions LatentFix although it did not run:\n{infotext}"


def assert_latentfix_keys(infotext: str, what: str, not_reached: tuple = ()) -> dict:
    """The infotext claims every filter that ran; ``not_reached``: keys of filters whose window the request never
    reaches (the infotext claims only what ran, so they must be absent)."""
    keys = latentfix_keys_in(infotext)
    for key in not_reached:
        assert key not in keys, f"{what}: the infotext claims {key!r}, whose window was never reached:\n{infotext}"
    missing = [k for k in INFOTEXT_KEYS if k not in keys and k not in not_reached]
    assert not missing, f"{what}: infotext lacks {missing}:\n{infotext}"
    return keys


# ------------------------------------------------------------------------------------------------------------
# off is off


def test_absent_and_disabled_give_bit_identical_images(webui):
    absent = webui.txt2img(txt2img_payload())
    disabled = webui.txt2img(with_latentfix(txt2img_payload(), {"enabled": False}))
    disabled_positional = webui.txt2img(with_latentfix(txt2img_payload(), False))
    assert_valid_image(absent.image, (SIZE, SIZE))
    assert np.array_equal(absent.image, disabled.image), \
        f"{{'enabled': false}} changed the image (max |diff| {max_abs_diff(absent.image, disabled.image)})"
    assert np.array_equal(absent.image, disabled_positional.image), \
        f"positional [false] changed the image (max |diff| {max_abs_diff(absent.image, disabled_positional.image)})"
    for generation, what in ((absent, "absent"), (disabled, "disabled"), (disabled_positional, "disabled positional")):
        assert_no_latentfix_keys(generation.infotext, what)


# ------------------------------------------------------------------------------------------------------------
# on changes the image and says so


def test_enabled_by_name_changes_image_and_writes_infotext(webui, off_generation):
    on = webui.txt2img(with_latentfix(txt2img_payload(), ON))
    assert_valid_image(on.image, (SIZE, SIZE))
    assert_differs(on.image, off_generation.image, "enabled vs off")
    keys = assert_latentfix_keys(on.infotext, "enabled")
    assert keys["LatentFix preset"], "the preset entry is empty"
    assert_no_latentfix_keys(off_generation.infotext, "off")
    assert "LatentFix" in (on.info.get("extra_generation_params") or {}), \
        "info.extra_generation_params has no LatentFix entry"


def test_enabled_by_position_matches_enabled_by_name(webui, off_generation, script_defaults):
    positional = list(script_defaults)
    positional[0] = True  # the enable box comes first; every other arg keeps its UI default
    by_position = webui.txt2img(with_latentfix(txt2img_payload(), *positional))
    by_name = webui.txt2img(with_latentfix(txt2img_payload(), ON))
    assert_differs(by_position.image, off_generation.image, "enabled (positional args) vs off")
    assert np.array_equal(by_position.image, by_name.image), (
        f"positional defaults and {{'enabled': true}} differ "
        f"(max |diff| {max_abs_diff(by_position.image, by_name.image)})")
    assert latentfix_keys_in(by_position.infotext) == assert_latentfix_keys(by_name.infotext, "enabled by name")


# ------------------------------------------------------------------------------------------------------------
# each image of a batch is corrected on its own


def test_batch_matches_single_images_as_closely_as_the_host_does(webui):
    def batch_vs_alone(settings):
        extra = (settings,) if settings is not None else None

        def run(payload):
            return webui.txt2img(with_latentfix(payload, *extra) if extra else payload)

        batched = run(txt2img_payload(batch_size=2, seed=SEED))
        assert len(batched.images) == 2, f"expected 2 images, got {len(batched.images)}"
        alone = [run(txt2img_payload(seed=SEED + i)).image for i in range(2)]
        return batched, max(max_abs_diff(batched.images[i], alone[i]) for i in range(2))

    batched_on, diff_on = batch_vs_alone(ON)
    batched_off, diff_off = batch_vs_alone(None)
    assert diff_on <= diff_off + BATCH_SLACK, (
        f"with LatentFix a batch of 2 differs from the same seeds run alone by up to {diff_on} levels, "
        f"the WebUI itself only by {diff_off}: images of a batch influence each other")
    assert len(batched_on.infotexts) >= 2
    for i in range(2):
        assert_latentfix_keys(batched_on.infotexts[i], f"batch image {i}")
        assert_differs(batched_on.images[i], batched_off.images[i], f"batch image {i} on vs off")


# ------------------------------------------------------------------------------------------------------------
# samplers


@pytest.mark.parametrize("sampler, scheduler", [("DDIM", None), ("Euler a", None), ("DPM++ 2M", "Karras")],
                         ids=["DDIM", "Euler-a", "DPM++2M-Karras"])
def test_sampler_on_differs_from_off(webui, sampler, scheduler):
    extra = {"sampler_name": sampler}
    if scheduler:
        extra["scheduler"] = scheduler
    off = webui.txt2img(txt2img_payload(**extra))
    on = webui.txt2img(with_latentfix(txt2img_payload(**extra), ON))
    assert_valid_image(off.image, (SIZE, SIZE))
    assert_valid_image(on.image, (SIZE, SIZE))
    assert_differs(on.image, off.image, f"{sampler} on vs off")
    assert f"Sampler: {sampler}" in on.infotext
    if scheduler:
        assert f"Schedule type: {scheduler}" in on.infotext
    assert_latentfix_keys(on.infotext, sampler)


# ------------------------------------------------------------------------------------------------------------
# hires fix

HIRES = {"enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 2, "denoising_strength": 0.5,
         "hr_upscaler": "Latent",
         "hr_additional_modules": ["Use same choices"]}  # Forge answers HTTP 500 without it; A1111 ignores it
HIRES_SIZE = (int(SIZE * 1.5) // 8 * 8, int(SIZE * 1.5) // 8 * 8)
# The post's filters act at t > 700 and 1 < t < 100; a 2-step hires pass at denoising 0.5 calls the model at about
# t = 333 and t = 0 (Euler a), so with the defaults nothing is corrected in it whatever "apply in hires" says
# (checked on a real A1111). These windows reach the last step (a window ending at 0 includes t = 0).
HIRES_WINDOWS = {"center_late_t_min": 0, "maximize_t_min": 0}


def test_hires_fix_on_works(webui):
    off = webui.txt2img(txt2img_payload(**HIRES))
    on = webui.txt2img(with_latentfix(txt2img_payload(**HIRES), ON))
    assert_valid_image(on.image, HIRES_SIZE)
    assert_differs(on.image, off.image, "hires fix on vs off")
    assert_latentfix_keys(on.infotext, "hires fix")
    assert "Hires upscale: 1.5" in on.infotext


def test_hires_fix_apply_in_hires_false_differs_from_true(webui):
    def run(apply_in_hires):
        settings = {**ON, **HIRES_WINDOWS, "apply_in_hires": apply_in_hires}
        return webui.txt2img(with_latentfix(txt2img_payload(**HIRES), settings))

    with_hires, without = run(True), run(False)
    assert_valid_image(without.image, HIRES_SIZE)
    assert_differs(with_hires.image, without.image, "apply_in_hires true vs false")
    assert "hires=1" in latentfix_keys_in(with_hires.infotext)["LatentFix options"]
    assert "hires=0" in latentfix_keys_in(without.infotext)["LatentFix options"]


# ------------------------------------------------------------------------------------------------------------
# inpainting


def _init_image(size: int) -> np.ndarray:
    """A smooth, colourful picture with some structure (deterministic)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    r = 0.5 + 0.4 * np.sin(6.0 * x + 1.0)
    g = 0.5 + 0.4 * np.cos(5.0 * y)
    b = 0.5 + 0.4 * np.sin(4.0 * (x + y))
    image = np.stack([r, g, b], axis=-1)
    image[size // 8: size // 3, size // 8: size // 3] = (0.9, 0.2, 0.1)
    return (image * 255).round().astype(np.uint8)


def test_inpaint_changes_only_the_masked_area(webui):
    lo, hi = SIZE * 3 // 8, SIZE * 5 // 8  # the white square in the middle (repainted)
    mask = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    mask[lo:hi, lo:hi] = 255
    payload = {
        "prompt": "a red apple", "negative_prompt": "", "seed": SEED, "steps": STEPS, "cfg_scale": 7,
        "sampler_name": "Euler a", "width": SIZE, "height": SIZE, "batch_size": 1, "n_iter": 1,
        "init_images": [encode_png(_init_image(SIZE))], "mask": encode_png(mask),
        "denoising_strength": 0.75, "mask_blur": 0, "inpainting_fill": 1, "inpaint_full_res": False,
        "inpainting_mask_invert": 0, "resize_mode": 0, "include_init_images": False,
        "save_images": False, "send_images": True,
    }
    off = webui.img2img(payload)
    on = webui.img2img(with_latentfix(payload, ON))
    assert_valid_image(on.image, (SIZE, SIZE))
    # denoising 0.75 starts the pass at t ≈ 817, below the soft clamp's window (t > 950): not run, not claimed
    assert_latentfix_keys(on.infotext, "inpaint", not_reached=("LatentFix clamp",))

    margin = 16  # the VAE's reach: a latent pixel covers 8x8 pixels, and the decoder mixes neighbours
    outside = np.ones((SIZE, SIZE), dtype=bool)
    outside[lo - margin: hi + margin, lo - margin: hi + margin] = False
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[lo:hi, lo:hi] = True
    diff = np.abs(on.image.astype(np.int16) - off.image.astype(np.int16)).max(axis=-1)
    assert int(diff[outside].max()) <= 2, (
        f"pixels well outside the mask changed by up to {int(diff[outside].max())} levels "
        f"(mean {float(diff[outside].mean()):.3f})")
    assert float(diff[inside].mean()) >= 0.5, (
        f"the masked area did not change: mean |diff| {float(diff[inside].mean()):.3f} levels")


# ------------------------------------------------------------------------------------------------------------
# infotext round trip (PNG Info → "infotext" request field)

ROUND_TRIP = {"enabled": True, "preset": "Gentle", "maximize_boundary": 3.5}


@pytest.mark.infotext_field
def test_infotext_round_trip_reproduces_the_image(webui, off_generation):
    original = webui.txt2img(with_latentfix(txt2img_payload(), ROUND_TRIP))
    keys = assert_latentfix_keys(original.infotext, "round trip")
    assert "boundary=3.5" in keys["LatentFix maximize"]
    assert_differs(original.image, off_generation.image, "round-trip settings vs off")

    png_info = webui.png_info(original.pngs[0])
    parameters = png_info.get("parameters") or {}
    for key in INFOTEXT_KEYS:
        assert key in parameters, f"/sdapi/v1/png-info parameters lack {key!r}: {sorted(parameters)}"
        assert str(parameters[key]) == keys[key], (key, parameters[key], keys[key])
    text = png_info.get("info") or (png_info.get("items") or {}).get("parameters")
    assert text and "LatentFix" in text, f"the PNG carries no LatentFix infotext: {png_info}"

    again = webui.txt2img({"infotext": text, "save_images": False, "send_images": True})
    assert_latentfix_keys(again.infotext, "from infotext")
    assert latentfix_keys_in(again.infotext) == keys
    assert np.array_equal(again.image, original.image), (
        f"txt2img from the image's infotext does not reproduce it: max |diff| "
        f"{max_abs_diff(again.image, original.image)}, mean {mean_abs_diff(again.image, original.image):.3f}")


@pytest.mark.infotext_field
def test_infotext_without_latentfix_keys_reproduces_the_off_image(webui, off_generation):
    again = webui.txt2img({"infotext": off_generation.infotext, "save_images": False, "send_images": True})
    assert_no_latentfix_keys(again.infotext, "from an off infotext")
    assert np.array_equal(again.image, off_generation.image)


# ------------------------------------------------------------------------------------------------------------
# bad settings never break a generation


def test_bad_settings_leave_the_image_untouched(webui, off_generation):
    bad = webui.txt2img(with_latentfix(txt2img_payload(), {"enabled": True, "maximize_boundry": 3}))
    assert_valid_image(bad.image, (SIZE, SIZE))
    assert np.array_equal(bad.image, off_generation.image), \
        f"a misspelled setting changed the image (max |diff| {max_abs_diff(bad.image, off_generation.image)})"
    # the request succeeds, and the caller is told why nothing was corrected
    keys = latentfix_keys_in(bad.infotext)
    assert "LatentFix" not in keys, f"bad settings: the infotext claims a correction ran:\n{bad.infotext}"
    assert "maximize_boundry" in keys.get("LatentFix error", ""), f"bad settings: no error in the info:\n{bad.infotext}"
