"""Tests for lib_latentfix.diagnostics: the per-step trace, its chart, the channel view and the JSON lines.

Reference statistics are recomputed directly from the tensors passed in, per image and channel, in float32;
std is the population std (``unbiased=False``), as in the module.
"""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lib_latentfix.diagnostics import (
    AFTER,
    BEFORE,
    CHANNEL_COLOURS,
    STAT_NAMES,
    Trace,
    TraceData,
    channel_colour,
    channel_view_images,
    render_plot,
    schedule_windows,
    trace_records,
    window_shade,
    write_jsonl,
)
from lib_latentfix.runtime import ModelCall, eps_to_x0
from lib_latentfix.schedule import BLOG, apply
from support.sync_guard import NoHostSync

ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts")
SIZE = (1024, 640)


def _latent(b: int, h: int, w: int, seed: int, dtype=torch.float32, c: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, h, w, generator=g) * 2.0 + 0.5).to(dtype)


def _reference(x: torch.Tensor, weight: torch.Tensor | None) -> np.ndarray:
    """[B, 4 (mean, std, min, max), C] recomputed image by image, channel by channel; weight [B or 1, H, W]."""
    x = x.to(torch.float32)
    out = np.zeros((x.shape[0], 4, x.shape[1]), np.float32)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            v = x[i, c].flatten()
            if weight is None:
                out[i, :, c] = [v.mean(), v.std(unbiased=False), v.min(), v.max()]
                continue
            w = weight[min(i, weight.shape[0] - 1)].flatten().to(torch.float32)
            if not (w > 0).any():
                out[i, :, c] = math.nan
                continue
            mean = (v * w).sum() / w.sum()
            std = ((v - mean).square() * w).sum().div(w.sum()).sqrt()
            inside = v[w > 0]
            out[i, :, c] = [mean, std, inside.min(), inside.max()]
    return out


