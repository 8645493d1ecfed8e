"""Toy SD model + the k-diffusion / Forge schedule wrappers around it (no WebUI counterpart file).

- `DiscreteSchedule` / `CompVisDenoiser` imitate k-diffusion's DiscreteSchedule and CompVisDenoiser (log-sigma
  interpolation, x0 = input + eps * (-sigma), eps from `apply_model(input * c_in, t)`).
- `ForgePredictor` / `ForgeScheduleLinker` / `UnetPatcher` / `ForgeObjects` imitate Forge's Prediction
  (timestep() = NEAREST integer index), its DiscreteSchedule linker, UnetPatcher (clone + the set_model_sampler_*
  hooks) and ForgeObjects.
- `ToySDModel` replaces the UNet/text encoders: eps-prediction, strictly per row (no batch cross-talk), cheap.
  Its x0 is the Gaussian-posterior mean for data ~ N(m(cond), 0.5^2) with m = 0.6*tanh(cond pattern) +
  per-channel bias, so outputs carry a deliberate channel cast and CFG amplifies cond/uncond differences."""
import math
import zlib
from types import SimpleNamespace

import torch


def sdxl_alphas_cumprod():  # LegacyDDPMDiscretization: linear_start 0.00085, linear_end 0.012, 1000 steps
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


def nearest_index(log_table, sigma):
    """The index of the tabulated log-sigma closest to each ``sigma`` (ties: the lower index), shaped like ``sigma``."""
    gap = (log_table[:, None] - sigma.log()).abs()
    return gap.argmin(dim=0).view(sigma.shape)


def interpolate_log_sigma(log_table, t):
    """Sigma at a fractional timestep: linear interpolation of the log-sigma table between its two neighbours."""
    below, above, part = t.floor().long(), t.ceil().long(), t.frac()
    return ((1 - part) * log_table[below] + part * log_table[above]).exp()


class DiscreteSchedule(torch.nn.Module):
    """A table of 1000 sigmas (one per training timestep, ascending) and the maps between sigma and timestep."""

    def __init__(self, sigmas, quantize):
        super().__init__()
        self.register_buffer("sigmas", sigmas)
        self.register_buffer("log_sigmas", sigmas.log())
        self.quantize = quantize

    sigma_min = property(lambda self: self.sigmas[0])
    sigma_max = property(lambda self: self.sigmas[-1])

    def get_sigmas(self, n=None):  # "uniform" in t: t = linspace(999, 0, n), then a final 0
        t = torch.linspace(len(self.sigmas) - 1, 0, n)
        return torch.cat([self.t_to_sigma(t), torch.zeros(1)])

    def sigma_to_t(self, sigma, quantize=None):
        if self.quantize if quantize is None else quantize:
            return nearest_index(self.log_sigmas, sigma)
        wanted = sigma.log().reshape(-1)
        # the last table entry at or below each sigma (0 when none is), kept one short of the end
        below = (torch.searchsorted(self.log_sigmas, wanted, right=True) - 1).clamp(0, len(self.log_sigmas) - 2)
        start, stop = self.log_sigmas[below], self.log_sigmas[below + 1]
        part = ((start - wanted) / (start - stop)).clamp(0, 1)
        return ((1 - part) * below + part * (below + 1)).view(sigma.shape)

    def t_to_sigma(self, t):
        return interpolate_log_sigma(self.log_sigmas, t.float())


class CompVisDenoiser(DiscreteSchedule):
    def __init__(self, model, quantize=False):
        super().__init__(((1 - model.alphas_cumprod) / model.alphas_cumprod) ** 0.5, quantize)
        self.inner_model = model

    def forward(self, input, sigma, **kwargs):
        s = sigma[:, None, None, None]
        eps = self.inner_model.apply_model(input / (s ** 2 + 1) ** 0.5, self.sigma_to_t(sigma), **kwargs)
        return input + eps * -s


class ForgePredictor(torch.nn.Module):
    def __init__(self, alphas_cumprod):
        super().__init__()
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.register_buffer("alphas_cumprod", alphas_cumprod)
        self.register_buffer("sigmas", sigmas)
        self.register_buffer("log_sigmas", sigmas.log())

    def sigma_min(self):  # methods here, not properties (as in Forge)
        return self.sigmas[0]

    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):  # the nearest integer index, as Forge's Prediction.timestep
        return nearest_index(self.log_sigmas, sigma)

    def sigma(self, timestep):
        return interpolate_log_sigma(self.log_sigmas, timestep.float().clamp(0, len(self.sigmas) - 1))

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return noise * (torch.sqrt(1.0 + sigma ** 2) if max_denoise else sigma) + latent_image


class ForgeScheduleLinker(torch.nn.Module):
    def __init__(self, predictor):
        super().__init__()
        self.predictor = predictor

    sigmas = property(lambda self: self.predictor.sigmas)
    log_sigmas = property(lambda self: self.predictor.sigmas.log())
    sigma_min = property(lambda self: self.predictor.sigma_min())
    sigma_max = property(lambda self: self.predictor.sigma_max())
    get_sigmas = DiscreteSchedule.get_sigmas

    def sigma_to_t(self, sigma, quantize=None):
        return self.predictor.timestep(sigma)

    def t_to_sigma(self, t):
        return self.predictor.sigma(t)


