"""A small declarative schedule: which filter runs, with which parameters, inside which timestep window.

A :class:`Schedule` is plain, immutable data (an ordered tuple of :class:`Step`), so the UI, the infotext
and the API can name, show and round-trip it. :func:`apply` runs it on a batch in which every image has its
own timestep (training timesteps, 0 = clean … 999 = pure noise).

Windows follow the post's strict comparisons: a step is active while ``t_min < t < t_max``. The ends of the
scale are open: ``t_min <= 0`` has no lower limit (the last, t = 0 evaluation is included) and
``t_max >= 1000`` no upper limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import torch

from .filters import (
    ALL_CHANNELS,
    COLOUR_CHANNELS,
    Affine,
    ChannelStats,
    blend,
    center_affine,
    channel_stats,
    check_channels,
    check_latent,
    check_number,
    check_soft_clamp_args,
    maximize_affine,
    repaint_weight,
    soft_clamp_latent,
    with_ranges,
)

Tensor = torch.Tensor
T_MAX = 1000.0


@dataclass(frozen=True)
class SoftClamp:
    """The post's soft clamp; ``adaptive`` > 0 takes the limits from each image (see filters.soft_clamp)."""

    threshold: float = 3.5
    boundary: float = 4.0
    adaptive: float = 0.0

    def __post_init__(self) -> None:
        check_number("adaptive", self.adaptive, 0.0, 1.0)
        if self.adaptive > 0:  # adaptive limits: the fixed threshold is not used, the boundary is the guard
            check_number("boundary", self.boundary, 0.0, 1e4, low_open=True)
            check_number("threshold", self.threshold, 0.0, 1e4)
        else:
            check_soft_clamp_args(self.threshold, self.boundary)


@dataclass(frozen=True)
class Center:
    """The post's center: listed channels lose mean × channel_shift, then the image its mean × full_shift."""

    channel_shift: float = 1.0
    full_shift: float = 1.0
    channels: tuple[int, ...] = ALL_CHANNELS

    def __post_init__(self) -> None:
        check_number("channel_shift", self.channel_shift, 0.0, 1.0)
        check_number("full_shift", self.full_shift, 0.0, 1.0)
        object.__setattr__(self, "channels", check_channels("channels", self.channels))


@dataclass(frozen=True)
class Maximize:
    """The post's maximize: listed channels scaled so the image's largest magnitude reaches ±boundary."""

    boundary: float = 4.0
    channels: tuple[int, ...] = COLOUR_CHANNELS

    def __post_init__(self) -> None:
        check_number("boundary", self.boundary, 0.0, 1e4, low_open=True)
        object.__setattr__(self, "channels", check_channels("channels", self.channels))


Filter = Union[SoftClamp, Center, Maximize]


@dataclass(frozen=True)
class Step:
    """One filter, active while ``t_min < t < t_max``, blended with the input by ``strength`` (0…1)."""

    filter: Filter
    t_min: float = 0.0
    t_max: float = T_MAX
    strength: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.filter, (SoftClamp, Center, Maximize)):
            raise ValueError(f"filter must be SoftClamp, Center or Maximize, got {self.filter!r}")
        check_number("t_min", self.t_min, 0.0, T_MAX)
        check_number("t_max", self.t_max, 0.0, T_MAX)
        if self.t_min >= self.t_max:
            raise ValueError(f"t_min must be below t_max, got t_min={self.t_min:g}, t_max={self.t_max:g}")
        check_number("strength", self.strength, 0.0, 1.0)

    def can_change(self) -> bool:
        """False for a step that never changes anything: strength 0, a center with both shifts 0, or a maximize
        of no channel."""
        op = self.filter
        if isinstance(op, Center) and op.channel_shift == 0 and op.full_shift == 0:
            return False
        if isinstance(op, Maximize) and not op.channels:
            return False
        return self.strength > 0

    def bounds(self) -> tuple[float, float]:
        """The open interval of timesteps where the step is active (the scale's ends are unbounded)."""
        return (-math.inf if self.t_min <= 0 else self.t_min), (math.inf if self.t_max >= T_MAX else self.t_max)

    def active(self, timesteps: Tensor) -> Tensor:
        """Which images (``[B]`` bool) are inside the window, without a host sync."""
        lower, upper = self.bounds()
        return (timesteps > lower) & (timesteps < upper)

    def is_active_at(self, timestep: float) -> bool:
        """Whether a (Python number) timestep is inside the window."""
        lower, upper = self.bounds()
        return lower < timestep < upper

    def reach(self, low: float, high: float, margin: float = 0.0) -> str:
        """How the window meets the host-known timesteps ``[low, high]``, each possibly off by ``margin`` on the
        device: "all" (active at every one of them), "none" (at none), or "edge" (a window edge lies within reach,
        so the device's own timestep decides). The one rule every host's decision goes through."""
        lower, upper = self.bounds()
        a, b = low - margin, high + margin
        if a > lower and b < upper:
            return "all"
        return "none" if b <= lower or a >= upper else "edge"

    def window_text(self) -> str:
        """The window as every message and summary words it (see :func:`window_text`)."""
        return window_text(self.t_min, self.t_max)


