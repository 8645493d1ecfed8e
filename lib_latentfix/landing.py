"""The post's correction point: the sampler's latent after each step, reached from the model call's prediction.

The post runs its filters in a diffusers step-end callback, on the latent the sampler's step has just produced,
keyed on that step's timestep. A WebUI or ComfyUI hook sees a model call instead: the latent rows ``x`` the model
was evaluated on and the (guided) prediction ``P`` the sampler is about to use. For the samplers below the step is
linear in both, so the latent after it is known before the sampler computes it::

    L = a·x + b·P + hx·x_prev + hp·P_prev

(``x_prev``/``P_prev``: the previous model call's latent rows and prediction as the model made them; Heun's second
call and DPM++ 2M's history). A :class:`Landing` holds those four numbers for one model call. The filters run on
``L`` at the step's timestep and the prediction is rewritten so that the sampler's own step lands exactly on the
filtered latent::

    P' = P + δ,   δ = (F(L) − L − hp·δ_prev) / b

where ``δ_prev`` is what the previous rewrite changed: a multistep sampler (DPM++ 2M) reuses that prediction in
this step, and the term takes it back out, so every later latent is the one the post's loop would have made.

Ancestral samplers add fresh noise after the step; there ``L`` is the step's noise-free part (``exact`` False)
and the filters see the latent before the noise, where the post's callback sees it after.

The coefficients follow each sampler's own scalar arithmetic on its own sigma tensor (dtype included), so the
rewritten step agrees with the filtered latent to the rounding of the latent's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

Tensor = torch.Tensor

# Sampler kinds whose step is known, by the function the sampler runs: the name survives wrappers that rename
# the sampler in the UI (Dynamic Thresholding's "Euler a_dynthres3" still runs sample_euler_ancestral).
EULER = "euler"
EULER_ANCESTRAL = "euler_ancestral"
HEUN = "heun"
DPMPP_2M = "dpmpp_2m"
DDIM = "ddim"

SAMPLER_FUNCTIONS: dict[str, str] = {
    "sample_euler": EULER,
    "sample_euler_ancestral": EULER_ANCESTRAL,
    "sample_heun": HEUN,
    "sample_dpmpp_2m": DPMPP_2M,
    "ddim": DDIM,
}
K_DIFFUSION_KINDS = (EULER, EULER_ANCESTRAL, HEUN, DPMPP_2M)

# k-diffusion functions that call the model once per step, exactly at the step's sigma: each model call's timestep
# follows from the run's sigma list alone (the WebUI's and ComfyUI's window decisions both use this list).
ONE_CALL_PER_STEP = frozenset({"sample_euler", "sample_euler_ancestral", "sample_lms", "sample_dpmpp_2m",
                               "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde", "sample_lcm"})
# k-diffusion functions that add noise before the model call when "s_churn" is set (the call then sees another sigma).
CHURN = frozenset({"sample_euler", "sample_heun", "sample_dpm_2"})

# How a message and the README name each kind, and whether the post's latent is reached exactly.
KIND_LABELS: dict[str, str] = {EULER: "Euler", EULER_ANCESTRAL: "Euler a", HEUN: "Heun", DPMPP_2M: "DPM++ 2M",
                               DDIM: "DDIM"}

# A history correction (DPM++ 2M) whose weight has decayed below this share of the change it carries is dropped.
HISTORY_CUTOFF = 1e-12


def sampler_kind(function: object) -> Optional[str]:
    """The kind of sampler a sampler function (or its name) runs, None when its step is not known here."""
    name = function if isinstance(function, str) else getattr(function, "__name__", None)
    return SAMPLER_FUNCTIONS.get(name) if isinstance(name, str) else None


@dataclass(frozen=True)
class Landing:
    """One model call's step, ``L = a·x + b·P + hx·x_prev + hp·P_prev`` (see the module text).

    ``step`` is the index of the sampler step the call completes (its timestep keys the filters); ``exact`` is False
    where the sampler adds noise after the step (then ``L`` is the noise-free part).
    """

    a: float
    b: float
    step: int
    hx: float = 0.0
    hp: float = 0.0
    exact: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a) and math.isfinite(self.b) and self.b != 0):
            raise ValueError(f"a step that cannot be reached from its prediction: a={self.a!r}, b={self.b!r}")


# --------------------------------------------------------------------------------------------------------
# the steps (pure functions of the schedule, computed on the host before sampling)


def _scalar(values: Tensor, i: int) -> Tensor:
    return values[i].detach().to("cpu")


def _euler_like(x_step: Tensor, s0: Tensor, step: int, exact: bool) -> Landing:
    """x + (x − P)/σ·(σ_to − σ): the Euler step to ``σ_to``, with ``x_step = σ_to − σ`` in the sigmas' dtype."""
    ratio = float(x_step) / float(s0)
    return Landing(a=1.0 + ratio, b=-ratio, step=step, exact=exact)


