"""One generation's job: which passes, which calls, which rows, eps predictions — without any WebUI."""

from dataclasses import replace

import pytest
import torch

from lib_latentfix import BLOG
from lib_latentfix.runtime import ModelCall, correct, latent_problem, skip_reason
from lib_latentfix.sigmas import eps_after_x0_change, eps_to_x0
from lib_latentfix.schedule import apply
from lib_latentfix.settings import DEFAULTS
from lib_latentfix.sigmas import scaled_linear_alphas_cumprod


@pytest.mark.parametrize(
    "x,ok",
    [
        (torch.zeros(2, 4, 8, 8), True),
        (torch.zeros(2, 16, 8, 8), False),
        (torch.zeros(2, 4, 3, 8, 8), False),
        (torch.zeros(4, 8, 8), False),
        (torch.zeros(2, 4, 8, 8, dtype=torch.int64), False),
        ("latent", False),
    ],
)
def test_latent_problem(x, ok):
    assert (latent_problem(x) is None) == ok


def test_skip_reasons():
    on = replace(DEFAULTS, enabled=True)
    assert skip_reason(on, is_hr_pass=False, inner_pass=False) is None
    assert skip_reason(DEFAULTS, is_hr_pass=False, inner_pass=False) == "off"
    assert skip_reason(on, is_hr_pass=True, inner_pass=False) is None
    assert skip_reason(replace(on, apply_in_hires=False), is_hr_pass=True, inner_pass=False) == "hires fix pass"
    assert skip_reason(on, is_hr_pass=False, inner_pass=True) == "inner pass of another extension"
    assert skip_reason(replace(on, skip_inner_passes=False), is_hr_pass=False, inner_pass=True) is None


