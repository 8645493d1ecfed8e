"""Smoke test of the whole-run benchmark (nothing about speed is asserted: it is a report)."""

import importlib.util
import os


def test_quick_whole_run_prints_both_comparisons(capsys):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_run.py")
    spec = importlib.util.spec_from_file_location("bench_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "time inside LatentFix's callbacks per run" in out and out.count("] ") >= 2
