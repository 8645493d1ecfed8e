"""The palette, fonts and text helpers shared by every picture the extension draws (chart and previews).

Host-free (Pillow only). One place for the colours, so the diagnostics chart and the latent previews match.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence, Union

from PIL import ImageDraw, ImageFont

Colour = tuple[int, int, int]

# shared
BACKGROUND: Colour = (30, 33, 42)  # the canvas: not a pure grey, so it never looks like tile content
TEXT_COLOUR: Colour = (235, 235, 235)
MUTED_TEXT: Colour = (160, 165, 180)
NOTE_COLOUR: Colour = (255, 200, 90)  # preview notes and headings; the chart's ±boundary lines
NON_FINITE_COLOUR: Colour = (255, 0, 255)  # NaN / ±inf, in the previews and in the chart
# previews (channel view)
ABOVE_RANGE_COLOUR: Colour = (255, 64, 64)  # values > +value_range
BELOW_RANGE_COLOUR: Colour = (64, 112, 255)  # values < -value_range
# chart
PLOT_BACKGROUND: Colour = (18, 20, 26)
GRID_COLOUR: Colour = (48, 52, 64)
BOUNDARY_COLOUR: Colour = NOTE_COLOUR
WINDOW_COLOUR: Colour = (70, 110, 200)
WINDOW_ALPHA = 0.28  # shading of one window over the plot background; overlapping windows add up
CHANNEL_COLOURS: tuple[Colour, ...] = (
    (225, 225, 225),  # 0 luminance: light grey
    (240, 80, 70),  # 1 cyan/red: red
    (175, 120, 255),  # 2 lime/purple: purple
    (255, 160, 40),  # 3 pattern: orange
)
EXTRA_COLOURS: tuple[Colour, ...] = ((90, 200, 240), (130, 220, 90), (240, 120, 200), (200, 200, 90))


def channel_colour(channel: int, channels: int = 4) -> Colour:
    """The chart colour of a channel (the meaning colours for 4-channel latents)."""
    palette = CHANNEL_COLOURS if channels == 4 else CHANNEL_COLOURS + EXTRA_COLOURS
    return palette[channel % len(palette)]


def window_shade(count: int) -> Colour:
    """The plot background under ``count`` overlapping active windows."""
    return mix(PLOT_BACKGROUND, WINDOW_COLOUR, min(1.0, WINDOW_ALPHA * count))


def mix(a: Sequence[int], b: Sequence[int], amount: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * amount) for x, y in zip(a, b))  # type: ignore[return-value]


@lru_cache(maxsize=None)
def load_font(size: int) -> Union[ImageFont.ImageFont, ImageFont.FreeTypeFont]:
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


def text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    return round(draw.textlength(text, font=font))


def text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    """The right and bottom edge of ``text`` drawn at (0, 0)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right, bottom


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, fill, align: str = "l",
          valign: str = "t") -> None:
    """Text aligned at ``xy``: ``align`` l/m/r by its ink, ``valign`` t/m by a reference line (not anchors:
    bitmap fonts lack them)."""
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    _, top, _, bottom = draw.textbbox((0, 0), "Ag0", font=font)
    x = xy[0] - {"l": left, "m": (left + right) / 2, "r": right}[align]
    y = xy[1] - {"t": top, "m": (top + bottom) / 2}[valign]
    draw.text((x, y), text, fill=fill, font=font)


def dashed(draw: ImageDraw.ImageDraw, points: Sequence[tuple[float, float]], fill, width: int, dash: int, gap: int) -> None:
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
