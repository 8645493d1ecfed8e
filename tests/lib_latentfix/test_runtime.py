"""One generation's job: which passes, which calls, which rows, eps predictions — without any WebUI."""

from dataclasses import replace
from types import SimpleNamespace

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
    new_eps = correct(BLOG, eps, call)
    implied_x0 = eps_to_x0(x_t, new_eps, alpha_bar)
    torch.testing.assert_close(implied_x0, apply(BLOG, eps_to_x0(x_t, eps, alpha_bar), t), rtol=1e-3, atol=1e-3)


def test_eps_rows_outside_every_window_are_untouched_bit_for_bit():
    x_t, eps, _, _, alpha_bar = _eps_setup()
    call = ModelCall(None, timesteps=torch.tensor([500.0, 400.0, 300.0]), x_in=x_t, alpha_bar=alpha_bar, mask=None)
    assert torch.equal(correct(BLOG, eps, call), eps)


def test_prediction_rows_are_the_last_rows_of_the_call():
    """A1111: the denoiser input has cond rows then one uncond row per image; after-CFG has one row per image."""
    x = torch.randn(2, 4, 8, 8) * 6
    timesteps = torch.tensor([999.0, 999.0, 999.0, 960.0, 50.0])  # 3 cond rows, then the 2 images
    call = ModelCall(None, timesteps=timesteps, x_in=torch.zeros(5, 4, 8, 8), alpha_bar=None, mask=None)
    out = correct(BLOG, x, call)
    torch.testing.assert_close(out, apply(BLOG, x, torch.tensor([960.0, 50.0])))


def test_eps_after_x0_change_keeps_unchanged_half_precision_values():
    eps = torch.randn(2, 4, 4, 4).half()
    x0 = torch.randn(2, 4, 4, 4)
    out = eps_after_x0_change(eps, x0, x0.clone(), torch.tensor([0.5, 0.9]))
    assert out.dtype == torch.float16 and torch.equal(out, eps)
