"""Latent diagnostics: a per-step trace of channel statistics, its chart, the channel view and JSON lines.

While a generation runs, :class:`Trace` records, for every corrected model evaluation, each image's timestep
and per-channel mean, std, min and max before and after the correction. The statistics stay on the device
(one small tensor per evaluation, no host sync); :meth:`Trace.finish` moves them to the CPU once. The result,
:class:`TraceData`, feeds :func:`render_plot` (one chart per image), :func:`channel_view_images` (the last
evaluation's latents through :mod:`lib_latentfix.preview`) and :func:`trace_records` / :func:`write_jsonl`
(the ``--latentfix-trace`` JSON lines).

Statistics are taken in float32 over each image's channel (over the repaint mask's region when one is given,
weighted by it); std is the population std (``unbiased=False``). Non-finite values are recorded as they come
(a NaN in the latent gives NaN statistics); an image whose mask is empty gets NaN statistics.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .filters import repaint_weight
from .preview import CHANNEL_NAMES, channel_view_pair
from .runtime import ModelCall
from .sigmas import eps_to_x0
from .schedule import Schedule

Tensor = torch.Tensor

STAT_NAMES: tuple[str, str, str, str] = ("mean", "std", "min", "max")
MEAN, STD, MIN, MAX = range(4)
BEFORE, AFTER = 0, 1


@dataclass(frozen=True)
class TraceData:
    """A finished trace on the CPU.

    ``timesteps`` ``[N, B]``, ``stats`` ``[N, B, 2 (before, after), 4 (mean, std, min, max), C]`` (float32
    numpy), ``labels`` the pass of each of the N records, ``last_before`` / ``last_after`` the latents of record
    ``last_step`` (float32 CPU ``[B, C, H, W]``; None and -1 when nothing was recorded): the last record whose
    correction changed something, or the last record when none did (since the latent size last changed).
    """

    timesteps: np.ndarray
    stats: np.ndarray
    labels: tuple[str, ...]
    last_before: Optional[Tensor]
    last_after: Optional[Tensor]
    last_step: int

    def __len__(self) -> int:
        return self.stats.shape[0]

    @property
    def images(self) -> int:
        return self.stats.shape[1]

    @property
    def channels(self) -> int:
        return self.stats.shape[4]


def _stats(x: Tensor, weight: Optional[Tensor]) -> Tensor:
    """Mean, std, min, max over the last dim of ``x`` ``[B, C, P]`` (``weight`` ``[B or 1, 1, P]``): ``[B, 4, C]``."""
    if weight is None:
        std, mean = torch.std_mean(x, dim=-1, correction=0)
        low, high = torch.aminmax(x, dim=-1)
        return torch.stack((mean, std, low, high), dim=-2)
    inside = weight > 0
    total = weight.sum(dim=-1)
    mean = torch.where(inside, x * weight, 0.0).sum(dim=-1) / total
    var = torch.where(inside, (x - mean[..., None]).square() * weight, 0.0).sum(dim=-1) / total
    low = torch.where(inside, x, math.inf).amin(dim=-1)
    high = torch.where(inside, x, -math.inf).amax(dim=-1)
    stats = torch.stack((mean, var.sqrt(), low, high), dim=-2)
    return torch.where(total[..., None, :] > 0, stats, math.nan)


class Trace:
    """Collects per-evaluation channel statistics on the device; :meth:`finish` brings them to the CPU."""

    def __init__(self) -> None:
        self._rows: list[Tensor] = []  # per record [B, 1 + 2*4*C]: timestep, then the flattened stats
        self._labels: list[str] = []
        self._last: Optional[tuple[Tensor, Tensor, Tensor]] = None  # before, after, record index (0-d)

    def __len__(self) -> int:
        return len(self._rows)

    @torch.no_grad()
    def record(
        self,
        timesteps: Union[Tensor, float],
        before: Tensor,
        after: Tensor,
        *,
        mask: Optional[Tensor] = None,
        label: str = "",
    ) -> None:
        """Record one evaluation: ``before`` / ``after`` ``[B, C, H, W]``, one timestep per image (or one for all).

        No host sync. The batch size must stay the same for the whole trace; H and W may change. The two
        latents are copied (the caller may overwrite ``before`` in place) and replace the kept pair when the
        correction changed them (judged by the statistics, on the device) or when the kept pair has another
        shape or dtype.
        """
        if before.dim() != 4 or before.shape != after.shape:
            raise ValueError(f"before/after must be equal [B, C, H, W], got {tuple(before.shape)}, {tuple(after.shape)}")
        rows, channels = before.shape[:2]
        if self._rows and self._rows[0].shape != (rows, 1 + 8 * channels):
            raise ValueError(f"batch size or channels changed within a trace: got [{rows}, {channels}, ...]")
        if isinstance(timesteps, Tensor):
            t = timesteps.to(device=before.device, dtype=torch.float32).reshape(-1).expand(rows)
        else:
            t = torch.full((rows,), float(timesteps), device=before.device)
        weight = repaint_weight(mask, before)
        if weight is not None:
            weight = weight.to(torch.float32).flatten(2)  # [B or 1, 1, P]
        stats = torch.stack([_stats(x.to(torch.float32).flatten(2), weight) for x in (before, after)], dim=1)
        self._rows.append(torch.cat((t[:, None], stats.flatten(1)), dim=1))
        self._labels.append(str(label))
        index = torch.full((), len(self._rows) - 1, device=before.device)
        kept = self._last
        if kept is None or kept[0].shape != before.shape or kept[0].dtype != before.dtype or kept[1].dtype != after.dtype:
            self._last = (before.detach().clone(), after.detach().clone(), index)
        else:
            differs = (stats[:, 0] != stats[:, 1]) & ~(stats[:, 0].isnan() & stats[:, 1].isnan())
            changed = differs.any()
            self._last = tuple(torch.where(changed, new, old) for new, old in zip((before, after, index), kept))

    def record_call(self, before: Tensor, after: Tensor, call: ModelCall, *, label: str = "") -> None:
        """Record a prediction pair as the glue's observer sees it: rows are the last rows of ``call``.

        ε predictions (``call.alpha_bar`` set) are recorded as the x0 they imply, so every trace shows x0.
        """
        rows = before.shape[0]
        if call.alpha_bar is not None:
            x_t, alpha_bar = call.x_in[-rows:], call.alpha_bar[-rows:]
            before, after = eps_to_x0(x_t, before, alpha_bar), eps_to_x0(x_t, after, alpha_bar)
        # host-decided calls carry the host's timestep range instead of a device tensor
        t = call.timesteps[-rows:] if call.timesteps is not None else sum(call.host_t) / 2
        self.record(t, before, after, mask=call.mask, label=label)

    def finish(self) -> TraceData:
        """Everything on the CPU in one transfer (plus the last latent pair)."""
        if not self._rows:
            return TraceData(np.zeros((0, 0), np.float32), np.zeros((0, 0, 2, 4, 4), np.float32), (), None, None, -1)
        packed = torch.stack(self._rows).cpu().numpy()  # [N, B, 1 + 8C]
        n, b = packed.shape[:2]
        last_before, last_after = (x.to(device="cpu", dtype=torch.float32) for x in self._last[:2])
        stats = packed[:, :, 1:].reshape(n, b, 2, 4, -1)
        return TraceData(packed[:, :, 0].copy(), stats.copy(), tuple(self._labels), last_before, last_after,
                         int(self._last[2]))


# --------------------------------------------------------------------------------------------------------
# JSON lines


def _json_number(value: float) -> Optional[float]:
    return float(value) if math.isfinite(value) else None


def trace_records(
    data: TraceData, *, meta: Mapping[str, object] = {}, image: Optional[int] = None
) -> Iterator[dict]:
    """One JSON-able dict per recorded evaluation and image (only ``image`` if given), in recording order.

    ``{"image", "step", "timestep", "pass", "before": {"mean": [C], "std", "min", "max"}, "after": {…}, **meta}``;
    non-finite numbers become None (JSON null), so the lines are strict JSON.
    """
    images = range(data.images) if image is None else (image,)
    for step in range(len(data)):
        for image in images:
            record: dict = {"image": image, "step": step, "timestep": _json_number(data.timesteps[step, image]),
                            "pass": data.labels[step]}
            for side, name in ((BEFORE, "before"), (AFTER, "after")):
                values = data.stats[step, image, side].tolist()
                record[name] = {stat: [_json_number(v) for v in values[k]] for k, stat in enumerate(STAT_NAMES)}
            record.update(meta)
            yield record


def write_jsonl(path_or_file: Union[str, os.PathLike, IO[str]], records: Iterable[Mapping]) -> int:
    """Append one JSON line per record to a path (parent folders created) or an open text file; returns the count."""
    lines = [json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in records]
    if hasattr(path_or_file, "write"):
        path_or_file.writelines(lines)
    else:
        parent = os.path.dirname(os.fspath(path_or_file))
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path_or_file, "a", encoding="utf-8") as f:
            f.writelines(lines)
    return len(lines)


# --------------------------------------------------------------------------------------------------------
# channel view


def channel_view_images(data: TraceData, image: int) -> Image.Image:
    """The four channels and the RGB approximation of ``image``, before vs after the last correction."""
    if data.last_before is None:
        raise ValueError("nothing was recorded")
    _check_image(data, image)
    at = f", t = {data.timesteps[data.last_step, image]:.0f}"
    return channel_view_pair(data.last_before[image], data.last_after[image],
                             labels=(f"before last correction{at}", f"after last correction{at}"))


def _check_image(data: TraceData, image: int) -> None:
    if not 0 <= image < data.images:
        raise ValueError(f"image {image} is not in the trace (it has {data.images} images)")


# --------------------------------------------------------------------------------------------------------
# chart

BACKGROUND = (30, 33, 42)  # as preview.channel_view
PLOT_BACKGROUND = (18, 20, 26)
GRID_COLOUR = (48, 52, 64)
TEXT_COLOUR = (235, 235, 235)
MUTED_TEXT = (160, 165, 180)
BOUNDARY_COLOUR = (255, 200, 90)
WINDOW_COLOUR = (70, 110, 200)
WINDOW_ALPHA = 0.28  # shading of one window over the plot background; overlapping windows add up
NON_FINITE_COLOUR = (255, 0, 255)
CHANNEL_COLOURS: tuple[tuple[int, int, int], ...] = (
    (225, 225, 225),  # 0 luminance: light grey
    (240, 80, 70),  # 1 cyan/red: red
    (175, 120, 255),  # 2 lime/purple: purple
    (255, 160, 40),  # 3 pattern: orange
)
EXTRA_COLOURS: tuple[tuple[int, int, int], ...] = ((90, 200, 240), (130, 220, 90), (240, 120, 200), (200, 200, 90))


def schedule_windows(schedule: Schedule) -> list[tuple[float, float, str]]:
    """The schedule's active windows for :func:`render_plot`: (t_min, t_max, filter names), equal windows merged."""
    merged: dict[tuple[float, float], list[str]] = {}
    for step in schedule.steps:
        if step.strength > 0:
            name = {"SoftClamp": "soft clamp"}.get(type(step.filter).__name__, type(step.filter).__name__.lower())
            merged.setdefault((step.t_min, step.t_max), []).append(name)
    return [(lo, hi, " + ".join(names)) for (lo, hi), names in merged.items()]


