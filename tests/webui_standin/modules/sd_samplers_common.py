"""Stand-in for the WebUI's modules.sd_samplers_common, written for the tests: SamplerData, setup_img2img_steps,
apply_refiner (Forge's uses step/total_steps only), the Sampler base class.
Simplified: no live preview, no TorchHijack (ancestral noise comes from p.rng directly), refiner = swap
`shared.sd_model` to the toy model registered under the checkpoint name."""
from collections import namedtuple

import torch

from modules import shared


class InterruptedException(BaseException):
    pass


class SamplerData(namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])):
    def total_steps(self, steps):
        return steps * 2 if self.options.get("second_order", False) else steps


def setup_img2img_steps(p, steps=None):
    """(schedule length, steps run) for img2img: with "img2img_fix_steps" (or explicit steps) the steps asked for are
    all run, on a schedule stretched by 1 / strength; otherwise the tail strength × steps of the usual schedule."""
    strength = min(p.denoising_strength, 0.999)
    fixed = shared.opts.img2img_fix_steps or steps is not None
    if not fixed:
        return p.steps, int(strength * p.steps)
    asked = steps or p.steps
    schedule = int(asked / strength) if p.denoising_strength > 0 else 0
    return schedule, asked - 1


def store_latent(decoded):
    shared.state.current_latent = decoded


def apply_refiner(cfg_denoiser, sigma=None):
    p = cfg_denoiser.p
    if shared.standin_host == "forge" or shared.opts.refiner_switch_by_sample_steps or sigma is None:
        completed_ratio = cfg_denoiser.step / cfg_denoiser.total_steps
    else:
        try:
            timestep = torch.argmin(torch.abs(cfg_denoiser.inner_model.sigmas - torch.max(sigma)))
        except AttributeError:  # timestep samplers: sigma is the timestep
            timestep = torch.max(sigma).to(dtype=int)
        completed_ratio = (999 - timestep) / 1000
    info = getattr(p, "refiner_checkpoint_info", None)
    if p.refiner_switch_at is not None and completed_ratio < p.refiner_switch_at:
        return False
    if info is None or shared.sd_model.sd_checkpoint_info.name == info.name:
        return False
    if getattr(p, "enable_hr", False):
        mode = shared.opts.hires_fix_refiner_pass
        if (mode == "first pass" and p.is_hr_pass) or (mode == "second pass" and not p.is_hr_pass):
            return False
    p.extra_generation_params["Refiner"] = info.short_title
    p.extra_generation_params["Refiner switch at"] = p.refiner_switch_at
    shared.sd_model = shared.standin_checkpoints[info.name]  # reload_model_weights(info=...)
    p.setup_conds()
    cfg_denoiser.update_inner_model()
    return True


class Sampler:
    def __init__(self, funcname):
        self.funcname, self.func = funcname, funcname
        self.config = None  # set by sd_samplers.create_sampler
        self.last_latent = self.p = self.model_wrap_cfg = self.sampler_extra_args = None
        self.eta, self.s_min_uncond, self.stop_at = None, None, None
        self.eta_option_field, self.eta_default = "eta_ancestral", 1.0

    def callback_state(self, d):  # sets sampling_step AFTER the model call of step i
        if self.stop_at is not None and d["i"] > self.stop_at:
            raise InterruptedException
        shared.state.sampling_step = d["i"]

    def launch_sampling(self, steps, func):
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = self.config.total_steps(steps)
        shared.state.sampling_steps = steps
        shared.state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def initialize(self, p):
        self.p = p
        w = self.model_wrap_cfg
        w.p, w.step = p, 0
        w.mask = p.mask if hasattr(p, "mask") else None
        w.nmask = p.nmask if hasattr(p, "nmask") else None
        self.eta = p.eta if getattr(p, "eta", None) is not None else getattr(shared.opts, self.eta_option_field, 0.0)
        self.s_min_uncond = getattr(p, "s_min_uncond", 0.0)
        return {}

    def noise_sampler(self, *args):  # TorchHijack.randn_like: per-image seeded noise (rng.ImageRNG.next)
        return self.p.rng.next()
