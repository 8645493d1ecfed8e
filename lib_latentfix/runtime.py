"""Per-generation decisions, host-free: whether to run, on which rows, at which timesteps, in which space.

The WebUI glue (``scripts/latentfix.py``) only gathers host objects and calls these. A :class:`Job` is the
per-generation state; the glue keeps it on the processing object ``p``, never in module globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .schedule import Schedule, apply
from .settings import BEFORE_CFG, Settings

Tensor = torch.Tensor

SDXL = "sdxl"
SD = "sd"
UNSUPPORTED = "unsupported"

# Attributes other extensions set on the processing object of their own inner passes.
INNER_PASS_FLAGS: tuple[str, ...] = ("_ad_inner",)  # ADetailer (adetailer/scripts/!adetailer.py)


def model_family(model: Any) -> str:
    """"sdxl" for SDXL (base, refiner, SSD-1B, inpaint), "sd" for SD 1.x/2.x, else "unsupported"."""
    if model is None:
        return UNSUPPORTED
    channels = getattr(model, "latent_channels", 4)
    if getattr(model, "is_sd3", False) or channels != 4:
        return UNSUPPORTED
    if getattr(model, "is_sdxl", False):
        return SDXL
    if getattr(model, "is_sd1", False) or getattr(model, "is_sd2", False):
        return SD
    return UNSUPPORTED


def latent_problem(x: Any) -> Optional[str]:
    """Why this tensor cannot be corrected (None when it can): the filters expect ``[B, 4, H, W]``."""
    if not isinstance(x, torch.Tensor):
        return f"expected a latent tensor, got {type(x).__name__}"
    if x.dim() != 4:
        return f"latent has {x.dim()} dimensions (shape {tuple(x.shape)}); only [batch, 4, height, width] is supported"
    if x.shape[1] != 4:
        return f"latent has {x.shape[1]} channels; only 4-channel SD/SDXL latents are supported"
    if not x.is_floating_point():
        return f"latent has dtype {x.dtype}; a floating-point latent is expected"
    return None


def is_inner_pass(p: Any) -> bool:
    """True for the processing object of another extension's inner pass (ADetailer and the like)."""
    return any(getattr(p, flag, False) for flag in INNER_PASS_FLAGS)


def skip_reason(settings: Settings, *, is_hr_pass: bool, inner_pass: bool) -> Optional[str]:
    """Why a generation (or pass) is not corrected, or None when it is."""
    if not settings.does_something():
        return "off"
    if inner_pass and settings.skip_inner_passes:
        return "inner pass of another extension"
    if is_hr_pass and not settings.apply_in_hires:
        return "hires fix pass"
    return None


@dataclass
class ModelCall:
    """What ``on_cfg_denoiser`` captured for the current model evaluation, for the callbacks after it."""

    timesteps: Tensor  # one per row of the denoiser input
    x_in: Tensor  # the denoiser input rows (x_t)
    alpha_bar: Optional[Tensor]  # per row, when predictions are eps (A1111 DDIM/PLMS/UniPC), else None
    mask: Optional[Tensor]  # inpainting repaint weight, None without a mask


@dataclass
class Job:
    """Per-generation state, kept on the WebUI's processing object."""

    settings: Settings
    schedule: Schedule
    family: str
    active: bool = True
    started: bool = False  # the sampler has called the model for this job
    ran_points: set = field(default_factory=set)
    failure: Optional[str] = None
    call: Optional[ModelCall] = None
    nonfinite: Optional[Tensor] = None  # on the device: how many image predictions held NaN/inf (read once, at the end)
    observer: Optional[Callable[..., None]] = None  # diagnostics hook: (point, before, after, call)
    traces: dict = field(default_factory=dict)  # diagnostics: batch iteration → lib_latentfix.diagnostics.Trace

    @property
    def before_guidance(self) -> bool:
        return self.settings.correction_point == BEFORE_CFG

    def fail(self, error: BaseException) -> str:
        """Turn correction off for the rest of the generation; return the one-line message to print."""
        self.active = False
        self.failure = f"{type(error).__name__}: {error}"
        return f"correction turned off for the rest of this generation after an error: {self.failure}"


def count_nonfinite(prediction: Tensor) -> Tensor:
    """How many rows hold a NaN or ±inf, as a 0-d device tensor (no host sync; one reduction)."""
    total = prediction.flatten(1).sum(dim=1, dtype=torch.float32)
    return ((total - total) != 0).sum()


def eps_to_x0(x_t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """x0 = (x_t − √(1−ᾱ)·ε) / √ᾱ, per row (``alpha_bar`` is ``[rows]``), in float32."""
    a = alpha_bar.to(torch.float32)[:, None, None, None]
    return (x_t.to(torch.float32) - (1.0 - a).sqrt() * eps.to(torch.float32)) / a.sqrt()


def eps_after_x0_change(eps: Tensor, x0_before: Tensor, x0_after: Tensor, alpha_bar: Tensor) -> Tensor:
    """The ε that yields ``x0_after`` from the same x_t: ε − √ᾱ/√(1−ᾱ)·(x0_after − x0_before).

    Rows the filter left alone (difference exactly 0) keep their ε bit for bit.
    """
    a = alpha_bar.to(torch.float32)[:, None, None, None]
    delta = x0_after.to(torch.float32) - x0_before.to(torch.float32)
    changed = eps.to(torch.float32) - (a / (1.0 - a)).sqrt() * delta
    return torch.where(delta != 0, changed.to(eps.dtype), eps)


def correct(schedule: Schedule, prediction: Tensor, call: ModelCall) -> Tensor:
    """Apply ``schedule`` to a prediction whose rows are the last ``len(prediction)`` rows of ``call``.

    x0 predictions are filtered directly; ε predictions are turned into x0, filtered and turned back.
    Returns a new tensor of ``prediction``'s dtype.
    """
    rows = prediction.shape[0]
    t = call.timesteps[-rows:]
    if call.alpha_bar is None:
        return apply(schedule, prediction, t, mask=call.mask)
    alpha_bar = call.alpha_bar[-rows:]
    x0 = eps_to_x0(call.x_in[-rows:], prediction, alpha_bar)
    corrected = apply(schedule, x0, t, mask=call.mask)
    return eps_after_x0_change(prediction, x0, corrected, alpha_bar)
