"""The diagnostics pictures of a finished trace: the per-step chart and the channel view (Pillow only).

:func:`render_plot` draws one image's :class:`~lib_latentfix.trace.TraceData` (one panel per channel,
timestep 1000 to 0, before and after each correction, the schedule's windows from :func:`schedule_windows`);
:func:`channel_view_images` shows the last corrected latents through :mod:`lib_latentfix.preview`. Colours
and fonts come from :mod:`lib_latentfix.drawing`, shared with the previews.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .drawing import (
    BACKGROUND,
    BOUNDARY_COLOUR,
    GRID_COLOUR,
    MUTED_TEXT,
    NON_FINITE_COLOUR,
    PLOT_BACKGROUND,
    TEXT_COLOUR,
    WINDOW_COLOUR,
    channel_colour,
    dashed,
    draw_text,
    load_font,
    mix,
    text_width,
    window_shade,
)
from .preview import CHANNEL_NAMES, channel_view_pair
from .schedule import Schedule
from .trace import AFTER, BEFORE, MAX, MEAN, MIN, TraceData


def channel_view_images(data: TraceData, image: int) -> Image.Image:
    """The four channels and the RGB approximation of ``image``, before vs after the last correction."""
    if data.last_before is None:
        raise ValueError("nothing was recorded")
    data.check_image(image)
    at = f", t = {data.timesteps[data.last_step, image]:.0f}"
    return channel_view_pair(data.last_before[image], data.last_after[image],
                             labels=(f"before last correction{at}", f"after last correction{at}"))


def schedule_windows(schedule: Schedule) -> list[tuple[float, float, str]]:
    """The schedule's active windows for :func:`render_plot`: (t_min, t_max, filter names), equal windows merged."""
    merged: dict[tuple[float, float], list[str]] = {}
    for step in schedule.steps:
        if step.strength > 0:
            name = {"SoftClamp": "soft clamp"}.get(type(step.filter).__name__, type(step.filter).__name__.lower())
            merged.setdefault((step.t_min, step.t_max), []).append(name)
    return [(lo, hi, " + ".join(names)) for (lo, hi), names in merged.items()]


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k apart) covering ``[low, high]``, about ``count`` of them."""
    raw = (high - low) / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(k * magnitude for k in (1, 2, 2.5, 5, 10) if k * magnitude >= raw * 0.999)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


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
    faded = mix(colour, PLOT_BACKGROUND, 0.35)
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
            dashed(draw, list(zip(xs, mean)), faded, 2, 7, 5)


def render_plot(
    data: TraceData,
    image: int,
    *,
    boundary: float = 4.0,
    windows: Sequence[tuple[float, float, str]] = (),
    size: tuple[int, int] = (1024, 640),
    title: str = "",
    skipped: Sequence[tuple[float, float, str]] = (),
) -> Image.Image:
    """A chart of one image's trace: one panel per channel, timestep 1000 (left) to 0 (right).

    After the correction: solid mean line over a filled min–max band; before: a faded dashed mean line and
    thin min/max outlines. Horizontal lines at ±``boundary``; ``windows`` (t_min, t_max, label) are shaded
    (overlaps darker) and labelled; ``skipped`` windows (enabled, but no model call fell inside them) are hatched
    grey and labelled "<label>: not reached". Each pass (record label) is its own line, sorted by timestep. Returns an
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
    font, small, big = load_font(unit + 1), load_font(unit - 1), load_font(unit + 4)
    margin = unit // 2 + 4
    line_h = round(unit * 1.35)
    head = title or (f"Latent channels per step, image {image}" if len(data) else "Latent channels per step")
    draw.text((margin, margin), head, fill=TEXT_COLOUR, font=big)
    top = margin + round((unit + 4) * 1.35) + 4
    if not len(data):
        draw.text((margin, top + line_h), "no data: no model evaluation was recorded", fill=MUTED_TEXT, font=font)
        return canvas
    data.check_image(image)
    axis = "timestep: 1000 noise ... 0 clean"
    if text_width(draw, head, big) + text_width(draw, axis, font) + 3 * margin < width:
        draw_text(draw, (width - margin, margin + 2), axis, font, MUTED_TEXT, "r")

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
    tick_w = max(text_width(draw, f"{v:g}", small) for v in y_ticks) + 6
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
            draw.text((box.right - text_width(draw, note, small), cy + 2), note, fill=NON_FINITE_COLOUR, font=small)
        spans = [(box.x(min(hi, 1000.0)), box.x(max(lo, 0.0)), label) for lo, hi, label in windows if hi > lo]
        missed = [(box.x(min(hi, 1000.0)), box.x(max(lo, 0.0)), f"{label}: not reached")
                  for lo, hi, label in skipped if hi > lo]
        _draw_frame(draw, box, spans, y_ticks, x_ticks, small, show_x=last_row, missed=missed)
        for y in (boundary, -boundary):
            dashed(draw, [(box.left, box.y(y)), (box.right, box.y(y))], BOUNDARY_COLOUR, 1, 6, 4)
        for ks, label in zip(passes[1:], pass_labels[1:]):  # where a later pass starts
            start = box.x(float(np.nanmax(t[ks], initial=-math.inf)))
            dashed(draw, [(start, box.top), (start, box.bottom)], MUTED_TEXT, 1, 3, 3)
            if last_row and label:
                _label(draw, (start + 4, box.bottom - line_h - 2), label, small, MUTED_TEXT)
        for ks in passes:
            _draw_series(draw, box, t[ks], stats[ks, BEFORE, :, c], colour, after=False)
        for ks in passes:
            _draw_series(draw, box, t[ks], stats[ks, AFTER, :, c], colour, after=True)
        if c < columns:
            _draw_window_labels(draw, box, spans + missed, small, line_h)
    _draw_legend(draw, margin, legend_top, width - margin, boundary, small, missed=bool(skipped))
    return canvas


