"""lib_latentfix.trace: the per-step statistics recorded on the device, and the JSON lines written from them.

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

from lib_latentfix.runtime import ModelCall
from lib_latentfix.sigmas import eps_to_x0
from lib_latentfix.schedule import BLOG, apply
from lib_latentfix.trace import AFTER, BEFORE, STAT_NAMES, Trace, TraceData, TraceFileError, trace_records, write_jsonl
from support.sync_guard import NoHostSync
from support.trace_samples import latent as _latent
from support.trace_samples import sample_data as _sample_data


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
    for shape in ((2, 4, 0, 4), (2, 0, 4, 4)):
        with pytest.raises(ValueError, match="before/after must not have an empty"):
            Trace().record(1.0, torch.zeros(shape), torch.zeros(shape))


@pytest.mark.parametrize("value", [3e34, 1e37, 3e38])
@pytest.mark.parametrize("masked", [False, True])
def test_huge_finite_latents_get_finite_statistics(value, masked):
    """Values near float32's largest: every statistic is finite (a plain sum of them would overflow)."""
    x = torch.full((2, 4, 64, 64), value)
    x[:, :, 0, :] = -value / 3
    mask = torch.ones(1, 64, 64) if masked else None
    trace = Trace()
    trace.record(500.0, x, x * 0.5, mask=mask)
    data = trace.finish()
    assert np.isfinite(data.stats).all()
    _assert_stats_relative(data, x, x * 0.5)


def _assert_stats_relative(data, before, after) -> None:
    for side, x in ((BEFORE, before), (AFTER, after)):
        v = x.double().flatten(2)  # float64: no overflow in the reference
        std, mean = torch.std_mean(v, dim=-1, correction=0)
        expected = torch.stack((mean, std, v.amin(-1), v.amax(-1)), dim=-2).numpy()
        np.testing.assert_allclose(data.stats[0, :, side].astype(np.float64), expected, rtol=1e-5)


# --------------------------------------------------------------------------------------------------------
# JSON lines


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


@pytest.mark.parametrize("where", ["parent is a file", "folder", "read-only file"])
def test_unwritable_trace_path_raises_trace_file_error_naming_it(tmp_path, where):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    if where == "parent is a file":
        path = blocker / "trace.jsonl"
    elif where == "folder":
        path = tmp_path  # a folder cannot be opened for appending
    else:
        path = tmp_path / "locked.jsonl"
        path.write_text("")
        path.chmod(0o444)
        if os.access(path, os.W_OK):
            pytest.skip("running as a user who can write read-only files")
    with pytest.raises(TraceFileError) as caught:
        write_jsonl(path, trace_records(_sample_data()))
    assert isinstance(caught.value, OSError)
    assert str(path) in str(caught.value) and "trace file" in str(caught.value)
    assert caught.value.path == str(path) and caught.value.__cause__ is not None


def test_unwritable_open_file_raises_trace_file_error():
    class Full(io.StringIO):
        name = "/dev/full"

        def writelines(self, lines):
            raise OSError(28, "No space left on device")

    with pytest.raises(TraceFileError, match="/dev/full.*No space left"):
        write_jsonl(Full(), trace_records(_sample_data()))


def test_a_trace_file_error_is_not_a_drawing_error():
    """The glue tells the two apart by type: a trace-file failure is an OSError of its own kind."""
    error = TraceFileError("/x/trace.jsonl", FileNotFoundError(2, "No such file or directory"))
    assert isinstance(error, OSError) and not isinstance(error, (ValueError, FileNotFoundError))
    assert str(error) == "the trace file '/x/trace.jsonl' could not be written: No such file or directory"
    assert error.errno == 2

