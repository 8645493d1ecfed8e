"""The latent point (the default): every sampler step lands on the post's filtered latent.

Each test runs one generation twice on the stand-in host, in float64: once with LatentFix on the sampler latent,
once without LatentFix, the sampler replaced by a reference loop written out in tests/support/reference_sampling.py
(the same sampler, the post's filters applied to each image's latent after each step, the model's predictions kept
as it made them). Both must give the same latents to float64 round-off.
"""

import functools

import pytest
import torch

from webui_standin import harness

from modules import processing, sd_samplers
from support import reference_sampling as ref
from support.glue import args


@pytest.fixture(autouse=True)
def float64_noise(monkeypatch):
    next_noise = processing.ImageRNG.next
    monkeypatch.setattr(processing.ImageRNG, "next", lambda self: next_noise(self).double())


def _with_sampler_function(monkeypatch, function):
    create = sd_samplers.create_sampler

    def create_with(name, model):
        sampler = create(name, model)
        sampler.func = function
        return sampler

    monkeypatch.setattr(sd_samplers, "create_sampler", create_with)


def _generate(flavour, sampler, monkeypatch, reference=None, script_args=None, **kw):
    host = harness.make_host(flavour, "sdxl")
    if reference is None:
        host.load_extension()
        return host.txt2img(script_args or args(), sampler=sampler, **kw)
    with monkeypatch.context() as m:
        _with_sampler_function(m, reference)
        return host.txt2img(sampler=sampler, **kw)


def _relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


CASES = [("Euler", ref.euler, 30), ("Heun", ref.heun, 12), ("DPM++ 2M", ref.dpmpp_2m, 30), ("DDIM", ref.ddim, 30)]


@pytest.mark.parametrize("flavour", ["a1111", "forge"])
@pytest.mark.parametrize("sampler,reference,steps", CASES, ids=[c[0] for c in CASES])
def test_each_step_lands_on_the_post_filtered_latent(flavour, sampler, reference, steps, monkeypatch):
    kw = dict(batch_size=2, steps=steps, seed=7, cfg_scale=9.0)
    ours = _generate(flavour, sampler, monkeypatch, **kw)
    theirs = _generate(flavour, sampler, monkeypatch, reference=reference, **kw)
    plain = _generate(flavour, sampler, monkeypatch, script_args=args(enabled=False), **kw)
    assert ours.latents.dtype == torch.float64
    assert _relative(ours.latents, theirs.latents) <= 1e-10
    assert _relative(plain.latents, theirs.latents) > 1e-3  # the filters changed the image: the test can fail


def _infotext(run):
    from modules import infotext_utils

    return infotext_utils.parse_generation_parameters(run.processed.infotexts[0])


def test_euler_a_lands_before_its_noise_and_the_deviation_from_the_post_is_pinned(monkeypatch):
    """Euler a adds fresh noise after each step: the filters act on the noise-free latent (exactly), where the
    post's callback sees the latent with the noise. The difference that makes is measured and pinned here (README)."""
    kw = dict(batch_size=2, steps=30, seed=7, cfg_scale=9.0)
    ours = _generate("a1111", "Euler a", monkeypatch, **kw)
    before = _generate("a1111", "Euler a", monkeypatch, reference=ref.euler_ancestral_before_noise, **kw)

    after_noise = functools.partial(ref.euler_ancestral_before_noise, after_noise=True)

    post = _generate("a1111", "Euler a", monkeypatch, reference=after_noise, **kw)
    plain = _generate("a1111", "Euler a", monkeypatch, script_args=args(enabled=False), **kw)
    assert _relative(ours.latents, before.latents) <= 1e-10
    deviation = _relative(ours.latents, post.latents)
    assert deviation < 0.25 * _relative(plain.latents, post.latents)  # far closer to the post than no correction
    assert deviation < 0.15, deviation  # README: 0.13 of the largest value, seed 7, 30 steps, CFG 9


def test_an_unknown_step_falls_back_to_after_guidance_with_one_line(monkeypatch, capsys):
    from lib_latentfix import landing

    monkeypatch.setattr(landing, "SAMPLER_FUNCTIONS", {k: v for k, v in landing.SAMPLER_FUNCTIONS.items()
                                                       if k != "sample_euler"})
    kw = dict(steps=8, seed=3, n_iter=2)
    fallen = _generate("a1111", "Euler", monkeypatch, **kw)
    after = _generate("a1111", "Euler", monkeypatch, script_args=args(correction_point="after"), **kw)
    out = capsys.readouterr().out
    assert out.count("step is not known (no known step for sample_euler)") == 1
    assert torch.equal(fallen.latents, after.latents)
    assert "point=after" in _infotext(fallen)["LatentFix options"]  # what ran; pasting it reproduces the image