def _eps_setup(rows=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ac = scaled_linear_alphas_cumprod().float()
    t = torch.tensor([980.0, 500.0, 40.0][:rows])
    alpha_bar = ac[t.long()]
    x0 = torch.randn(rows, 4, 8, 8, generator=g) * 3 + 1
    eps = torch.randn(rows, 4, 8, 8, generator=g)
    a = alpha_bar[:, None, None, None]
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    return x_t, eps, x0, t, alpha_bar


def test_eps_to_x0_inverts_the_forward_process():
    x_t, eps, x0, _, alpha_bar = _eps_setup()
    torch.testing.assert_close(eps_to_x0(x_t, eps, alpha_bar), x0, rtol=1e-4, atol=1e-3)


def test_eps_correction_equals_x0_correction():
    """A DDIM-style sampler gets the same correction on x0 as a k-diffusion sampler."""
    x_t, eps, x0, t, alpha_bar = _eps_setup()
    call = ModelCall(None, timesteps=t, x_in=x_t, alpha_bar=alpha_bar, mask=None)
    new_eps, _ = correct(BLOG, eps, call)
    implied_x0 = eps_to_x0(x_t, new_eps, alpha_bar)
    torch.testing.assert_close(implied_x0, apply(BLOG, eps_to_x0(x_t, eps, alpha_bar), t), rtol=1e-3, atol=1e-3)


def test_eps_rows_outside_every_window_are_untouched_bit_for_bit():
    x_t, eps, _, _, alpha_bar = _eps_setup()
    call = ModelCall(None, timesteps=torch.tensor([500.0, 400.0, 300.0]), x_in=x_t, alpha_bar=alpha_bar, mask=None)
    assert torch.equal(correct(BLOG, eps, call)[0], eps)


def test_prediction_rows_are_the_last_rows_of_the_call():
    """A1111: the denoiser input has cond rows then one uncond row per image; after-CFG has one row per image."""
    x = torch.randn(2, 4, 8, 8) * 6
    timesteps = torch.tensor([999.0, 999.0, 999.0, 960.0, 50.0])  # 3 cond rows, then the 2 images
    call = ModelCall(None, timesteps=timesteps, x_in=torch.zeros(5, 4, 8, 8), alpha_bar=None, mask=None)
    out, _ = correct(BLOG, x, call)
    torch.testing.assert_close(out, apply(BLOG, x, torch.tensor([960.0, 50.0])))


def test_eps_after_x0_change_keeps_unchanged_half_precision_values():
    eps = torch.randn(2, 4, 4, 4).half()
    x0 = torch.randn(2, 4, 4, 4)
    out = eps_after_x0_change(eps, x0, x0.clone(), torch.tensor([0.5, 0.9]))
    assert out.dtype == torch.float16 and torch.equal(out, eps)


# --- windows no model call reached ----------------------------------------------------------------------------


def _job_over(timesteps, *, settings=None, key="run"):
    """A job that went through one pass whose model calls the host knew were at ``timesteps``."""
    from lib_latentfix.runtime import HostTimesteps, Job

    lines = []
    job = Job(settings or replace(DEFAULTS, enabled=True, correction_point="after"), version="test", report=lines.append)
    job.begin_pass(key, HostTimesteps(tuple(timesteps)), name="first pass")
    x = torch.zeros(1, 4, 8, 8)
    for i in range(len(timesteps)):
        if job.begin_call(key, i, lambda steps, host_t: ModelCall(steps, None, x, None, None, host_t)):
            job.correct("after", x + 1)
        job.end_call()
    job.finish()
    return job, lines


def test_a_filter_no_call_reached_is_reported_once_and_left_out_of_the_infotext():
    job, lines = _job_over([999, 857, 714, 571, 429, 286, 143, 0])
    assert job.unreached() == ("center_late", "maximize")
    (line,) = lines
    assert line.startswith("first pass: the late center (1 < t < 100) and the maximize (1 < t < 100) never ran: "
                           "the model was called at t = 999, 857, 714, 571, 429, 286, 143, 0, none inside")
    said = job.infotext()
    assert "LatentFix maximize" not in said and "late_shift=0/0" in said["LatentFix center"]
    assert said["LatentFix preset"] == "Custom"


def test_a_call_within_the_edge_margin_may_have_run_so_nothing_is_claimed_skipped():
    """t = 100.3 (a host that rounds may evaluate at 99.8): the device decides, so the job says nothing false."""
    job, lines = _job_over([999, 500, 100.3])
    assert "maximize" not in job.unreached() and not any("maximize" in line for line in lines)
    assert "LatentFix maximize" in job.infotext()


def test_calls_of_an_unannounced_run_are_never_reported_as_skipped():
    from lib_latentfix.runtime import HostTimesteps, Job

    lines = []
    job = Job(replace(DEFAULTS, enabled=True), version="test", report=lines.append)
    job.begin_pass("announced", HostTimesteps((999.0, 500.0)), name="first pass")
    x = torch.zeros(1, 4, 8, 8)
    job.begin_call("another run", 0, lambda steps, host_t: ModelCall(steps, torch.tensor([999.0]), x, None, None))
    job.correct("after", x + 1)
    job.end_call()
    job.finish()
    assert job.unreached() == () and not any("never ran" in line for line in lines)


def test_the_few_step_preset_is_a_departure_only_in_its_late_window():
    from lib_latentfix.settings import FEW_STEPS, PRESETS

    few, post = PRESETS[FEW_STEPS], PRESETS["Post defaults"]
    assert {k for k in few if few[k] != post[k]} == {"center_late_t_min", "center_late_t_max", "maximize_t_min",
                                                     "maximize_t_max"}
    for timesteps in ([999, 749.25, 499.5, 249.75], [999, 666, 333, 0], [999, 832.5, 666, 499.5, 333, 166.5]):
        job, lines = _job_over(timesteps, settings=replace(DEFAULTS, enabled=True, correction_point="after", **few))
        assert job.unreached() == () and lines == [], timesteps


def test_host_timesteps_bounds_per_sampler_kind():
    from lib_latentfix.runtime import HostTimesteps

    t = (999.0, 700.0, 300.0, 0.0)
    first = HostTimesteps(t)
    assert [first.bounds(c) for c in range(3)] == [(999.0, 999.0), (700.0, 700.0), (300.0, 300.0)]
    midpoint = HostTimesteps(t, calls_per_step=2)  # DPM2, DPM++ SDE: the second call lies between two entries
    assert midpoint.bounds(0) == (999.0, 999.0) and midpoint.bounds(1) == (700.0, 999.0)
    heun = HostTimesteps(t, calls_per_step=2, second_at_next=True)  # Heun: the second call at the next entry
    assert heun.bounds(1) == (700.0, 700.0) and heun.bounds(4) == (300.0, 300.0)
    ddim = HostTimesteps((1.0, 251.0, 501.0, 751.0), first_call_at=-1)  # A1111 DDIM walks backwards
    assert ddim.bounds(0) == (751.0, 751.0) and ddim.bounds(2) == (251.0, 251.0)
    assert first.bounds(10) is None


# --- predictions holding NaN/inf ------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [999.0, 800.0, 50.0])  # the soft clamp first; the early center; center + maximize
def test_finish_counts_the_images_that_held_nan_or_inf_not_those_with_an_empty_mask(t):
    """Said once at the end: images 1 (NaN) and 3 (inf) of each call, never image 2, whose inpaint mask is empty;
    with a mask too, the images holding NaN or inf come back as they were (inf was blended into NaN before)."""
    from lib_latentfix.runtime import HostTimesteps, Job

    lines = []
    job = Job(replace(DEFAULTS, enabled=True), version="test", report=lines.append)
    job.begin_pass("run", HostTimesteps((t, t)), name="first pass")
    mask = torch.ones(4, 1, 8, 8)
    mask[2] = 0.0
    for call in range(2):
        x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(call)) * 5
        x[1, 2, 3, 4], x[3, 0, 0, 0] = float("nan"), float("inf")
        assert job.begin_call("run", call, lambda steps, host_t: ModelCall(steps, None, x, None, mask, host_t))
        out = job.correct("after", x)
        assert torch.equal(out[1:].nan_to_num(9.0), x[1:].nan_to_num(9.0))  # left as they were
        job.end_call()
    job.finish()
    assert [line for line in lines if "NaN" in line] == [
        "4 image prediction(s) held NaN/inf values; those were left uncorrected (the model or another extension "
        "produced them)"]


def test_a_long_generation_keeps_a_bounded_number_of_tensors_and_still_counts_every_nan_image():
    """Thousands of model calls (a long batch, an X/Y/Z grid in one job) must not keep one tensor per call until the
    end: that grew the process by about a megabyte per call once glibc's heap fragmented around them."""
    from lib_latentfix.runtime import EVIDENCE_FOLD, HostTimesteps, Job

    lines = []
    job = Job(replace(DEFAULTS, enabled=True, correction_point="after"), version="test", report=lines.append)
    job.begin_pass("run", HostTimesteps((800.0,) * 1000))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    bad = x.clone()
    bad[1, 0, 0, 0] = float("nan")
    held = 0
    for call in range(1000):
        rows = bad if call % 7 == 0 else x
        assert job.begin_call("run", call, lambda steps, host_t: ModelCall(steps, None, rows, None, None, host_t))
        job.correct("after", rows)
        job.end_call()
        held = max(held, len(job._evidence) + len(job._bad))
    job.finish()
    assert held <= EVIDENCE_FOLD + 1000 // EVIDENCE_FOLD
    assert [line for line in lines if "NaN" in line] == [
        f"{len(range(0, 1000, 7))} image prediction(s) held NaN/inf values; those were left uncorrected (the model or "
        "another extension produced them)"]
