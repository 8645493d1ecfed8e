"""Imitates modules/sd_samplers_timesteps.py (A 11-163) and the DDIM loop of sd_samplers_timesteps_impl.py:11-40.

The `sigma` argument the CFG denoiser receives is the timestep as a float tensor (751.0, 501.0, ...); x is the
DDPM-scale x_t; the UNet output (cfg_denoised / after_cfg) is eps. Mask blend happens on the input with the
CLEAN init latent (mask_before_denoising=True, A 54; cfg_denoiser 186-187).

How A indexes alpha-bar by the timestep: the ddim loop itself indexes `alphas_cumprod[timesteps]` with the
integer timestep tensor (impl.py:13-15, `alphas[index]`), and passes `timesteps[index].item() * s_in` (a float
tensor) to the denoiser. `CFGDenoiserTimesteps.get_pred_x0` (A 56-64) does `ts = sigma.to(dtype=int)` i.e.
TRUNCATION toward zero (UniPC's fractional t 750.7 -> 750), then `self.alphas[ts]` with
`self.alphas = shared.sd_model.alphas_cumprod` captured at denoiser construction (A 53). apply_refiner reads
`torch.max(sigma).to(dtype=int)` the same way (sd_samplers_common.py:167-168).
Forge (F sd_samplers_timesteps.py:37-55; F cfg_denoiser 163-169) instead rounds the timestep, converts it to a real
sigma and x to k-diffusion space before the callbacks, and returns eps computed from the CFG x0."""
import torch

from modules import sd_samplers_common, shared
from modules.sd_samplers_cfg_denoiser import CFGDenoiser


@torch.no_grad()
def ddim(model, x, timesteps, extra_args=None, callback=None, disable=None, eta=0.0):
    alphas_cumprod = model.inner_model.inner_model.alphas_cumprod
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].double()
    sigmas = eta * ((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev)).sqrt()
    s_in = x.new_ones((x.shape[0],))
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in, **extra_args)
        a_t, a_prev, sigma_t = alphas[index].item(), alphas_prev[index].item(), sigmas[index].item()
        pred_x0 = (x - (1 - a_t) ** 0.5 * e_t) / a_t ** 0.5
        x = a_prev ** 0.5 * pred_x0 + (1. - a_prev - sigma_t ** 2) ** 0.5 * e_t
        if sigma_t > 0:
            x = x + sigma_t * model.sampler.noise_sampler()
        if callback is not None:
            callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


samplers_data_timesteps = [
    sd_samplers_common.SamplerData("DDIM", lambda model: CompVisSampler(ddim, model), ["ddim"], {}),
]


class CompVisTimestepsDenoiser(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.inner_model = model

    def forward(self, input, timesteps, **kwargs):
        return self.inner_model.apply_model(input, timesteps, **kwargs)


class CFGDenoiserTimesteps(CFGDenoiser):
    def __init__(self, sampler):
        super().__init__(sampler)
        self.alphas = shared.sd_model.alphas_cumprod
        self.mask_before_denoising = shared.standin_host != "forge"
        self.classic_ddim_eps_estimation = shared.standin_host == "forge"

    def get_pred_x0(self, x_in, x_out, sigma):
        a_t = self.alphas[sigma.to(dtype=int)][:, None, None, None]
        return (x_in - (1 - a_t).sqrt() * x_out) / a_t.sqrt()

    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = CompVisTimestepsDenoiser(shared.sd_model)
        return self.model_wrap


class CompVisSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname, sd_model):
        super().__init__(funcname)
        self.eta_option_field, self.eta_default = "eta_ddim", 0.0
        self.model_wrap_cfg = CFGDenoiserTimesteps(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_timesteps(self, p, steps):  # A 86-96: 4 steps -> [1, 251, 501, 751]; the loop uses the top 3
        return torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)

    def _run(self, p, x, conditioning, unconditional_conditioning, image_conditioning, timesteps, n):
        self.initialize(p)
        self.sampler_extra_args = {"cond": conditioning, "image_cond": image_conditioning, "uncond": unconditional_conditioning,
                                   "cond_scale": p.cfg_scale, "s_min_uncond": self.s_min_uncond}
        return self.launch_sampling(n, lambda: self.func(self.model_wrap_cfg, x, timesteps, extra_args=self.sampler_extra_args,
                                                         callback=self.callback_state, eta=self.eta))

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)  # A 98-139
        timesteps = self.get_timesteps(p, steps)
        a = shared.sd_model.alphas_cumprod[timesteps[t_enc]]
        xi = x * a.sqrt() + noise * (1 - a).sqrt()
        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        return self._run(p, xi, conditioning, unconditional_conditioning, image_conditioning, timesteps[:t_enc], t_enc + 1)

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps  # A 141-163: total reported = steps, model calls = steps - 1
        self.last_latent = x
        return self._run(p, x, conditioning, unconditional_conditioning, image_conditioning, self.get_timesteps(p, steps), steps)
