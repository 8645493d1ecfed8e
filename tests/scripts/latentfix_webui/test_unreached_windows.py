"""Windows no model call reaches: the post's windows are in timesteps, and a run whose model calls all fall outside
one skips that filter. Then one console line names the filter, the pass and the timesteps the pass had, and the
infotext does not claim the filter (pasting it reproduces the image). The 'Few-step models' preset reaches every
window at 4, 6 and 8 steps with Euler, DPM++ 2M and a trailing ('SGM Uniform') schedule."""

import re
from dataclasses import replace

import pytest
import torch

from webui_standin import harness

import latentfix_webui.host as glue_host
from lib_latentfix import infotext as lf_infotext
from support.positional import to_positional
from lib_latentfix.settings import DEFAULTS, FEW_STEPS, apply_preset
from lib_latentfix.sigmas import sigma_to_t
from modules import infotext_utils

ON = replace(DEFAULTS, enabled=True)
FEW = apply_preset(ON, FEW_STEPS)
NEVER_RAN = re.compile(r"^\[LatentFix\] (.+?): (.+) never ran: the model was called at t = ([0-9., ]+), none inside",
                       re.M)


def _host(flavour="a1111"):
    host = harness.make_host(flavour, "sdxl")
    host.load_extension()
    return host


def _params(run):
    return infotext_utils.parse_generation_parameters(run.processed.infotexts[0])


@pytest.mark.parametrize("flavour", ["a1111", "forge"])
def test_euler_a_8_steps_post_defaults_reports_the_late_filters_not_reached(flavour, capsys):
    host = _host(flavour)
    run = host.txt2img(to_positional(ON), sampler="Euler a", steps=8, seed=2, n_iter=2)
    out = capsys.readouterr().out
    said = NEVER_RAN.findall(out)
    assert len(said) == 1, out  # one line, though the pass ran once per batch
    (name, what, timesteps), = said
    assert name == "first pass"
    assert what == "the late center (1 < t < 100) and the maximize (1 < t < 100)"
    # the timesteps the pass's model calls had: A1111's uniform 8 steps (t = 999 ... 143, then sigma_min at t = 0)
    assert timesteps.split(", ")[-2:] == ["143", "0"] and len(timesteps.split(", ")) == 8
    assert "'Few-step models' preset" in out

    params = _params(run)
    assert "LatentFix maximize" not in params  # not claimed
    assert "late_shift=0/0" in params["LatentFix center"] and "early_shift=0.8/0.8" in params["LatentFix center"]
    assert params["LatentFix preset"] == "Custom" and "LatentFix clamp" in params
    # what the infotext says is exactly what ran: pasting it reproduces the image
    pasted, problems = lf_infotext.decode(params)
    assert not problems
    again = _host(flavour).txt2img(to_positional(pasted), sampler="Euler a", steps=8, seed=2, n_iter=2)
    assert torch.equal(again.latents, run.latents)


def test_a_4_step_hires_pass_reports_everything_it_missed_and_the_infotext_keeps_what_the_first_pass_ran(capsys):
    host = _host()
    run = host.txt2img(to_positional(ON), sampler="Euler", steps=20, seed=3, enable_hr=True, hr_second_pass_steps=4,
                       denoising_strength=0.5)
    said = NEVER_RAN.findall(capsys.readouterr().out)
    assert [(name, what) for name, what, _ in said] == [(
        "hires fix pass", "the soft clamp (t > 950), the early center (t > 700), the late center (1 < t < 100) "
        "and the maximize (1 < t < 100)")]
    assert all(float(t) < 700 for t in said[0][2].split(", "))
    params = _params(run)  # the first pass (20 steps) ran every filter: the infotext claims them all
    assert params["LatentFix preset"] == "Post defaults" and "LatentFix maximize" in params


def test_unknown_timesteps_say_nothing_false(capsys, monkeypatch):
    """Where the host cannot know the timesteps before sampling (the device tests the windows), no line claims a
    filter was skipped, and the infotext keeps the settings as given."""
    monkeypatch.setattr(glue_host, "host_timesteps", lambda p: (None, None, "tests: not known"))
    run = _host().txt2img(to_positional(ON), sampler="Euler a", steps=8, seed=2)
    assert not NEVER_RAN.findall(capsys.readouterr().out)
    assert _params(run)["LatentFix preset"] == "Post defaults"


