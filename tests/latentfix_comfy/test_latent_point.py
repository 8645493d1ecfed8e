"""The latent point (the default) in ComfyUI: every sampler step lands on the post's filtered latent.

Each differential test runs one KSampler twice on the ComfyUI stand-in, in float64: once through the LatentFix node
(its SAMPLER_SAMPLE wrapper tells which k-diffusion function runs, its post-CFG function rewrites each prediction),
once without LatentFix, the sampler function replaced by a reference loop written out in
tests/support/reference_sampling.py (the same sampler, the post's filters applied to each image's latent after each
step at that step's ComfyUI timestep, the model's predictions kept as it made them). Both must give the same final
sampler latent to float64 round-off.
"""

import functools
import logging

import pytest
import torch
from comfyui_standin import k_diffusion_sampling as kd
from comfyui_standin import model_base, samplers
from comfyui_standin.model_patcher import ModelPatcher
from comfyui_standin.workflow import NEGATIVE, POSITIVE
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from support import reference_sampling as ref
from support.sync_guard import NoHostSync

from latentfix_comfy import nodes
from latentfix_comfy.patch import (
    RUN_KEY,
    SAMPLER_SAMPLE,
    WRAPPER_KEY,
    LatentFixPatch,
    SamplerSeen,
    sampler_wrapper,
)


class Float64Model(model_base.BaseModel):
    """The stand-in model with its output kept in the input's dtype (ComfyUI casts it to float32, which would
    round away the float64 comparison)."""

    def apply_model(self, x, t, cond):
        xc = self.model_sampling.calculate_input(t, x)
        output = self.diffusion_model(xc, self.model_sampling.timestep(t).float(), cond["bias"].to(x.dtype))
        return self.model_sampling.calculate_denoised(t, output, x)


def make_model():
    return ModelPatcher(Float64Model())


def finals(model):
    """A SAMPLER_SAMPLE wrapper of the test's own (key "test") that keeps what each run's sampler returned (the
    final sampler latent, before ComfyUI casts it to float32)."""
    kept = []

    def keep(executor, *args, **kwargs):
        out = executor(*args, **kwargs)
        kept.append(out)
        return out

    model.add_wrapper_with_key(SAMPLER_SAMPLE, "test", keep)
    return kept


def ksample(model, sampler, steps, scheduler="normal", batch=2, cfg=8.0, seed=7):
    latent = {"samples": torch.zeros(batch, 4, 16, 16, dtype=torch.float64)}
    kept = finals(model)
    with torch.inference_mode():  # as ComfyUI samples
        samplers.common_ksampler(model, seed, steps, cfg, sampler, scheduler, POSITIVE, NEGATIVE, latent)
    (out,) = kept
    assert out.dtype == torch.float64
    return out


def latentfix(model, **named):
    return nodes.patched(model, {"preset": "Post defaults", **named})


def relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


def comfy(loop, **kw):
    return functools.partial(loop, timestep=ref.comfy_timestep, **kw)


def euler_a(after_noise):
    """The reference Euler a with the stand-in's own noise (default_noise_sampler seeded from the run's seed)."""

    def loop(model, x, sigmas, extra_args=None, eta=1.0, s_noise=1.0):
        noise = kd.default_noise_sampler(x, seed=extra_args.get("seed"))
        return ref.euler_ancestral_before_noise(model, x, sigmas, extra_args, eta=eta, noise_sampler=noise,
                                                after_noise=after_noise, timestep=ref.comfy_timestep)

    return loop


def reference(monkeypatch, function, loop, sampler, steps, scheduler="normal"):
    with monkeypatch.context() as m:
        m.setitem(kd.SAMPLERS, function, loop)
        return ksample(make_model(), sampler, steps, scheduler)


# (ComfyUI sampler name, the k-diffusion function it runs, the reference loop, steps, scheduler)
CASES = [("euler", "euler", comfy(ref.euler), 30, "normal"),
         ("heun", "heun", comfy(ref.heun), 12, "normal"),
         ("dpmpp_2m", "dpmpp_2m", comfy(ref.dpmpp_2m), 30, "karras"),
         ("ddim", "euler", comfy(ref.euler), 30, "normal")]  # ComfyUI's "ddim" runs sample_euler