def _ancestral_down(s0: Tensor, s1: Tensor, eta: float) -> tuple[Tensor, Tensor]:
    """(σ_down, σ_up) of an ancestral step from s0 to s1 with ``eta``, in the sigmas' dtype."""
    if not eta:
        return s1, torch.zeros_like(s1)
    up = torch.minimum(s1, eta * (s1 ** 2 * (s0 ** 2 - s1 ** 2) / s0 ** 2) ** 0.5)
    return (s1 ** 2 - up ** 2) ** 0.5, up


def k_diffusion_landings(kind: str, sigmas: Tensor, *, eta: float = 1.0) -> tuple[Optional[Landing], ...]:
    """Each model call's step for a k-diffusion sampler run over ``sigmas`` (the run's own tensor, the final 0
    included), in call order; None for a call after which there is no latent (Heun's first call of a step)."""
    if kind not in K_DIFFUSION_KINDS:
        raise ValueError(f"no known step for sampler kind {kind!r}")
    sigmas = sigmas.detach().to("cpu")
    out: list[Optional[Landing]] = []
    for i in range(sigmas.shape[0] - 1):
        s0, s1 = _scalar(sigmas, i), _scalar(sigmas, i + 1)
        if kind == EULER:
            out.append(_euler_like(s1 - s0, s0, i, True))
        elif kind == EULER_ANCESTRAL:
            down, up = _ancestral_down(s0, s1, eta)
            out.append(_euler_like(down - s0, s0, i, not (float(s1) > 0 and float(up) > 0)))
        elif kind == HEUN:
            dt = s1 - s0
            if float(s1) == 0:
                out.append(_euler_like(dt, s0, i, True))
                continue
            # x_next = x_i + dt/2·((x_i − P_1)/σ_i + (x_2 − P_2)/σ_next), seen from the second call (x = x_2)
            half_0, half_1 = float(dt) / (2 * float(s0)), float(dt) / (2 * float(s1))
            out.append(None)
            out.append(Landing(a=half_1, b=-half_1, step=i, hx=1.0 + half_0, hp=-half_0))
        else:  # DPM++ 2M: x_next = (σ_next/σ)·x − expm1(−h)·(c1·P − c2·P_prev), first and last steps first-order
            if float(s1) == 0:
                out.append(Landing(a=0.0, b=1.0, step=i))
                continue
            t, t_next = s0.log().neg(), s1.log().neg()
            ratio = float(t_next.neg().exp() / t.neg().exp())  # σ_next/σ as the sampler computes it, through t
            h = t_next - t
            weight = float((-h).expm1().neg())
            if i == 0:
                out.append(Landing(a=ratio, b=weight, step=i))
                continue
            r = (t - _scalar(sigmas, i - 1).log().neg()) / h
            c1, c2 = float(1 + 1 / (2 * r)), float(1 / (2 * r))
            out.append(Landing(a=ratio, b=weight * c1, step=i, hp=-weight * c2))
    return tuple(out)


