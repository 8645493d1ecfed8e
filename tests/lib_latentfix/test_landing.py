"""The latent point's core: each sampler's step as a linear map, the plan of a run, and the rewrite that lands the
sampler's own step on the filtered latent."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from lib_latentfix import infotext
from lib_latentfix.landing import (DDIM, DPMPP_2M, EULER, HEUN, CallPlan, Landing, LatentRun, ddim_landings,
                                   k_diffusion_landings, plan_calls, sampler_kind)
from lib_latentfix.settings import AFTER_CFG, DEFAULTS, LATENT
from dataclasses import replace

KARRAS = torch.tensor([14.61, 9.8, 6.3, 3.9, 2.3, 1.25, 0.62, 0.27, 0.03, 0.0])


def test_samplers_are_recognised_by_the_function_they_run_whatever_their_label():
    def sample_euler_ancestral():  # a renamed sampler still runs this function
        pass

    assert sampler_kind("sample_euler") == EULER
    assert sampler_kind(sample_euler_ancestral) == "euler_ancestral"
    assert sampler_kind("ddim") == DDIM
    assert sampler_kind("sample_lms") is None and sampler_kind(None) is None and sampler_kind(3) is None


def test_the_last_euler_step_lands_on_the_prediction_itself():
    steps = k_diffusion_landings(EULER, KARRAS)
    assert len(steps) == len(KARRAS) - 1
    assert all(math.isclose(s.a + s.b, 1.0) for s in steps)
    assert (steps[-1].a, steps[-1].b) == (0.0, 1.0)


def test_heun_lands_at_the_second_call_of_each_step_and_once_on_the_last():
    steps = k_diffusion_landings(HEUN, KARRAS)
    assert len(steps) == 2 * (len(KARRAS) - 2) + 1
    assert all(s is None for s in steps[0:-1:2]) and all(s is not None for s in steps[1::2])
    assert [s.step for s in steps if s is not None] == list(range(len(KARRAS) - 1))


def test_dpmpp_2m_uses_the_previous_prediction_except_first_and_last():
    steps = k_diffusion_landings(DPMPP_2M, KARRAS)
    assert steps[0].hp == 0 and steps[-1].hp == 0 and (steps[-1].a, steps[-1].b) == (0.0, 1.0)
    assert all(s.hp < 0 for s in steps[1:-1])


def test_a_step_that_cannot_be_reached_is_refused():
    with pytest.raises(ValueError, match="cannot be reached"):
        Landing(a=1.0, b=0.0, step=0)
    with pytest.raises(ValueError, match="no known step"):
        k_diffusion_landings("sample_lms", KARRAS)


def test_the_plan_keeps_and_carries_only_what_a_later_call_needs():
    euler = plan_calls(k_diffusion_landings(EULER, KARRAS), [True, False] * 4 + [True])
    assert not any(p.keep or p.carry for p in euler)
    assert [p.works for p in euler] == [True, False] * 4 + [True]
    dpm = plan_calls(k_diffusion_landings(DPMPP_2M, KARRAS), [True] + [False] * 8)
    assert dpm[1].carry != 0 and dpm[0].keep is False and dpm[-1].carry == 0  # the last step takes nothing back
    assert all(abs(p.weight) <= 1 for p in dpm) and dpm[2].weight == pytest.approx(dpm[1].carry * dpm[2].carry)
    heun = plan_calls(k_diffusion_landings(HEUN, KARRAS), [False, True] * 8 + [False])
    assert heun[0].keep and not heun[1].keep  # the first call keeps its latent and prediction for the second


def test_a_carried_change_below_the_latents_rounding_is_negligible():
    plan = CallPlan(Landing(0.5, 0.5, 0, hp=-0.2), filters=False, carry=0.3, keep=False, weight=1e-9)
    assert plan.negligible(torch.float32) and not plan.negligible(torch.float64)


@settings(max_examples=40, deadline=None)
@given(a=st.floats(-2, 2), b=st.floats(0.05, 2), hx=st.floats(-2, 2), hp=st.floats(-1, 1),
       seed=st.integers(0, 2**16))
def test_the_rewritten_prediction_makes_the_step_land_on_the_filtered_latent(a, b, hx, hp, seed):
    g = torch.Generator().manual_seed(seed)
    x_prev, p_prev, x, p = (torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64) for _ in range(4))
    first = Landing(0.3, 0.7, 0)
    landing = Landing(a, b, 1, hx=hx, hp=hp)
    plans = plan_calls([first, landing], [True, True])
    run = LatentRun()
    target = {}

    def filtered(latent):  # any per-image change F(L) − L; remember where each call should land
        out = latent * 0.5 + 1.0
        target[len(target)] = out
        return out - latent

    p_prev_new = run.land(plans[0], x_prev, p_prev, filtered)
    p_new = run.land(plans[1], x, p, filtered)
    assert torch.allclose(0.3 * x_prev + 0.7 * p_prev_new, target[0], rtol=0, atol=1e-12)
    # the sampler's own step, with the rewritten previous prediction in its history
    landed = a * x + b * p_new + hx * x_prev + hp * p_prev_new
    assert torch.allclose(landed, target[1], rtol=0, atol=1e-9)


def test_forge_ddim_steps_read_the_k_space_latent_and_an_x0():
    alphas, prev = [0.3], [0.6]
    vp = ddim_landings(alphas, prev)[0]
    sigma = math.sqrt((1 - alphas[0]) / alphas[0])
    k = ddim_landings(alphas, prev, k_space=[(sigma, math.sqrt(sigma ** 2 + 1))])[0]
    x_vp, x0 = torch.tensor(1.3, dtype=torch.float64), torch.tensor(-0.4, dtype=torch.float64)
    eps = (x_vp - math.sqrt(alphas[0]) * x0) / math.sqrt(1 - alphas[0])
    x_k = x_vp * math.sqrt(sigma ** 2 + 1)
    assert float(vp.a * x_vp + vp.b * eps) == pytest.approx(float(k.a * x_k + k.b * x0), abs=1e-12)


def test_the_latent_point_round_trips_and_an_older_infotext_pastes_back_after_guidance():
    on = replace(DEFAULTS, enabled=True)
    assert on.correction_point == LATENT
    assert infotext.decode(infotext.encode(on, "0.2.0"))[0] == on
    said = infotext.encode(on, "0.2.0")
    older = dict(said, **{"LatentFix options": said["LatentFix options"].replace("point=latent;", "")})
    assert "point" not in older["LatentFix options"]
    assert infotext.decode(older)[0].correction_point == AFTER_CFG  # what an earlier version ran