class KModel:
    """F backend/modules/k_model.py simplified: k-space input + sigma -> x0, UNet run at the nearest integer t."""
    def __init__(self, toy, predictor):
        self.toy, self.predictor = toy, predictor

    def apply_model(self, x, sigma, cond):
        s = sigma[:, None, None, None]
        eps = self.toy.apply_model(x / (s ** 2 + 1) ** 0.5, self.predictor.timestep(sigma).float(), cond=cond)
        return x - eps * s


class UnetPatcher:
    def __init__(self, model, model_options=None):
        self.model, self.model_options = model, model_options or {}
        self.controlnet_linked_list = self.extra_concat_condition = None

    def clone(self):
        return UnetPatcher(self.model, {k: (list(v) if isinstance(v, list) else v) for k, v in self.model_options.items()})

    def set_model_sampler_cfg_function(self, fn, disable_cfg1_optimization=False):
        self.model_options["sampler_cfg_function"] = fn
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def _append(self, key, fn, disable_cfg1_optimization):
        self.model_options[key] = self.model_options.get(key, []) + [fn]
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_post_cfg_function(self, fn, disable_cfg1_optimization=False):
        self._append("sampler_post_cfg_function", fn, disable_cfg1_optimization)

    def set_model_sampler_pre_cfg_function(self, fn, disable_cfg1_optimization=False):
        self._append("sampler_pre_cfg_function", fn, disable_cfg1_optimization)


class ForgeObjects:
    def __init__(self, unet, clip, vae, clipvision):
        self.unet, self.clip, self.vae, self.clipvision = unet, clip, vae, clipvision

    def shallow_copy(self):
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


class ToySDModel:
    """Carries the attributes the glue reads on `shared.sd_model` (as A1111's load_model and WebuiSdModel set them)."""
    def __init__(self, kind="sdxl", flavour="a1111", name="base", bias=(0.30, -0.15, 0.12, -0.25), ctx_dim=64):
        self.is_sdxl, self.is_sd1, self.is_sd2, self.is_sd3 = kind == "sdxl", kind == "sd1", False, False
        self.is_ssd = self.is_sdxl_inpaint = False
        self.latent_channels, self.parameterization = 4, "eps"
        self.scale_factor = 0.13025 if self.is_sdxl else 0.18215
        self.alphas_cumprod = sdxl_alphas_cumprod()  # SD1 uses the same linear schedule
        self.sd_checkpoint_info = SimpleNamespace(name=name, title=name, short_title=name, name_for_extra=name)
        self.sd_model_hash, self.cond_stage_key = name, "crossattn"
        self.model = SimpleNamespace(conditioning_key="crossattn")
        self.channel_bias = torch.tensor(bias).view(1, 4, 1, 1)
        self.ctx_dim = ctx_dim  # real: 2048 (SDXL) / 768 (SD1); reduced to keep the per-call cond stacking cheap
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        self.freqs = torch.rand(4, 2, generator=g) * 3 + 1
        self.phase = torch.rand(4, generator=g) * 2 * math.pi
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.calls = 0  # number of apply_model calls (test aid)
        if flavour == "forge":
            predictor = ForgePredictor(self.alphas_cumprod)
            vae = SimpleNamespace(latent_channels=4, first_stage_model=SimpleNamespace(scaling_factor=self.scale_factor))
            self.forge_objects = ForgeObjects(UnetPatcher(KModel(self, predictor)), None, vae, None)
            self.forge_objects_original = self.forge_objects.shallow_copy()
            self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()
            self.model_config = SimpleNamespace(latent_format=SimpleNamespace(scale_factor=self.scale_factor))

    def get_learned_conditioning(self, texts):
        rows = [torch.randn(77, self.ctx_dim, generator=torch.Generator().manual_seed(zlib.crc32(t.encode()))) for t in texts]
        crossattn = torch.stack(rows)
        if self.is_sdxl:
            return {"crossattn": crossattn, "vector": torch.zeros(len(texts), 32)}  # real vector: 2816
        return crossattn

    def ema_scope(self):
        import contextlib
        return contextlib.nullcontext()

    def apply_model(self, x, t, cond=None, **kwargs):
        """eps for DDPM-scale x_t at (possibly fractional) timestep t; row i depends only on x[i], t[i], cond[i]."""
        self.calls += 1
        c = cond.get("crossattn") if "crossattn" in cond else cond["c_crossattn"][0]
        if isinstance(c, dict):
            c = c["crossattn"]
        f = c[:, :, :8].float().mean(1) * c.shape[1] ** 0.5  # [N, 8], ~N(0,1) per prompt
        n, ch, h, w = x.shape
        yy, xx = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
        pattern = torch.sin(2 * math.pi * (self.freqs[:, 0, None, None] * yy + self.freqs[:, 1, None, None] * xx) + self.phase[:, None, None])
        m = 0.6 * torch.tanh((1 + 0.15 * f[:, :4, None, None]) * pattern + 0.15 * f[:, 4:8, None, None]) + self.channel_bias
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(n).clamp(0, 999)
        sig = interpolate_log_sigma(self.sigmas.log(), t)
        a = (1 / (1 + sig ** 2))[:, None, None, None]
        return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * 0.25 + 1 - a)
