"""Micro-benchmark: our filters and schedule windows next to the source post's code, per batch size.

Run from the repository root::

    python -m benchmarks.bench                      # B = 1, 4, 8 at [B, 4, 128, 128] float32, CPU (+ CUDA)
    python -m benchmarks.bench --quick              # tiny sizes, few repeats: a smoke test
    python -m benchmarks.bench --device cpu --json bench.json

Every operation is measured in the same run, round-robin (one sample of each candidate in turn, many
rounds), so that machine noise hits all of them alike; the table shows the median time per call. ``clone``
(one ``x.clone()``) is the memory floor: any filter that returns a new tensor must at least read and write
the latent once. The post's functions are timed looped over the images of the batch (its center and
maximize only touch image 0, so per image means calling them on ``x[i:i+1]``), on clones, since they write
into their input. The post's code is not shipped: its behaviour is the tests' reference,
``tests/support/post_reference.py``, which this bench imports (it lives outside the library for that reason).

This is a report, not a test: it exits 0 whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (_REPO, os.path.join(_REPO, "tests")):  # lib_latentfix, and the tests' reference (support/)
    if _path not in sys.path:
        sys.path.append(_path)

from lib_latentfix.filters import center, maximize, soft_clamp  # noqa: E402
from lib_latentfix.schedule import BLOG, Schedule, apply  # noqa: E402
from support.post_reference import center_tensor, maximize_tensor, soft_clamp_tensor  # noqa: E402  the baseline

Tensor = torch.Tensor


def post_late_window_looped(x: Tensor) -> Tensor:
    """The post's late window (center_tensor(0.6, 1.0), then maximize_tensor) on each image, on clones."""
    return torch.cat([maximize_tensor(center_tensor(x[i : i + 1].clone(), 0.6, 1.0)) for i in range(x.shape[0])])


def post_early_window_looped(x: Tensor) -> Tensor:
    """The post's callback at t > 950 (adaptive soft clamp, then center(0.8, 0.8)) on each image, on clones."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        threshold = max(xi.max(), abs(xi.min())) * 0.998
        xi = soft_clamp_tensor(xi, threshold * 0.998, threshold)
        out.append(center_tensor(xi.clone(), 0.8, 0.8))
    return torch.cat(out)


def post_soft_clamp_looped(x: Tensor) -> Tensor:
    """The post's soft clamp (default limits) on each image."""
    return torch.cat([soft_clamp_tensor(x[i : i + 1]) for i in range(x.shape[0])])


LATE = Schedule("late window", BLOG.steps[2:])
GLUE_TIMESTEPS = (999.0, 800.0, 500.0, 50.0)


def post_callback_looped(t: float) -> Callable[[Tensor], Tensor]:
    """The post's whole callback at timestep ``t`` (its schedule, as its own code tests it), on each image, on
    clones. Outside every window it does nothing at all."""

    def run(x: Tensor) -> Tensor:
        if not (t > 700 or 1 < t < 100):
            return x
        out = []
        for i in range(x.shape[0]):
            xi = x[i : i + 1].clone()
            if t > 950:
                threshold = max(xi.max(), abs(xi.min())) * 0.998
                xi = soft_clamp_tensor(xi, threshold * 0.998, threshold)
            if t > 700:
                xi = center_tensor(xi, 0.8, 0.8)
            if 1 < t < 100:
                xi = center_tensor(xi, 0.6, 1.0)
                xi = maximize_tensor(xi)
            out.append(xi)
        return torch.cat(out)

    return run


def glue_call(t: float) -> Callable[[Tensor], Tensor]:
    """What the WebUI glue does for one model call at timestep ``t`` with the Post-defaults settings: the job decides
    on the host (the timesteps were announced before the sampler run) and corrects the guided prediction."""
    from dataclasses import replace as _replace

    from lib_latentfix.runtime import HostTimesteps, Job
    from lib_latentfix.settings import AFTER_CFG, DEFAULTS

    job = Job(_replace(DEFAULTS, enabled=True, correction_point=AFTER_CFG), version="bench", report=print)
    job.begin_pass("run", HostTimesteps((t,)))

    return _one_model_call(job, lambda x: x)


