"""Smoke test of the benchmark (nothing is timed or asserted about speed); its baseline is the tests' post reference."""

import json

import pytest
import torch

from benchmarks import bench
from support import post_reference as post

POST_FUNCTIONS = ["soft_clamp_tensor", "center_tensor", "maximize_tensor"]


def test_quick_run_writes_every_operation_for_every_batch(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--device", "cpu", "--batches", "1", "4", "8", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PASS" in printed or "MISS" in printed

    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["batches"] == [1, 4, 8]
    assert report["threads"] == torch.get_num_threads()
    results = report["devices"]["cpu"]["results"]
    names = [name for name, _ in bench.operations()]
    assert len(names) == len(set(names)) >= 9
    for b in ("1", "4", "8"):
        assert set(results[b]) == set(names)
        for name in names:
            m = results[b][name]
            assert m["median_us"] > 0 and m["p25_us"] > 0 and m["p75_us"] > 0, (b, name)
            assert m["samples"] >= 1 and m["calls_per_sample"] >= 1
    targets = report["devices"]["cpu"]["targets"]
    assert len(targets) == 4  # two targets, for one shared timestep and for per-image timesteps
    assert all(t["measured"] > 0 and isinstance(t["pass"], bool) for t in targets)


@pytest.mark.parametrize("name", POST_FUNCTIONS)
def test_baseline_is_the_one_copy_of_the_posts_code(name):
    assert getattr(bench, name) is getattr(post, name)


@pytest.mark.parametrize("seed", [0, 1])
def test_looped_baselines_apply_the_posts_code_to_each_image(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 24, 24, generator=g) * 2.5 + 0.3  # outliers beyond 4, so the soft clamp acts

    # the looped late window is the post's center + maximize applied to each image on its own
    expected = torch.cat([post.maximize_tensor(post.center_tensor(x[i : i + 1].clone(), 0.6, 1.0)) for i in range(3)])
    before = x.clone()
    torch.testing.assert_close(bench.post_late_window_looped(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(x, before, rtol=0, atol=0)  # the baseline works on clones

    expected = torch.cat([post.soft_clamp_tensor(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(bench.post_soft_clamp_looped(x), expected, rtol=0, atol=0)
