"""Imitates modules/sd_samplers_cfg_denoiser.py.

`forward` replays A1111 v1.10.1 (A sd_samplers_cfg_denoiser.py:156-311) when shared.standin_host == "a1111" and
Forge (F sd_samplers_cfg_denoiser.py:156-228 + F backend/sampling/sampling_function.py:292-363) when "forge".
Simplified: no edit (pix2pix) models, no cond padding, always batch_cond_uncond, no live preview image,
Forge AND composition = strength-weighted mean of the sub-prompt predictions (F condition.py:122-142)."""
import math

import torch

from modules import prompt_parser, sd_samplers_common, shared
from modules.script_callbacks import (AfterCFGCallbackParams, CFGDenoisedParams, CFGDenoiserParams,
                                      cfg_after_cfg_callback, cfg_denoised_callback, cfg_denoiser_callback)


def catenate_conds(conds):
    if not isinstance(conds[0], dict):
        return torch.cat(conds)
    return prompt_parser.DictWithShape({k: torch.cat([c[k] for c in conds]) for k in conds[0]})


def _rows(cond, idx):
    return prompt_parser.DictWithShape({k: v[idx] for k, v in cond.items()}) if isinstance(cond, dict) else cond[idx]


class CFGDenoiser(torch.nn.Module):
    def __init__(self, sampler):
        super().__init__()
        self.model_wrap = self.mask = self.nmask = self.init_latent = None
        self.steps = self.total_steps = None
        self.step, self.image_cfg_scale, self.sampler, self.p = 0, None, sampler, None
        self.cond_scale_miltiplier = 1.0
        self.need_last_noise_uncond, self.last_noise_uncond = False, None
        self.mask_before_denoising = False  # True for timestep samplers in A
        self.classic_ddim_eps_estimation = False  # True for timestep samplers in F

    @property
    def inner_model(self):
        raise NotImplementedError()

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):  # A 74-82
        # the last B rows are the images' uncond predictions; every AND sub-prompt row of image i then pushes image i
        # away from its uncond by (its weight × the scale), accumulated in the order of the sub-prompts
        uncond_rows = x_out[-uncond.shape[0]:]
        combined = uncond_rows.clone()
        for image, sub_prompts in enumerate(conds_list):
            for row, weight in sub_prompts:
                combined[image] += (x_out[row] - uncond_rows[image]) * (weight * cond_scale)
        return combined

    def get_pred_x0(self, x_in, x_out, sigma):
        return x_out

    def update_inner_model(self):  # A 93-98
        self.model_wrap = None
        c, uc = self.p.get_conds()
        self.sampler.sampler_extra_args["cond"] = c
        self.sampler.sampler_extra_args["uncond"] = uc

    def apply_blend(self, current_latent, sigma):  # A 174-183 (on_mask_blend script hook omitted)
        return current_latent * self.nmask + self.init_latent * self.mask

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        if shared.standin_host == "forge":
            return self.forward_forge(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)
        state, opts = shared.state, shared.opts
        if state.interrupted or state.skipped:
            raise sd_samplers_common.InterruptedException
        if sd_samplers_common.apply_refiner(self, sigma):  # 160-162: same x continues
            cond, uncond = self.sampler.sampler_extra_args["cond"], self.sampler.sampler_extra_args["uncond"]

        conds_list, tensor = prompt_parser.reconstruct_multicond_batch(cond, self.step)  # 168-169
        uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step)

        if self.mask_before_denoising and self.mask is not None:  # 186-187 (timestep samplers)
            x = self.apply_blend(x, sigma)

        batch_size = len(conds_list)
        repeats = [len(c) for c in conds_list]
        if isinstance(uncond, dict):
            make_condition_dict = lambda c_crossattn, c_concat: {**c_crossattn, "c_concat": [c_concat]}
        else:
            make_condition_dict = lambda c_crossattn, c_concat: {"c_crossattn": [c_crossattn], "c_concat": [c_concat]}

        # 202-205: image i's row repeated once per AND sub-prompt, then B uncond rows (fresh tensors)
        x_in = torch.cat([torch.stack([x[i] for _ in range(n)]) for i, n in enumerate(repeats)] + [x])
        sigma_in = torch.cat([torch.stack([sigma[i] for _ in range(n)]) for i, n in enumerate(repeats)] + [sigma])
        image_cond_in = torch.cat([torch.stack([image_cond[i] for _ in range(n)]) for i, n in enumerate(repeats)] + [image_cond])

        denoiser_params = CFGDenoiserParams(x_in, image_cond_in, sigma_in, state.sampling_step, state.sampling_steps, tensor, uncond, self)
        cfg_denoiser_callback(denoiser_params)  # 211-217: reassignment honoured
        x_in, image_cond_in, sigma_in = denoiser_params.x, denoiser_params.image_cond, denoiser_params.sigma
        tensor, uncond = denoiser_params.text_cond, denoiser_params.text_uncond

        skip_uncond = False  # 218-231
        if opts.skip_early_cond != 0. and self.step / self.total_steps <= opts.skip_early_cond:
            skip_uncond = True
            self.p.extra_generation_params["Skip Early CFG"] = opts.skip_early_cond
        elif (self.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
            skip_uncond = True
            self.p.extra_generation_params["NGMS"] = s_min_uncond
        if skip_uncond:
            x_in, sigma_in = x_in[:-batch_size], sigma_in[:-batch_size]

        cond_in = tensor if skip_uncond else catenate_conds([tensor, uncond])  # 240-249
        x_out = self.inner_model(x_in, sigma_in, cond=make_condition_dict(cond_in, image_cond_in))

        denoised_image_indexes = [c[0][0] for c in conds_list]  # 273-276
        if skip_uncond:
            x_out = torch.cat([x_out, torch.cat([x_out[i:i + 1] for i in denoised_image_indexes])])

        cfg_denoised_callback(CFGDenoisedParams(x_out, state.sampling_step, state.sampling_steps, self.inner_model))  # 278-279: in-place only

        if self.need_last_noise_uncond:
            self.last_noise_uncond = torch.clone(x_out[-uncond.shape[0]:])
        scale = 1.0 if skip_uncond else cond_scale * self.cond_scale_miltiplier
        denoised = self.combine_denoised(x_out, conds_list, uncond, scale)  # 284-289

        if not self.mask_before_denoising and self.mask is not None:  # 291-293
            denoised = self.apply_blend(denoised, sigma)

        self.sampler.last_latent = self.get_pred_x0(torch.cat([x_in[i:i + 1] for i in denoised_image_indexes]),
                                                    torch.cat([x_out[i:i + 1] for i in denoised_image_indexes]), sigma)  # 295
        sd_samplers_common.store_latent(self.sampler.last_latent)

        after = AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
        cfg_after_cfg_callback(after)  # 306-308: reassignment honoured
        denoised = after.x
        self.step += 1
        return denoised

    # ---------------------------------------------------------------- Forge
    def forward_forge(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        state, opts = shared.state, shared.opts
        if state.interrupted or state.skipped:
            raise sd_samplers_common.InterruptedException
        if self.classic_ddim_eps_estimation:  # F 163-169: timestep -> real sigma, x_t -> k-diffusion space (new tensor)
            acd = self.inner_model.inner_model.alphas_cumprod
            real_sigma = (((1 - acd) / acd) ** 0.5)[sigma.round().long().clip(0, len(acd) - 1)]
            x = x * ((real_sigma ** 2 + 1) ** 0.5)[:, None, None, None]
            sigma = real_sigma
        if sd_samplers_common.apply_refiner(self, x):
            cond, uncond = self.sampler.sampler_extra_args["cond"], self.sampler.sampler_extra_args["uncond"]

        cond_composition, cond = prompt_parser.reconstruct_multicond_batch(cond, self.step)
        uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step) if uncond is not None else None

        if self.mask is not None:  # F 178-181: pre-blend with re-noised init (new tensor); F uses unseeded randn
            predictor = shared.sd_model.forge_objects.unet.model.predictor
            noise = torch.randn(self.init_latent.shape, generator=torch.Generator().manual_seed(self.step))
            x = x * self.nmask + predictor.noise_scaling(sigma[:, None, None, None], noise, self.init_latent) * self.mask

        denoiser_params = CFGDenoiserParams(x, image_cond, sigma, state.sampling_step, state.sampling_steps, cond, uncond, self)
        cfg_denoiser_callback(denoiser_params)  # F 183-184: B rows, the sampler's own x (in-place mutates it)

        if self.p.is_hr_pass:
            cond_scale = self.p.hr_cfg
        if opts.skip_early_cond > 0 and self.step / self.total_steps <= opts.skip_early_cond:
            cond_scale = 1.0
            self.p.extra_generation_params["Skip Early CFG"] = opts.skip_early_cond
        elif (self.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
            cond_scale = 1.0
            self.p.extra_generation_params["NGMS"] = s_min_uncond

        denoised, cond_pred, uncond_pred = forge_sampling_function(denoiser_params, cond_scale, cond_composition)
        if self.need_last_noise_uncond:
            self.last_noise_uncond = (x - uncond_pred) / sigma[:, None, None, None]

        if self.mask is not None:  # F 204-213
            denoised = denoised * self.nmask + self.init_latent * self.mask

        self.sampler.last_latent = denoised
        sd_samplers_common.store_latent(denoised)
        after = AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
        cfg_after_cfg_callback(after)  # F 218-220: CFG-combined x0 for every sampler
        denoised = after.x
        self.step += 1
        if self.classic_ddim_eps_estimation:  # F 224-226
            return (x - denoised) / sigma[:, None, None, None]
        return denoised


def forge_sampling_function(params, cond_scale, cond_composition):
    """F sampling_function.py:292-363 reduced: x0 predictions from the UNet patcher's KModel, cond=1 drops uncond."""
    unet = shared.sd_model.forge_objects.unet
    model, model_options = unet.model, unet.model_options
    x, sigma, cond, uncond = params.x, params.sigma, params.text_cond, params.text_uncond
    if math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False):
        uncond = None
    for fn in model_options.get("sampler_pre_cfg_function", []):
        model, cond, uncond, x, sigma, model_options = fn(model, cond, uncond, x, sigma, model_options)

    n_sub = len(cond_composition[0])
    preds = []
    for k in range(n_sub):  # k-th sub-prompt of every image, strength-weighted
        idx = [row[k][0] for row in cond_composition]
        c = _rows(cond, idx)
        preds.append((model.apply_model(x, sigma, cond=c if isinstance(c, dict) else {"crossattn": c}), cond_composition[0][k][1]))
    strength = sum(w for _, w in preds)
    cond_pred = sum(p * w for p, w in preds) / strength
    if uncond is not None:
        uncond_pred = model.apply_model(x, sigma, cond=uncond if isinstance(uncond, dict) else {"crossattn": uncond})
    else:
        uncond_pred = torch.zeros_like(cond_pred)  # F: out_uncond stays zeros when uncond is None

    if "sampler_cfg_function" in model_options:
        args = {"cond": x - cond_pred, "uncond": x - uncond_pred, "cond_scale": cond_scale, "timestep": sigma, "input": x,
                "sigma": sigma, "cond_denoised": cond_pred, "uncond_denoised": uncond_pred, "model": model, "model_options": model_options}
        result = x - model_options["sampler_cfg_function"](args)
    else:
        edit = strength if not math.isclose(strength, 1.0) else 1.0
        result = uncond_pred + (cond_pred - uncond_pred) * cond_scale * edit
    for fn in model_options.get("sampler_post_cfg_function", []):
        result = fn({"denoised": result, "cond": cond, "uncond": uncond, "model": model, "uncond_denoised": uncond_pred,
                     "cond_denoised": cond_pred, "sigma": sigma, "model_options": model_options, "input": x})
    return result, cond_pred, uncond_pred