def _draw_frame(draw, box: _Box, spans, y_ticks, x_ticks, font, *, show_x: bool, missed=()) -> None:
    """Plot background, window shading, grid and ticks; ``spans`` are windows as (x_left, x_right, label),
    ``missed`` windows that were never reached (hatched grey)."""
    draw.rectangle([box.left, box.top, box.right, box.bottom], fill=PLOT_BACKGROUND)
    edges = sorted({round(e) for a, b, _ in spans for e in (a, b)})
    for a, b in zip(edges, edges[1:]):
        count = sum(1 for lo, hi, _ in spans if lo <= (a + b) / 2 <= hi)
        if count:
            draw.rectangle([a, box.top, b, box.bottom], fill=window_shade(count))
    for a, b, _ in missed:
        _hatch(draw, a, box.top, b, box.bottom)
    for v in y_ticks:
        y = box.y(v)
        draw.line([(box.left, y), (box.right, y)], fill=GRID_COLOUR if v else mix(GRID_COLOUR, TEXT_COLOUR, 0.25))
        draw_text(draw, (box.left - 5, y), f"{v:g}", font, MUTED_TEXT, "r", "m")
    for v in x_ticks:
        x = box.x(v)
        draw.line([(x, box.top), (x, box.bottom)], fill=GRID_COLOUR)
        if show_x:
            draw_text(draw, (x, box.bottom + 4), f"{v}", font, MUTED_TEXT, "l" if v == 1000 else "r" if v == 0 else "m")
    draw.rectangle([box.left, box.top, box.right, box.bottom], outline=GRID_COLOUR)


def _hatch(draw, left: float, top: float, right: float, bottom: float, gap: int = 7) -> None:
    """Grey diagonal lines over a rectangle: a window no model call reached."""
    left, right = round(min(left, right)), round(max(left, right))
    top, bottom = round(top), round(bottom)
    if right <= left or bottom <= top:
        return
    draw.rectangle([left, top, right, bottom], fill=MISSED_SHADE)
    height = bottom - top
    for start in range(left - height, right, gap):  # lines from bottom-left to top-right, clipped to the box
        x0, y0, x1, y1 = start, bottom, start + height, top
        if x0 < left:
            y0, x0 = bottom - (left - x0), left
        if x1 > right:
            y1, x1 = top + (x1 - right), right
        draw.line([(x0, y0), (x1, y1)], fill=MISSED_LINE, width=1)


MISSED_SHADE = (120, 120, 120, 28)
MISSED_LINE = (120, 120, 120, 110)


def _draw_window_labels(draw, box: _Box, spans, font, row_h: int) -> None:
    """Window labels at the top of their bands, stacked in rows where they would overlap."""
    placed: list[tuple[int, float, float]] = []  # (row, x0, x1) of labels already drawn
    for a, _, label in sorted(spans, key=lambda s: s[0]):
        if not label:
            continue
        w = text_width(draw, label, font)
        x0 = min(max(a + 4, box.left + 2), box.right - w - 2)
        row = next(r for r in range(len(spans) + 1)
                   if all(pr != r or x0 > px1 + 6 or x0 + w < px0 - 6 for pr, px0, px1 in placed))
        placed.append((row, x0, x0 + w))
        _label(draw, (x0, box.top + 4 + row * row_h), label, font, mix(WINDOW_COLOUR, TEXT_COLOUR, 0.6))


def _label(draw, xy: tuple[float, float], text: str, font, fill) -> None:
    """Text on a translucent plate, so it stays readable over the data."""
    box = draw.textbbox(xy, text, font=font)
    draw.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=PLOT_BACKGROUND + (190,))
    draw.text(xy, text, fill=fill, font=font)


def _draw_legend(draw, left: int, top: int, right: int, boundary: float, font, missed: bool = False) -> None:
    """One line: after, before, ±boundary, active window, window not reached (entries that do not fit are left
    out)."""
    x, mid = float(left), top + 8
    swatch = 28
    faded = mix(TEXT_COLOUR, PLOT_BACKGROUND, 0.35)
    entries = (
        ("line", "after: mean, min-max band"),
        ("dashed", "before"),
        ("boundary", f"±{boundary:g} boundary"),
        ("window", "active window"),
        *((("missed", "not reached"),) if missed else ()),
    )
    for kind, text in entries:
        if x + swatch + 6 + text_width(draw, text, font) > right:
            break
        if kind == "line":
            draw.rectangle([x, mid - 6, x + swatch, mid + 6], fill=TEXT_COLOUR + (70,))
            draw.line([(x, mid), (x + swatch, mid)], fill=TEXT_COLOUR, width=3)
        elif kind == "window":
            draw.rectangle([x, mid - 7, x + swatch, mid + 7], fill=window_shade(1))
        elif kind == "missed":
            _hatch(draw, x, mid - 7, x + swatch, mid + 7)
        else:
            fill, w, dash, gap = (faded, 2, 7, 5) if kind == "dashed" else (BOUNDARY_COLOUR, 1, 6, 4)
            dashed(draw, [(x, mid), (x + swatch, mid)], fill, w, dash, gap)
        x += swatch + 6
        draw_text(draw, (x, mid), text, font, TEXT_COLOUR, "l", "m")
        x += text_width(draw, text, font) + 22
