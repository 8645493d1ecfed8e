"""comfy/model_base.py and comfy/latent_formats.py at fe251146: BaseModel's apply path and three latent formats.

The diffusion model itself is replaced by a tiny deterministic function of (scaled input, timestep, cond) that
treats every row on its own, like a UNet: enough to make CFG, samplers and corrections meaningful.
"""

import math

import torch

from .model_sampling import ModelSamplingEpsDiscrete


class LatentFormat:  # latent_formats.py:4-17
    scale_factor = 1.0
    latent_channels = 4
    shift_factor = 0.0

    def process_in(self, latent):
        return (latent - self.shift_factor) * self.scale_factor

    def process_out(self, latent):
        return latent / self.scale_factor + self.shift_factor


class SD15(LatentFormat):  # latent_formats.py:19-30
    scale_factor = 0.18215


class SDXL(LatentFormat):  # latent_formats.py:31-45
    scale_factor = 0.13025


class SD3(LatentFormat):  # latent_formats.py:117-126
    latent_channels = 16
    scale_factor = 1.5305
    shift_factor = 0.0609


class TinyDiffusionModel(torch.nn.Module):
    """Stand-in UNet: eps per row from the scaled input, the timestep and the cond (a [1, C] bias)."""

    def __init__(self, channels=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.mix = torch.nn.Parameter(torch.randn(channels, channels, generator=g) / math.sqrt(channels) + torch.eye(channels))
        self.cast = torch.nn.Parameter(torch.randn(channels, generator=g) * 0.5 + 0.6)  # SDXL-like colour cast

    def forward(self, xc, t, bias):
        t = t.reshape(-1, 1, 1, 1).to(xc.dtype)
        bias = bias.repeat(1, xc.shape[1] // bias.shape[1])  # the 4-value test conds serve 16-channel models too
        mixed = torch.einsum("oc,bchw->bohw", self.mix.to(xc.dtype), xc)
        shifted = torch.roll(xc, shifts=1, dims=-1)
        return torch.tanh(mixed + 0.3 * shifted + bias[..., None, None] + self.cast[None, :, None, None] * t / 1000)


class BaseModel(torch.nn.Module):
    def __init__(self, latent_format=None, channels=4, seed=0):
        super().__init__()
        self.latent_format = latent_format if latent_format is not None else SDXL()
        self.model_sampling = ModelSamplingEpsDiscrete()  # model_base.py:model_sampling(), EPS + Discrete
        self.diffusion_model = TinyDiffusionModel(channels, seed)

    def apply_model(self, x, t, cond):
        # model_base.py:173-213 (_apply_model): input scaling, sigma -> timestep through model_sampling, denoised
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        timestep = self.model_sampling.timestep(t).float()
        model_output = self.diffusion_model(xc, timestep, cond["bias"].to(x.dtype)).float()
        return self.model_sampling.calculate_denoised(sigma, model_output, x)

    def process_latent_in(self, latent):  # model_base.py:322-323
        return self.latent_format.process_in(latent)

    def process_latent_out(self, latent):  # model_base.py:325-326
        return self.latent_format.process_out(latent)

    def scale_latent_inpaint(self, sigma, noise, latent_image, **kwargs):  # model_base.py:357-358
        return self.model_sampling.noise_scaling(sigma.reshape([sigma.shape[0]] + [1] * (len(noise.shape) - 1)), noise,
                                                 latent_image)
