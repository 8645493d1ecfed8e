"""What a patched ComfyUI model runs: the post-CFG correction, the sampler wrapper and the inpainting mask observer.

:class:`LatentFixPatch` is registered on a clone of the model (``ModelPatcher.clone()``) with
``set_model_sampler_post_cfg_function`` and ``set_model_denoise_mask_function``, and :func:`sampler_wrapper` with
``add_wrapper_with_key("sampler_sample", "latentfix", ...)``. ComfyUI (line citations: fe251146, v0.12.1+1) calls

* ``sampler_wrapper`` once per sampling run, around ``sampler.sample`` (comfy/samplers.py:974-979 at fe251146): it
  writes what runs (the KSAMPLER's k-diffusion function, its ``extra_options``, the run's sigmas) into the run's own
  ``transformer_options``, which every model call of the run receives, and goes on;
* ``patch(args)`` once per model evaluation, after CFG (comfy/samplers.py:360-365): ``args["denoised"]`` is the
  CFG-combined x0 of the whole batch, ``args["input"]`` the sampler's latent rows, ``args["sigma"]`` one sigma per
  row. The return value is what the sampler uses. At the latent point (the default, as the post) the prediction is
  rewritten so that the sampler's step lands on the post's filtered latent (:mod:`lib_latentfix.landing`), keyed on
  the step's timestep; "after guidance" corrects the x0 itself, each row at its timestep;
* ``patch.denoise_mask(sigma, mask, extra_options)`` right before that model call when the sampler carries a noise
  mask (comfy/samplers.py:394-400). The mask is remembered for the next post-CFG call, the one of that same model
  evaluation, so its correction takes its statistics from the repainted area, as in the WebUI. They are paired by
  order and checked by shape (the call's sigma has the shape of the one the mask came with), not by the identity of
  the sigma tensor, which a wrapper may copy; a mask is used by one call at most. A mask function that was already
  on the model (e.g. Differential Diffusion's) is called first and its result is what is used.

Decisions are made on the host, from values the host already has: once per sampling run (recognised by the
wrapper's record, else by the ``transformer_options["sample_sigmas"]`` tensor that ComfyUI sets per run,
samplers.py:970-971) the latent format is checked and each model call of the run, counted in order, gets its
timestep from the run's sigma list through the model's own ``model_sampling.timestep``: the filters it runs are
decided there (:func:`lib_latentfix.schedule.steps_between`), and a call outside every window does no tensor work.
That is one small read of the run's sigma list per run (none on a CPU run); per model call there is no host sync.
Where the calls' sigmas are not known (a sampler not listed here) the windows are tested on the device per row.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any, Callable, Optional

import torch

from .core import landing as lf_landing, schedule as lf_schedule, settings as lf_settings

log = logging.getLogger("latentfix")

# ComfyUI's latent formats (comfy/latent_formats.py) whose latents are the 4-channel SD / SDXL VAE space the
# filters were designed for. Everything else (SD3, Flux, Playground 2.5, Cascade, video, ...) passes through.
SUPPORTED_FORMATS = ("SDXL", "SD15")
# Stochastic samplers may evaluate slightly above the listed sigmas (s_churn: sigma * (1 + gamma), gamma <= sqrt(2)
# - 1, k_diffusion/sampling.py:224-225); the run's window test is widened by this factor both ways.
SIGMA_MARGIN = 1.5

# The SAMPLER_SAMPLE wrapper (comfy/patcher_extension.py WrappersMP.SAMPLER_SAMPLE; comfy is not imported here), the
# key it is registered under, and the transformer_options entry it writes for the run.
SAMPLER_SAMPLE = "sampler_sample"
WRAPPER_KEY = "latentfix"
RUN_KEY = "latentfix_sampler"

# k-diffusion functions whose model calls are known from the run's sigma list: one call per step at sigma_i
# (lib_latentfix.landing.ONE_CALL_PER_STEP), or (Heun) a second one at sigma_i+1 unless that is 0. With s_churn > 0
# (lib_latentfix.landing.CHURN) they evaluate above sigma_i.
SECOND_AT_NEXT = frozenset({"sample_heun"})
# How far a call's sigma is moved both ways to find the timesteps the device may compute for it (the host and the
# device round the same ``model_sampling.timestep`` differently only next to a tie between two table entries).
SIGMA_WOBBLE = 1e-5


def message(text: str) -> None:
    """One console line (ComfyUI logs at INFO and above to the console)."""
    log.warning("[LatentFix] %s", text)


class SamplerSeen:
    """What the SAMPLER_SAMPLE wrapper saw of one sampling run: the sampler's function, its options, the sigmas."""

    __slots__ = ("function", "extra_options", "sigmas")

    def __init__(self, function: Any, extra_options: dict, sigmas: Any):
        self.function = function
        self.extra_options = extra_options
        self.sigmas = sigmas

    @property
    def name(self) -> Optional[str]:
        name = getattr(self.function, "__name__", None)
        return name if isinstance(name, str) else None

    def __deepcopy__(self, memo: dict) -> "SamplerSeen":  # model_options may be deep-copied: the record is kept
        return self


