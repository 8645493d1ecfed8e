"""Whole-run benchmark on the stand-in host: what the extension adds to a real txt2img run, next to the post's
callback looped per image over the same timesteps, measured side by side in one run (a report, not a test).

    python tests/webui_standin/bench_run.py            # 1024x1024, batch 4, 30 Euler steps, Post defaults
    python tests/webui_standin/bench_run.py --quick    # small and short: a smoke test

Runs alternate (off, on, post, bare, off, on, …) so machine noise hits all alike; medians are reported. The
stand-in's model is a cheap deterministic toy, so "run off" is mostly the sampler's own arithmetic: the added time
is what counts. "bare" is the same corrections written as bare torch code (no guards, no bookkeeping): a floor for
this math as separate torch operations in the host's loop. A table splits the time by the windows open at each call.
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
from lib_latentfix.settings import DEFAULTS, PARTS  # noqa: E402
from lib_latentfix.sigmas import sigma_to_t  # noqa: E402
from support.positional import to_positional  # noqa: E402


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
    # per variant, one entry per model call: the time spent in its callbacks
    variant = {"now": None}
    spent = {"on": _time_our_callbacks(),
             "post": _install_after_cfg("post", t, bench.post_callback_looped, variant),
             "bare": _install_after_cfg("bare", t, bare_post_defaults, variant)}
    run_times: dict[str, list[float]] = {"off": [], "on": []}
    per_call: dict[str, list[list[float]]] = {name: [[] for _ in t] for name in spent}
    for _ in range(reps):  # interleaved, so that machine noise hits every variant alike
        for name, script_args in (("off", off), ("on", on), ("post", off), ("bare", off)):
            for entries in spent.values():
                entries.clear()
            variant["now"] = name
            start = time.perf_counter()
            host.txt2img(script_args, **kw)
            elapsed = time.perf_counter() - start
            if name in run_times:
                run_times[name].append(elapsed)
            for i, value in enumerate(spent.get(name, [])[:len(t)]):
                per_call[name][i].append(value)
    variant["now"] = None
    run = {name: sum(statistics.median(samples) for samples in calls) for name, calls in per_call.items()}
    x = bench.make_latent(batch, size // 8, torch.device("cpu"))
    post = []
    for _ in range(reps):
        start = time.perf_counter()
        for timestep in t:
            bench.post_callback_looped(timestep)(x)
        post.append(time.perf_counter() - start)
    run_off, run_on, post_loop = (statistics.median(v) for v in (run_times["off"], run_times["on"], post))
    added = run_on - run_off
    calls = len(t)
    print(f"stand-in txt2img {size}x{size}, batch {batch}, {steps} Euler steps, Post defaults; torch threads "
          f"{torch.get_num_threads()}; medians of {reps}; {heap}")
    print(f"  run with the extension off : {run_off * 1e3:9.1f} ms")
    print(f"  run with the extension on  : {run_on * 1e3:9.1f} ms")
    print(f"  added by the extension     : {added * 1e3:9.1f} ms (difference of two noisy run times)")
    print(f"  time inside LatentFix's callbacks per run: {run['on'] * 1e3:9.2f} ms over {calls} model calls "
          f"({run['on'] / calls * 1e6:.0f} µs per call)")
    print(f"  post's callback looped per image over the same {calls} timesteps, in the host's after-CFG callback: "
          f"{run['post'] * 1e3:9.2f} ms")
    print(f"  the same loop on one latent outside the host (its data stays in cache): {post_loop * 1e3:9.2f} ms")
    print(f"  the same corrections as bare torch code (fewest operations, no guards), after CFG: "
          f"{run['bare'] * 1e3:9.2f} ms")
    _print_by_window(t, per_call, replace(DEFAULTS, enabled=True).parts())
    for what, value in (("time inside LatentFix's callbacks", run["on"]), ("added time (on − off)", added)):
        ratio = value / run["post"]
        print(f"  [{'PASS' if ratio <= 1 / 3 else 'MISS'}] {what} ≤ 1/3 of the post's callback in the host: "
              f"measured {ratio:.2f}×")
    return 0


def _print_by_window(timesteps: list, per_call: dict, parts) -> None:
    """Each variant's median time per model call, grouped by the windows of ``parts`` (the settings' named steps)
    open at the call."""
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(timesteps):
        open_ = [PARTS[name] for name, step in parts if step.is_active_at(t)]
        groups.setdefault(" + ".join(open_) or "no window", []).append(i)
    print("  µs per model call, by the windows open at it   calls     ours     post     bare")
    for label, calls in groups.items():
        cells = [statistics.median(statistics.median(per_call[name][i]) for i in calls) * 1e6
                 for name in ("on", "post", "bare")]
        print(f"    {label:44s} {len(calls):5d} " + " ".join(f"{c:8.0f}" for c in cells))


def _install_after_cfg(name: str, timesteps: list, make, variant: dict) -> list[float]:
    """An after-CFG callback that runs ``make(t)`` (a function of the guided prediction, as LatentFix corrects it) at
    each model call's own timestep while ``variant["now"] == name``; returns the list its durations go to."""
    import modules.script_callbacks as sc

    spent: list[float] = []
    at_t = [make(t) for t in timesteps]

    def after_cfg(params):
        if variant["now"] != name:
            return
        start = time.perf_counter()
        params.x = at_t[len(spent) % len(at_t)](params.x)
        spent.append(time.perf_counter() - start)

    sc.callback_map["callbacks_cfg_after_cfg"].append(sc.ScriptCallback(name, after_cfg, name))
    return spent