def _one_model_call(job, rows_of: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """One model call through ``job`` as the WebUI glue makes it: the prediction is ``x``, the call's latent rows
    ``rows_of(x)``."""
    from lib_latentfix.runtime import ModelCall
    from lib_latentfix.settings import AFTER_CFG

    def run(x: Tensor) -> Tensor:
        rows = rows_of(x)
        job.begin_call("run", 0, lambda steps, host_t: ModelCall(steps, None, rows, None, None, host_t))
        out = job.correct(AFTER_CFG, x)
        job.end_call()
        return x if out is None else out

    return run


def latent_call(t: float) -> Callable[[Tensor], Tensor]:
    """The same model call at the latent point (the default): an Euler step of a 30-step schedule from ``t`` (to
    t − 34.4), its latent filtered as the post does and the prediction rewritten to land there."""
    from dataclasses import replace as _replace

    from lib_latentfix.landing import EULER, k_diffusion_landings
    from lib_latentfix.runtime import HostTimesteps, Job
    from lib_latentfix.settings import DEFAULTS
    from lib_latentfix.sigmas import t_to_sigma

    sigmas = t_to_sigma(torch.tensor([t, max(t - 34.4, 0.0)]))
    landings = k_diffusion_landings(EULER, torch.cat([sigmas, torch.zeros(1)]))[:1]
    job = Job(_replace(DEFAULTS, enabled=True), version="bench", report=print)
    job.begin_pass("run", HostTimesteps((t,), landings=landings))
    latents: dict[tuple, Tensor] = {}

    def rows_of(x: Tensor) -> Tensor:  # the sampler's latent rows beside the prediction, made once per shape
        key = (tuple(x.shape), x.device)
        if key not in latents:
            latents[key] = x * 3.0
        return latents[key]

    return _one_model_call(job, rows_of)


def device_call(t: float) -> Callable[[Tensor], Tensor]:
    """The same call when the host cannot announce the timesteps: the windows are tested on the device."""
    return lambda x: apply(BLOG, x, torch.full((x.shape[0],), t, device=x.device))

CLONE = "clone (memory floor)"
OUR_LATE = "ours: BLOG late window (t=50)"
OUR_LATE_WEBUI = "ours: late window, per-image t tensor"
POST_LATE = "post: late window, looped"


def operations() -> list[tuple[str, Callable[[Tensor], Tensor]]]:
    """The candidates, in table order."""
    return [
        (CLONE, lambda x: x.clone()),
        ("ours: soft_clamp", lambda x: soft_clamp(x)),
        ("ours: center(0.6, 1.0)", lambda x: center(x, 0.6, 1.0)),
        ("ours: maximize", lambda x: maximize(x)),
        (OUR_LATE, lambda x: apply(LATE, x, 50.0)),
        # what the WebUI glue does: one timestep per image, as a tensor on the latent's device
        (OUR_LATE_WEBUI, lambda x: apply(LATE, x, torch.full((x.shape[0],), 50.0, device=x.device))),
        ("ours: BLOG full (t=999)", lambda x: apply(BLOG, x, 999.0)),
        ("ours: BLOG full, per-image t tensor", lambda x: apply(BLOG, x, torch.full((x.shape[0],), 999.0, device=x.device))),
        (POST_LATE, post_late_window_looped),
        ("post: soft_clamp, looped", post_soft_clamp_looped),
        ("post: t=999 window, looped", post_early_window_looped),
        *[(f"glue call, t={t:g}", glue_call(t)) for t in GLUE_TIMESTEPS],
        *[(f"glue call at the latent point, t={t:g}", latent_call(t)) for t in GLUE_TIMESTEPS],
        *[(f"post callback looped, t={t:g}", post_callback_looped(t)) for t in GLUE_TIMESTEPS],
        *[(f"device-tested windows, t={t:g}", device_call(t)) for t in GLUE_TIMESTEPS],
    ]


# --------------------------------------------------------------------------------------------------------
# timing


def make_latent(batch: int, size: int, device: torch.device, seed: int = 0) -> Tensor:
    """A latent-like input: unit noise with a colour cast, scaled so the soft clamp has outliers to work on."""
    g = torch.Generator().manual_seed(seed)
    cast = torch.tensor([0.5, -1.0, 1.5, 0.2])[None, :, None, None]
    x = torch.randn(batch, 4, size, size, generator=g) * 1.5 + cast
    return x.to(device)


@dataclass
class Measurement:
    median_us: float
    p25_us: float
    p75_us: float
    samples: int
    calls_per_sample: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_calls(fn: Callable[[Tensor], Tensor], x: Tensor, calls: int, device: torch.device) -> float:
    """Seconds per call over ``calls`` back-to-back calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    _sync(device)
    return (time.perf_counter() - start) / calls


def measure(
    ops: Sequence[tuple[str, Callable[[Tensor], Tensor]]],
    x: Tensor,
    *,
    repeats: Optional[int],
    budget_s: float,
    sample_s: float,
    warmup: int,
) -> dict[str, Measurement]:
    """Median time per call of each op on ``x``, sampling the ops round-robin.

    Each op gets ``calls`` back-to-back calls per sample, chosen so one sample lasts about ``sample_s``
    (so timer overhead is negligible even for tiny ops). The number of rounds is ``repeats`` if given,
    else enough for the slowest op to get about ``budget_s`` of samples (at least 15 rounds).
    """
    device = x.device
    calls: dict[str, int] = {}
    guess: dict[str, float] = {}
    for name, fn in ops:
        for _ in range(warmup):
            fn(x)
        once = min(_time_calls(fn, x, 1, device) for _ in range(3))
        calls[name] = max(1, int(sample_s / max(once, 1e-9)))
        guess[name] = once * calls[name]
    if repeats is None:
        repeats = max(15, min(2000, math.ceil(budget_s / max(guess.values()))))
    samples: dict[str, list[float]] = {name: [] for name, _ in ops}
    for _ in range(repeats):
        for name, fn in ops:
            samples[name].append(_time_calls(fn, x, calls[name], device))
    result = {}
    for name, values in samples.items():
        q = statistics.quantiles(values, n=4) if len(values) >= 2 else values * 3
        result[name] = Measurement(
            median_us=statistics.median(values) * 1e6,
            p25_us=q[0] * 1e6,
            p75_us=q[2] * 1e6,
            samples=len(values),
            calls_per_sample=calls[name],
        )
    return result


# --------------------------------------------------------------------------------------------------------
# report


def run_device(device: torch.device, args: argparse.Namespace) -> dict:
    ops = operations()
    per_batch: dict[int, dict[str, Measurement]] = {}
    for b in args.batches:
        x = make_latent(b, args.size, device)
        per_batch[b] = measure(
            ops, x, repeats=args.repeats, budget_s=args.budget, sample_s=args.sample, warmup=args.warmup
        )
    return {"ops": [name for name, _ in ops], "results": per_batch}


def format_table(device: torch.device, data: dict, batches: Sequence[int]) -> str:
    results: dict[int, dict[str, Measurement]] = data["results"]
    name_w = max(len(n) for n in data["ops"]) + 2
    cols = [f"B={b} µs" for b in batches] + [f"B={b} /clone" for b in batches]
    head = "operation".ljust(name_w) + "".join(c.rjust(12) for c in cols)
    lines = [head, "-" * len(head)]
    for name in data["ops"]:
        row = name.ljust(name_w)
        row += "".join(f"{results[b][name].median_us:12.1f}" for b in batches)
        row += "".join(f"{results[b][name].median_us / results[b][CLONE].median_us:11.2f}x" for b in batches)
        lines.append(row)
    lines.append("-" * len(head))
    row = "speed-up: post late looped / ours".ljust(name_w) + " " * (12 * len(batches))
    row += "".join(
        f"{results[b][POST_LATE].median_us / results[b][OUR_LATE].median_us:11.2f}x" for b in batches
    )
    lines.append(row)
    spread = ", ".join(
        f"B={b}: {max((m.p75_us - m.p25_us) / m.median_us for m in results[b].values()) * 100:.0f}%"
        for b in batches
    )
    samples = ", ".join(f"B={b}: {min(m.samples for m in results[b].values())}" for b in batches)
    lines.append(f"(medians over {samples} round-robin samples; widest IQR / median: {spread})")
    return "\n".join(lines)


def targets(data: dict, batch: int) -> list[tuple[str, float, float, bool]]:
    """(description, measured, goal, met) for the issue's two targets at ``batch``."""
    r = data["results"][batch]
    out = []
    for name, how in ((OUR_LATE, "one t for all"), (OUR_LATE_WEBUI, "per-image t, as in the WebUI")):
        vs_clone = r[name].median_us / r[CLONE].median_us
        speedup = r[POST_LATE].median_us / r[name].median_us
        out += [
            (f"late window ({how}) ≤ 4× clone at B = {batch}", vs_clone, 4.0, vs_clone <= 4.0),
            (f"late window ({how}) ≥ 5× faster than the post's code looped per image (B = {batch})",
             speedup, 5.0, speedup >= 5.0),
        ]
    return out


def glue_targets(data: dict, batch: int) -> list[tuple[str, float, float, bool, str]]:
    """(description, measured, goal, met, kind) for the glue's call: ≤ 1.5× clone at t = 500, ≤ 6× clone at t = 50,
    ≥ 5× faster than the post's callback looped per image at t = 999, 800 and 50."""
    r = data["results"][batch]
    clone = r[CLONE].median_us
    out = [
        (f"glue call at t = 500 (no window open) ≤ 1.5× clone (B = {batch})",
         r["glue call, t=500"].median_us / clone, 1.5, r["glue call, t=500"].median_us / clone <= 1.5, "max"),
        (f"glue call at t = 50 ≤ 6× clone (B = {batch})",
         r["glue call, t=50"].median_us / clone, 6.0, r["glue call, t=50"].median_us / clone <= 6.0, "max"),
    ]
    for t in (999, 800, 50):
        speedup = r[f"post callback looped, t={t}"].median_us / r[f"glue call, t={t}"].median_us
        out.append((f"glue call at t = {t} ≥ 5× faster than the post's callback looped per image (B = {batch})",
                    speedup, 5.0, speedup >= 5.0, "min"))
    for t in GLUE_TIMESTEPS:
        ratio = r[f"glue call at the latent point, t={t:g}"].median_us / r[f"glue call, t={t:g}"].median_us
        goal = 1.5
        if t == 500:  # no window: both do no tensor work, so compare with a clone instead
            ratio, goal = r[f"glue call at the latent point, t={t:g}"].median_us / clone, 0.05
        out.append((f"latent point at t = {t:g} ≤ {goal:g}× {'clone' if t == 500 else 'the after-guidance call'} "
                    f"(B = {batch})", ratio, goal, ratio <= goal, "max"))
    return out


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8], help="batch sizes (default 1 4 8)")
    p.add_argument("--size", type=int, default=128, help="latent height and width (default 128)")
    p.add_argument("--no-steady-heap", dest="steady_heap", action="store_false",
                   help="leave glibc's heap trimming on (CPU times then include page faults)")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="cpu, cuda, or all (default: cpu, plus cuda when available)")
    p.add_argument("--repeats", type=int, default=None,
                   help="round-robin rounds per batch size (default: enough for ~--budget s per op)")
    p.add_argument("--budget", type=float, default=0.4, help="seconds of samples per op and batch size (default 0.4)")
    p.add_argument("--sample", type=float, default=0.002, help="target seconds per sample (default 0.002)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up calls per op (default 5)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = p.parse_args(argv)
    if any(b < 1 for b in args.batches) or args.size < 1:
        p.error("batch sizes and --size must be positive")
    if args.quick:
        args.size = min(args.size, 16)
        args.repeats = args.repeats or 3
        args.warmup = 1
        args.sample = 0.0
    return args


def devices_for(choice: str) -> list[torch.device]:
    cuda = torch.cuda.is_available()
    if choice == "cpu":
        return [torch.device("cpu")]
    if choice == "cuda":
        if not cuda:
            raise SystemExit("--device cuda: CUDA is not available")
        return [torch.device("cuda")]
    return [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])