def ddim_landings(alphas: Sequence[float], alphas_prev: Sequence[float], noise: Sequence[float] = (),
                  k_space: Optional[Sequence[tuple[float, float]]] = None) -> tuple[Landing, ...]:
    """Each model call's DDIM step, in call order: call i goes from ᾱ = ``alphas[i]`` to ``alphas_prev[i]`` adding
    ``noise[i]``·N(0, 1) (η > 0).

    The latent is DDIM's own (x_t = √ᾱ·x0 + √(1−ᾱ)·ε, the diffusers latent the post filters). Without ``k_space``
    the call sees that latent and an ε prediction (A1111); with it (Forge) call i sees x_t·m and an x0 prediction,
    ``k_space[i]`` = (σ, m) with m = √(σ²+1) as the host rounds it, and the host turns x0 back into ε = (x_t·m − x0)/σ.
    """
    out = []
    for i, (a_t, a_prev) in enumerate(zip(alphas, alphas_prev)):
        sigma_t = noise[i] if i < len(noise) else 0.0
        a = a_prev ** 0.5 / a_t ** 0.5
        b = (1.0 - a_prev - sigma_t ** 2) ** 0.5 - a_prev ** 0.5 * (1.0 - a_t) ** 0.5 / a_t ** 0.5
        if k_space is not None:  # L = a·x_k/m + b·(x_k − x0)/σ
            sigma, m = k_space[i]
            a, b = a / m + b / sigma, -b / sigma
        out.append(Landing(a=a, b=b, step=i, exact=sigma_t == 0))
    return tuple(out)


# --------------------------------------------------------------------------------------------------------
# the plan: which calls work, what they keep (host side, before sampling)


@dataclass(frozen=True)
class CallPlan:
    """What one model call does at the latent point.

    ``filters``: the call's latent is filtered (its step's timestep is inside a window); ``carry``: the share of the
    previous call's change this call takes back out (−hp/b for DPM++ 2M; 0 when there is none to take); ``keep``: the
    next call needs this call's latent rows and prediction; ``weight``: how much of the last filtered change the
    call's own change still carries (1 where it filters; a carried change below the latent dtype's rounding can be
    left out).
    """

    landing: Optional[Landing]
    filters: bool
    carry: float
    keep: bool
    weight: float = 0.0

    @property
    def works(self) -> bool:
        """Whether the call needs anything at all (a call that does not costs no tensor work)."""
        return self.filters or self.carry != 0.0 or self.keep

    def negligible(self, dtype: torch.dtype) -> bool:
        """True for a call that only carries a change too small to move a latent of ``dtype`` (below half its
        rounding step): it can skip all work."""
        return not (self.filters or self.keep) and abs(self.weight) < torch.finfo(dtype).eps / 2


def plan_calls(landings: Sequence[Optional[Landing]], filters: Sequence[bool]) -> tuple[CallPlan, ...]:
    """The plan of every call, from each call's step and whether its step's timestep is inside a window.

    A rewrite changes the prediction by δ; the next call with ``hp`` ≠ 0 takes ``hp·δ`` back out, which is itself a
    change (−hp/b·δ) the call after carries on, and so on, until the weight of the last filtered change in it falls
    below :data:`HISTORY_CUTOFF` (a float64 latent's rounding is far coarser).
    """
    plans = []
    weight = 0.0  # the weight of the last filtered change in the previous call's δ (0: the previous δ is zero)
    for i, landing in enumerate(landings):
        following = landings[i + 1] if i + 1 < len(landings) else None
        keep = following is not None and (following.hx != 0 or following.hp != 0) and bool(filters[i + 1])
        if landing is None:
            plans.append(CallPlan(None, False, 0.0, keep))
            weight = 0.0
            continue
        carry = -landing.hp / landing.b if landing.hp != 0 and weight != 0.0 else 0.0
        if not filters[i] and abs(carry * weight) < HISTORY_CUTOFF:
            carry = 0.0
        weight = 1.0 if filters[i] else carry * weight
        plans.append(CallPlan(landing, bool(filters[i]), carry, keep, weight))
    return tuple(plans)


# --------------------------------------------------------------------------------------------------------
# the hot path