def bare_post_defaults(t: float):
    """The Post-defaults corrections at timestep ``t`` as bare torch code: the fewest operations we found for a batch
    without a host sync, and nothing else (no NaN/inf guards, no checks, no bookkeeping, no strength). A floor for
    what this math costs as separate torch operations in the host's loop, whoever writes it."""
    soft, early, late = t > 950, t > 700, 1 < t < 100
    if not (early or late):
        return lambda x: x
    early_mix = _center_mix(0.8, 0.8)
    late_mix = _center_mix(0.6, 1.0)
    colour = torch.tensor([1.0, 1.0, 1.0, 0.0])

    def correct(x):
        if soft:
            huge, tiny = torch.finfo(x.dtype).max, torch.finfo(x.dtype).tiny
            low, high = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
            largest = torch.maximum(low.amin((1, 2, 3), keepdim=True).neg_(), high.amax((1, 2, 3), keepdim=True))
            bound = largest * 0.998
            thr = bound * 0.998
            applies = largest >= 4.0
            room = torch.where(applies, bound - thr, 0.0)
            thr = torch.where(applies, thr, huge)
            over = torch.div(room, (high - thr).clamp_min_(tiny)).sub_(1.0)
            under = torch.div(room, (low.neg_() - thr).clamp_min_(tiny)).sub_(1.0)
            out = torch.addcmul(x, (x - thr).clamp_(min=0.0), over)
            x = out.addcmul_((x + thr).clamp_(max=0.0), under)
        flat = x.flatten(2)
        mean = flat.mean(2)
        if early:
            return x + (mean @ early_mix)[:, :, None, None]
        offset = mean @ late_mix
        largest = torch.maximum((flat.amin(2) + offset).amin(1).neg_(), (flat.amax(2) + offset).amax(1))
        scale = (4.0 / largest)[:, None] * colour + (1.0 - colour)
        return x.mul(scale[:, :, None, None]).add_((offset * scale)[:, :, None, None])

    return correct


def _center_mix(channel_shift: float, full_shift: float) -> torch.Tensor:
    """``mean @ M`` = what the post's center adds to each channel (all four channels listed)."""
    eye = torch.eye(4)
    return -(channel_shift * eye + full_shift * (1.0 - channel_shift) / 4.0 * torch.ones(4, 4))


def _time_our_callbacks() -> list[float]:
    """Wrap LatentFix's CFG callbacks so that each model call's time in them is recorded (the glue's own time per
    model call: its three callbacks together, a new entry at each ``on_cfg_denoiser``)."""
    from support.glue import wrap_our_callbacks

    spent: list[float] = []

    def timing(inner, category):
        def timed(params):
            start = time.perf_counter()
            inner(params)
            elapsed = time.perf_counter() - start
            if category == "cfg_denoiser":
                spent.append(elapsed)
            else:
                spent[-1] += elapsed
        return timed

    wrap_our_callbacks(timing)
    return spent


if __name__ == "__main__":
    sys.exit(main())