def sampler_wrapper(executor: Any, *args: Any, **kwargs: Any) -> Any:
    """SAMPLER_SAMPLE wrapper: record the run's sampler in its ``transformer_options``, then run the sampler.

    ComfyUI calls it as ``wrapper(executor, guider, sigmas, extra_args, ...)`` with ``executor.class_obj`` the
    sampler (a KSAMPLER holds ``sampler_function`` and ``extra_options``). It never changes the run; if anything is
    not as expected, nothing is recorded and the post-CFG function falls back to "after guidance" for the run.
    """
    try:
        sigmas = args[1] if len(args) > 1 else kwargs.get("sigmas")
        extra_args = args[2] if len(args) > 2 else kwargs.get("extra_args")
        options = extra_args["model_options"].setdefault("transformer_options", {})
        sampler = getattr(executor, "class_obj", None)
        extra = getattr(sampler, "extra_options", None)
        options[RUN_KEY] = SamplerSeen(getattr(sampler, "sampler_function", None),
                                       dict(extra) if isinstance(extra, dict) else {}, sigmas)
    except Exception:  # (a run is never broken by LatentFix: without the record it is corrected after guidance)
        pass
    return executor(*args, **kwargs)


class _Run:
    """What was decided for one sampling run, and the run's state: the model calls seen so far, and at the latent
    point what the previous call kept (:class:`lib_latentfix.landing.LatentRun`)."""

    __slots__ = ("key", "schedule", "skip", "mask_warned", "calls", "steps", "plans", "latent", "said_more")

    def __init__(self, key: Any, schedule: lf_schedule.Schedule, skip: Optional[str]):
        self.key = key
        self.schedule = schedule
        self.skip = skip
        self.mask_warned = False
        self.calls = 0  # model calls of the run so far
        # "after guidance": per call, the steps active there (None: test the windows on the device per row)
        self.steps: tuple[Optional[tuple[lf_schedule.Step, ...]], ...] = ()
        # the latent point: per call, (the steps active at its step's timestep, the call's plan); None: not this run
        self.plans: Optional[tuple[tuple[tuple[lf_schedule.Step, ...], lf_landing.CallPlan], ...]] = None
        self.latent = lf_landing.LatentRun()
        self.said_more = False


