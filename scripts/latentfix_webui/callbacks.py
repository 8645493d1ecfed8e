"""The CFG-denoiser callbacks: read the host's fields, ask the job, write the result back.

Order per model call (A sd_samplers_cfg_denoiser.py:156-311; F 156-228): ``on_cfg_denoiser`` (input rows, sigma,
``p``) → model → ``on_cfg_denoised`` (A1111 only: every cond/uncond prediction row) → CFG → ``on_cfg_after_cfg``
(one guided prediction per image). The job decides on the host whether the call needs any work; a call that
does not costs no tensor operation.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from lib_latentfix.runtime import Job, ModelCall, latent_problem
from lib_latentfix.settings import AFTER_CFG, BEFORE_CFG

from . import handoff, host

JOB_ATTR = "latentfix_job"


def job_of(p: Any) -> Optional[Job]:
    job = getattr(p, JOB_ATTR, None)
    return job if isinstance(job, Job) and job.active else None


def on_cfg_denoiser(params: Any) -> None:
    """Decide whether this model call is corrected and capture what its corrections need (the latent is not
    changed here)."""
    denoiser = getattr(params, "denoiser", None)
    p = getattr(denoiser, "p", None)
    job = job_of(p)
    handoff.push(job if job is not None and _begin(job, params, denoiser, p) else None)


def _begin(job: Job, params: Any, denoiser: Any, p: Any) -> bool:
    try:
        if job.skip_reason(is_hr_pass=host.is_hr_pass(p), inner_pass=host.is_inner_pass(p)) is not None:
            job.skip_call()
            return False
        key = host.run_key(getattr(denoiser, "sampler", None), getattr(denoiser, "steps", None) or 0)

        def capture(steps, host_t) -> Optional[ModelCall]:
            x = params.x
            problem = latent_problem(x)
            if problem is not None:
                job.stop(f"skipped for this generation: {problem}")
                return None
            eps = host.eps_mode(denoiser, host.forge_like_for(p))
            sigma = params.sigma
            alpha_bar = denoiser.alphas[sigma.to(dtype=torch.int64)] if eps else None
            timesteps = host.device_timesteps(denoiser, sigma, eps) if steps is None else None
            return ModelCall(steps, timesteps, x, alpha_bar, host.repaint_mask(denoiser), host_t)

        return job.begin_call(key, int(getattr(denoiser, "step", 0)), capture)
    except Exception as error:  # never break the generation
        job.fail(error)
        return False


def on_cfg_denoised(params: Any) -> None:
    """Before guidance (A1111 only): every cond/uncond prediction row, in place (reassigning is ignored there)."""
    job = handoff.peek()
    if job is None or not job.before_guidance:
        return
    corrected = job.correct(BEFORE_CFG, params.x)
    if corrected is not None:
        params.x.copy_(corrected)


def on_cfg_after_cfg(params: Any) -> None:
    """After guidance (default): each image's CFG-combined prediction (reassignment is honoured everywhere)."""
    job = handoff.pop()
    if job is None:
        return
    if not job.before_guidance:
        corrected = job.correct(AFTER_CFG, params.x)
        if corrected is not None:
            params.x = corrected
    job.end_call()


def keep_after_cfg_last() -> bool:
    """Move LatentFix's after-CFG callback behind every other one (True when it moved): it corrects the final
    prediction, after other extensions' after-CFG edits (Diffusion CG and the like), whichever folder sorts first
    and whenever they registered (some register per generation). Called before each sampler run.

    The WebUI keeps callbacks in registration order (A/F/R script_callbacks.py add_callback), sorted by metadata.ini
    instructions and the user's "prioritized" setting into a cached list (``ordered_callbacks_map``, rebuilt only
    when the count changes): the move is made in the registration list and that category's cache is dropped, so
    the instructions and the user's choice still apply on top."""
    from modules import script_callbacks

    entries = getattr(script_callbacks, "callback_map", {}).get("callbacks_cfg_after_cfg")
    if not isinstance(entries, list):
        return False
    ours = [e for e in entries if getattr(e, "callback", None) is on_cfg_after_cfg]
    if not ours or all(a is b for a, b in zip(entries[-len(ours):], ours)):
        return False
    entries[:] = [e for e in entries if all(e is not o for o in ours)] + ours
    cached = getattr(script_callbacks, "ordered_callbacks_map", None)
    if isinstance(cached, dict):
        cached.pop("cfg_after_cfg", None)
    return True
