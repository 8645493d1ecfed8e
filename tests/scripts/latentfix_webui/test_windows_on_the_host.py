"""Windows decided on the host before each sampler run: the same images as testing them on the device, and a model
call outside every window does no tensor work at all.

The reference is the same generation with the host saying it cannot know the timesteps (every call then tests the
windows on the device with each row's own timestep, as every call did before).
"""


import pytest
import torch

from webui_standin import harness

import latentfix_webui.host as glue_host
from lib_latentfix import infotext as lf_infotext
from lib_latentfix.arguments import from_script_args
from support.positional import to_positional
from modules import infotext_utils
from lib_latentfix.settings import DEFAULTS, apply_preset
from lib_latentfix.sigmas import sigma_to_t
from dataclasses import replace
from support.glue import count_tensor_work as _count_tensor_work, wrap_our_callbacks

ON = replace(DEFAULTS, enabled=True, correction_point="after")  # windows of the guided x0 (the latent point: test_latent_point)


def args(**changes):
    return to_positional(replace(ON, **changes))


def _run(flavour, kind, device, monkeypatch, **kw):
    host = harness.make_host(flavour, "sdxl")
    host.load_extension()
    with monkeypatch.context() as m:
        if device:
            m.setattr(glue_host, "host_timesteps", lambda p: (None, None, "tests: windows on the device"))
        run = getattr(host, kind)(kw.pop("script_args", args()), **kw)
    return run


CASES = {
    "Euler normal": dict(sampler="Euler", scheduler="Normal", steps=12),
    "Euler a": dict(sampler="Euler a", steps=10),
    "DPM++ 2M Karras": dict(sampler="DPM++ 2M", scheduler="Karras", steps=12),
    "Euler exponential": dict(sampler="Euler", scheduler="Exponential", steps=9),
    "Heun (second order)": dict(sampler="Heun", steps=8),
    "DDIM (eps)": dict(sampler="DDIM", steps=12),
    "hires": dict(sampler="Euler a", steps=6, enable_hr=True, hr_second_pass_steps=5, denoising_strength=0.6),
    "refiner": dict(sampler="DPM++ 2M", steps=10, refiner_checkpoint="refiner", refiner_switch_at=0.5),
    "few steps": dict(sampler="Euler a", steps=4),
    "gentle, batch 2": dict(sampler="Euler", steps=12, batch_size=2, script_args=args(**{
        k: v for k, v in apply_preset(DEFAULTS, "Gentle").__dict__.items() if k not in ("enabled", "correction_point")})),
}


@pytest.mark.parametrize("flavour", ["a1111", "forge"])
@pytest.mark.parametrize("case", list(CASES))
def test_txt2img_host_windows_equal_device_windows(flavour, case, monkeypatch):
    host_run = _run(flavour, "txt2img", False, monkeypatch, seed=21, **dict(CASES[case]))
    device_run = _run(flavour, "txt2img", True, monkeypatch, seed=21, **dict(CASES[case]))
    assert torch.equal(host_run.latents, device_run.latents)
    host_text, device_text = host_run.processed.infotexts[0], device_run.processed.infotexts[0]
    if host_text != device_text:
        # the host knew the model calls' timesteps, so it knows a filter ran on none of them and leaves it out of
        # the infotext (the device path cannot know without a sync and claims the settings): pasting the host's
        # infotext reproduces the image, and the device run claims exactly the settings it was given
        assert host_run.p.latentfix_job.unreached()
        assert not device_run.p.latentfix_job.unreached()
        pasted, problems = lf_infotext.decode(infotext_utils.parse_generation_parameters(host_text))
        assert not problems and pasted != ON
        again = _run(flavour, "txt2img", True, monkeypatch, seed=21,
                     **{**CASES[case], "script_args": to_positional(pasted)})
        assert torch.equal(again.latents, host_run.latents)
        assert all(f"{key}: {value}" in device_text for key, value in lf_infotext.encode(
            from_script_args(device_run.p.script_args[1:]), "0.1.0").items() if key != "LatentFix")


@pytest.mark.parametrize("flavour", ["a1111", "forge"])
@pytest.mark.parametrize("sampler,strength,masked", [("Euler a", 0.3, False), ("DPM++ 2M", 0.75, True),
                                                     ("DDIM", 0.5, False)])
def test_img2img_host_windows_equal_device_windows(flavour, sampler, strength, masked, monkeypatch):
    mask = None
    if masked:
        mask = torch.zeros(32, 32)
        mask[8:24, 8:24] = 1.0
    kw = dict(sampler=sampler, denoising_strength=strength, steps=10, seed=5, mask=mask)
    host_run = _run(flavour, "img2img", False, monkeypatch, **kw)
    device_run = _run(flavour, "img2img", True, monkeypatch, **kw)
    assert torch.equal(host_run.latents, device_run.latents)


