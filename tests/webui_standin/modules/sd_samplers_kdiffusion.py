"""Imitates modules/sd_samplers_kdiffusion.py (A 10-234) plus the few k-diffusion samplers it drives
(K k_diffusion/sampling.py: get_sigmas_karras, to_d, get_ancestral_step, sample_euler, sample_euler_ancestral,
sample_heun, sample_dpmpp_2m — re-implemented here, no churn). Ancestral noise: `noise_sampler` = p.rng.next(),
which is per-image seeded like A's TorchHijack + rng.ImageRNG, so image i of a batch equals the same seed alone."""
import inspect

import torch

from modules import sd_samplers_cfg_denoiser, sd_samplers_common, shared
from modules.standin_model import CompVisDenoiser, ForgeScheduleLinker


def get_sigmas_karras(n, sigma_min, sigma_max, rho=7.0, device="cpu"):
    ramp = torch.linspace(0, 1, n)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, torch.zeros(1)])


def get_sigmas_exponential(n, sigma_min, sigma_max, device="cpu"):
    return torch.cat([torch.linspace(torch.log(torch.tensor(sigma_max)), torch.log(torch.tensor(sigma_min)), n).exp(), torch.zeros(1)])


def normal_scheduler(n, sigma_min, sigma_max, inner_model, device="cpu"):  # A sd_schedulers.py:90-104
    start, end = inner_model.sigma_to_t(torch.tensor(sigma_max)), inner_model.sigma_to_t(torch.tensor(sigma_min))
    return torch.tensor([float(inner_model.t_to_sigma(t)) for t in torch.linspace(float(start), float(end), n)] + [0.0])


def sgm_uniform(n, sigma_min, sigma_max, inner_model, device="cpu"):  # A sd_schedulers.py:33-41
    """'SGM Uniform': n timesteps evenly spaced from t(sigma_max) toward t(sigma_min), the last one left out
    ("trailing", as few-step models are trained: 4 steps give t = 999, 749.25, 499.5, 249.75), then a final 0."""
    start, end = inner_model.sigma_to_t(torch.tensor(sigma_max)), inner_model.sigma_to_t(torch.tensor(sigma_min))
    sigs = [float(inner_model.t_to_sigma(t)) for t in torch.linspace(float(start), float(end), n + 1)[:-1]]
    return torch.tensor(sigs + [0.0])


def simple_scheduler(n, sigma_min, sigma_max, inner_model, device="cpu"):  # A sd_schedulers.py:81-87
    """'Simple': every (len(sigmas) / n)-th sigma of the model's table, from the top, then a final 0."""
    ss = len(inner_model.sigmas) / n
    return torch.tensor([float(inner_model.sigmas[-(1 + int(x * ss))]) for x in range(n)] + [0.0])


def to_d(x, sigma, denoised):
    return (x - denoised) / sigma


def get_ancestral_step(sigma_from, sigma_to, eta=1.0):
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    return (sigma_to ** 2 - sigma_up ** 2) ** 0.5, sigma_up


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, noise_sampler=None):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigma_up
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:  # second model call per step
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    s_in = x.new_ones([x.shape[0]])
    t_fn = lambda s: s.log().neg()
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            d = denoised
        else:
            r = (t - t_fn(sigmas[i - 1])) / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * d  # σ_next/σ through t, as k-diffusion computes it
        old_denoised = denoised
    return x


samplers_k_diffusion = [  # A 11-27 (subset)
    ("DPM++ 2M", sample_dpmpp_2m, ["k_dpmpp_2m"], {"scheduler": "karras"}),
    ("Euler a", sample_euler_ancestral, ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}),
    ("Euler", sample_euler, ["k_euler"], {}),
    ("Heun", sample_heun, ["k_heun"], {"second_order": True}),
]
samplers_data_k_diffusion = [
    sd_samplers_common.SamplerData(label, lambda model, funcname=funcname: KDiffusionSampler(funcname, model), aliases, options)
    for label, funcname, aliases, options in samplers_k_diffusion
]


