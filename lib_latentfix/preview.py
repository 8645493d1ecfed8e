"""Latent previews: the fast linear RGB approximation and a per-channel view.

Host-free (torch, numpy, pillow only). Latents are SDXL latents in the VAE-scaled
space (scaling factor 0.13025), where useful values lie roughly within +/-4.

Channel meanings (from "SDXL latent space explained"): 0 luminance, 1 cyan/red,
2 lime/purple, 3 pattern/structure.

Non-finite rule for ``latents_to_rgb_array`` (and everything built on it): the
linear combination is computed first, then per output colour component NaN -> 0,
+inf -> 255, -inf -> 0. So a NaN latent pixel becomes black (0, 0, 0), and an
infinite input saturates each component according to the sign of its weight.
Finite values follow the post exactly (clamp to [0, 255], then truncate like
``.byte()``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .drawing import (  # the palette and fonts shared with the diagnostics chart
    ABOVE_RANGE_COLOUR,
    BACKGROUND,
    BELOW_RANGE_COLOUR,
    NON_FINITE_COLOUR,
    NOTE_COLOUR,
    TEXT_COLOUR,
    load_font,
    text_size,
)

__all__ = [
    "POST_RGB_WEIGHTS",
    "POST_RGB_BIASES",
    "CHANNEL_NAMES",
    "latents_to_rgb_array",
    "latents_to_rgb",
    "channel_view",
    "channel_view_pair",
]

# Rows are output R, G, B; columns are latent channels 0..3 (the post's numbers).
POST_RGB_WEIGHTS: tuple[tuple[int, int, int, int], ...] = (
    (60, -60, 25, -70),
    (60, -5, 15, -50),
    (60, 10, -5, -35),
)
POST_RGB_BIASES: tuple[int, int, int] = (150, 140, 130)
CHANNEL_NAMES: tuple[str, str, str, str] = ("luminance", "cyan/red", "lime/purple", "pattern")

_MIN_TILE = 160  # default short side of a tile, pixels
_MAX_COLUMNS = 8  # panels per row before wrapping (only matters for C > 7)
_MARGIN = 10
_GAP = 10
_LABEL_FONT_SIZE = 16
_TITLE_FONT_SIZE = 20


def _as_batch(latents: torch.Tensor) -> torch.Tensor:
    """Return ``latents`` as [B, C, H, W] (a [C, H, W] tensor gets B = 1)."""
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(latents).__name__}")
    if latents.ndim == 3:
        latents = latents.unsqueeze(0)
    if latents.ndim != 4:
        raise ValueError(f"expected latents of shape [B, C, H, W] or [C, H, W], got {tuple(latents.shape)}")
    if min(latents.shape[1:]) == 0:
        raise ValueError(f"latents have an empty dimension: {tuple(latents.shape)}")
    return latents


def latents_to_rgb_array(latents: torch.Tensor) -> np.ndarray:
    """Linear RGB approximation of SDXL latents (the post's formula), whole batch.

    Accepts [B, 4, H, W] or [4, H, W]; returns uint8 [B, H, W, 3]. Computed in
    float64 for float64 input, else float32, on the input's device. Finite values
    are clamped to [0, 255] and truncated exactly like the post's ``.byte()``;
    non-finite results map NaN -> 0, +inf -> 255, -inf -> 0 (per component).
    """
    latents = _as_batch(latents)
    if latents.shape[1] != 4:
        raise ValueError(f"the RGB approximation needs 4 latent channels, got {latents.shape[1]}")
    dtype = torch.float64 if latents.dtype == torch.float64 else torch.float32
    with torch.no_grad():
        x = latents.detach().to(dtype)
        weights = torch.t(torch.tensor(POST_RGB_WEIGHTS, dtype=dtype, device=x.device))
        biases = torch.tensor(POST_RGB_BIASES, dtype=dtype, device=x.device).unsqueeze(-1).unsqueeze(-1)
        # One einsum per image, shaped exactly like the post's call: a batched einsum
        # may pick another kernel and round differently in the last bit, which the
        # truncation can turn into a one-level difference between batch and single image.
        rgb = torch.cat([torch.einsum("...lxy,lr -> ...rxy", x[i : i + 1], weights) + biases for i in range(len(x))])
        rgb = torch.nan_to_num(rgb, nan=0.0, posinf=255.0, neginf=0.0).clamp(0, 255)
        return rgb.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _upscale(array: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling of an [H, W, ...] array."""
    if factor == 1:
        return array
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def latents_to_rgb(latents: torch.Tensor, scale: int = 1) -> list[Image.Image]:
    """One RGB PIL image per batch element (the post returns image 0 only).

    ``scale`` is an integer nearest-neighbour upscale (8 shows a 128x128 latent at 1024 px).
    """
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    return [Image.fromarray(_upscale(image, scale), "RGB") for image in latents_to_rgb_array(latents)]


def _line_height(draw: ImageDraw.ImageDraw, font) -> int:
    return text_size(draw, "Ag|0", font)[1] + 3


def _fmt(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:.3g}"


def _grey_tile(channel: np.ndarray, value_range: float) -> np.ndarray:
    """Map one [H, W] channel to uint8 RGB: -range black, 0 mid grey, +range white, tints beyond."""
    finite = np.isfinite(channel)
    safe = np.where(finite, channel, 0.0)
    grey = np.rint(np.clip(127.5 + 127.5 * safe / value_range, 0.0, 255.0)).astype(np.uint8)
    tile = np.repeat(grey[..., None], 3, axis=-1)
    tile[finite & (channel > value_range)] = ABOVE_RANGE_COLOUR
    tile[finite & (channel < -value_range)] = BELOW_RANGE_COLOUR
    tile[~finite] = NON_FINITE_COLOUR
    return tile


def _channel_lines(channel: np.ndarray, index: int, n_channels: int, value_range: float) -> list[str]:
    """Label lines for one channel tile: name, min/max, mean, clipping and non-finite counts."""
    name = f"{index}: {CHANNEL_NAMES[index]}" if n_channels == 4 else f"channel {index}"
    finite = np.isfinite(channel)
    values = channel[finite]
    if values.size == 0:
        lines = [name, "min -  max -", "mean -"]
    else:
        lines = [
            name,
            f"min {_fmt(float(values.min()))}  max {_fmt(float(values.max()))}",
            f"mean {_fmt(float(values.mean()))}",
        ]
    beyond = int(np.count_nonzero(np.abs(values) > value_range))
    if beyond:
        share = 100.0 * beyond / channel.size
        amount = f"{share:.1f}%" if share >= 0.1 else f"{beyond} px"
        lines.append(f"beyond +/-{value_range:g}: {amount}")
    non_finite = channel.size - values.size
    if non_finite:
        lines.append(f"non-finite: {non_finite}")
    return lines


def channel_view(
    latent: torch.Tensor,
    *,
    value_range: float = 4.0,
    tile: int | None = None,
    title: str | None = None,
) -> Image.Image:
    """Side-by-side grey maps of one latent's channels plus the RGB approximation.

    ``latent`` is [C, H, W] or [1, C, H, W]. Grey mapping is fixed: -value_range
    black, 0 mid grey, +value_range white; values beyond are drawn red (> +range) or
    blue (< -range), NaN/inf magenta. Each tile is labelled with channel number,
    meaning (C == 4), min/mean/max of its finite values, the share beyond the range
    and the non-finite count. An "RGB approx." tile follows when C == 4 (a note
    replaces it otherwise). Tiles are nearest-upscaled by the smallest integer
    factor making their short side >= ``tile`` px (default 160); never downscaled.
    """
    if not (isinstance(value_range, (int, float)) and math.isfinite(value_range) and value_range > 0):
        raise ValueError(f"value_range must be a positive finite number, got {value_range!r}")
    if tile is not None and (not isinstance(tile, int) or tile < 1):
        raise ValueError(f"tile must be a positive int or None, got {tile!r}")
    batch = _as_batch(latent)
    if batch.shape[0] != 1:
        raise ValueError(f"channel_view shows one image; got a batch of {batch.shape[0]}")
    single = batch[0]
    data = single.detach().to("cpu").to(torch.float64).numpy()  # widened on the host (MPS has no float64)
    n_channels, height, width = data.shape
    factor = max(1, math.ceil((tile or _MIN_TILE) / min(height, width)))

    panels: list[tuple[list[str], np.ndarray]] = [
        (_channel_lines(data[i], i, n_channels, value_range), _grey_tile(data[i], value_range))
        for i in range(n_channels)
    ]
    notes: list[str] = []
    if n_channels == 4:
        panels.append((["RGB approx.", "linear, SDXL weights"], latents_to_rgb_array(single)[0]))
    else:
        notes.append(f"RGB approx. skipped: needs 4 latent channels, got {n_channels}")
    notes.append(
        f"grey: -{value_range:g} black, 0 mid, +{value_range:g} white;"
        f" red > +{value_range:g}, blue < -{value_range:g}, magenta non-finite"
    )

    label_font, title_font = load_font(_LABEL_FONT_SIZE), load_font(_TITLE_FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = _line_height(measure, label_font)
    title_h = _line_height(measure, title_font) + 4 if title else 0
    tile_w, tile_h = width * factor, height * factor
    col_w = max([tile_w] + [text_size(measure, s, label_font)[0] for lines, _ in panels for s in lines])
    label_h = line_h * max(len(lines) for lines, _ in panels) + 2
    columns = min(len(panels), _MAX_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    cell_h = label_h + tile_h
    grid_w = columns * col_w + (columns - 1) * _GAP
    notes_w = max(text_size(measure, s, label_font)[0] for s in notes)
    title_w = text_size(measure, title, title_font)[0] if title else 0
    image_w = 2 * _MARGIN + max(grid_w, notes_w, title_w)
    grid_top = _MARGIN + title_h
    notes_top = grid_top + rows * cell_h + (rows - 1) * _GAP + 6
    image_h = notes_top + len(notes) * line_h + _MARGIN

    canvas = Image.new("RGB", (image_w, image_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((_MARGIN, _MARGIN), title, fill=TEXT_COLOUR, font=title_font)
    for k, (lines, pixels) in enumerate(panels):
        x = _MARGIN + (k % columns) * (col_w + _GAP)
        y = grid_top + (k // columns) * (cell_h + _GAP)
        for j, line in enumerate(lines):
            draw.text((x, y + j * line_h), line, fill=TEXT_COLOUR, font=label_font)
        canvas.paste(Image.fromarray(_upscale(pixels, factor), "RGB"), (x, y + label_h))
    for j, note in enumerate(notes):
        colour = NOTE_COLOUR if note.startswith("RGB approx. skipped") else TEXT_COLOUR
        draw.text((_MARGIN, notes_top + j * line_h), note, fill=colour, font=label_font)
    return canvas


def channel_view_pair(
    before: torch.Tensor,
    after: torch.Tensor,
    *,
    labels: Sequence[str] = ("before", "after"),
    **kw,
) -> Image.Image:
    """Two ``channel_view`` images stacked vertically, each under a heading from ``labels``.

    Extra keyword arguments (value_range, tile, title) go to both views.
    """
    if len(labels) != 2:
        raise ValueError(f"labels must hold two strings, got {labels!r}")
    views = [channel_view(before, **kw), channel_view(after, **kw)]
    font = load_font(_TITLE_FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    heading_h = _line_height(measure, font) + 6
    width = max([v.width for v in views] + [2 * _MARGIN + text_size(measure, str(s), font)[0] for s in labels])
    height = sum(v.height + heading_h for v in views) + _GAP
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = 0
    for label, view in zip(labels, views):
        draw.text((_MARGIN, y + 4), str(label), fill=NOTE_COLOUR, font=font)
        canvas.paste(view, (0, y + heading_h))
        y += heading_h + view.height
        if y < height:
            draw.line([(0, y + _GAP // 2), (width, y + _GAP // 2)], fill=(80, 84, 96), width=2)
            y += _GAP
    return canvas