def landed_latent(landing: Landing, x: Tensor, prediction: Tensor, previous: Optional[tuple[Tensor, Tensor]],
                  dtype: torch.dtype) -> Tensor:
    """The latent the step would produce from the predictions as the model made them, in ``dtype``."""
    if previous is None and abs(landing.a + landing.b - 1.0) <= 1e-12:  # Euler-like: one pass
        return torch.lerp(prediction.to(dtype), x.to(dtype), landing.a)
    latent = torch.add(prediction.to(dtype), x.to(dtype), alpha=landing.a / landing.b).mul_(landing.b)
    if previous is not None:
        x_prev, p_prev = previous
        if landing.hx != 0:
            latent.add_(x_prev.to(dtype), alpha=landing.hx)
        if landing.hp != 0:
            latent.add_(p_prev.to(dtype), alpha=landing.hp)
    return latent


def rewrite(landing: Landing, moved: Tensor, carried: Optional[Tensor], carry: float) -> Tensor:
    """δ, the change of the prediction that moves the step's latent by ``moved`` (= F(L) − L, a tensor this
    function may overwrite), plus ``carry``·``carried`` (the share of the previous change this step takes back out,
    see :func:`plan_calls`)."""
    delta = moved.div_(landing.b)
    if carried is not None and carry != 0.0:  # (out of place: either may be a per-channel [B, C, 1, 1] change)
        delta = torch.add(delta, carried.to(delta.dtype), alpha=carry)
    return delta


class LatentRun:
    """One sampler run at the latent point, per model call in order (host-free; the WebUI's Job and the ComfyUI
    patch both keep one): the previous call's latent rows and prediction when its plan keeps them, and the last
    change of a prediction with its weight, which a multistep sampler's next call takes back out."""

    __slots__ = ("kept", "change", "weight")

    def __init__(self) -> None:
        self.kept: Optional[tuple[Tensor, Tensor]] = None
        self.change: Optional[Tensor] = None  # the last change of a prediction is δ = weight · change
        self.weight = 0.0

    def skip(self) -> None:
        """A call that does nothing (no window, nothing kept, no change left worth carrying): the next call sees no
        change to take back out and nothing kept."""
        self.kept, self.change, self.weight = None, None, 0.0

    def land(self, plan: CallPlan, x: Optional[Tensor], prediction: Tensor,
             filters: Callable[[Tensor], Tensor]) -> Optional[Tensor]:
        """The prediction that makes this call's step land where ``plan`` says (a new tensor), or None when the
        call only keeps what the next one needs. ``x``: the latent rows of ``prediction``; ``filters``: the change
        F(L) − L the post's filters make at the step's timestep to the landed latent L (float32, float64 for float64
        predictions), a new tensor."""
        previous, self.kept = self.kept, ((x, prediction) if plan.keep else None)
        landing = plan.landing
        if landing is None or not (plan.filters or plan.carry):
            self.change = None
            return None
        if plan.filters:
            dtype = torch.float64 if prediction.dtype == torch.float64 else torch.float32
            moved = filters(landed_latent(landing, x, prediction, previous, dtype))
            carry = plan.carry * self.weight
            if self.change is None or carry == 0.0:  # δ = moved / b, kept unscaled: P' in one pass
                self.change, self.weight = moved, 1.0 / landing.b
                return torch.add(prediction, moved.to(prediction.dtype), alpha=self.weight)
            change = rewrite(landing, moved, self.change, carry)
            self.change, self.weight = change, 1.0
            return torch.add(prediction, change.to(prediction.dtype))
        if self.change is None:  # only the previous change to take back out (DPM++ 2M reuses that prediction)
            return None
        self.weight *= plan.carry
        return torch.add(prediction, self.change.to(prediction.dtype), alpha=self.weight)


__all__ = ["CHURN", "CallPlan", "DDIM", "DPMPP_2M", "EULER", "EULER_ANCESTRAL", "HEUN", "HISTORY_CUTOFF", "KIND_LABELS",
           "Landing", "LatentRun", "ONE_CALL_PER_STEP", "SAMPLER_FUNCTIONS", "ddim_landings", "k_diffusion_landings", "landed_latent", "plan_calls",
           "rewrite", "sampler_kind"]