def steady_heap() -> str:
    """Keep glibc from handing freed megabyte buffers back to the OS between calls.

    Without it, whether a 2 MB temporary is served from the heap or from fresh pages (page faults) depends
    on what ran just before, and a lone ``x.clone()`` swings between ~40 and ~400 µs. A long-running WebUI
    process reaches the steady state anyway; pinning it makes the ratios repeatable. CUDA is unaffected.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        big = 1 << 30
        if libc.mallopt(m_trim_threshold, big) == 1 and libc.mallopt(m_mmap_threshold, 256 << 20) == 1:
            return "glibc heap pinned (no trimming, no mmap below 256 MiB)"
    except (OSError, AttributeError):
        pass
    return "default allocator (not glibc): CPU times may include page faults"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    batches = list(dict.fromkeys(args.batches))
    args.batches = batches
    heap = steady_heap() if args.steady_heap else "default allocator settings (--no-steady-heap)"
    print(f"benchmarks.bench — torch {torch.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})")
    print(f"memory: {heap}")
    print(f"input: [B, 4, {args.size}, {args.size}] float32, B = {', '.join(map(str, batches))}; "
          f"late window = apply(Schedule('late', BLOG.steps[2:]), x, 50.0)")
    report: dict = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "size": args.size,
        "batches": batches,
        "devices": {},
    }
    for device in devices_for(args.device):
        label = "cpu" if device.type == "cpu" else f"cuda ({torch.cuda.get_device_name(device)})"
        print(f"\n== device: {label}")
        data = run_device(device, args)
        print(format_table(device, data, batches))
        goal_batch = 8 if 8 in batches else max(batches)
        checks = targets(data, goal_batch)
        print("\ntargets:")
        for text, value, goal, met in checks:
            print(f"  [{'PASS' if met else 'MISS'}] {text}: measured {value:.2f}×")
        glue = glue_targets(data, goal_batch)
        print("\nthe WebUI's path (the glue's call, Post defaults, timesteps announced before the run):")
        for text, value, goal, met, _ in glue:
            print(f"  [{'PASS' if met else 'MISS'}] {text}: measured {value:.2f}×")
        report["devices"][device.type] = {
            "name": label,
            "results": {
                str(b): {name: vars(m) for name, m in data["results"][b].items()} for b in batches
            },
            "targets": [
                {"target": text, "measured": value, "goal": goal, "pass": met} for text, value, goal, met in checks
            ],
            "glue_targets": [
                {"target": text, "measured": value, "goal": goal, "pass": met} for text, value, goal, met, _ in glue
            ],
        }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
