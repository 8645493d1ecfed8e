"""lib_latentfix.chart: the per-step chart and the channel view of a finished trace."""

from __future__ import annotations

import math
import os

import pytest
import torch
from PIL import Image

from lib_latentfix.chart import channel_view_images, render_plot, schedule_windows
from lib_latentfix.drawing import CHANNEL_COLOURS, PLOT_BACKGROUND, channel_colour, window_shade
from lib_latentfix.schedule import BLOG, apply
from lib_latentfix.trace import Trace
from support.trace_samples import latent as _latent
from support.trace_samples import sample_data as _sample_data

ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts")
SIZE = (1024, 640)


def _colours(image: Image.Image) -> dict[tuple[int, int, int], int]:
    return {colour: count for count, colour in image.getcolors(maxcolors=1 << 20)}


def _check_plot(image: Image.Image, size=SIZE) -> dict:
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == size
    return _colours(image)


def test_plot_has_the_promised_size_channel_colours_and_windows():
    data = _sample_data()
    windows = schedule_windows(BLOG)
    colours = _check_plot(render_plot(data, 0, windows=windows))
    for c in range(4):
        assert colours.get(channel_colour(c), 0) > 100, c
    assert colours.get(window_shade(1), 0) > 5000
    plain = _check_plot(render_plot(data, 1))
    assert plain.get(window_shade(1), 0) < 1000  # only the legend's swatch
    assert _check_plot(render_plot(data, 1, size=(500, 320), title="custom"), (500, 320))
    with pytest.raises(ValueError):
        render_plot(data, 2)


def test_plot_edge_cases_do_not_raise():
    x = _latent(1, 4, 4, 0)
    single = Trace()
    single.record(500.0, x, x * 0.5)
    colours = _check_plot(render_plot(single.finish(), 0))
    assert all(colours.get(colour, 0) > 0 for colour in CHANNEL_COLOURS)

    repeated = Trace()  # a second-order sampler, then a hires pass restarting lower
    for label, timesteps in (("first pass", [999, 700, 700, 400, 400, 0, 0]), ("hires pass", [500, 250, 250, 0])):
        for k, t in enumerate(timesteps):
            y = _latent(1, 4, 4, k)
            repeated.record(float(t), y, y * 0.8, label=label)
    _check_plot(render_plot(repeated.finish(), 0, windows=[(0.0, 1000.0, "everywhere")]))

    empty = render_plot(Trace().finish(), 0)
    assert _check_plot(empty) and len(_colours(empty)) > 2  # a "no data" text

    broken = Trace()
    for k, value in enumerate([math.nan, math.inf, -math.inf]):
        y = _latent(1, 4, 4, k)
        y[0, k, 0, 0] = value
        broken.record(float(900 - 300 * k), y, y)
    broken.record(0.0, torch.full((1, 4, 4, 4), math.nan), torch.full((1, 4, 4, 4), math.nan))
    _check_plot(render_plot(broken.finish(), 0))

    three = Trace()
    three.record(1.0, _latent(1, 4, 4, 0, c=3), _latent(1, 4, 4, 1, c=3))
    _check_plot(render_plot(three.finish(), 0))


def test_channel_view_images():
    data = _sample_data()
    view = channel_view_images(data, 1)
    assert isinstance(view, Image.Image) and view.mode == "RGB" and view.width > 100
    assert data.last_step == 2
    with pytest.raises(ValueError):
        channel_view_images(Trace().finish(), 0)
    with pytest.raises(ValueError):
        channel_view_images(data, 5)


def test_render_example_plot():
    """A synthetic run: a yellow cast and a growing range, corrected by the post's schedule at 30 steps."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 4, 32, 32, generator=g)
    trace = Trace()
    for k, t in enumerate(torch.linspace(999.0, 0.0, 30).tolist()):
        p = k / 29
        cast = torch.tensor([0.2 + 0.4 * p, -0.3 - 0.7 * p, 0.4 + 0.8 * p, 0.05])[None, :, None, None]
        x0 = base * (0.5 + 1.0 * p) + cast + 0.6 * (1 - p) * torch.randn(2, 4, 32, 32, generator=g)
        timesteps = torch.full((2,), t)
        trace.record(timesteps, x0, apply(BLOG, x0, timesteps), label="first pass")
    data = trace.finish()
    plot = render_plot(data, 0, windows=schedule_windows(BLOG), title="Example: yellow cast, post defaults")
    _check_plot(plot)
    os.makedirs(ARTIFACTS, exist_ok=True)
    plot.save(os.path.join(ARTIFACTS, "diagnostics_plot_example.png"))
    channel_view_images(data, 0).save(os.path.join(ARTIFACTS, "diagnostics_channel_view_example.png"))


def test_windows_never_reached_are_hatched_grey_and_labelled():
    """A window no model call fell inside (e.g. 1 < t < 100 at 8 steps) is drawn apart from the active ones: hatched
    grey, with "not reached" in its label and in the legend."""
    data = _sample_data()
    ran, missed = schedule_windows(BLOG)[:2], schedule_windows(BLOG)[2:]
    assert [label for *_, label in missed] == ["center + maximize"]
    plain = render_plot(data, 0, windows=ran)
    hatched = render_plot(data, 0, windows=ran, skipped=missed)
    # the first panel's plot area at t = 50 (inside 1 < t < 100): changed, and to grey (r = g = b)
    width = SIZE[0]
    strip = [(x, y) for x in range(width // 2 - 30, width // 2 - 14) for y in range(200, 260)]
    background = [xy for xy in strip if plain.getpixel(xy) == PLOT_BACKGROUND]
    changed = [hatched.getpixel(xy) for xy in background if hatched.getpixel(xy) != PLOT_BACKGROUND]
    assert len(background) > 200 and len(changed) > len(background) // 2
    assert all(max(p) - min(p) <= 8 for p in changed), set(changed)  # grey over the (near-grey) background
    # nothing outside the skipped windows changes but the labels and the legend
    left = plain.crop((0, 120, width // 4, 560)), hatched.crop((0, 120, width // 4, 560))
    assert list(left[0].getdata()) == list(left[1].getdata())
    os.makedirs(ARTIFACTS, exist_ok=True)
    hatched.save(os.path.join(ARTIFACTS, "diagnostics_not_reached.png"))
