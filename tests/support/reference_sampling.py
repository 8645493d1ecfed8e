"""Reference loops for the latent point: each sampler written out here, with the post's filters applied to every
image's latent after each step at that step's timestep, the model's predictions kept as it made them.

A reference loop runs inside a stand-in host without LatentFix (it replaces the sampler's function, so the host's
own CFG denoiser, noise and schedule are used): what a user of the post's diffusers callback would get from the
same model, noise and schedule.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from support.post_reference import correct as post_correct


def post_step_per_image(latents: torch.Tensor, timestep: float) -> torch.Tensor:
    """The post's step-end correction applied to each image of the batch on its own (its code corrects the batch's
    first image only, and writes into what it is given)."""
    return torch.cat([post_correct(latents[i:i + 1].clone(), timestep) for i in range(latents.shape[0])])


def timestep_of(sigma: float, alphas_cumprod: torch.Tensor) -> float:
    """The fractional training timestep of ``sigma``: log-sigma interpolated between the table's entries."""
    table = ((1 - alphas_cumprod.double()) / alphas_cumprod.double()).sqrt().log().numpy()
    return float(np.interp(math.log(sigma), table, np.arange(len(table))))


def _t(model, sigma) -> float:
    return timestep_of(float(sigma), model.inner_model.inner_model.alphas_cumprod
                       if hasattr(model.inner_model, "inner_model") else model.alphas_cumprod)


def comfy_timestep(model, sigma) -> float:
    """ComfyUI's timestep of ``sigma``: the model's own ``model_sampling.timestep`` (the nearest table entry, a whole
    number), reached from the KSamplerX0Inpaint -> CFGGuider -> BaseModel chain the sampler function is given."""
    return float(model.inner_model.inner_model.model_sampling.timestep(sigma))


def euler(model, x, sigmas, extra_args=None, callback=None, disable=None, filter_step=post_step_per_image, timestep=_t):
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, following = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * ones, **extra_args)
        slope = (x - denoised) / sigma
        x = filter_step(x + slope * (following - sigma), timestep(model, sigma))
    return x


def euler_ancestral_before_noise(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                 noise_sampler=None, filter_step=post_step_per_image, after_noise=False, timestep=_t):
    """Euler a; the filters act on the noise-free latent (``after_noise``: on the latent with its noise, as the
    post's callback sees it). ``timestep(model, sigma)``: the step's timestep as the host computes it."""
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, following = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * ones, **extra_args)
        up = min(following, eta * (following ** 2 * (sigma ** 2 - following ** 2) / sigma ** 2) ** 0.5) if eta else 0.0
        down = (following ** 2 - up ** 2) ** 0.5
        x = x + (x - denoised) / sigma * (down - sigma)
        if not after_noise:
            x = filter_step(x, timestep(model, sigma))
        if following > 0:
            x = x + noise_sampler(sigma, following) * up
        if after_noise:
            x = filter_step(x, timestep(model, sigma))
    return x


def heun(model, x, sigmas, extra_args=None, callback=None, disable=None, filter_step=post_step_per_image, timestep=_t):
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, following = sigmas[i], sigmas[i + 1]
        slope = (x - model(x, sigma * ones, **extra_args)) / sigma
        step = following - sigma
        if following == 0:
            x = x + slope * step
        else:
            trial = x + slope * step
            slope_2 = (trial - model(trial, following * ones, **extra_args)) / following
            x = x + (slope + slope_2) / 2 * step
        x = filter_step(x, timestep(model, sigma))
    return x


def dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None, filter_step=post_step_per_image,
             timestep=_t):
    ones = x.new_ones([x.shape[0]])
    previous = None  # the previous prediction as the model made it
    for i in range(len(sigmas) - 1):
        sigma, following = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * ones, **extra_args)
        lam, lam_next = -sigma.log(), -following.log()
        h = lam_next - lam
        if previous is None or following == 0:
            blended = denoised
        else:
            r = (lam - (-sigmas[i - 1].log())) / h
            blended = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
        x = (lam_next.neg().exp() / lam.neg().exp()) * x - (-h).expm1() * blended  # σ_next/σ through λ, as k-diffusion
        previous = denoised
        x = filter_step(x, timestep(model, sigma))
    return x


def ddim(model, x, timesteps, extra_args=None, callback=None, disable=None, eta=0.0, filter_step=post_step_per_image):
    """DDIM (η = 0) on its own latent √ᾱ·x0 + √(1−ᾱ)·ε, walking ``timesteps`` from the last entry down."""
    table = model.inner_model.inner_model.alphas_cumprod
    ones = x.new_ones([x.shape[0]])
    for i in range(len(timesteps) - 1):
        k = len(timesteps) - 1 - i
        t = timesteps[k]
        eps = model(x, t.item() * ones, **extra_args)
        a_t, a_prev = table[t].item(), table[timesteps[k - 1]].item()
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
        x = filter_step(a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps, float(t))
    return x