@pytest.mark.parametrize("sampler,function,loop,steps,scheduler", CASES, ids=[c[0] for c in CASES])
def test_each_step_lands_on_the_post_filtered_latent(sampler, function, loop, steps, scheduler, monkeypatch):
    ours = ksample(latentfix(make_model()), sampler, steps, scheduler)
    theirs = reference(monkeypatch, function, loop, sampler, steps, scheduler)
    plain = ksample(make_model(), sampler, steps, scheduler)
    assert relative(ours, theirs) <= 1e-10
    assert relative(plain, theirs) > 1e-3  # the filters changed the image: the test can fail
    after = ksample(latentfix(make_model(), correction_point="after"), sampler, steps, scheduler)
    assert relative(after, theirs) > 1e-3  # and the latent point is not the guided-x0 correction


# Euler a: the run equals the reference that filters each step's latent before its added noise; the post's callback
# sees the latent after the noise. The deviation from that (30 steps, normal, batch 2, cfg 8, seed 7) is pinned.
EULER_A_DEVIATION = 0.0270


def test_euler_ancestral_lands_before_its_noise_and_its_deviation_from_the_post_is_pinned(monkeypatch):
    ours = ksample(latentfix(make_model()), "euler_ancestral", 30)
    before = reference(monkeypatch, "euler_ancestral", euler_a(False), "euler_ancestral", 30)
    after = reference(monkeypatch, "euler_ancestral", euler_a(True), "euler_ancestral", 30)
    assert relative(ours, before) <= 1e-10
    assert relative(ours, after) == pytest.approx(EULER_A_DEVIATION, rel=0.02)


def test_euler_ancestral_takes_eta_from_the_samplers_extra_options(monkeypatch):
    # SamplerCustom with SamplerEulerAncestral(eta=0.5): a KSAMPLER whose extra_options carry eta
    def run(model, loop=None):
        kept = finals(model)
        sigmas = samplers.calculate_sigmas(model.model.model_sampling, "normal", 20)
        function = loop if loop is not None else kd.sample_euler_ancestral
        sampler = samplers.KSAMPLER(function, {"eta": 0.5})
        with torch.inference_mode():
            samplers.sample_custom(model, 3, 8.0, POSITIVE, NEGATIVE, sampler, sigmas,
                                   {"samples": torch.zeros(2, 4, 16, 16, dtype=torch.float64)})
        return kept[0]

    ours = run(latentfix(make_model()))
    theirs = run(make_model(), euler_a(False))
    assert relative(ours, theirs) <= 1e-10
    assert relative(run(make_model()), theirs) > 1e-3


# ---------------------------------------------------------------------------------------------------------------
# when the sampler's step is not known: after guidance for that run, one line


def mystery(model, x, sigmas, extra_args=None):
    """A sampler of another node pack (its step is not known to LatentFix)."""
    return kd.sample_euler(model, x, sigmas, extra_args=extra_args)


def custom_run(model, function=mystery, steps=10):
    kept = finals(model)
    sigmas = samplers.calculate_sigmas(model.model.model_sampling, "normal", steps)
    with torch.inference_mode():
        samplers.sample_custom(model, 5, 8.0, POSITIVE, NEGATIVE, samplers.KSAMPLER(function), sigmas,
                               {"samples": torch.zeros(2, 4, 16, 16, dtype=torch.float64)})
    return kept[0]


def lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "latentfix"]


def test_an_unknown_sampler_is_corrected_after_guidance_with_one_line_per_run(caplog):
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        ours = custom_run(latentfix(make_model()))
    (line,) = lines(caplog)
    assert "mystery" in line and "after guidance" in line
    assert torch.equal(ours, custom_run(latentfix(make_model(), correction_point="after")))
    assert relative(ours, custom_run(make_model())) > 1e-3


def test_no_wrapper_seen_falls_back_to_after_guidance_with_one_line(caplog):
    model = latentfix(make_model())
    model.wrappers.clear()  # e.g. a ComfyUI without sampler wrappers
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        ours = ksample(model, "euler", 10)
    (line,) = lines(caplog)
    assert "no sampler wrapper ran" in line
    assert torch.equal(ours, ksample(latentfix(make_model(), correction_point="after"), "euler", 10))