def test_every_window_reached_says_nothing(capsys):
    run = _host().txt2img(to_positional(ON), sampler="Euler", steps=12, seed=2)
    assert not NEVER_RAN.findall(capsys.readouterr().out)
    assert _params(run)["LatentFix preset"] == "Post defaults"


FEW_STEP_SCHEDULES = {
    "Euler": dict(sampler="Euler"),  # Automatic: A1111's uniform in t, t = 999 ... 0
    "DPM++ 2M": dict(sampler="DPM++ 2M"),  # Automatic: Karras
    "Euler SGM Uniform": dict(sampler="Euler", scheduler="SGM Uniform"),  # trailing: 4 steps t = 999, 749, 500, 250
    "DPM++ 2M SGM Uniform": dict(sampler="DPM++ 2M", scheduler="SGM Uniform"),
}


@pytest.mark.parametrize("steps", [4, 6, 8])
@pytest.mark.parametrize("schedule", list(FEW_STEP_SCHEDULES))
def test_the_few_step_preset_reaches_every_window(schedule, steps, capsys):
    host = _host()
    events = host.record_callbacks(keep_tensors=False)
    run = host.txt2img(to_positional(FEW), steps=steps, seed=5, **FEW_STEP_SCHEDULES[schedule])
    # the model calls' own timesteps (from each call's sigma, as the device sees them), independent of the job
    t = [float(sigma_to_t(e["sigma"][-1].reshape(1), host.model.alphas_cumprod)) for e in events
         if e["kind"] == "cfg_denoiser"]
    assert len(t) == steps
    for name, step in FEW.parts():
        assert any(step.is_active_at(v) for v in t), f"{name} ({step.t_min:g}-{step.t_max:g}) not reached at {t}"
    assert not NEVER_RAN.findall(capsys.readouterr().out)
    params = _params(run)
    assert params["LatentFix preset"] == FEW_STEPS and "LatentFix maximize" in params
    assert run.p.latentfix_job.unreached() == ()


def test_the_trailing_schedule_is_the_one_few_step_models_use():
    """The stand-in's 'SGM Uniform' gives A1111's trailing timesteps (sd_schedulers.py:33-41)."""
    host = _host()
    events = host.record_callbacks(keep_tensors=False)
    host.txt2img(to_positional(ON), steps=4, seed=5, sampler="Euler", scheduler="SGM Uniform")
    t = [float(sigma_to_t(e["sigma"][-1].reshape(1), host.model.alphas_cumprod)) for e in events
         if e["kind"] == "cfg_denoiser"]
    assert t == pytest.approx([999, 749.25, 499.5, 249.75], abs=0.01)


def test_the_post_defaults_miss_the_late_window_on_the_same_few_step_schedules(capsys):
    """Why the preset exists: the post's 1 < t < 100 catches no call of a trailing 4-step schedule."""
    _host().txt2img(to_positional(ON), steps=4, seed=5, sampler="Euler", scheduler="SGM Uniform")
    (name, what, timesteps), = NEVER_RAN.findall(capsys.readouterr().out)
    assert "the late center" in what and "the maximize" in what and timesteps == "999, 749, 500, 250"


def test_a_window_the_first_pass_missed_but_the_hires_pass_reached_stays_in_the_infotext(capsys):
    """Each pass says what it missed, and why; the infotext claims what ran in either pass."""
    run = _host().txt2img(to_positional(ON), sampler="Euler a", steps=8, seed=3, enable_hr=True,
                          hr_second_pass_steps=20, denoising_strength=0.5)
    out = capsys.readouterr().out
    said = {name: what for name, what, _ in NEVER_RAN.findall(out)}
    assert said == {"first pass": "the late center (1 < t < 100) and the maximize (1 < t < 100)",
                    "hires fix pass": "the soft clamp (t > 950) and the early center (t > 700)"}
    assert "this pass starts at t = 487, below them, as its denoising strength sets" in out  # not "more steps"
    assert out.count("more steps") == 1
    params = _params(run)  # every filter ran in one pass or the other
    assert params["LatentFix preset"] == "Post defaults" and "LatentFix maximize" in params
