"""Whole-run benchmark on the stand-in host: what the extension adds to a real txt2img run, next to the post's
callback looped per image over the same timesteps, measured side by side in one run (a report, not a test).

    python tests/webui_standin/bench_run.py            # 1024x1024, batch 4, 30 Euler steps, Post defaults
    python tests/webui_standin/bench_run.py --quick    # small and short: a smoke test

Runs alternate (off, on, off, on, …) so machine noise hits both alike; medians are reported. The stand-in's model
is a cheap deterministic toy, so "run off" is mostly the sampler's own arithmetic: the added time is what counts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]

import torch  # noqa: E402

from webui_standin import harness  # noqa: E402

from lib_latentfix import bench  # noqa: E402
from lib_latentfix.arguments import to_positional  # noqa: E402
from lib_latentfix.settings import DEFAULTS  # noqa: E402
from lib_latentfix.sigmas import sigma_to_t  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    size, batch, steps, reps = (256, 2, 8, 2) if args.quick else (1024, 4, 30, args.reps)
    heap = bench.steady_heap()  # as the micro-benchmark: page faults of fresh allocations are not our cost
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    on, off = to_positional(replace(DEFAULTS, enabled=True)), to_positional(DEFAULTS)
    kw = dict(width=size, height=size, batch_size=batch, steps=steps, sampler="Euler", seed=1)
    events = host.record_callbacks(keep_tensors=False)
    host.txt2img(off, **kw)  # warm-up, and the timesteps of the run
    t = [float(sigma_to_t(e["sigma"][-1:], host.model.alphas_cumprod)) for e in events if e["kind"] == "cfg_denoiser"]
    events.clear()
    inside = _time_our_callbacks()
    post_state = {"on": False}
    in_post = _install_post_callback(t, post_state)
    times = {"off": [], "on": []}
    ours, theirs = [], []
    for _ in range(reps):  # interleaved, so that machine noise hits every variant alike
        for name, script_args in (("off", off), ("on", on), ("post", off)):
            inside.clear()
            in_post.clear()
            post_state["on"] = name == "post"
            start = time.perf_counter()
            host.txt2img(script_args, **kw)
            elapsed = time.perf_counter() - start
            if name in times:
                times[name].append(elapsed)
            if name == "on":
                ours.append(sum(inside))
            if name == "post":
                theirs.append(sum(in_post))
    post_state["on"] = False
    glue_per_run, post_in_host = statistics.median(ours), statistics.median(theirs)
    calls = len(t)
    x = bench.make_latent(batch, size // 8, torch.device("cpu"))
    post = []
    for _ in range(reps):
        start = time.perf_counter()
        for timestep in t:
            bench.post_callback_looped(timestep)(x)
        post.append(time.perf_counter() - start)
    run_off, run_on, post_loop = (statistics.median(v) for v in (times["off"], times["on"], post))
    added = run_on - run_off
    print(f"stand-in txt2img {size}x{size}, batch {batch}, {steps} Euler steps, Post defaults; torch threads "
          f"{torch.get_num_threads()}; medians of {reps}; {heap}")
    print(f"  run with the extension off : {run_off * 1e3:9.1f} ms")
    print(f"  run with the extension on  : {run_on * 1e3:9.1f} ms")
    print(f"  added by the extension     : {added * 1e3:9.1f} ms (difference of two noisy run times)")
    print(f"  time inside LatentFix's callbacks per run: {glue_per_run * 1e3:9.2f} ms over {calls:.0f} model calls "
          f"({glue_per_run / calls * 1e6:.0f} µs per call)")
    print(f"  post's callback looped per image over the same {len(t)} timesteps, in the host's after-CFG callback: "
          f"{post_in_host * 1e3:9.2f} ms")
    print(f"  the same loop on one latent outside the host (its data stays in cache): {post_loop * 1e3:9.2f} ms")
    for what, value in (("time inside LatentFix's callbacks", glue_per_run), ("added time (on − off)", added)):
        ratio = value / post_in_host
        print(f"  [{'PASS' if ratio <= 1 / 3 else 'MISS'}] {what} ≤ 1/3 of the post's callback in the host: "
              f"measured {ratio:.2f}×")
    return 0


def _install_post_callback(timesteps: list, state: dict) -> list[float]:
    """An after-CFG callback that runs the post's callback looped per image (on the prediction, as LatentFix
    corrects it), at the call's own timestep, while ``state["on"]``; returns the list its durations go to."""
    import modules.script_callbacks as sc

    spent: list[float] = []
    calls = {"n": 0}

    def post_callback(params):
        if not state["on"]:
            return
        start = time.perf_counter()
        t = timesteps[calls["n"] % len(timesteps)]
        calls["n"] += 1
        params.x = bench.post_callback_looped(t)(params.x)
        spent.append(time.perf_counter() - start)

    sc.callback_map["callbacks_cfg_after_cfg"].append(sc.ScriptCallback("post.py", post_callback, "post"))
    return spent


def _time_our_callbacks() -> list[float]:
    """Wrap LatentFix's CFG callbacks so each call's duration is recorded (the glue's own time per model call)."""
    from support.glue import wrap_our_callbacks

    spent: list[float] = []

    def timing(inner, _category):
        def timed(params):
            start = time.perf_counter()
            inner(params)
            spent.append(time.perf_counter() - start)
        return timed

    wrap_our_callbacks(timing)
    return spent


if __name__ == "__main__":
    sys.exit(main())