def test_a_sampler_given_other_sigmas_than_the_runs_falls_back_with_one_line(caplog):
    def other_sigmas(executor, guider, sigmas, extra_args, *args):  # another pack's wrapper, outside LatentFix's
        return executor(guider, sigmas[1:], extra_args, *args)

    base = make_model()
    base.add_wrapper_with_key(SAMPLER_SAMPLE, "other", other_sigmas)
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        ksample(latentfix(base), "euler", 10)
    (line,) = lines(caplog)
    assert "other sigmas" in line


def test_before_guidance_is_refused_with_one_line_and_corrects_after_guidance(caplog):
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        model = latentfix(make_model(), correction_point="before")
    (line,) = lines(caplog)
    assert "AUTOMATIC1111" in line and "after guidance" in line
    patch = [f for f in model.model_options["sampler_post_cfg_function"] if isinstance(f, LatentFixPatch)][0]
    assert patch.point == "after"


# ---------------------------------------------------------------------------------------------------------------
# the wrapper, and the cost of a call


def test_the_wrapper_is_registered_once_under_its_key_and_survives_clones():
    model = make_model()
    patched = latentfix(model)
    assert patched.get_wrappers(SAMPLER_SAMPLE, WRAPPER_KEY) == [sampler_wrapper]
    assert model.get_wrappers(SAMPLER_SAMPLE, WRAPPER_KEY) == []  # the input model is left alone
    twice = latentfix(patched)  # two LatentFix nodes in a row
    assert twice.get_wrappers(SAMPLER_SAMPLE, WRAPPER_KEY) == [sampler_wrapper]
    assert patched.clone().get_wrappers(SAMPLER_SAMPLE, WRAPPER_KEY) == [sampler_wrapper]


def test_the_wrapper_records_the_samplers_function_and_options_for_the_run():
    seen = []

    def look(args):
        seen.append(args["model_options"]["transformer_options"][RUN_KEY])
        return args["denoised"]

    model = latentfix(make_model())
    model.set_model_sampler_post_cfg_function(look)
    ksample(model, "ddim", 4)
    assert len(seen) == 4 and all(s is seen[0] for s in seen)  # one record per run, seen by each call
    assert seen[0].function is kd.sample_euler and seen[0].extra_options == {}
    ksample(model, "euler", 4)
    assert seen[4] is not seen[0]  # a new run, a new record


def direct_calls(point, sampler="sample_euler", steps=8):
    """A patch driven call by call as ComfyUI would (the wrapper's record in the run's options): each call's
    (output, the latent rows it got, its prediction, the torch functions it ran)."""
    model = latentfix(make_model(), correction_point=point)
    patch = [f for f in model.model_options["sampler_post_cfg_function"] if isinstance(f, LatentFixPatch)][0]
    sigmas = samplers.calculate_sigmas(model.model.model_sampling, "normal", steps)
    options = {"transformer_options": {"sample_sigmas": sigmas}}
    options["transformer_options"][RUN_KEY] = SamplerSeen(getattr(kd, sampler), {}, sigmas)
    out = []
    x = torch.randn(2, 4, 8, 8, generator=torch.manual_seed(1)) * float(sigmas[0])
    for i in range(len(sigmas) - 1):
        x0 = torch.randn(2, 4, 8, 8, generator=torch.manual_seed(10 + i)) * 3
        args = {"denoised": x0, "input": x, "sigma": sigmas[i] * torch.ones(2), "model": model.model,
                "model_options": options}
        if i == 0:  # the run's first call reads the run's sigma list on the host (once per run)
            out.append((patch(args), x0, None))
        else:
            with NoHostSync() as guard:
                corrected = patch(args)
            out.append((corrected, x0, guard.calls))
        x = x + (x - out[-1][0]) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return model.model.model_sampling.timestep(sigmas[:-1]).tolist(), out


@pytest.mark.parametrize("point", ["latent", "after"])
def test_a_call_outside_every_window_does_no_tensor_work_and_none_syncs(point):
    timesteps, calls = direct_calls(point, steps=20)
    # Post defaults: clamp t > 950, early center t > 700, late center and maximize 1 < t < 100
    outside = [i for i, t in enumerate(timesteps) if not (t > 700 or 1 < t < 100)]
    assert outside and len(outside) < len(calls)
    for i, (corrected, x0, work) in enumerate(calls):
        if i == 0:
            assert timesteps[0] == 999 and not torch.equal(corrected, x0)
        elif i in outside:
            assert corrected is x0 and work == 0
        else:
            assert work > 0 and not torch.equal(corrected, x0)