class LatentFixPatch:
    """The post-CFG function (``__call__``) and the denoise-mask observer of one LatentFix node."""

    def __init__(self, schedule: lf_schedule.Schedule, previous_mask_function: Optional[Callable] = None,
                 point: str = lf_settings.LATENT):
        self.schedule = schedule
        self.previous_mask_function = previous_mask_function
        self.point = point
        self._run: Optional[_Run] = None
        self._call_mask: Optional[tuple[Any, torch.Tensor]] = None

    # ModelPatcher.clone() deep-copies model_options (model_patcher.py:320): a copy gets the same settings and no
    # per-run state. Both bound methods of one patch are copied with one memo, so they keep sharing one object.
    def __deepcopy__(self, memo: dict) -> "LatentFixPatch":
        return LatentFixPatch(self.schedule, self.previous_mask_function, self.point)

    # ---------------------------------------------------------------------------------------------------------
    # the hooks

    def denoise_mask(self, sigma: Any, denoise_mask: torch.Tensor, extra_options: Optional[dict] = None) -> torch.Tensor:
        """``model_options["denoise_mask_function"]``: remember the mask for the post-CFG call of this model
        evaluation (the next one), return it unchanged."""
        if self.previous_mask_function is not None:
            denoise_mask = self.previous_mask_function(sigma, denoise_mask, extra_options=extra_options)
        self._call_mask = (sigma, denoise_mask)
        return denoise_mask

    def __call__(self, args: dict) -> torch.Tensor:
        """``model_options["sampler_post_cfg_function"]`` entry: the x0 the sampler is to use, for every row."""
        x0 = args["denoised"]
        captured, self._call_mask = self._call_mask, None  # the mask belongs to this model call only
        run = self._run_for(args)
        index, run.calls = run.calls, run.calls + 1
        if run.skip is not None:
            return x0
        model, sigma = args["model"], args["sigma"]
        try:
            if run.plans is not None and index < len(run.plans):
                steps, plan = run.plans[index]
                latent = run.latent
                if index == len(run.plans) - 1:  # the run's last call: nothing is kept past the run
                    run.latent = lf_landing.LatentRun()
                if not plan.works:  # outside every window, nothing kept or carried: no tensor work
                    return x0
                mask = self._mask_for(captured, sigma, x0, run)
                name = run.schedule.name

                def filters(latent: torch.Tensor) -> torch.Tensor:
                    return lf_schedule.run(lf_schedule.Schedule(name, steps), latent, None, mask=mask, change=True)[0]

                corrected = latent.land(plan, args["input"], x0, filters)
                return x0 if corrected is None else corrected
            if run.plans is not None and not run.said_more:
                run.said_more = True
                message(f"this sampling run made more model calls than its sampler's {len(run.plans)}; the calls after "
                        "those are corrected after guidance")
            steps = run.steps[index] if index < len(run.steps) else None
            if steps == ():  # no window contains this call's timestep: no tensor work
                return x0
            mask = self._mask_for(captured, sigma, x0, run)
            if steps is None:  # not known on the host: each row's timestep on the device
                return lf_schedule.apply(run.schedule, x0, model.model_sampling.timestep(sigma), mask=mask)
            return lf_schedule.apply(lf_schedule.Schedule(run.schedule.name, steps), x0, None, mask=mask)
        except Exception as error:  # bad input never breaks a generation
            run.skip = "error"
            message(f"correction turned off for the rest of this run after an error: {type(error).__name__}: {error}")
            return x0

    # ---------------------------------------------------------------------------------------------------------
    # per-run decisions (host side)

    def _run_for(self, args: dict) -> _Run:
        options = args.get("model_options", {}).get("transformer_options", {})
        sigmas = options.get("sample_sigmas")
        seen = options.get(RUN_KEY)  # written once per run by the wrapper: names the run even if sigmas are reused
        key = seen if isinstance(seen, SamplerSeen) else sigmas
        run = self._run
        if run is not None and run.key is key:  # (no record and no sigma list: one run, decided once)
            return run
        run = self._start_run(args, key, sigmas, seen if isinstance(seen, SamplerSeen) else None)
        self._run = run
        return run

    def _start_run(self, args: dict, key: Any, sigmas: Any, seen: Optional[SamplerSeen]) -> _Run:
        x0, model = args["denoised"], args["model"]
        problem = unsupported(model, x0)
        if problem is not None:
            message(f"{problem}; this sampling run passes through uncorrected")
            return _Run(key, self.schedule, "unsupported")
        schedule = self.schedule
        if not (isinstance(sigmas, torch.Tensor) and sigmas.dim() == 1 and sigmas.numel() >= 2):
            if self.point == lf_settings.LATENT:
                message(after_instead("this run has no sigma list (sample_sigmas)"))
            return _Run(key, schedule, None)
        try:
            host = sigmas.detach().to("cpu")  # the run's one read of its sigma list
            schedule = steps_for_run(schedule, model.model_sampling, host)
        except Exception as error:  # an unusual model_sampling: keep every step, decided per row on the device
            message(f"could not read this run's sigma range ({type(error).__name__}: {error}); every step kept")
            return _Run(key, schedule, None)
        run = _Run(key, schedule, None)
        function = seen.name if seen is not None else None
        try:
            timesteps = call_timesteps(model.model_sampling, host)
            if self.point == lf_settings.LATENT:
                landings, why = (run_landings(seen, sigmas, host, model) if "input" in args
                                 else (None, "the post-CFG arguments hold no 'input' latent"))
                if landings is not None:
                    run.plans = latent_plans(self.schedule, landings, timesteps[1])
                    return run
                message(after_instead(why))
            # the calls' sigmas are known for a listed sampler running the run's own sigma list
            known = seen is not None and seen.sigmas is sigmas
            calls = call_sigmas(function, host, seen.extra_options) if known else None
            if calls is not None:
                low, high = timesteps[0], timesteps[2]
                run.steps = tuple(lf_schedule.steps_between(self.schedule, min(low[i], high[i]), max(low[i], high[i]))
                                  for i in calls)
        except Exception as error:  # the windows are then tested on the device, as for an unknown sampler
            message(f"could not work out this run's model calls ({type(error).__name__}: {error}); the filter "
                    "windows are tested per call")
        if not schedule.steps:
            run.skip = "no step in this run's timesteps"
        return run

    @staticmethod
    def _mask_for(captured: Optional[tuple], sigma: Any, x0: torch.Tensor, run: _Run) -> Optional[torch.Tensor]:
        if captured is None:
            return None
        captured_sigma, mask = captured
        if getattr(captured_sigma, "shape", None) != getattr(sigma, "shape", None):  # not this call's (no host sync)
            return None
        fits = mask.dim() == 4 and mask.shape[-2:] == x0.shape[-2:] and mask.shape[0] in (1, x0.shape[0])
        if not fits:
            if not run.mask_warned:
                run.mask_warned = True
                message(f"noise mask of shape {tuple(mask.shape)} does not fit the latent {tuple(x0.shape)}; "
                        "statistics from the whole image")
            return None
        return mask