def channel_colour(channel: int, channels: int = 4) -> tuple[int, int, int]:
    """The chart colour of a channel (the meaning colours for 4-channel latents)."""
    palette = CHANNEL_COLOURS if channels == 4 else CHANNEL_COLOURS + EXTRA_COLOURS
    return palette[channel % len(palette)]


def window_shade(count: int) -> tuple[int, int, int]:
    """The plot background under ``count`` overlapping active windows."""
    return _mix(PLOT_BACKGROUND, WINDOW_COLOUR, min(1.0, WINDOW_ALPHA * count))


def _mix(a: Sequence[int], b: Sequence[int], amount: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * amount) for x, y in zip(a, b))  # type: ignore[return-value]


@lru_cache(maxsize=None)
def _font(size: int) -> Union[ImageFont.ImageFont, ImageFont.FreeTypeFont]:
    """Pillow's default font at ``size`` (Pillow >= 10.1), else a common system font, else the bitmap default."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # older Pillow (the WebUI pins 9.5) or no FreeType
        pass
    for name in ("DejaVuSans.ttf", "arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except (OSError, ImportError):
            continue
    return ImageFont.load_default()


def _text_w(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    return round(draw.textlength(text, font=font))


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, fill, align: str = "l",
          valign: str = "t") -> None:
    """Text aligned at ``xy``: ``align`` l/m/r by its ink, ``valign`` t/m by a reference line (not anchors:
    bitmap fonts lack them)."""
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    _, top, _, bottom = draw.textbbox((0, 0), "Ag0", font=font)
    x = xy[0] - {"l": left, "m": (left + right) / 2, "r": right}[align]
    y = xy[1] - {"t": top, "m": (top + bottom) / 2}[valign]
    draw.text((x, y), text, fill=fill, font=font)


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k apart) covering ``[low, high]``, about ``count`` of them."""
    raw = (high - low) / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(k * magnitude for k in (1, 2, 2.5, 5, 10) if k * magnitude >= raw * 0.999)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _dashed(draw: ImageDraw.ImageDraw, points: Sequence[tuple[float, float]], fill, width: int, dash: int, gap: int) -> None:
    """A dashed polyline (the pattern continues across vertices)."""
    on, left = True, float(dash)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        pos = 0.0
        while pos < length:
            step = min(left, length - pos)
            if on:
                a, b = pos / length, (pos + step) / length
                draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                          fill=fill, width=width)
            pos += step
            left -= step
            if left <= 0:
                on = not on
                left = float(dash if on else gap)