class CFGDenoiserKDiffusion(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self):  # A 52-64 / F 59-65
        if self.model_wrap is None:
            if shared.standin_host == "forge":
                self.model_wrap = ForgeScheduleLinker(shared.sd_model.forge_objects.unet.model.predictor)
                self.model_wrap.inner_model = shared.sd_model
            else:
                self.model_wrap = CompVisDenoiser(shared.sd_model, quantize=shared.opts.enable_quantization)
        return self.model_wrap


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname, sd_model, options=None):
        super().__init__(funcname)
        self.func = funcname
        self.model_wrap_cfg = CFGDenoiserKDiffusion(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_sigmas(self, p, steps):  # A 79-132 (subset of schedulers)
        name = (getattr(p, "hr_scheduler", None) if p.is_hr_pass else p.scheduler) or "Automatic"
        if name == "Automatic":
            name = self.config.options.get("scheduler", None)
        labels = {"karras": "Karras", "exponential": "Exponential", "normal": "Normal", "uniform": "Uniform",
                  "sgm_uniform": "SGM Uniform", "simple": "Simple"}  # A sd_schedulers.py:131-143 (subset)
        name = {label: key for key, label in labels.items()}.get(name, name)
        smin, smax = self.model_wrap.sigmas[0].item(), self.model_wrap.sigmas[-1].item()
        if name is None or name == "uniform":
            return self.model_wrap.get_sigmas(steps)
        if name not in ("Automatic",) and not p.is_hr_pass:
            p.extra_generation_params["Schedule type"] = labels.get(name, name)
        if name == "karras":
            return get_sigmas_karras(steps, smin, smax)
        if name == "exponential":
            return get_sigmas_exponential(steps, smin, smax)
        if name == "normal":
            return normal_scheduler(steps, smin, smax, self.model_wrap)
        if name == "sgm_uniform":
            return sgm_uniform(steps, smin, smax, self.model_wrap)
        if name == "simple":
            return simple_scheduler(steps, smin, smax, self.model_wrap)
        raise ValueError(f"stand-in has no scheduler {name!r}")

    def _kwargs(self, p, sigmas):
        kw = self.initialize(p)
        params = inspect.signature(self.func).parameters
        if "eta" in params:
            kw["eta"] = self.eta
        if "noise_sampler" in params:
            kw["noise_sampler"] = self.noise_sampler
        kw["sigmas"] = sigmas
        return kw

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)  # A 134-188
        sigmas = self.get_sigmas(p, steps)
        sigma_sched = sigmas[steps - t_enc - 1:]
        xi = x + noise * sigma_sched[0]
        kw = self._kwargs(p, sigma_sched)
        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        self.sampler_extra_args = {"cond": conditioning, "image_cond": image_conditioning, "uncond": unconditional_conditioning,
                                   "cond_scale": p.cfg_scale, "s_min_uncond": self.s_min_uncond}
        return self.launch_sampling(t_enc + 1, lambda: self.func(self.model_wrap_cfg, xi, extra_args=self.sampler_extra_args,
                                                                 disable=False, callback=self.callback_state, **kw))

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps  # A 190-234
        sigmas = self.get_sigmas(p, steps)
        x = x * (torch.sqrt(1.0 + sigmas[0] ** 2.0) if shared.opts.sgm_noise_multiplier else sigmas[0])
        kw = self._kwargs(p, sigmas)
        self.last_latent = x
        self.sampler_extra_args = {"cond": conditioning, "image_cond": image_conditioning, "uncond": unconditional_conditioning,
                                   "cond_scale": p.cfg_scale, "s_min_uncond": self.s_min_uncond}
        return self.launch_sampling(steps, lambda: self.func(self.model_wrap_cfg, x, extra_args=self.sampler_extra_args,
                                                             disable=False, callback=self.callback_state, **kw))
