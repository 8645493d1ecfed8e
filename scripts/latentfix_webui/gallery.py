"""Diagnostics in the WebUI: a per-step trace while sampling (on the device), and at the end the charts and
channel views appended to the gallery, the ``--latentfix-trace`` JSON lines, and grid-like saving."""

from __future__ import annotations

from typing import Any, Optional

import torch

from modules import shared

from lib_latentfix import chart as lf_chart
from lib_latentfix import trace as lf_trace
from lib_latentfix.runtime import Job, ModelCall
from lib_latentfix.settings import BEFORE_CFG, Settings

from . import host


class Recorder:
    """The job's observer: one trace per batch iteration; a failure switches diagnostics off, never the correction."""

    def __init__(self, p: Any):
        self.p = p
        self.traces: dict[int, lf_trace.Trace] = {}
        self.on = True

    def __call__(self, point: str, before: torch.Tensor, after: torch.Tensor, call: ModelCall) -> None:
        if not self.on:
            return
        p = self.p
        try:
            images = int(getattr(p, "batch_size", before.shape[0])) if point == BEFORE_CFG else before.shape[0]
            label = "hires pass" if host.is_hr_pass(p) else "first pass"
            if point == BEFORE_CFG:
                label += " (negative-prompt rows)"  # before guidance: one uncond row per image, the last rows
            trace = self.traces.setdefault(int(getattr(p, "iteration", 0)), lf_trace.Trace())
            trace.record_call(before[-images:], after[-images:], call, label=label)
        except Exception as error:
            self.on = False
            host.log(f"diagnostics turned off for this generation after an error: {type(error).__name__}: {error}")


def wanted(settings: Settings) -> bool:
    return settings.diagnostics or bool(trace_path())


def trace_path() -> Optional[str]:
    return getattr(shared.cmd_opts, "latentfix_trace", None)


def finish(p: Any, processed: Any, job: Job, recorder: Recorder) -> None:
    """Append the charts and channel views after the real images (their infotexts untouched); write the trace."""
    if not recorder.traces:
        return
    traces, recorder.traces = recorder.traces, {}
    path = trace_path()
    settings = job.settings
    boundary = settings.maximize_boundary if settings.maximize_enabled else 4.0
    ran, missed = job.windows()  # windows no model call reached are drawn apart, hatched "not reached"
    windows = (lf_chart.schedule_windows(ran), lf_chart.schedule_windows(missed))
    seeds = getattr(p, "all_seeds", None) or [getattr(p, "seed", -1)]
    for iteration, trace in sorted(traces.items()):
        try:
            data = trace.finish()
        except Exception as error:
            host.log(f"diagnostics could not be read back: {type(error).__name__}: {error}")
            continue
        for image in range(data.images):
            index = iteration * int(getattr(p, "batch_size", data.images)) + image
            seed = seeds[index] if index < len(seeds) else seeds[-1]
            if path and not _write_trace(path, data, image, index, seed, p):
                path = None  # said once; the gallery images still come
            if settings.diagnostics:
                _draw(p, processed, data, image, index, seed, boundary, windows)


def _write_trace(path: str, data: Any, image: int, index: int, seed: Any, p: Any) -> bool:
    meta = {"image_index": index, "seed": seed, "sampler": getattr(p, "sampler_name", None),
            "steps": getattr(p, "steps", None), "cfg_scale": getattr(p, "cfg_scale", None)}
    try:
        lf_trace.write_jsonl(path, lf_trace.trace_records(data, meta=meta, image=image))
    except lf_trace.TraceFileError as error:  # the file, not the drawing: the gallery images still come
        host.log(f"{error}; the diagnostics images are not affected")
        return False
    return True


def _draw(p: Any, processed: Any, data: Any, image: int, index: int, seed: Any, boundary: float, windows) -> None:
    title = f"LatentFix diagnostics: image {index + 1}, seed {seed}"
    try:
        extras = [
            (lf_chart.render_plot(data, image, boundary=boundary, windows=windows[0], skipped=windows[1], title=title),
             f"{title}: channel statistics per step"),
            (lf_chart.channel_view_images(data, image), f"{title}: latent channels before/after the last correction"),
        ]
    except Exception as error:
        host.log(f"diagnostics could not be drawn: {type(error).__name__}: {error}")
        return
    for picture, caption in extras:
        processed.images.append(picture)
        processed.infotexts.append(caption)
        _save_like_a_grid(p, picture, caption)


def _save_like_a_grid(p: Any, image: Any, caption: str) -> None:
    """Save like a grid when the WebUI saves grids (Settings → Saving images → grids)."""
    if not getattr(shared.opts, "grid_save", False):
        return
    try:
        from modules import images as webui_images
    except ImportError:  # pragma: no cover - every WebUI has it
        return
    webui_images.save_image(image, getattr(p, "outpath_grids", "outputs"), "latentfix",
                            extension=getattr(shared.opts, "grid_format", "png"), info=caption, p=p,
                            suffix="-diagnostics")
