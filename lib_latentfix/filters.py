"""The source post's three SDXL latent filters, per image, vectorized and free of host syncs.

Every filter takes a latent ``x`` of shape ``[B, C, H, W]`` and returns a **new** tensor of the same shape,
dtype and device; ``x`` itself is never written. Statistics are taken per image (never across the batch),
accumulated in float32 (float64 for float64 input).

Center and maximize are per-channel affine maps ``y = scale * x + offset`` whose coefficients follow from
per-channel mean / min / max. That lets :mod:`lib_latentfix.schedule` chain several of them with a single
statistics pass and a single elementwise pass.

Rules for bad values (the same for every filter):

* an image whose statistics are not finite (it holds a NaN or ±inf in the region looked at) is returned
  unchanged, bit for bit; the other images of the batch are filtered normally. Finite values are usable
  however large (up to the dtype's largest): no statistic is a sum that could overflow;
* ``x`` must have channels and pixels (an empty batch is fine): an empty dimension raises ``ValueError``;
* an all-zero image stays all-zero (maximize leaves an image whose largest magnitude is 0 alone);
* a result beyond the dtype's finite range (values near its largest, moved further) saturates at ±its largest,
  never ±inf;
* with a ``mask`` (the repaint weight of inpainting, 1 = repaint), statistics are taken where the mask is
  positive (the mean weighted by it) and the result is blended ``x + mask * (filtered - x)``, so pixels
  outside the mask keep their values. An image whose mask is empty is returned unchanged.

The filters are not differentiable: the public ones run under ``torch.no_grad()`` (as k-diffusion's samplers do),
so their result never requires grad, whatever ``x`` does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import torch

Tensor = torch.Tensor

ALL_CHANNELS: tuple[int, ...] = (0, 1, 2, 3)
TINY_MAGNITUDE = 1e-30  # maximize never divides by less (keeps all-zero images at zero, factors finite)
COLOUR_CHANNELS: tuple[int, ...] = (0, 1, 2)


# --------------------------------------------------------------------------------------------------------
# validation


def check_latent(x: object) -> Tensor:
    """Return ``x`` if it is a floating ``[B, C, H, W]`` tensor with C, H, W > 0, else raise ``ValueError``.

    An empty batch (B = 0) is accepted: every filter returns an empty tensor of the same shape.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape [B, C, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if 0 in x.shape[1:]:
        raise ValueError(f"x must not have an empty channel or spatial dimension, got shape {tuple(x.shape)}")
    return x


def check_number(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    """Return ``value`` as a float if it is a finite number in the range, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value!r}")
    return value


def check_channels(name: str, channels: Iterable[int], n_channels: Optional[int] = None) -> tuple[int, ...]:
    """Return ``channels`` as a sorted tuple of distinct channel indices, else raise ``ValueError``."""
    try:
        items = tuple(channels)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of channel indices, got {channels!r}") from None
    for c in items:
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise ValueError(f"{name} must hold non-negative integers, got {channels!r}")
        if n_channels is not None and c >= n_channels:
            raise ValueError(f"{name} holds channel {c}, but the latent has {n_channels} channels")
    if len(set(items)) != len(items):
        raise ValueError(f"{name} must not repeat a channel, got {channels!r}")
    return tuple(sorted(items))


def check_soft_clamp_args(threshold: float, boundary: float) -> tuple[float, float]:
    """Validate the soft clamp's ``threshold`` (0 ≤ threshold ≤ boundary) and ``boundary`` (> 0)."""
    boundary = check_number("boundary", boundary, 0.0, 1e4, low_open=True)
    threshold = check_number("threshold", threshold, 0.0, boundary)
    return threshold, boundary


# --------------------------------------------------------------------------------------------------------
# statistics


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are accumulated in: float64 for float64 input, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def repaint_weight(mask: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    """Bring an inpaint repaint mask to ``[B or 1, 1, H, W]`` in the compute dtype, on ``x``'s device.

    Accepts ``[H, W]``, ``[C, H, W]`` (A1111's ``p.nmask``), ``[B, 1, H, W]`` or ``[B, C, H, W]``; a channel
    dimension is reduced to its first channel (the WebUI repeats the same mask on every channel).
    """
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[None]
    if (mask.dim() != 4 or mask.shape[-2:] != x.shape[-2:] or mask.shape[0] not in (1, x.shape[0])
            or mask.shape[1] == 0):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit a latent of shape {tuple(x.shape)}")
    return mask[:, :1].to(device=x.device, dtype=compute_dtype(x.dtype))


Weight = Union[float, Tensor]  # a per-image weight: a Python number, or a [B] tensor


@dataclass(frozen=True)
class ChannelStats:
    """Per-image, per-channel statistics (each ``[B, C]``) and which images are usable (``keep``, ``[B, 1]`` bool).

    The statistics of unusable images (non-finite values, empty mask) are left as they came out (NaN, ±inf): every
    coefficient derived from them is guarded (see :func:`center_affine`, :func:`maximize_affine`), so the filters
    are the identity for those images.
    """

    mean: Tensor
    low: Optional[Tensor]  # None when only the means were asked for
    high: Optional[Tensor]
    total: Optional[Tensor] = None  # [B, 1]: the mask's weight per image, None without a mask

    @property
    def has_range(self) -> bool:
        return self.low is not None

    @functools.cached_property
    def keep(self) -> Tensor:
        """Which images are usable, ``[B, 1]`` bool (two small operations, taken only when a filter needs them)."""
        # a NaN or ±inf anywhere in the image reaches its mean, and the mean itself cannot overflow (see _mean), so
        # it is finite exactly when the image is (and then so are min and max)
        keep = torch.isfinite(self.mean).all(dim=1, keepdim=True)
        return keep if self.total is None else keep & (self.total > 0)

    @property
    def usable(self) -> Tensor:
        """Which images are usable, ``[B]`` bool."""
        return self.keep[:, 0]

    def abs_max(self) -> Tensor:
        """Largest magnitude over all channels of each image, ``[B, 1]``."""
        return torch.maximum(self.low.neg(), self.high).amax(dim=1, keepdim=True)


def _mean(work: Tensor) -> Tensor:
    """Mean over the last dimension that cannot overflow, even for values near the dtype's largest; one pass.

    On the CPU each value is weighted by 1/N before it is added (a matrix-vector product), so the running sum never
    exceeds the largest value; on CUDA the float32 sum is accumulated in float64 (matrix products there may use
    TF32, which would cost precision); elsewhere (MPS has no float64) the values are scaled by 1/N, then summed.
    float64 input is averaged as it is.
    """
    if work.dtype == torch.float64:
        return work.mean(dim=-1)
    if work.device.type == "cuda":
        return work.mean(dim=-1, dtype=torch.float64).to(work.dtype)
    if work.device.type != "cpu":
        return work.mul(1.0 / work.shape[-1]).sum(dim=-1)
    return torch.matmul(work, _averaging_vector(work.shape[-1], work.dtype, work.device))


def constant(build):
    """Cache a function that builds a constant tensor (per its arguments), building it as a normal tensor even
    when first asked inside ``torch.inference_mode()`` (an inference tensor cannot be saved for backward later)
    and outside autograd."""
    cached = functools.lru_cache(maxsize=64)(build)

    @functools.wraps(build)
    def get(*args, **kwargs):
        if torch.is_inference_mode_enabled():
            with torch.inference_mode(False):
                return cached(*args, **kwargs)
        return cached(*args, **kwargs)

    get.cache_clear, get.cache_info = cached.cache_clear, cached.cache_info
    return get


@constant
def _averaging_vector(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.full((n,), 1.0 / n, dtype=dtype, device=device)


def channel_stats(x: Tensor, mask: Optional[Tensor] = None, *, ranges: bool = True) -> ChannelStats:
    """Mean (and, with ``ranges``, min and max) of every channel of every image, over the mask's region if given.

    An image is usable when its statistics are finite: a finite image is usable however large its values are
    (up to the dtype's largest). Center needs only the means; maximize and the soft clamp need the ranges too.
    """
    work, weight = _flat(x, mask)
    if weight is None:
        mean, total = _mean(work), None
    else:
        total = weight.sum(dim=2)
        # the weights are normalised first (a [B, 1, HW] pass): each term is at most the largest value and
        # the weights sum to 1, so the weighted sum cannot overflow
        share = weight / total[..., None].clamp_min(torch.finfo(work.dtype).tiny)
        mean = torch.where(weight > 0, work, 0.0).mul_(share).sum(dim=2)
    low, high = _ranges(work, weight) if ranges else (None, None)
    return ChannelStats(mean, low, high, total)


def with_ranges(stats: ChannelStats, x: Tensor, mask: Optional[Tensor]) -> ChannelStats:
    """``stats`` of ``x`` completed with min and max (two more reductions, if they were not taken yet)."""
    if stats.has_range:
        return stats
    low, high = _ranges(*_flat(x, mask))
    return ChannelStats(stats.mean, low, high, stats.total)


def _flat(x: Tensor, mask: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    dtype = compute_dtype(x.dtype)
    work = (x if x.dtype == dtype else x.to(dtype)).flatten(2)
    return work, None if mask is None else mask.flatten(2).expand(x.shape[0], 1, work.shape[2])


def _ranges(work: Tensor, weight: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    if weight is None:
        return work.amin(dim=2), work.amax(dim=2)
    inside = weight > 0
    return torch.where(inside, work, math.inf).amin(dim=2), torch.where(inside, work, -math.inf).amax(dim=2)


# --------------------------------------------------------------------------------------------------------
# affine maps (center, maximize)


@dataclass(frozen=True)
class Affine:
    """A per-image, per-channel map ``y = scale * x + offset`` (each ``[B, C]``; ``scale`` None means 1)."""

    scale: Optional[Tensor]
    offset: Optional[Tensor]

    def then(self, other: "Affine") -> "Affine":
        """The map that applies ``self`` first, then ``other``."""
        if other.scale is None:
            scale = self.scale
            offset = _add(self.offset, other.offset)
        else:
            scale = other.scale if self.scale is None else other.scale * self.scale
            offset = _add(None if self.offset is None else other.scale * self.offset, other.offset)
        return Affine(scale, offset)

    def map_stats(self, stats: ChannelStats) -> ChannelStats:
        """The statistics the mapped latent will have, without looking at it again (scales are positive)."""
        def f(v: Optional[Tensor]) -> Optional[Tensor]:
            if v is None:
                return None
            v = v if self.scale is None else v * self.scale
            return v if self.offset is None else v + self.offset
        return ChannelStats(f(stats.mean), f(stats.low), f(stats.high), stats.total)

    def apply(self, x: Tensor, dtype: Optional[torch.dtype] = None, *, within: Optional[torch.dtype] = None,
              overwrite: bool = False) -> Tensor:
        """Apply the map to ``x`` (one elementwise pass, two with a scale, then the saturation), returning ``dtype``
        (default: ``x``'s). With ``overwrite`` the result may be written into ``x`` (a tensor the caller owns).

        Results beyond the finite range of ``within`` (default: ``dtype``) saturate at ±its largest. Channels the
        map leaves alone (scale 1, offset ±0: every channel of an image that is not usable) are not clamped, so
        their ±inf stay.
        """
        dtype = x.dtype if dtype is None else dtype
        ref = self.scale if self.scale is not None else self.offset
        if ref is None:
            return x.to(dtype, copy=True)
        work = x if x.dtype == ref.dtype else x.to(ref.dtype)
        ours = overwrite or work is not x  # (a converted copy of x is ours to write)
        if self.scale is not None:
            out = work.mul_(self.scale[:, :, None, None]) if ours else work.mul(self.scale[:, :, None, None])
            if self.offset is not None:
                out.add_(self.offset[:, :, None, None])
        else:
            out = work.add_(self.offset[:, :, None, None]) if ours else work.add(self.offset[:, :, None, None])
        high = self.limits(torch.finfo(within or dtype).max)[:, :, None, None]
        # (two in-place passes: a clamp with per-channel tensor bounds is several times slower on CPUs)
        torch.minimum(out, high, out=out)
        torch.maximum(out, high.neg_(), out=out)
        return out if out.dtype == dtype else out.to(dtype)

    def limits(self, largest: float) -> Tensor:
        """Per image and channel (``[B, C]``), the magnitude results are clamped to: ``largest`` where the map moves
        values, +inf where it leaves the channel as it is."""
        ref = self.scale if self.scale is not None else self.offset
        moves = None if self.offset is None else self.offset != 0
        if self.scale is not None:
            moves = self.scale != 1 if moves is None else moves | (self.scale != 1)
        return torch.where(moves, _number(largest, ref.dtype, ref.device), _number(math.inf, ref.dtype, ref.device))

    def change(self, x: Tensor) -> Tensor:
        """``apply(x) − x``, in ``x``'s dtype: ``(scale − 1)·x + offset`` (two elementwise passes, the second in
        place); a map without a scale changes each channel by its offset alone, returned as ``[B, C, 1, 1]`` (it
        broadcasts against ``x``)."""
        ref = self.scale if self.scale is not None else self.offset
        if ref is None:
            return torch.zeros_like(x)
        shape = (x.shape[0], x.shape[1], 1, 1)
        if self.scale is None:
            return self.offset.reshape(shape).to(x.dtype, copy=True)
        work = x if x.dtype == ref.dtype else x.to(ref.dtype)
        out = work.mul((self.scale - 1).reshape(shape))
        if self.offset is not None:  # (in place: an addcmul with per-channel factors is several times slower on CPUs)
            out.add_(self.offset.reshape(shape))
        return out if out.dtype == x.dtype else out.to(x.dtype)


def _add(a: Optional[Tensor], b: Optional[Tensor]) -> Optional[Tensor]:
    if a is None:
        return b
    return a if b is None else a + b


@constant
def _number(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``value`` as a 0-dim tensor of ``dtype`` on ``device`` (made once)."""
    return torch.tensor(value, dtype=dtype, device=device)


@constant
def _selector(channels: tuple[int, ...], n: int, device: torch.device, dtype: torch.dtype,
              complement: bool = False) -> Tensor:
    bits = sum(1 << c for c in channels)
    chosen = ((bits >> torch.arange(n, device=device)) & 1).to(dtype)
    return 1.0 - chosen if complement else chosen


def channel_selector(channels: Sequence[int], like: Tensor) -> Tensor:
    """A ``[C]`` 0/1 vector marking ``channels``, on ``like``'s device and dtype (built once, no host sync)."""
    return _selector(tuple(channels), like.shape[-1], like.device, like.dtype)


def _per_image(weight: Weight) -> Weight:
    return weight[:, None] if isinstance(weight, Tensor) else weight


def _is_one(weight: Weight) -> bool:
    """A plain full weight, which needs no multiplication (a tensor weight always does)."""
    return not isinstance(weight, Tensor) and weight == 1.0


def center_affine(
    stats: ChannelStats, channel_shift: float, full_shift: float, channels: Sequence[int], weight: Weight = 1.0
) -> Affine:
    """The post's center step as an affine map, applied with ``weight`` (0 = no change, 1 = full).

    Each listed channel loses ``mean × channel_shift``; then the whole image loses its (new) mean ×
    ``full_shift``. All channels cover the same pixels, so the whole mean is the mean of channel means.
    An unusable image gets offsets of −0 (x + −0 is x, bit for bit).
    """
    mix, mixes_all = _center_matrix(tuple(channels), float(channel_shift), float(full_shift), stats.mean.shape[-1],
                                    stats.mean.dtype, stats.mean.device)
    # mean @ M as a broadcast product and a sum (a matrix product may run in TF32 on recent GPUs, which A1111
    # enables); cannot overflow: each column's entries add up to at most 1 in size
    offset = stats.mean[:, :, None].mul(mix).sum(dim=1)
    if mixes_all and stats.total is None:
        # every offset takes every channel's mean: a NaN or ±inf mean makes all of the image's offsets non-finite,
        # and only then is one non-finite (one operation instead of a per-image test)
        offset = torch.nan_to_num(offset, nan=-0.0, posinf=-0.0, neginf=-0.0)
    else:
        offset = torch.where(stats.keep, offset, -0.0)
    return Affine(None, offset if _is_one(weight) else offset * _per_image(weight))


@constant
def _center_matrix(channels: tuple[int, ...], channel_shift: float, full_shift: float, n: int, dtype: torch.dtype,
                   device: torch.device) -> tuple[Tensor, bool]:
    """``[C, C]`` M with ``mean @ M`` = what center adds to each channel: −channel_shift × its own mean (listed
    channels), then −full_shift × the mean of what is left, averaged over all channels; and whether no entry of M
    is 0 (each offset then depends on every mean)."""
    kept = [1.0 - channel_shift if c in channels else 1.0 for c in range(n)]
    rows = [[-((channel_shift if (k == c and k in channels) else 0.0) + full_shift * kept[k] / n) for c in range(n)]
            for k in range(n)]
    matrix = torch.tensor(rows, dtype=torch.float64).to(dtype).to(device)  # float64 only on the CPU
    return matrix, all(v != 0 for r in rows for v in r)


def maximize_affine(stats: ChannelStats, boundary: float, channels: Sequence[int], weight: Weight = 1.0) -> Affine:
    """The post's maximize step as an affine map: listed channels × boundary / largest magnitude of the image.

    The largest magnitude is taken over all channels, as in the post. Magnitudes below ``TINY_MAGNITUDE``
    count as that value, so an all-zero image stays all-zero and the factor stays finite.
    """
    largest = stats.abs_max().clamp_min(TINY_MAGNITUDE)
    factor = torch.where(stats.keep, largest.reciprocal().mul_(boundary), 1.0)  # [B, 1]; unusable images: 1
    # scale = factor where selected and weighted fully, 1 where not: written so that it is exactly the factor
    # at full weight (factor − 1 would lose the factor's precision when the image is huge)
    share = channel_selector(channels, stats.mean)
    if not _is_one(weight):
        share = share * _per_image(weight)
        return Affine(factor * share + (1.0 - share), None)
    return Affine(factor * share + _selector(tuple(channels), share.shape[-1], share.device, share.dtype,
                                             complement=True), None)


# --------------------------------------------------------------------------------------------------------
# soft clamp (per pixel)


def pixel_extremes(work: Tensor) -> tuple[Tensor, Tensor]:
    """Each pixel's smallest and largest value across channels (each ``[B, 1, H, W]``): what the soft clamp scales
    by, and (reduced once more) each image's largest magnitude. Two reads of the latent."""
    return work.amin(dim=1, keepdim=True), work.amax(dim=1, keepdim=True)


def largest_magnitude(low: Tensor, high: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Each image's largest magnitude (``[B, 1, 1, 1]``) from its :func:`pixel_extremes`, over the mask's region if
    given. NaN or ±inf in the region makes it non-finite (the image is not usable); an empty region gives -inf.
    """
    if mask is not None:
        inside = mask > 0
        low, high = torch.where(inside, low, math.inf), torch.where(inside, high, -math.inf)
    return torch.maximum(low.amin(dim=(1, 2, 3), keepdim=True).neg_(), high.amax(dim=(1, 2, 3), keepdim=True))


def soft_clamp_limits(largest: Tensor, threshold: float, boundary: float, adaptive: float,
                      active: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Per image (each ``[B, 1, 1, 1]``, from :func:`largest_magnitude`): the threshold, and the room between it and
    the boundary; an image the clamp leaves alone gets a threshold nothing finite exceeds and no room.

    The clamp applies when the image is usable (its largest magnitude is finite), that magnitude is at least
    ``boundary`` (the post's "unchanged below 4") and, if given, ``active`` (``[B]`` bool) is set. With ``adaptive``
    > 0 (the post's callback uses 0.998) the limits follow the image: boundary = adaptive × largest magnitude,
    threshold = adaptive × that boundary; the "unchanged below" test keeps the nominal ``boundary``.
    """
    largest = torch.nan_to_num(largest, nan=0.0, posinf=0.0, neginf=0.0)  # not usable: 0, below any boundary
    applies = largest >= boundary
    if active is not None:
        applies = applies & active[:, None, None, None]
    if adaptive > 0:
        bound = largest * adaptive
        thr = bound * adaptive
        room = bound - thr
    else:
        thr, room = torch.full_like(largest, threshold), torch.full_like(largest, boundary - threshold)
    return torch.where(applies, thr, torch.finfo(largest.dtype).max), torch.where(applies, room, 0.0)


def soft_clamped(work: Tensor, low: Tensor, high: Tensor, threshold: Tensor, room: Tensor,
                 strength: float = 1.0) -> Tensor:
    """The post's soft clamp of ``work`` (compute dtype) as a new tensor, blended with ``work`` by ``strength``;
    ``low``/``high`` are its :func:`pixel_extremes`, ``threshold`` and ``room`` come from :func:`soft_clamp_limits`.

    Values above ``threshold`` are mapped into ``[threshold, threshold + room]`` relative to the pixel's largest
    value across channels, values below ``-threshold`` likewise. Images without room are returned as they are, bit
    for bit (also their NaN and ±inf). Arithmetic and clamps on the full tensor only (no per-pixel selections, which
    are slow on CPUs): six passes over the latent.
    """
    tiny, huge = torch.finfo(work.dtype).tiny, torch.finfo(work.dtype).max
    # per pixel, [B, 1, H, W]: the excess beyond ±threshold is scaled by room / (the pixel's largest excess) — the
    # post's ratio — so the change is the excess times (that factor − 1). Where no value of the pixel exceeds the
    # threshold the factor is huge (kept finite) and the excess is 0; at a NaN pixel (only in images left alone, or
    # outside a mask) the factor is huge too, so its finite values get a change of 0. Images left alone get a
    # factor of −1 and an excess of 0 (x + −0 is x), or ±huge at ±inf (inf ± huge is inf).
    factors = []
    for extreme in (high, low.neg()):
        factor = torch.div(room, (extreme - threshold).clamp_min_(tiny))
        factor = torch.nan_to_num_(factor, nan=huge, posinf=huge).sub_(1.0)
        factors.append(factor if strength == 1.0 else factor.mul_(strength))
    # the excesses are clamped to finite values (an inf in an image left alone times a factor of −1 is −huge)
    excess = torch.sub(work, threshold).clamp_(0.0, huge)
    out = torch.addcmul(work, excess, factors[0])
    torch.add(work, threshold, out=excess).clamp_(-huge, 0.0)
    return out.addcmul_(excess, factors[1])


def soft_clamp_latent(x: Tensor, mask: Optional[Tensor], threshold: float, boundary: float, adaptive: float, *,
                      active: Optional[Tensor] = None, strength: float = 1.0) -> tuple[Tensor, Tensor]:
    """The whole soft clamp of ``x`` (mask's region for the limits, no blend): the clamped latent in the compute
    dtype, and each image's largest magnitude (``[B, 1, 1, 1]``: non-finite where the image held NaN/inf)."""
    work = x.to(compute_dtype(x.dtype))
    low, high = pixel_extremes(work)  # the clamp's own statistics: per pixel, then per image from those
    largest = largest_magnitude(low, high, mask)
    limits = soft_clamp_limits(largest, threshold, boundary, adaptive, active)
    return soft_clamped(work, low, high, *limits, strength), largest


def blend(x: Tensor, filtered: Tensor, applies: Tensor, strength: float, mask: Optional[Tensor]) -> Tensor:
    """``x + strength × mask × (filtered − x)`` for the images where ``applies`` (``[B]`` bool), in ``x``'s dtype.

    Where the combined weight is 0 the pixel is ``x`` exactly (a selection, not arithmetic), so NaN in
    ``filtered`` never leaks into images or pixels that are not filtered. Images holding ±inf in the blended region
    must not be in ``applies``: there the blend of inf with itself is NaN.
    """
    work = x.to(filtered.dtype)
    chosen = applies[:, None, None, None]
    if mask is None and strength == 1.0:
        return torch.where(chosen, filtered, work).to(x.dtype)
    w = chosen.to(filtered.dtype) * strength
    if mask is not None:
        w = w * mask
    return torch.where(w > 0, torch.lerp(work, filtered, w), work).to(x.dtype)


# --------------------------------------------------------------------------------------------------------
# public filters


@torch.no_grad()
def soft_clamp(
    x: Tensor,
    threshold: float = 3.5,
    boundary: float = 4.0,
    *,
    adaptive: float = 0.0,
    mask: Optional[Tensor] = None,
) -> Tensor:
    """Outlier removal: shrink values beyond ±``threshold`` toward ±``boundary`` (the post's soft_clamp_tensor).

    Per pixel, values above ``threshold`` are mapped into ``[threshold, boundary]`` by their distance to the
    pixel's largest value across channels (and symmetrically below ``-threshold``). An image whose largest
    magnitude is below ``boundary`` is returned unchanged. ``adaptive`` > 0 derives the limits from each
    image (see :func:`soft_clamp_limits`). Returns a new tensor; ``x`` is not written. Not differentiable (runs
    under ``torch.no_grad()``).
    """
    check_latent(x)
    threshold, boundary = check_soft_clamp_args(threshold, boundary)
    adaptive = check_number("adaptive", adaptive, 0.0, 1.0)
    weight = repaint_weight(mask, x)
    clamped, largest = soft_clamp_latent(x, weight, threshold, boundary, adaptive)
    if weight is None:
        return clamped.to(x.dtype)
    applies = torch.isfinite(largest).flatten()  # (the blend leaves images with NaN/inf as they are)
    return blend(x, clamped, applies, 1.0, weight)


@torch.no_grad()
def center(
    x: Tensor,
    channel_shift: float = 1.0,
    full_shift: float = 1.0,
    channels: Sequence[int] = ALL_CHANNELS,
    *,
    mask: Optional[Tensor] = None,
) -> Tensor:
    """Colour balance (the post's center_tensor), per image.

    Each listed channel loses its mean × ``channel_shift``, then the image loses its whole mean ×
    ``full_shift``. Returns a new tensor; ``x`` is not written. Not differentiable (runs under
    ``torch.no_grad()``).
    """
    check_latent(x)
    channel_shift = check_number("channel_shift", channel_shift, 0.0, 1.0)
    full_shift = check_number("full_shift", full_shift, 0.0, 1.0)
    channels = check_channels("channels", channels, x.shape[1])
    weight = repaint_weight(mask, x)
    stats = channel_stats(x, weight, ranges=False)
    return masked_affine(x, center_affine(stats, channel_shift, full_shift, channels), weight, stats)


@torch.no_grad()
def maximize(
    x: Tensor,
    boundary: float = 4.0,
    channels: Sequence[int] = COLOUR_CHANNELS,
    *,
    mask: Optional[Tensor] = None,
) -> Tensor:
    """Range expansion (the post's maximize_tensor), per image.

    factor = ``boundary`` / the image's largest magnitude over all channels, applied to the listed channels
    only, so the largest value reaches ±``boundary``. Returns a new tensor; ``x`` is not written. Not
    differentiable (runs under ``torch.no_grad()``).
    """
    check_latent(x)
    boundary = check_number("boundary", boundary, 0.0, 1e4, low_open=True)
    channels = check_channels("channels", channels, x.shape[1])
    weight = repaint_weight(mask, x)
    stats = channel_stats(x, weight)
    return masked_affine(x, maximize_affine(stats, boundary, channels), weight, stats)


def masked_affine(x: Tensor, affine: Affine, mask: Optional[Tensor], stats: ChannelStats) -> Tensor:
    """Apply ``affine`` (made from ``stats``) to ``x``; with a mask, only inside it (blended by its weight) and only
    in usable images (a blend would turn an image's inf into NaN)."""
    mapped = affine.apply(x if mask is None else x.to(mask.dtype), None if mask is None else mask.dtype, within=x.dtype)
    if mask is None:
        return mapped
    return blend(x, mapped, stats.usable, 1.0, mask)