def window_text(t_min: float, t_max: float) -> str:
    """A window as every message and summary words it: "t > 950", "1 < t < 100", "t < 300", "every t"."""
    lower, upper = t_min > 0, t_max < T_MAX
    if not lower:
        return f"t < {t_max:g}" if upper else "every t"
    return f"{t_min:g} < t < {t_max:g}" if upper else f"t > {t_min:g}"


@dataclass(frozen=True)
class Schedule:
    """An ordered list of steps, with a display name."""

    name: str
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        try:
            steps = tuple(self.steps)
        except TypeError:
            raise TypeError(f"steps must be a sequence of Step, got {type(self.steps).__name__}") from None
        wrong = [type(s).__name__ for s in steps if not isinstance(s, Step)]
        if wrong:
            raise TypeError(f"steps must hold only Step objects, got {', '.join(wrong)}")
        object.__setattr__(self, "steps", steps)



# The source post's callback: adaptive soft clamp above t = 950, center(0.8, 0.8) above 700, then
# center(0.6, 1.0) and maximize between 1 and 100.
BLOG = Schedule(
    "Post defaults",
    (
        Step(SoftClamp(adaptive=0.998), t_min=950.0),
        Step(Center(0.8, 0.8), t_min=700.0),
        Step(Center(0.6, 1.0), t_min=1.0, t_max=100.0),
        Step(Maximize(4.0), t_min=1.0, t_max=100.0),
    ),
)


# Timesteps: a host-known t this close to a window edge is left to the device's own t. Hosts that round t to the
# nearest integer (Forge's predictor, A1111 with quantization) move it by up to 0.5; the rest is float error.
# ComfyUI's t is a whole number (the nearest table entry): there the host passes the range of entries the device
# may pick for the call's sigma (two next to a tie), and the same rule applies to that range.
EDGE_MARGIN = 0.501


def steps_between(schedule: Schedule, low: float, high: float, margin: float = EDGE_MARGIN) -> Optional[tuple[Step, ...]]:
    """The steps active at every timestep in ``[low, high]`` (Python floats the host knows), in order.

    ``None`` when a window edge lies within ``margin`` of that range: the host cannot tell which side the device's
    own timestep falls on (it may round or interpolate differently), so the windows must be tested on the device.
    An empty tuple means no step can change anything there: the call needs no tensor work at all.
    """
    active = []
    for step in schedule.steps:
        if not step.can_change():
            continue
        reach = step.reach(low, high, margin)
        if reach == "edge":
            return None
        if reach == "all":
            active.append(step)
    return tuple(active)


def as_timesteps(timesteps: Union[Tensor, float, Sequence[float]], x: Tensor) -> Union[Tensor, float]:
    """One float timestep per image on ``x``'s device, or a Python float shared by every image.

    A plain number stays a number: windows are then decided in Python, without touching the device.
    """
    if isinstance(timesteps, (int, float)) and not isinstance(timesteps, bool):
        return float(timesteps)
    if isinstance(timesteps, (bool, str, bytes)) or (isinstance(timesteps, Tensor) and timesteps.dtype == torch.bool):
        raise TypeError(f"timesteps must be a number, a sequence of numbers or a tensor, got {_kind(timesteps)}")
    try:
        t = torch.as_tensor(timesteps, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"timesteps must be a number, a sequence of numbers or a tensor, got {_kind(timesteps)}") \
            from None
    t = t.to(device=x.device, dtype=torch.float32)
    if t.dim() == 0 or t.numel() == 1:
        return t.reshape(1).expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"timesteps must hold one value per image ({x.shape[0]}), got shape {tuple(t.shape)}")
    return t