def _assert_stats(data: TraceData, step: int, before, after, weight=None) -> None:
    for side, x in ((BEFORE, before), (AFTER, after)):
        np.testing.assert_allclose(data.stats[step, :, side], _reference(x, weight), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------------
# the trace


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_stats_equal_recomputed_statistics(dtype):
    trace = Trace()
    calls = []
    for k, (h, w) in enumerate([(8, 8), (8, 8), (12, 16)]):  # H/W change like a hires pass
        before = _latent(3, h, w, k, dtype)
        after = apply(BLOG, before, 990.0 - 400 * k)
        t = torch.tensor([990.0 - 400 * k, 980.0 - 400 * k, 970.0 - 400 * k])
        trace.record(t, before, after, label="first pass" if k < 2 else "hires pass")
        calls.append((t, before, after))
    data = trace.finish()
    assert data.stats.shape == (3, 3, 2, 4, 4) and data.timesteps.shape == (3, 3)
    assert data.stats.dtype == np.float32 and len(data) == 3 and data.images == 3 and data.channels == 4
    assert data.labels == ("first pass", "first pass", "hires pass")
    for step, (t, before, after) in enumerate(calls):
        np.testing.assert_array_equal(data.timesteps[step], t.numpy())
        _assert_stats(data, step, before, after)
    assert data.last_before.dtype == torch.float32 and data.last_before.shape == (3, 4, 12, 16)
    torch.testing.assert_close(data.last_before, calls[-1][1].float())
    torch.testing.assert_close(data.last_after, calls[-1][2].float())


@pytest.mark.parametrize("mask_shape", ["[C,H,W]", "[B,1,H,W]", "[H,W]"])
def test_stats_inside_a_binary_mask(mask_shape):
    before, after = _latent(2, 8, 8, 1), _latent(2, 8, 8, 2)
    region = torch.zeros(8, 8)
    region[2:6, 1:5] = 1.0
    mask = {"[C,H,W]": region.expand(4, 8, 8), "[B,1,H,W]": region.expand(2, 1, 8, 8), "[H,W]": region}[mask_shape]
    trace = Trace()
    trace.record(torch.tensor([500.0, 500.0]), before, after, mask=mask)
    data = trace.finish()
    _assert_stats(data, 0, before, after, region[None])
    # the reference's weighted formulas are the plain ones on the masked pixels
    inside = before[0, 0][region > 0]
    np.testing.assert_allclose(data.stats[0, 0, BEFORE, :, 0],
                               [inside.mean(), inside.std(unbiased=False), inside.min(), inside.max()], rtol=1e-5)


def test_stats_with_a_soft_mask_and_an_empty_mask():
    before, after = _latent(2, 6, 6, 3), _latent(2, 6, 6, 4)
    weight = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    weight[0, 0, :3] = 0.0
    weight[1] = 0.0  # image 1: nothing to repaint
    trace = Trace()
    trace.record(torch.tensor([10.0, 10.0]), before, after, mask=weight)
    data = trace.finish()
    _assert_stats(data, 0, before, after, weight[:, 0])
    assert np.isfinite(data.stats[0, 0]).all() and np.isnan(data.stats[0, 1]).all()


def test_one_timestep_for_all_images():
    trace = Trace()
    x = _latent(2, 4, 4, 0)
    trace.record(321.0, x, x)
    trace.record(torch.tensor([123.0]), x, x)
    np.testing.assert_array_equal(trace.finish().timesteps, [[321.0, 321.0], [123.0, 123.0]])


def test_non_finite_values_are_recorded_as_they_are():
    before = _latent(2, 4, 4, 0)
    before[0, 1, 0, 0] = math.nan
    before[1, 2, 1, 1] = math.inf
    trace = Trace()
    trace.record(torch.tensor([5.0, 5.0]), before, before)
    s = trace.finish().stats[0, :, BEFORE]
    assert np.isnan(s[0, :, 1]).all() and np.isfinite(s[0, :, [0, 2, 3]]).all()
    assert s[1, 3, 2] == math.inf and np.isfinite(s[1, :, 0]).all()


def test_record_does_not_sync_with_the_host():
    trace = Trace()
    x16 = _latent(2, 8, 8, 0, torch.float16)
    mask = torch.ones(4, 8, 8)
    call = ModelCall(None, torch.tensor([900.0, 900.0, 800.0, 800.0]), _latent(4, 8, 8, 1), torch.tensor([0.1, 0.1, 0.3, 0.3]),
                     None)
    with NoHostSync() as guard:
        for k in range(3):
            x = _latent(2, 8, 8, k)
            trace.record(torch.tensor([999.0 - k, 998.0 - k]), x, apply(BLOG, x, 999.0 - k), label="first pass")
        trace.record(torch.tensor([10.0, 10.0]), x16, x16 * 0.5, mask=mask)
        trace.record(5.0, x, x, mask=mask[:1].expand(2, 1, 8, 8))
        trace.record_call(x, x * 0.9, call)
    assert guard.calls > 0
    assert len(trace) == 6 and len(trace.finish()) == 6


def test_record_call_takes_the_last_rows_and_records_eps_as_x0():
    x_in = _latent(4, 6, 6, 0)
    alpha_bar = torch.tensor([0.2, 0.2, 0.6, 0.6])
    call = ModelCall(None, torch.tensor([700.0, 700.0, 300.0, 300.0]), x_in, alpha_bar, None)
    eps_before, eps_after = _latent(2, 6, 6, 1), _latent(2, 6, 6, 2)
    trace = Trace()
    trace.record_call(eps_before, eps_after, call, label="first pass")
    trace.record_call(eps_before, eps_after, ModelCall(None, call.timesteps, x_in, None, None))  # x0 predictions
    data = trace.finish()
    np.testing.assert_array_equal(data.timesteps, [[300.0, 300.0], [300.0, 300.0]])
    _assert_stats(data, 0, eps_to_x0(x_in[2:], eps_before, alpha_bar[2:]), eps_to_x0(x_in[2:], eps_after, alpha_bar[2:]))
    _assert_stats(data, 1, eps_before, eps_after)


def test_last_latents_are_copies_of_the_last_call_only():
    trace = Trace()
    first, before, after = _latent(1, 4, 4, 0), _latent(1, 4, 4, 1), _latent(1, 4, 4, 2)
    trace.record(900.0, first, first)
    trace.record(800.0, before, after)
    expected = before.clone()
    before.copy_(after)  # the glue overwrites the prediction in place after observing it
    data = trace.finish()
    torch.testing.assert_close(data.last_before, expected)
    torch.testing.assert_close(data.last_after, after)


def test_kept_latents_are_from_the_last_call_that_changed_something():
    trace = Trace()
    x = [_latent(2, 4, 4, k) for k in range(4)]
    nan = torch.full((2, 4, 4, 4), math.nan)
    trace.record(900.0, x[0], x[0])  # nothing changed, but nothing else kept yet
    assert len(trace) == 1 and trace.finish().last_step == 0
    trace.record(600.0, x[1], x[2], label="changed")
    trace.record(300.0, x[3], x[3].clone(), label="unchanged")
    trace.record(0.0, nan, nan.clone(), label="unchanged NaN")
    data = trace.finish()
    assert data.last_step == 1
    torch.testing.assert_close(data.last_before, x[1])
    torch.testing.assert_close(data.last_after, x[2])
    trace.record(0.0, x[3][:, :, :2], x[3][:, :, :2])  # a new size (hires) replaces the kept pair
    data = trace.finish()
    assert data.last_step == 4 and data.last_before.shape == (2, 4, 2, 4)


def test_record_in_inference_mode_then_finish_outside():
    trace = Trace()
    with torch.inference_mode():
        x = _latent(1, 4, 4, 0)
        trace.record(torch.tensor([1.0]), x, x * 2)
    data = trace.finish()
    assert data.stats.shape == (1, 1, 2, 4, 4)
    np.testing.assert_allclose(data.stats[0, 0, AFTER, 0], data.stats[0, 0, BEFORE, 0] * 2, rtol=1e-5)


def test_empty_trace_and_bad_input():
    data = Trace().finish()
    assert len(data) == 0 and data.last_before is None and data.labels == () and data.last_step == -1
    trace = Trace()
    trace.record(1.0, _latent(2, 4, 4, 0), _latent(2, 4, 4, 0))
    with pytest.raises(ValueError, match="batch size"):
        trace.record(1.0, _latent(3, 4, 4, 0), _latent(3, 4, 4, 0))
    with pytest.raises(ValueError, match="channels"):
        trace.record(1.0, _latent(2, 4, 4, 0, c=3), _latent(2, 4, 4, 0, c=3))
    with pytest.raises(ValueError, match="before/after"):
        trace.record(1.0, _latent(2, 4, 4, 0), _latent(2, 4, 8, 0))


# --------------------------------------------------------------------------------------------------------
# JSON lines


def _sample_data() -> TraceData:
    trace = Trace()
    for k in range(3):
        x = _latent(2, 4, 4, k)
        x[1, 3, 0, 0] = math.nan if k == 2 else x[1, 3, 0, 0]
        trace.record(torch.tensor([900.0 - 300 * k, 890.0 - 300 * k]), x, x * 0.5, label=f"pass {k // 2}")
    return trace.finish()


def test_trace_records_round_trip_through_json(tmp_path):
    data = _sample_data()
    path = tmp_path / "new" / "dir" / "trace.jsonl"
    assert write_jsonl(path, trace_records(data, meta={"seed": 7})) == len(data) * data.images
    assert write_jsonl(str(path), trace_records(data)) == 6  # appends
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * len(data) * data.images
    records = [json.loads(line) for line in lines]
    for r in records[:6]:
        assert r["seed"] == 7
        k, i = r["step"], r["image"]
        assert r["timestep"] == pytest.approx(float(data.timesteps[k, i]))
        assert r["pass"] == data.labels[k]
        for side, name in ((BEFORE, "before"), (AFTER, "after")):
            for s, stat in enumerate(STAT_NAMES):
                expected = [None if math.isnan(v) else pytest.approx(float(v)) for v in data.stats[k, i, side, s]]
                assert r[name][stat] == expected
    assert [(r["step"], r["image"]) for r in records[:6]] == [(k, i) for k in range(3) for i in range(2)]
    assert records[5]["before"]["mean"][3] is None and "NaN" not in path.read_text()


def test_write_jsonl_to_an_open_file():
    buffer = io.StringIO()
    assert write_jsonl(buffer, trace_records(_sample_data())) == 6
    assert len([json.loads(line) for line in buffer.getvalue().splitlines()]) == 6
    assert list(trace_records(Trace().finish())) == []


# --------------------------------------------------------------------------------------------------------
# the chart


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
