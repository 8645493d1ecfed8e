"""Smoke test of the side-by-side comparison with an earlier revision (nothing is timed or asserted about speed)."""

import subprocess

import pytest

from benchmarks import bench, versus


def _in_git() -> bool:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=bench._REPO, capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _in_git(), reason="needs the repository's git history")
def test_a_revision_runs_beside_this_checkout_and_both_are_reported(capsys):
    assert versus.main(["HEAD", "--batch", "2", "--size", "8", "--budget", "0.01"]) == 0
    out = capsys.readouterr().out
    for t in ("999", "800", "50"):
        assert f"now, t={t}" in out and f"HEAD, t={t}" in out and f"post, t={t}" in out
        assert f"t = {t}: post's loop / now" in out