def test_the_after_point_decides_windows_on_the_host_for_a_known_sampler():
    rows = []
    model = latentfix(make_model(), correction_point="after")
    timestep = model.model.model_sampling.timestep

    def counting(sigma):
        rows.append(tuple(sigma.shape))
        return timestep(sigma)

    model.model.model_sampling.timestep = counting
    try:
        ksample(model, "heun", 8, batch=3)
    finally:
        del model.model.model_sampling.timestep
    # 15 model calls, the stand-in's UNet asks each cond's timestep (2 per call); LatentFix asks none per call,
    # only for the run's sigma list (on the host, once per run)
    assert rows.count((3,)) == 15 * 2


def test_a_sigma_between_two_timesteps_leaves_the_window_edge_to_the_device():
    from latentfix_comfy.patch import call_timesteps
    from lib_latentfix.schedule import steps_between

    sampling = make_model().model.model_sampling
    log_sigmas = sampling.log_sigmas.double()
    middle = ((log_sigmas[950] + log_sigmas[951]) / 2).exp()  # the host and the device may round to either side
    sigmas = torch.stack([sampling.sigmas[960].double(), middle]).float()
    low, host, high = call_timesteps(sampling, sigmas)
    assert low[0] == host[0] == high[0] == 960
    assert {low[1], high[1]} == {950.0, 951.0}
    schedule = nodes.lf_arguments.from_named({"enabled": True}).schedule()  # the clamp's window is t > 950
    assert steps_between(schedule, low[0], high[0]) is not None  # decided on the host
    assert steps_between(schedule, min(low[1], high[1]), max(low[1], high[1])) is None  # the device's own t decides


def test_the_latent_point_with_a_noise_mask_leaves_the_kept_area_alone(caplog):
    from comfyui_standin.workflow import ksample as plain_ksample
    from comfyui_standin.workflow import make_model as float32_model

    source = torch.randn(1, 4, 16, 16, generator=torch.manual_seed(9)) * 6
    mask = torch.zeros(1, 16, 16)
    mask[:, 4:12, 4:12] = 1.0  # SetLatentNoiseMask: 1 = repaint
    latent = {"samples": source, "noise_mask": mask}
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        ours = plain_ksample(latentfix(float32_model()), latent, denoise=0.8, steps=12)
    assert lines(caplog) == []  # corrected on the sampler latent (no fallback)
    plain = plain_ksample(float32_model(), latent, denoise=0.8, steps=12)
    kept = mask[:, None].expand(1, 4, 16, 16) == 0
    torch.testing.assert_close(ours[kept], plain[kept], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours[~kept], plain[~kept], atol=1e-3)


@hsettings(max_examples=12, deadline=None)
@given(sampler=st.sampled_from(["euler", "euler_ancestral", "heun", "dpmpp_2m", "ddim"]),
       scheduler=st.sampled_from(["normal", "karras"]), steps=st.integers(1, 25),
       denoise=st.sampled_from([1.0, 0.6]))
def test_every_model_call_of_a_run_is_matched_to_its_step(sampler, scheduler, steps, denoise):
    from comfyui_standin.workflow import ksample as plain_ksample
    from comfyui_standin.workflow import make_model as float32_model

    model = latentfix(float32_model())
    patch = [f for f in model.model_options["sampler_post_cfg_function"] if isinstance(f, LatentFixPatch)][0]
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.manual_seed(steps)) * 3}
    calls = []
    model.set_model_sampler_post_cfg_function(lambda args: calls.append(args["sigma"]) or args["denoised"])
    plain_ksample(model, latent, sampler=sampler, scheduler=scheduler, steps=steps, denoise=denoise)
    run = patch._run
    assert run.plans is not None and run.calls == len(run.plans) == len(calls)
    # a step's filters are keyed on the timestep of the sigma it starts from (the call that completes it)
    sigmas = run.key.sigmas
    ends = [plan.landing.step for _, plan in run.plans if plan.landing is not None]
    assert ends == list(range(len(sigmas) - 1))
