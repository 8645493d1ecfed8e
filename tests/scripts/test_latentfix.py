"""The Script lifecycle through the stand-in host: API arguments, infotext, callbacks registered once."""


import torch

from lib_latentfix import runtime
from support.glue import our_callbacks, args


def test_named_settings_dict_as_the_only_api_arg(a1111):
    named, processed = a1111.txt2img([{"enabled": True, "preset": "Gentle", "maximize_boundary": 3.5}], steps=12,
                                     seed=1, is_api=True)
    positional, _ = a1111.txt2img(args(clamp_strength=0.5, center_strength=0.5, maximize_strength=0.5,
                                       maximize_boundary=3.5), steps=12, seed=1, is_api=True)
    assert torch.equal(named, positional)
    assert "boundary=3.5" in processed.infotexts[0]


def test_bad_api_settings_leave_the_generation_untouched_with_a_message(a1111, capsys):
    off, _ = a1111.txt2img(steps=6, seed=1)
    bad, processed = a1111.txt2img([{"enabled": True, "maximize_boundry": 3}], steps=6, seed=1, is_api=True)
    assert torch.equal(bad, off)
    assert "maximize_boundry" in capsys.readouterr().out
    # the API caller gets the reason back in the response's info, and the paste of it stays off
    assert "LatentFix error: \"not applied: unknown setting(s) 'maximize_boundry'" in processed.infotexts[0]
    assert "LatentFix: " not in processed.infotexts[0]
    good, processed = a1111.txt2img(args(), steps=6, seed=1)
    assert "LatentFix error" not in processed.infotexts[0]  # never left behind for the next generation



def test_callbacks_registered_once_and_again_after_reload_ui(a1111):
    once = our_callbacks()
    assert all(len(names) <= 1 for names in once.values())
    assert once["callbacks_cfg_after_cfg"] and once["callbacks_cfg_denoiser"] and once["callbacks_cfg_denoised"]
    import modules.script_callbacks as sc

    sc.clear_callbacks()  # Reload UI: load_scripts clears every callback, then re-executes scripts/*.py
    a1111.load_extension()
    assert our_callbacks() == once
    latents, processed = a1111.txt2img(args(), steps=4, seed=1)
    assert "LatentFix: " in processed.infotexts[0]


def test_infotext_before_sampling_names_the_settings_that_will_run(a1111):
    """A1111 writes params.txt (what "paste last generation" reads) before sampling starts."""
    from modules import processing

    p = processing.StableDiffusionProcessingTxt2Img(batch_size=1, steps=4, seed=1)
    script = a1111.extension.script("txt2img")
    script.process(p, *args(preset="Custom", maximize_boundary=3.0))
    written = {k: v(p=p) for k, v in p.extra_generation_params.items() if callable(v)}
    assert written["LatentFix"] and "boundary=3;" in written["LatentFix maximize"]


def test_a_failure_after_some_corrections_says_partly_applied(a1111, monkeypatch, device_windows):
    original, calls = runtime.correct, {"n": 0}

    def fails_on_the_third(schedule, prediction, call):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return original(schedule, prediction, call)

    monkeypatch.setattr(runtime, "correct", fails_on_the_third)
    _, processed = a1111.txt2img(args(), steps=6, seed=2)
    info = processed.infotexts[0]
    assert "LatentFix: " not in info and "partly applied, turned off after an error: RuntimeError: boom" in info


def test_api_info_holds_the_values_not_nulls(a1111):
    run = a1111.txt2img([{"enabled": True}], steps=12, seed=1, is_api=True)
    params = run.p.extra_generation_params  # what Processed.js() serialises (processing.py:597, default=None)
    ours = {k: v for k, v in params.items() if k.startswith("LatentFix")}
    assert ours and all(isinstance(v, str) for v in ours.values())
    assert ours["LatentFix preset"] == "Post defaults"


def _nested_on_copy(host, at_call=12, **inner_attrs):
    """Another extension's inner generation: inside the outer run's ``at_call``-th on_cfg_denoiser,
    ``q = copy(p); q._ad_inner = True; process_images(q)`` (a shallow copy: both share extra_generation_params).
    Returns the list the inner run's Processed is appended to."""
    from copy import copy

    from modules import processing, script_callbacks

    inner_runs, calls = [], []

    def nested(params):
        p = params.denoiser.p
        if getattr(p, "_ad_inner", False):
            return
        calls.append(1)
        if len(calls) == at_call:
            q = copy(p)
            q._ad_inner = True
            for name, value in inner_attrs.items():
                setattr(q, name, value)
            inner_runs.append(processing.process_images(q))

    script_callbacks.on_cfg_denoiser(nested, name="nested-generation")
    return inner_runs


def _latentfix_items(infotext):
    from modules.infotext_utils import parse_generation_parameters

    from lib_latentfix.infotext import ALL_KEYS

    params = parse_generation_parameters(infotext)
    return {key: params[key] for key in ALL_KEYS if key in params}


def test_a_nested_generation_on_a_copy_of_p_leaves_the_outer_infotext_alone(a1111):
    """An inner generation on copy(p) that LatentFix skips (ADetailer-style) neither wipes the outer image's
    LatentFix keys nor gets them itself: each infotext describes its own generation."""
    _, alone = a1111.txt2img(args(), steps=16, seed=3)
    expected = _latentfix_items(alone.infotexts[0])
    assert expected
    inner_runs = _nested_on_copy(a1111)
    _, outer = a1111.txt2img(args(), steps=16, seed=3)
    (inner,) = inner_runs
    assert _latentfix_items(outer.infotexts[0]) == expected
    assert _latentfix_items(inner.infotexts[0]) == {}  # skipped as an inner pass: says nothing about LatentFix


def test_a_corrected_nested_generation_does_not_lend_its_settings_to_the_outer_image(a1111):
    """With inner passes corrected too, an inner run of 4 steps reaches fewer windows than the outer 16-step run:
    the outer infotext keeps what the outer run did, the inner one says what the inner run did."""
    settings = args(skip_inner_passes=False)
    _, alone = a1111.txt2img(settings, steps=16, seed=3)
    _, short = a1111.txt2img(settings, steps=4, seed=3)
    assert _latentfix_items(alone.infotexts[0]) != _latentfix_items(short.infotexts[0])  # the test means something
    inner_runs = _nested_on_copy(a1111, steps=4)
    _, outer = a1111.txt2img(settings, steps=16, seed=3)
    (inner,) = inner_runs
    assert _latentfix_items(outer.infotexts[0]) == _latentfix_items(alone.infotexts[0])
    assert _latentfix_items(inner.infotexts[0]) == _latentfix_items(short.infotexts[0])
    assert all(not callable(v) for v in outer.extra_generation_params.values())  # the API's info: text, not null