def _runs(mask: np.ndarray) -> list[slice]:
    """Slices of consecutive True entries."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [slice(a, b) for a, b in zip(edges[::2], edges[1::2])]


@dataclass(frozen=True)
class _Box:
    left: int
    top: int
    right: int
    bottom: int
    y_low: float
    y_high: float

    def x(self, t: float) -> float:
        return self.left + (1000.0 - min(max(t, 0.0), 1000.0)) / 1000.0 * (self.right - self.left)

    def y(self, v: float) -> float:
        return self.bottom - (v - self.y_low) / (self.y_high - self.y_low) * (self.bottom - self.top)


def _passes(labels: Sequence[str], timesteps: np.ndarray) -> list[np.ndarray]:
    """Record indices of each pass (label), in order of first appearance, sorted by falling timestep."""
    order: dict[str, list[int]] = {}
    for k, label in enumerate(labels):
        order.setdefault(label, []).append(k)
    return [np.array(ks)[np.argsort(-np.nan_to_num(timesteps[ks], nan=-1.0), kind="stable")] for ks in order.values()]


def _draw_series(draw: ImageDraw.ImageDraw, box: _Box, t: np.ndarray, s: np.ndarray, colour, after: bool) -> None:
    """One pass of one channel: ``s`` is ``[n, 4]`` (mean, std, min, max) at timesteps ``t``."""
    finite = np.isfinite(t) & np.isfinite(s).all(axis=1)
    faded = _mix(colour, PLOT_BACKGROUND, 0.35)
    for run in _runs(finite):
        xs = [box.x(v) for v in t[run]]
        mean, low, high = ([box.y(v) for v in s[run, k]] for k in (MEAN, MIN, MAX))
        if len(xs) == 1:
            x = xs[0]
            draw.line([(x, low[0]), (x, high[0])], fill=colour + (90,) if after else faded, width=5 if after else 1)
            r = 4 if after else 3
            draw.ellipse([x - r, mean[0] - r, x + r, mean[0] + r], fill=colour if after else None,
                         outline=None if after else faded, width=2)
            continue
        if after:
            draw.polygon(list(zip(xs, high)) + list(zip(xs, low))[::-1], fill=colour + (70,))
            draw.line(list(zip(xs, mean)), fill=colour, width=3, joint="curve")
        else:
            draw.line(list(zip(xs, high)), fill=faded, width=1)
            draw.line(list(zip(xs, low)), fill=faded, width=1)
            _dashed(draw, list(zip(xs, mean)), faded, 2, 7, 5)


def render_plot(
    data: TraceData,
    image: int,
    *,
    boundary: float = 4.0,
    windows: Sequence[tuple[float, float, str]] = (),
    size: tuple[int, int] = (1024, 640),
    title: str = "",
) -> Image.Image:
    """A chart of one image's trace: one panel per channel, timestep 1000 (left) to 0 (right).

    After the correction: solid mean line over a filled min–max band; before: a faded dashed mean line and
    thin min/max outlines. Horizontal lines at ±``boundary``; ``windows`` (t_min, t_max, label) are shaded
    (overlaps darker) and labelled. Each pass (record label) is its own line, sorted by timestep. Returns an
    RGB image of exactly ``size``; a "no data" image when nothing was recorded.
    """
    if not (math.isfinite(boundary) and boundary > 0):
        raise ValueError(f"boundary must be a positive finite number, got {boundary!r}")
    width, height = int(size[0]), int(size[1])
    if width < 64 or height < 48:
        raise ValueError(f"size must be at least 64 x 48, got {size!r}")
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas, "RGBA")
    unit = max(11, round(min(width, 1.6 * height) / 52))
    font, small, big = _font(unit + 1), _font(unit - 1), _font(unit + 4)
    margin = unit // 2 + 4
    line_h = round(unit * 1.35)
    head = title or (f"Latent channels per step, image {image}" if len(data) else "Latent channels per step")
    draw.text((margin, margin), head, fill=TEXT_COLOUR, font=big)
    top = margin + round((unit + 4) * 1.35) + 4
    if not len(data):
        draw.text((margin, top + line_h), "no data: no model evaluation was recorded", fill=MUTED_TEXT, font=font)
        return canvas
    _check_image(data, image)
    axis = "timestep: 1000 noise ... 0 clean"
    if _text_w(draw, head, big) + _text_w(draw, axis, font) + 3 * margin < width:
        _text(draw, (width - margin, margin + 2), axis, font, MUTED_TEXT, "r")

    t = data.timesteps[:, image]
    stats = data.stats[:, image]  # [N, 2, 4, C]
    bands = stats[:, :, (MIN, MAX)]
    finite = bands[np.isfinite(bands)]
    y_low = min(-boundary, float(finite.min()) if finite.size else -boundary)
    y_high = max(boundary, float(finite.max()) if finite.size else boundary)
    pad = (y_high - y_low) * 0.06
    y_low, y_high = y_low - pad, y_high + pad
    y_ticks = _nice_ticks(y_low, y_high, 4)
    x_ticks = [1000, 800, 600, 400, 200, 0]
    passes = _passes(data.labels, t)
    pass_labels = list(dict.fromkeys(data.labels))

    channels = data.channels
    columns = 2 if channels > 1 else 1
    rows = math.ceil(channels / columns)
    legend_top = height - margin - line_h
    tick_w = max(_text_w(draw, f"{v:g}", small) for v in y_ticks) + 6
    gap = unit
    cell_w = (width - 2 * margin - (columns - 1) * gap) / columns
    cell_h = (legend_top - 4 - top - (rows - 1) * gap) / rows
    for c in range(channels):
        cx = margin + (c % columns) * (cell_w + gap)
        cy = top + (c // columns) * (cell_h + gap)
        last_row = c + columns >= channels
        box = _Box(round(cx + tick_w), round(cy + line_h), round(cx + cell_w),
                   max(round(cy + line_h) + 2, round(cy + cell_h - (line_h if last_row else 4))), y_low, y_high)
        colour = channel_colour(c, channels)
        name = f"{c}  {CHANNEL_NAMES[c]}" if channels == 4 else f"channel {c}"
        draw.text((box.left, cy), name, fill=colour, font=font)
        bad = int((~np.isfinite(stats[:, :, :, c]).all(axis=(1, 2)) | ~np.isfinite(t)).sum())
        if bad:
            note = f"non-finite at {bad} step{'s' * (bad > 1)}"
            draw.text((box.right - _text_w(draw, note, small), cy + 2), note, fill=NON_FINITE_COLOUR, font=small)
        spans = [(box.x(min(hi, 1000.0)), box.x(max(lo, 0.0)), label) for lo, hi, label in windows if hi > lo]
        _draw_frame(draw, box, spans, y_ticks, x_ticks, small, show_x=last_row)
        for y in (boundary, -boundary):
            _dashed(draw, [(box.left, box.y(y)), (box.right, box.y(y))], BOUNDARY_COLOUR, 1, 6, 4)
        for ks, label in zip(passes[1:], pass_labels[1:]):  # where a later pass starts
            start = box.x(float(np.nanmax(t[ks], initial=-math.inf)))
            _dashed(draw, [(start, box.top), (start, box.bottom)], MUTED_TEXT, 1, 3, 3)
            if last_row and label:
                _label(draw, (start + 4, box.bottom - line_h - 2), label, small, MUTED_TEXT)
        for ks in passes:
            _draw_series(draw, box, t[ks], stats[ks, BEFORE, :, c], colour, after=False)
        for ks in passes:
            _draw_series(draw, box, t[ks], stats[ks, AFTER, :, c], colour, after=True)
        if c < columns:
            _draw_window_labels(draw, box, spans, small, line_h)
    _draw_legend(draw, margin, legend_top, width - margin, boundary, small)
    return canvas


def _draw_frame(draw, box: _Box, spans, y_ticks, x_ticks, font, *, show_x: bool) -> None:
    """Plot background, window shading, grid and ticks; ``spans`` are windows as (x_left, x_right, label)."""
    draw.rectangle([box.left, box.top, box.right, box.bottom], fill=PLOT_BACKGROUND)
    edges = sorted({round(e) for a, b, _ in spans for e in (a, b)})
    for a, b in zip(edges, edges[1:]):
        count = sum(1 for lo, hi, _ in spans if lo <= (a + b) / 2 <= hi)
        if count:
            draw.rectangle([a, box.top, b, box.bottom], fill=window_shade(count))
    for v in y_ticks:
        y = box.y(v)
        draw.line([(box.left, y), (box.right, y)], fill=GRID_COLOUR if v else _mix(GRID_COLOUR, TEXT_COLOUR, 0.25))
        _text(draw, (box.left - 5, y), f"{v:g}", font, MUTED_TEXT, "r", "m")
    for v in x_ticks:
        x = box.x(v)
        draw.line([(x, box.top), (x, box.bottom)], fill=GRID_COLOUR)
        if show_x:
            _text(draw, (x, box.bottom + 4), f"{v}", font, MUTED_TEXT, "l" if v == 1000 else "r" if v == 0 else "m")
    draw.rectangle([box.left, box.top, box.right, box.bottom], outline=GRID_COLOUR)


def _draw_window_labels(draw, box: _Box, spans, font, row_h: int) -> None:
    """Window labels at the top of their bands, stacked in rows where they would overlap."""
    placed: list[tuple[int, float, float]] = []  # (row, x0, x1) of labels already drawn
    for a, _, label in sorted(spans, key=lambda s: s[0]):
        if not label:
            continue
        w = _text_w(draw, label, font)
        x0 = min(max(a + 4, box.left + 2), box.right - w - 2)
        row = next(r for r in range(len(spans) + 1)
                   if all(pr != r or x0 > px1 + 6 or x0 + w < px0 - 6 for pr, px0, px1 in placed))
        placed.append((row, x0, x0 + w))
        _label(draw, (x0, box.top + 4 + row * row_h), label, font, _mix(WINDOW_COLOUR, TEXT_COLOUR, 0.6))


def _label(draw, xy: tuple[float, float], text: str, font, fill) -> None:
    """Text on a translucent plate, so it stays readable over the data."""
    box = draw.textbbox(xy, text, font=font)
    draw.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=PLOT_BACKGROUND + (190,))
    draw.text(xy, text, fill=fill, font=font)


def _draw_legend(draw, left: int, top: int, right: int, boundary: float, font) -> None:
    """One line: after, before, ±boundary, active window (entries that do not fit are left out)."""
    x, mid = float(left), top + 8
    swatch = 28
    faded = _mix(TEXT_COLOUR, PLOT_BACKGROUND, 0.35)
    entries = (
        ("line", "after: mean, min-max band"),
        ("dashed", "before"),
        ("boundary", f"±{boundary:g} boundary"),
        ("window", "active window"),
    )
    for kind, text in entries:
        if x + swatch + 6 + _text_w(draw, text, font) > right:
            break
        if kind == "line":
            draw.rectangle([x, mid - 6, x + swatch, mid + 6], fill=TEXT_COLOUR + (70,))
            draw.line([(x, mid), (x + swatch, mid)], fill=TEXT_COLOUR, width=3)
        elif kind == "window":
            draw.rectangle([x, mid - 7, x + swatch, mid + 7], fill=window_shade(1))
        else:
            fill, w, dash, gap = (faded, 2, 7, 5) if kind == "dashed" else (BOUNDARY_COLOUR, 1, 6, 4)
            _dashed(draw, [(x, mid), (x + swatch, mid)], fill, w, dash, gap)
        x += swatch + 6
        _text(draw, (x, mid), text, font, TEXT_COLOUR, "l", "m")
        x += _text_w(draw, text, font) + 22
