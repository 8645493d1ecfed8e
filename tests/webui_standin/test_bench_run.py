"""Smoke test of the whole-run benchmark (nothing about speed is asserted: it is a report)."""

import importlib.util
import os


def _bench_run():
    """The benchmark script, loaded as a module."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_run.py")
    spec = importlib.util.spec_from_file_location("bench_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_whole_run_prints_both_comparisons(capsys):
    module = _bench_run()
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "time inside LatentFix's callbacks per run" in out and out.count("] ") >= 2
    assert "as bare torch code" in out and "by the windows open at it" in out and "early center" in out


def test_bare_floor_computes_what_the_extension_computes():
    """The floor row is only a floor if it does the same corrections: it must equal the Post defaults to rounding."""
    import torch

    from benchmarks import bench
    from lib_latentfix.schedule import BLOG, apply

    module = _bench_run()
    x = bench.make_latent(3, 32, torch.device("cpu"))
    for t in (999.0, 960.0, 800.0, 500.0, 50.0, 0.0):
        torch.testing.assert_close(module.bare_post_defaults(t)(x.clone()), apply(BLOG, x, t), rtol=1e-5, atol=1e-5)
