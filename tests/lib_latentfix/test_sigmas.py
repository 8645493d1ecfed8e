"""Sigma ↔ timestep on the SD/SDXL discrete schedule, checked against what real hosts report."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_latentfix.sigmas import (
    scaled_linear_alphas_cumprod,
    sigma_to_t,
    sigmas_from_alphas_cumprod,
    t_to_sigma,
)
from support.sync_guard import NoHostSync

SIGMAS = sigmas_from_alphas_cumprod(scaled_linear_alphas_cumprod())


def karras(n, sigma_min, sigma_max, rho=7.0):
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def test_sdxl_sigma_range():
    assert abs(SIGMAS[0].item() - 0.0292) < 1e-4
    assert abs(SIGMAS[-1].item() - 14.6146) < 1e-4


def test_table_entries_map_to_their_index():
    t = sigma_to_t(SIGMAS.float())
    torch.testing.assert_close(t, torch.arange(1000, dtype=torch.float32), rtol=0, atol=2e-3)


def test_normal_schedule_timesteps_seen_on_a1111():
    # host contract §11: Euler a, 12 steps, "normal" → 999, 908, 817, 727, …, 91, 0
    sigmas = t_to_sigma(torch.linspace(999, 0, 12))
    t = sigma_to_t(sigmas)
    assert [round(v) for v in t.tolist()][:4] == [999, 908, 817, 727]
    assert round(t[-2].item()) == 91 and round(t[-1].item()) == 0


def test_karras_schedule_timesteps_seen_on_a1111():
    # host contract §11: 999, 932, 854, 761, 646, 506, 345, 190, 78, 23, 4.5, 0
    seen = [999, 932, 854, 761, 646, 506, 345, 190, 78, 23, 4.5, 0]
    t = sigma_to_t(karras(12, SIGMAS[0].item(), SIGMAS[-1].item()).float())
    for ours, host in zip(t.tolist(), seen):
        assert abs(ours - host) <= 1.0


def test_out_of_table_sigmas_clamp():
    t = sigma_to_t(torch.tensor([0.0, 1e-6, 100.0]))
    assert t.tolist() == [0.0, 0.0, 999.0]


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 999.0))
def test_round_trip(t):
    back = sigma_to_t(t_to_sigma(torch.tensor([t], dtype=torch.float64)))
    assert abs(back.item() - t) < 1e-2


def test_model_schedule_is_used_when_given():
    # a schedule with a different beta range moves the timestep of the same sigma
    other = scaled_linear_alphas_cumprod(beta_start=0.0001, beta_end=0.02)
    sigma = torch.tensor([1.0])
    assert abs(sigma_to_t(sigma).item() - sigma_to_t(sigma, other).item()) > 5


def test_batched_and_sync_free():
    sigma = torch.tensor([[14.0, 3.0], [0.5, 0.03]])
    with NoHostSync():
        t = sigma_to_t(sigma)
        s = t_to_sigma(t)
    assert t.shape == sigma.shape and t.dtype == torch.float32
    torch.testing.assert_close(s, sigma, rtol=1e-3, atol=1e-5)