def test_a_renamed_sampler_is_recognised_by_its_function(monkeypatch, capsys):
    """Dynamic Thresholding renames "Euler a" to "Euler a_dynthres3"; the function it runs is the same."""
    kw = dict(steps=8, seed=3, batch_size=2)
    plain = _generate("a1111", "Euler a", monkeypatch, **kw)
    create = sd_samplers.create_sampler

    def renamed(name, model):
        sampler = create(name, model)
        sampler.config = sampler.config._replace(name=sampler.config.name + "_dynthres3")
        return sampler

    monkeypatch.setattr(sd_samplers, "create_sampler", renamed)
    capsys.readouterr()
    wrapped = _generate("a1111", "Euler a", monkeypatch, **kw)
    assert "not known" not in capsys.readouterr().out
    assert torch.equal(wrapped.latents, plain.latents)
    said = _infotext(wrapped)
    assert "LatentFix maximize" not in said  # at 8 steps no step lands in 1 < t < 100: not claimed
    assert "late_shift=0/0" in said["LatentFix center"] and "point=latent" in said["LatentFix options"]


@pytest.mark.parametrize("kind,kw", [("txt2img", dict(steps=1)), ("img2img", dict(steps=10, denoising_strength=0.05))],
                         ids=["1 step", "img2img at 0.05"])
def test_a_ddim_run_that_never_calls_the_model_claims_nothing(kind, kw):
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    run = getattr(host, kind)(args(), sampler="DDIM", seed=3, **kw)
    assert host.model.calls == 0
    assert not any(key.startswith("LatentFix") for key in _infotext(run))


def _work_per_call(sampler, monkeypatch):
    from support.glue import count_tensor_work

    monkeypatch.setattr(processing.ImageRNG, "next", lambda self: torch.randn((2, 4, 32, 32)))  # float32, as users
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    calls = []
    count_tensor_work(host, calls)
    host.txt2img(args(), batch_size=2, steps=30, seed=3, sampler=sampler)
    per_call = [sum(n for _, n in calls[i:i + 3]) for i in range(0, len(calls), 3)]
    assert len(per_call) == 30
    return per_call


def test_a_step_outside_every_window_does_no_tensor_work(monkeypatch):
    per_call = _work_per_call("Euler", monkeypatch)
    idle = [i for i, n in enumerate(per_call) if n == 0]
    assert idle == list(range(9, 27)) + [29], per_call  # 688 > t > 103, and the last step at t = 0


def test_dpmpp_2m_only_takes_its_carried_change_back_out_between_the_windows(monkeypatch):
    """Between the windows a DPM++ 2M call only removes what the previous rewrite left in the sampler's history
    (one addition, the rest are reads of shapes and dtypes), until that has faded below the latent's rounding."""
    per_call = _work_per_call("DPM++ 2M", monkeypatch)
    between = per_call[10:20]
    assert all(0 < n <= 14 for n in between), str(per_call)
    assert min(per_call[:10]) > 20 and min(per_call[21:28]) > 20  # the windows' calls filter


@pytest.mark.parametrize("point", ["latent", "after"])
@pytest.mark.parametrize("flavour", ["a1111", "forge"])
@pytest.mark.parametrize("steps,unclaimed", [(4, "LatentFix clamp"), (3, "LatentFix maximize")])
def test_ddim_windows_are_decided_on_the_host_and_the_infotext_claims_only_what_ran(flavour, point, steps, unclaimed):
    """DDIM's timesteps are fixed before sampling (4 steps: 751, 501, 251; 3 steps: 667, 334) on every WebUI: a
    window none of them reaches is not claimed."""
    host = harness.make_host(flavour, "sdxl")
    host.load_extension()
    run = host.txt2img(args(correction_point=point), sampler="DDIM", steps=steps, seed=3)
    said = _infotext(run)
    assert unclaimed not in said and f"point={point}" in said["LatentFix options"]


@pytest.mark.parametrize("sampler", ["Euler", "DDIM"])
def test_forge_inference_mode_still_lands_on_the_post_filtered_latent(sampler, monkeypatch, capsys):
    """Forge runs the whole generation under torch.inference_mode (F modules/processing.py:911), so every table read
    before the sampler run is an inference tensor: the latent point must still be reached (real Forge dfdcbab6 fell
    back to after guidance on every generation, "Inference tensors do not track version counter")."""
    kw = dict(batch_size=2, steps=12, seed=7, cfg_scale=9.0)
    with torch.inference_mode():
        ours = _generate("forge", sampler, monkeypatch, **kw)
    reference = {name: function for name, function, _ in CASES}[sampler]
    theirs = _generate("forge", sampler, monkeypatch, reference=reference, **kw)
    out = capsys.readouterr().out
    assert "not known" not in out, out
    assert "point=latent" in ours.processed.infotexts[0]
    assert _relative(ours.latents, theirs.latents) <= 1e-10
