"""The latent point (the default): every sampler step lands on the post's filtered latent.

Each test runs one generation twice on the stand-in host, in float64: once with LatentFix on the sampler latent,
once without LatentFix, the sampler replaced by a reference loop written out in tests/support/reference_sampling.py
(the same sampler, the post's filters applied to each image's latent after each step, the model's predictions kept
as it made them). Both must give the same latents to float64 round-off.
"""

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
