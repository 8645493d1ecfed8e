"""The latent trace: per-step channel statistics recorded on the device, and their JSON lines.

While a generation runs, :class:`Trace` records, for every corrected model evaluation, each image's timestep
and per-channel mean, std, min and max before and after the correction. The statistics stay on the device
(one small tensor per evaluation, no host sync); :meth:`Trace.finish` moves them to the CPU once. The result,
:class:`TraceData`, feeds the chart and channel view (:mod:`lib_latentfix.chart`) and :func:`trace_records` /
:func:`write_jsonl` (the ``--latentfix-trace`` JSON lines; an unwritable file raises :class:`TraceFileError`).

Statistics are taken in float32 over each image's channel (over the repaint mask's region when one is given,
weighted by it); std is the population std (``unbiased=False``). Non-finite values are recorded as they come
(a NaN in the latent gives NaN statistics); an image whose mask is empty gets NaN statistics.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import IO, Iterable, Iterator, Mapping, Optional, Union

import numpy as np
import torch

from .filters import repaint_weight
from .runtime import ModelCall
from .sigmas import eps_to_x0

Tensor = torch.Tensor

STAT_NAMES: tuple[str, str, str, str] = ("mean", "std", "min", "max")
MEAN, STD, MIN, MAX = range(4)
BEFORE, AFTER = 0, 1


@dataclass(frozen=True)
class TraceData:
    """A finished trace on the CPU.

    ``timesteps`` ``[N, B]``, ``stats`` ``[N, B, 2 (before, after), 4 (mean, std, min, max), C]`` (float32
    numpy), ``labels`` the pass of each of the N records, ``last_before`` / ``last_after`` the latents of record
    ``last_step`` (float32 CPU ``[B, C, H, W]``; None and -1 when nothing was recorded): the last record whose
    correction changed something, or the last record when none did (since the latent size last changed).
    """

    timesteps: np.ndarray
    stats: np.ndarray
    labels: tuple[str, ...]
    last_before: Optional[Tensor]
    last_after: Optional[Tensor]
    last_step: int

    def __len__(self) -> int:
        return self.stats.shape[0]

    @property
    def images(self) -> int:
        return self.stats.shape[1]

    @property
    def channels(self) -> int:
        return self.stats.shape[4]

    def check_image(self, image: int) -> None:
        """Raise ``ValueError`` unless ``image`` is an image index of this trace."""
        if not 0 <= image < self.images:
            raise ValueError(f"image {image} is not in the trace (it has {self.images} images)")


_HUGE, _SHRINK = 2.0**40, 2.0**-88  # rows beyond 2^40 are measured scaled by 2^-88 (exact: a power of two)


def _stats(x: Tensor, weight: Optional[Tensor]) -> Tensor:
    """Mean, std, min, max over the last dim of ``x`` ``[B, C, P]`` (``weight`` ``[B or 1, 1, P]``): ``[B, 4, C]``.

    No sum can overflow: a row whose largest magnitude exceeds 2^40 is measured scaled by 2^-88 (its squares
    stay far below float32's largest), so a huge but finite latent gets finite statistics; other rows are
    multiplied by 1 (bit for bit unchanged).
    """
    if weight is None:
        low, high = torch.aminmax(x, dim=-1)
    else:
        inside = weight > 0
        low = torch.where(inside, x, math.inf).amin(dim=-1)
        high = torch.where(inside, x, -math.inf).amax(dim=-1)
    scale = torch.where(torch.maximum(low.abs(), high.abs()) > _HUGE, _SHRINK, 1.0)
    x = x * scale[..., None]
    if weight is None:
        std, mean = torch.std_mean(x, dim=-1, correction=0)
        return torch.stack((mean / scale, std / scale, low, high), dim=-2)
    total = weight.sum(dim=-1)
    share = weight / total[..., None]  # weights summing to 1: no weighted sum can exceed the largest term
    mean = torch.where(inside, x * share, 0.0).sum(dim=-1)
    var = torch.where(inside, (x - mean[..., None]).square() * share, 0.0).sum(dim=-1)
    stats = torch.stack((mean / scale, var.sqrt() / scale, low, high), dim=-2)
    return torch.where(total[..., None, :] > 0, stats, math.nan)


class Trace:
    """Collects per-evaluation channel statistics on the device; :meth:`finish` brings them to the CPU."""

    def __init__(self) -> None:
        self._rows: list[Tensor] = []  # per record [B, 1 + 2*4*C]: timestep, then the flattened stats
        self._labels: list[str] = []
        self._last: Optional[tuple[Tensor, Tensor, Tensor]] = None  # before, after, record index (0-d)

    def __len__(self) -> int:
        return len(self._rows)

    @torch.no_grad()
    def record(
        self,
        timesteps: Union[Tensor, float],
        before: Tensor,
        after: Tensor,
        *,
        mask: Optional[Tensor] = None,
        label: str = "",
    ) -> None:
        """Record one evaluation: ``before`` / ``after`` ``[B, C, H, W]``, one timestep per image (or one for all).

        No host sync. The batch size must stay the same for the whole trace; H and W may change. The two
        latents are copied (the caller may overwrite ``before`` in place) and replace the kept pair when the
        correction changed them (judged by the statistics, on the device) or when the kept pair has another
        shape or dtype.
        """
        if before.dim() != 4 or before.shape != after.shape:
            raise ValueError(f"before/after must be equal [B, C, H, W], got {tuple(before.shape)}, {tuple(after.shape)}")
        if 0 in before.shape[1:]:
            raise ValueError(f"before/after must not have an empty channel or spatial dimension, got {tuple(before.shape)}")
        rows, channels = before.shape[:2]
        if self._rows and self._rows[0].shape != (rows, 1 + 8 * channels):
            raise ValueError(f"batch size or channels changed within a trace: got [{rows}, {channels}, ...]")
        if isinstance(timesteps, Tensor):
            t = timesteps.to(device=before.device, dtype=torch.float32).reshape(-1).expand(rows)
        else:
            t = torch.full((rows,), float(timesteps), device=before.device)
        weight = repaint_weight(mask, before)
        if weight is not None:
            weight = weight.to(torch.float32).flatten(2)  # [B or 1, 1, P]
        stats = torch.stack([_stats(x.to(torch.float32).flatten(2), weight) for x in (before, after)], dim=1)
        self._rows.append(torch.cat((t[:, None], stats.flatten(1)), dim=1))
        self._labels.append(str(label))
        index = torch.full((), len(self._rows) - 1, device=before.device)
        kept = self._last
        if kept is None or kept[0].shape != before.shape or kept[0].dtype != before.dtype or kept[1].dtype != after.dtype:
            self._last = (before.detach().clone(), after.detach().clone(), index)
        else:
            differs = (stats[:, 0] != stats[:, 1]) & ~(stats[:, 0].isnan() & stats[:, 1].isnan())
            changed = differs.any()
            self._last = tuple(torch.where(changed, new, old) for new, old in zip((before, after, index), kept))

    def record_call(self, before: Tensor, after: Tensor, call: ModelCall, *, label: str = "") -> None:
        """Record a prediction pair as the glue's observer sees it: rows are the last rows of ``call``.

        ε predictions (``call.alpha_bar`` set) are recorded as the x0 they imply, so every trace shows x0.
        """
        rows = before.shape[0]
        if call.alpha_bar is not None:
            x_t, alpha_bar = call.x_in[-rows:], call.alpha_bar[-rows:]
            before, after = eps_to_x0(x_t, before, alpha_bar), eps_to_x0(x_t, after, alpha_bar)
        # host-decided calls carry the host's timestep range instead of a device tensor
        t = call.timesteps[-rows:] if call.timesteps is not None else sum(call.host_t) / 2
        self.record(t, before, after, mask=call.mask, label=label)

    def finish(self) -> TraceData:
        """Everything on the CPU in one transfer (plus the last latent pair)."""
        if not self._rows:
            return TraceData(np.zeros((0, 0), np.float32), np.zeros((0, 0, 2, 4, 4), np.float32), (), None, None, -1)
        packed = torch.stack(self._rows).cpu().numpy()  # [N, B, 1 + 8C]
        n, b = packed.shape[:2]
        last_before, last_after = (x.to(device="cpu", dtype=torch.float32) for x in self._last[:2])
        stats = packed[:, :, 1:].reshape(n, b, 2, 4, -1)
        return TraceData(packed[:, :, 0].copy(), stats.copy(), tuple(self._labels), last_before, last_after,
                         int(self._last[2]))


# --------------------------------------------------------------------------------------------------------
# JSON lines


def _json_number(value: float) -> Optional[float]:
    return float(value) if math.isfinite(value) else None


def trace_records(
    data: TraceData, *, meta: Mapping[str, object] = {}, image: Optional[int] = None
) -> Iterator[dict]:
    """One JSON-able dict per recorded evaluation and image (only ``image`` if given), in recording order.

    ``{"image", "step", "timestep", "pass", "before": {"mean": [C], "std", "min", "max"}, "after": {…}, **meta}``;
    non-finite numbers become None (JSON null), so the lines are strict JSON.
    """
    images = range(data.images) if image is None else (image,)
    for step in range(len(data)):
        for image in images:
            record: dict = {"image": image, "step": step, "timestep": _json_number(data.timesteps[step, image]),
                            "pass": data.labels[step]}
            for side, name in ((BEFORE, "before"), (AFTER, "after")):
                values = data.stats[step, image, side].tolist()
                record[name] = {stat: [_json_number(v) for v in values[k]] for k, stat in enumerate(STAT_NAMES)}
            record.update(meta)
            yield record


class TraceFileError(OSError):
    """The trace file (``--latentfix-trace``) could not be written; the message names the path and the cause.

    Its own type, so a caller can tell a trace-file failure from a failure to compute or draw diagnostics.
    """

    def __init__(self, path: str, cause: BaseException):
        reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        self.message = f"the trace file {path!r} could not be written: {reason}"
        super().__init__(self.message)
        self.path = path
        self.errno = getattr(cause, "errno", None)
        self.filename = path

    def __str__(self) -> str:
        return self.message


def write_jsonl(path_or_file: Union[str, os.PathLike, IO[str]], records: Iterable[Mapping]) -> int:
    """Append one JSON line per record to a path (parent folders created) or an open text file; returns the count.

    A path or file that cannot be written raises :class:`TraceFileError` (an ``OSError``) naming it; nothing
    is written to a path unless every record could be encoded.
    """
    lines = [json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in records]
    if hasattr(path_or_file, "write"):
        try:
            path_or_file.writelines(lines)
        except OSError as error:
            raise TraceFileError(str(getattr(path_or_file, "name", "<open file>")), error) from error
        return len(lines)
    path = os.fspath(path_or_file)
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(lines)
    except OSError as error:
        raise TraceFileError(path, error) from error
    return len(lines)
