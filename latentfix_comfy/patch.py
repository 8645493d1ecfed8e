"""What a patched ComfyUI model runs: the post-CFG correction and the inpainting mask observer.

:class:`LatentFixPatch` is registered on a clone of the model (``ModelPatcher.clone()``) with
``set_model_sampler_post_cfg_function`` and ``set_model_denoise_mask_function``. ComfyUI calls

* ``patch(args)`` once per model evaluation, after CFG (comfy/samplers.py:360-365 at fe251146): ``args["denoised"]``
  is the CFG-combined x0 of the whole batch, ``args["sigma"]`` one sigma per row. The return value is what the
  sampler uses. Each row is corrected at its own timestep, ``args["model"].model_sampling.timestep(sigma)``;
* ``patch.denoise_mask(sigma, mask, extra_options)`` right before that model call when the sampler carries a noise
  mask (comfy/samplers.py:394-400). The mask is remembered together with the ``sigma`` object of that call, so the
  correction of the same call takes its statistics from the repainted area, as in the WebUI. A mask function that
  was already on the model (e.g. Differential Diffusion's) is called first and its result is what is used.

Decisions are made on the host, from values the host already has: once per sampling run (recognised by the
``transformer_options["sample_sigmas"]`` tensor that ComfyUI sets per run, samplers.py:970-971) the latent format is
checked and the steps whose timestep window the run never reaches are dropped. That is one small read of the
run's sigma list per run (none on a CPU run, where the list is on the host); per model call there is no host sync.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any, Callable, Optional

import torch

from .core import schedule as lf_schedule

log = logging.getLogger("latentfix")

# ComfyUI's latent formats (comfy/latent_formats.py) whose latents are the 4-channel SD / SDXL VAE space the
# filters were designed for. Everything else (SD3, Flux, Playground 2.5, Cascade, video, ...) passes through.
SUPPORTED_FORMATS = ("SDXL", "SD15")
# Stochastic samplers may evaluate slightly above the listed sigmas (s_churn: sigma * (1 + gamma), gamma <= sqrt(2)
# - 1, k_diffusion/sampling.py:224-225); the run's window test is widened by this factor both ways.
SIGMA_MARGIN = 1.5


def message(text: str) -> None:
    """One console line (ComfyUI logs at INFO and above to the console)."""
    log.warning("[LatentFix] %s", text)


class _Run:
    """What was decided for one sampling run."""

    __slots__ = ("sigmas", "schedule", "skip", "mask_warned")

    def __init__(self, sigmas: Any, schedule: lf_schedule.Schedule, skip: Optional[str]):
        self.sigmas = sigmas
        self.schedule = schedule
        self.skip = skip
        self.mask_warned = False


class LatentFixPatch:
    """The post-CFG function (``__call__``) and the denoise-mask observer of one LatentFix node."""

    def __init__(self, schedule: lf_schedule.Schedule, previous_mask_function: Optional[Callable] = None):
        self.schedule = schedule
        self.previous_mask_function = previous_mask_function
        self._run: Optional[_Run] = None
        self._call_mask: Optional[tuple[Any, torch.Tensor]] = None

    # ModelPatcher.clone() deep-copies model_options (model_patcher.py:320): a copy gets the same settings and no
    # per-run state. Both bound methods of one patch are copied with one memo, so they keep sharing one object.
    def __deepcopy__(self, memo: dict) -> "LatentFixPatch":
        return LatentFixPatch(self.schedule, self.previous_mask_function)

    # ---------------------------------------------------------------------------------------------------------
    # the hooks

    def denoise_mask(self, sigma: Any, denoise_mask: torch.Tensor, extra_options: Optional[dict] = None) -> torch.Tensor:
        """``model_options["denoise_mask_function"]``: remember the mask of this model call, return it unchanged."""
        if self.previous_mask_function is not None:
            denoise_mask = self.previous_mask_function(sigma, denoise_mask, extra_options=extra_options)
        self._call_mask = (sigma, denoise_mask)
        return denoise_mask

    def __call__(self, args: dict) -> torch.Tensor:
        """``model_options["sampler_post_cfg_function"]`` entry: the corrected x0 of every row."""
        x0 = args["denoised"]
        captured, self._call_mask = self._call_mask, None  # the mask belongs to this model call only
        run = self._run_for(args)
        if run.skip is not None:
            return x0
        model, sigma = args["model"], args["sigma"]
        try:
            timesteps = model.model_sampling.timestep(sigma)
            mask = self._mask_for(captured, sigma, x0, run)
            return lf_schedule.apply(run.schedule, x0, timesteps, mask=mask)
        except Exception as error:  # bad input never breaks a generation
            run.skip = "error"
            message(f"correction turned off for the rest of this run after an error: {type(error).__name__}: {error}")
            return x0

    # ---------------------------------------------------------------------------------------------------------
    # per-run decisions (host side)

    def _run_for(self, args: dict) -> _Run:
        sigmas = args.get("model_options", {}).get("transformer_options", {}).get("sample_sigmas")
        run = self._run
        if run is not None and run.sigmas is sigmas:  # (no sigma list: one run, decided once)
            return run
        run = self._start_run(args, sigmas)
        self._run = run
        return run

    def _start_run(self, args: dict, sigmas: Any) -> _Run:
        x0, model = args["denoised"], args["model"]
        problem = unsupported(model, x0)
        if problem is not None:
            message(f"{problem}; this sampling run passes through uncorrected")
            return _Run(sigmas, self.schedule, "unsupported")
        schedule = self.schedule
        if isinstance(sigmas, torch.Tensor) and sigmas.numel() >= 2:
            try:
                schedule = steps_for_run(schedule, model.model_sampling, sigmas)
            except Exception as error:  # an unusual model_sampling: keep every step, decided per row on the device
                message(f"could not read this run's sigma range ({type(error).__name__}: {error}); every step kept")
        return _Run(sigmas, schedule, None if schedule.steps else "no step in this run's timesteps")

    @staticmethod
    def _mask_for(captured: Optional[tuple], sigma: Any, x0: torch.Tensor, run: _Run) -> Optional[torch.Tensor]:
        if captured is None or captured[0] is not sigma:
            return None
        mask = captured[1]
        fits = mask.dim() == 4 and mask.shape[-2:] == x0.shape[-2:] and mask.shape[0] in (1, x0.shape[0])
        if not fits:
            if not run.mask_warned:
                run.mask_warned = True
                message(f"noise mask of shape {tuple(mask.shape)} does not fit the latent {tuple(x0.shape)}; "
                        "statistics from the whole image")
            return None
        return mask


def unsupported(model: Any, x0: Any) -> Optional[str]:
    """Why this model's latents are not corrected (None when they are): SD 1.x/2.x and SDXL 4-channel latents only."""
    fmt = type(getattr(model, "latent_format", None)).__name__
    if fmt not in SUPPORTED_FORMATS:
        return f"latent format {fmt} is not an SD 1.x/2.x or SDXL latent"
    if not isinstance(x0, torch.Tensor) or x0.dim() != 4 or x0.shape[1] != 4 or not x0.is_floating_point():
        shape = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        return f"prediction {shape} is not a [batch, 4, height, width] float latent"
    return None


def steps_for_run(schedule: lf_schedule.Schedule, model_sampling: Any, sigmas: torch.Tensor) -> lf_schedule.Schedule:
    """``schedule`` without the steps whose window no model call of this run can reach.

    The calls of a run evaluate sigmas between the smallest non-zero and the largest of the run's sigma list
    (widened by :data:`SIGMA_MARGIN`); their timesteps come from the model's own ``model_sampling``.
    """
    values = [v for v in sigmas.detach().to("cpu").to(torch.float64).tolist() if v > 0 and math.isfinite(v)]
    if not values:
        return schedule
    span = torch.tensor([min(values) / SIGMA_MARGIN, max(values) * SIGMA_MARGIN], dtype=torch.float32)
    t_low, t_high = (float(v) for v in model_sampling.timestep(span).detach().to("cpu").to(torch.float64).tolist())
    if t_low > t_high:
        t_low, t_high = t_high, t_low
    keep = []
    for step in schedule.steps:
        lower, upper = step.bounds()
        if lower < t_high and upper > t_low:
            keep.append(step)
    return replace(schedule, steps=tuple(keep))