def _kind(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


class _Runner:
    """Applies steps in order, folding consecutive center/maximize steps into one affine map. Statistics are taken
    when a step needs them, and only those it needs (center: the means; maximize: the ranges too; the soft clamp
    takes its own, per pixel)."""

    def __init__(self, x: Tensor, mask: Optional[Tensor], ranges: bool):
        self.x = x  # the caller's latent: never written
        self.current = x
        self.mask = mask
        self.ranges = ranges  # take min and max with the first statistics (a later step will need them)
        self.base_stats: Optional[ChannelStats] = None
        self.pending: Optional[Affine] = None
        self.evidence: Optional[Tensor] = None  # the input's first statistics: row i finite unless image i had NaN/inf

    def stats(self, ranges: bool) -> ChannelStats:
        if self.base_stats is None:
            self.base_stats = channel_stats(self.current, self.mask, ranges=ranges or self.ranges)
        elif ranges and not self.base_stats.has_range:
            self.base_stats = with_ranges(self.base_stats, self.current, self.mask)
        if self.evidence is None:
            self.evidence = self.base_stats.mean
        if self.pending is None:
            return self.base_stats
        return self.pending.map_stats(self.base_stats)

    def add_affine(self, affine: Affine) -> None:
        self.pending = affine if self.pending is None else self.pending.then(affine)

    def flush(self) -> Tensor:
        if self.pending is not None:  # (in place on a tensor a step before made: one write less)
            self.current = self.pending.apply(self.current, overwrite=self.current is not self.x)
            self.pending = None
            self.base_stats = None
        return self.current

    def soft_clamp(self, op: SoftClamp, active: Optional[Tensor], strength: float) -> None:
        x = self.flush()
        clamped, largest = soft_clamp_latent(x, self.mask, op.threshold, op.boundary, op.adaptive, active=active,
                                             strength=strength)
        if self.evidence is None:  # (an empty mask region gives -inf: not a NaN/inf of the image)
            self.evidence = largest.flatten(1).clamp_min(0.0)
        self.current = clamped.to(x.dtype)
        self.base_stats = None


@torch.no_grad()
def apply(
    schedule: Schedule,
    x: Tensor,
    timesteps: Union[Tensor, float, Sequence[float], None],
    *,
    mask: Optional[Tensor] = None,
) -> Tensor:
    """Run ``schedule`` on ``x`` (``[B, C, H, W]``), image i at ``timesteps[i]``; returns a new tensor.

    ``timesteps=None`` runs every step of the schedule (the host has already decided they are all active, e.g.
    with :func:`steps_between`).

    ``x`` is not written. Dtype and device are kept; statistics are per image, in float32 (float64 for
    float64 input). ``mask`` (inpainting repaint weight) restricts statistics and changes to its region: the
    whole schedule runs on the masked statistics and its result is blended with the mask once, at the end
    (with a binary mask this equals filtering step by step; a soft mask blends the schedule as a whole).
    No host sync and no loop over images or channels: with a tensor of timesteps, window tests are tensor
    masks; with one plain number, they are decided in Python and inactive steps cost nothing.
    Not differentiable: runs under ``torch.no_grad()`` (the result never requires grad).
    """
    return run(schedule, x, timesteps, mask=mask)[0]


@torch.no_grad()
def run(
    schedule: Schedule,
    x: Tensor,
    timesteps: Union[Tensor, float, Sequence[float], None],
    *,
    mask: Optional[Tensor] = None,
    change: bool = False,
) -> tuple[Tensor, Optional[Tensor]]:
    """:func:`apply` (with ``change``: the change it makes, ``apply(...) − x``, which may be ``[B, C, 1, 1]`` where
    it is the same at every pixel: it broadcasts against ``x``), also returning evidence of which images held a NaN
    or ±inf (in the region looked at) and so were left alone: a ``[B, k]`` tensor on the device whose row i is finite
    unless image i did — the first statistics taken, left for whoever wants to count, so that no call spends
    operations on it; None when no step looked at the latent."""
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    check_latent(x)
    steps = [step for step in schedule.steps if step.can_change()]
    for step in steps:
        channels = getattr(step.filter, "channels", ())
        if channels and channels[-1] >= x.shape[1]:  # validated and sorted when the step was made
            check_channels("channels", channels, x.shape[1])
    t = None if timesteps is None else as_timesteps(timesteps, x)
    weight_mask = repaint_weight(mask, x)
    if isinstance(t, float):
        steps = [step for step in steps if step.is_active_at(t)]
    runner = _Runner(x, weight_mask, ranges=any(isinstance(step.filter, Maximize) for step in steps))
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    windows: dict[tuple[float, float], tuple[Tensor, Tensor]] = {}  # one mask per distinct window
    for step in steps:
        if t is None:
            active, weight = None, step.strength
        elif isinstance(t, float):
            if not step.is_active_at(t):
                continue
            active, weight = None, step.strength
        else:
            if step.bounds() not in windows:
                mask_now = step.active(t)
                windows[step.bounds()] = (mask_now, mask_now.to(stat_dtype))
            active, weight = windows[step.bounds()]
            if step.strength != 1.0:
                weight = weight * step.strength
        op = step.filter
        if isinstance(op, SoftClamp):
            runner.soft_clamp(op, active, step.strength)
        elif isinstance(op, Center):
            runner.add_affine(center_affine(runner.stats(False), op.channel_shift, op.full_shift, op.channels, weight))
        else:
            runner.add_affine(maximize_affine(runner.stats(True), op.boundary, op.channels, weight))
    if change and weight_mask is None and runner.current is x and runner.pending is not None:
        return runner.pending.change(x), runner.evidence  # (scale − 1)·x + offset, without the map's result
    out = runner.flush()
    if out is x:
        return (torch.zeros_like(x) if change else x.clone()), runner.evidence
    if weight_mask is not None:
        usable = torch.isfinite(runner.evidence).all(dim=1)  # (inpainting only: the blend must skip images with inf)
        out = blend(x, out.to(weight_mask.dtype), usable, 1.0, weight_mask)
    if not change:
        return out, runner.evidence
    return (out.sub_(x) if out.dtype == x.dtype else out - x), runner.evidence  # (out is a new tensor: ours)
