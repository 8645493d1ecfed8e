"""This checkout's WebUI glue call next to an earlier revision's, in one process (the earlier one under a new name).

Run from the repository root::

    python -m benchmarks.versus 000b913              # 0.1.0's code; B = 8 at [8, 4, 128, 128] float32, CPU
    python -m benchmarks.versus 000b913 --budget 3   # longer: steadier medians

The earlier revision's ``lib_latentfix`` is taken from git (``git archive``) into a temporary folder as the package
``lib_latentfix_then``, so both run side by side, round-robin, as :mod:`benchmarks.bench` measures, together with the
post's callback looped per image. Each side's call is the one the WebUI glue makes after guidance (Post defaults,
timesteps announced before the run). The revision's ``runtime`` must have this checkout's Job interface (``Job``,
``HostTimesteps``, ``ModelCall``, ``begin_pass``/``begin_call``/``correct``/``end_call``): 0.1.0 onwards. Its Job is
started afresh every 32 calls (0.1.0 kept one tensor per call until a generation ended; a real generation is short).

A report, not a test: it exits 0 whatever the figures are.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import replace
from typing import Callable, Optional, Sequence

import torch

from benchmarks import bench

THEN = "lib_latentfix_then"
TIMESTEPS = (999.0, 800.0, 50.0)
FRESH_JOB_EVERY = 32


def import_revision(rev: str, folder: str) -> object:
    """``lib_latentfix`` as it was at ``rev``, imported as :data:`THEN` from ``folder``."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "lib_latentfix"], cwd=bench._REPO,
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # (Python ≥ 3.11.4: refuse links and paths out of the folder)
            tar.extractall(folder, filter="data")
        else:
            tar.extractall(folder)
    os.rename(os.path.join(folder, "lib_latentfix"), os.path.join(folder, THEN))
    sys.path.insert(0, folder)
    return importlib.import_module(THEN)


def glue_call_of(package: str, t: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The after-guidance glue call of ``package`` (``lib_latentfix`` or :data:`THEN`) at timestep ``t``."""
    runtime = importlib.import_module(f"{package}.runtime")
    settings = importlib.import_module(f"{package}.settings")
    extra = {"correction_point": settings.AFTER_CFG} if "correction_point" in settings.Settings.__dataclass_fields__ \
        else {}
    state = {"job": None, "calls": 0}

    def run(x: torch.Tensor) -> torch.Tensor:
        if state["calls"] % FRESH_JOB_EVERY == 0:
            state["job"] = runtime.Job(replace(settings.DEFAULTS, enabled=True, **extra), version="versus",
                                       report=lambda _: None)
            state["job"].begin_pass("run", runtime.HostTimesteps((t,)))
        state["calls"] += 1
        job = state["job"]
        job.begin_call("run", 0, lambda steps, host_t: runtime.ModelCall(steps, None, x, None, None, host_t))
        out = job.correct(settings.AFTER_CFG, x)
        job.end_call()
        return x if out is None else out

    return run


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.versus", description=__doc__.split("\n\n")[0])
    p.add_argument("rev", help="the earlier revision (a commit, tag or branch)")
    p.add_argument("--batch", type=int, default=8, help="images per latent (default 8)")
    p.add_argument("--size", type=int, default=128, help="latent height and width (default 128)")
    p.add_argument("--budget", type=float, default=1.5, help="seconds of samples per op (default 1.5)")
    args = p.parse_args(argv)
    heap = bench.steady_heap()
    with tempfile.TemporaryDirectory() as folder:
        import_revision(args.rev, folder)
        ops = [(bench.CLONE, lambda x: x.clone())]
        for t in TIMESTEPS:
            ops += [(f"now, t={t:g}", glue_call_of("lib_latentfix", t)), (f"{args.rev}, t={t:g}", glue_call_of(THEN, t)),
                    (f"post, t={t:g}", bench.post_callback_looped(t))]
        x = bench.make_latent(args.batch, args.size, torch.device("cpu"))
        results = bench.measure(ops, x, repeats=None, budget_s=args.budget, sample_s=0.002, warmup=5)
    print(f"benchmarks.versus — this checkout against {args.rev}: the after-guidance glue call, Post defaults, "
          f"[{args.batch}, 4, {args.size}, {args.size}] float32, CPU, torch threads {torch.get_num_threads()}; {heap}")
    for name, m in results.items():
        print(f"  {name:24s} {m.median_us:9.1f} µs   IQR {(m.p75_us - m.p25_us) / m.median_us * 100:4.0f} %")
    for t in TIMESTEPS:
        post = results[f"post, t={t:g}"].median_us
        print(f"  t = {t:g}: post's loop / now {post / results[f'now, t={t:g}'].median_us:.2f}×, "
              f"post's loop / {args.rev} {post / results[f'{args.rev}, t={t:g}'].median_us:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