def test_a_call_outside_every_window_does_no_tensor_work():
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    calls = []
    _count_tensor_work(host, calls)
    events = host.record_callbacks(keep_tensors=False)
    host.txt2img(args(), batch_size=2, steps=12, seed=3, sampler="Euler", scheduler="Normal")
    sigmas = [e["sigma"][-1] for e in events if e["kind"] == "cfg_denoiser"]
    t = [float(sigma_to_t(s.reshape(1), host.model.alphas_cumprod)) for s in sigmas]
    per_call = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert len(per_call) == len(t) == 12
    for timestep, work in zip(t, per_call):
        busy = sum(n for _, n in work)
        inside = timestep > 950 or timestep > 700 or 1 < timestep < 100
        if inside:
            assert busy > 0, timestep
        else:
            assert busy == 0, (timestep, work)  # no tensor function at all: the prediction object is untouched
    assert any(not (x > 700 or 1 < x < 100) for x in t)  # the run had calls outside every window


def test_inactive_call_leaves_the_prediction_object_itself():
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    seen = []

    def observing(inner, category):  # the prediction object right before and right after LatentFix's callback
        def observed(params):
            if category == "cfg_after_cfg":
                seen.append(("in", id(params.x)))
            inner(params)
            if category == "cfg_after_cfg":
                seen.append(("out", id(params.x)))
        return observed

    wrap_our_callbacks(observing)
    host.txt2img(args(), steps=12, seed=3, sampler="Euler", scheduler="Normal")
    pairs = list(zip(seen[::2], seen[1::2]))
    unchanged = sum(a[1] == b[1] for a, b in pairs)
    assert 0 < unchanged < len(pairs)  # calls outside the windows hand the host's own tensor back


def test_host_timesteps_are_the_samplers_own(monkeypatch):
    """What the host computes before the run is exactly where the sampler then calls the model."""
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    seen = {}
    original = glue_host.host_timesteps

    def spy(p):
        result = original(p)
        seen["host"] = result[1]
        return result

    monkeypatch.setattr(glue_host, "host_timesteps", spy)
    events = host.record_callbacks(keep_tensors=False)
    host.txt2img(args(), steps=10, seed=3, sampler="DPM++ 2M", scheduler="Karras")
    sigmas = [e["sigma"][-1] for e in events if e["kind"] == "cfg_denoiser"]
    device = [float(sigma_to_t(s.reshape(1), host.model.alphas_cumprod)) for s in sigmas]
    planned = [seen["host"].bounds(i)[0] for i in range(len(device))]
    assert planned == pytest.approx(device, abs=1e-3)


def test_unknown_sampler_timesteps_fall_back_with_one_console_line(monkeypatch, capsys):
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    monkeypatch.setattr(glue_host, "FIRST_ORDER", set())
    host.txt2img(args(), steps=6, seed=3, sampler="Euler", n_iter=2)
    out = capsys.readouterr().out
    assert out.count("timesteps not known before sampling (sampler 'sample_euler')") == 1


def test_no_repeated_work_per_model_call(monkeypatch):
    """The schedule, the skip decision and the infotext text are computed once per generation, not per call."""
    import lib_latentfix.infotext as lf_infotext
    import lib_latentfix.runtime as lf_runtime
    from lib_latentfix.settings import Settings

    counts = {"encode": 0, "schedule": 0, "skip": 0}
    encode, schedule, skip = lf_infotext.encode, Settings.schedule, lf_runtime.skip_reason

    def counted(name, fn):
        def wrapper(*a, **kw):
            counts[name] += 1
            return fn(*a, **kw)
        return wrapper

    monkeypatch.setattr(lf_infotext, "encode", counted("encode", encode))
    monkeypatch.setattr(Settings, "schedule", counted("schedule", schedule))
    monkeypatch.setattr(lf_runtime, "skip_reason", counted("skip", skip))
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    for key in counts:
        counts[key] = 0
    run = host.txt2img(args(), steps=10, seed=3, batch_size=2, sampler="Euler", enable_hr=True,
                       hr_second_pass_steps=4)
    assert "LatentFix: " in run.processed.infotexts[0]
    # per generation: argument checks and the job build the schedule a few times; 14 model calls build none
    assert counts["schedule"] <= 6 and counts["skip"] <= 3 and counts["encode"] <= 3, counts


def test_a_schedule_override_of_another_extension_is_not_asked_twice(capsys):
    """p.sampler_noise_scheduler_override (A sd_samplers_kdiffusion.py:96-97) may keep state: the host's schedule
    is then not recomputed, and the windows are tested on the device, saying so once."""
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    run = host.txt2img(args(), steps=8, seed=3, sampler="Euler", sampler_noise_scheduler_override=lambda steps: None)
    assert "LatentFix: " in run.processed.infotexts[0]
    assert capsys.readouterr().out.count("another extension overrides the sigma schedule") == 1