def after_instead(why: Optional[str]) -> str:
    """The one console line of a run whose sampler step is not known: it is corrected after guidance."""
    return (f"the sampler's step is not known ({why or 'no sampler wrapper ran'}); this sampling run is corrected "
            "after guidance instead of on the sampler latent")


def call_timesteps(model_sampling: Any, sigmas: torch.Tensor) -> tuple[list[float], list[float], list[float]]:
    """Each sigma's timestep as ``model_sampling.timestep`` gives it (the host's, in the sigmas' own dtype), with
    the timesteps of the sigma moved down and up by :data:`SIGMA_WOBBLE` (the range the device may land in)."""
    def read(values: torch.Tensor) -> list[float]:
        return [float(v) for v in model_sampling.timestep(values).detach().to("cpu", torch.float64).tolist()]

    return (read(sigmas * (1 - SIGMA_WOBBLE)), read(sigmas), read(sigmas * (1 + SIGMA_WOBBLE)))


def call_sigmas(function: Optional[str], sigmas: torch.Tensor, extra_options: dict) -> Optional[list[int]]:
    """The index in the run's sigma list of each model call's sigma, in call order; None when not known."""
    if function in lf_landing.CHURN and float(extra_options.get("s_churn", 0.0) or 0.0) > 0:
        return None
    steps = sigmas.shape[0] - 1
    if function in lf_landing.ONE_CALL_PER_STEP:
        return list(range(steps))
    if function in SECOND_AT_NEXT:
        calls = []
        for i in range(steps):
            calls.append(i)
            if float(sigmas[i + 1]) != 0:
                calls.append(i + 1)
        return calls
    return None


def run_landings(seen: Optional[SamplerSeen], sigmas: Any, host: torch.Tensor,
                 model: Any) -> tuple[Optional[tuple], Optional[str]]:
    """Each model call's step of this run (see :func:`lib_latentfix.landing.k_diffusion_landings`), or why not."""
    if seen is None:
        return None, "no sampler wrapper ran"
    if seen.sigmas is not sigmas:
        return None, "the sampler runs other sigmas than the run's sample_sigmas"
    name = seen.name
    kind = lf_landing.sampler_kind(name) if name else None
    if kind not in lf_landing.K_DIFFUSION_KINDS:
        return None, f"no known step for {name or type(seen.function).__name__}"
    if name in lf_landing.CHURN and float(seen.extra_options.get("s_churn", 0.0) or 0.0) > 0:
        return None, f"{name} with s_churn adds noise before each model call"
    sampling = getattr(model, "model_sampling", None)
    if kind == lf_landing.EULER_ANCESTRAL and any(c.__name__ == "CONST" for c in type(sampling).__mro__):
        return None, "Euler a of a flow model takes another step"
    try:
        landings = lf_landing.k_diffusion_landings(kind, host, eta=float(seen.extra_options.get("eta", 1.0)))
    except ValueError as error:
        return None, str(error)
    return landings, None


def latent_plans(schedule: lf_schedule.Schedule, landings: tuple, timesteps: list[float]) -> tuple:
    """Per model call: the steps active at its step's timestep (the host's, exactly: the post is keyed on it) and
    what the call computes, keeps and carries (:func:`lib_latentfix.landing.plan_calls`)."""
    steps = [() if landing is None else lf_schedule.steps_between(schedule, timesteps[landing.step],
                                                                   timesteps[landing.step], margin=0.0)
             for landing in landings]
    plans = lf_landing.plan_calls(landings, [bool(s) for s in steps])
    return tuple(zip(steps, plans))


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
