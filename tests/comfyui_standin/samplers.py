"""comfy/samplers.py, comfy/sample.py and nodes.py common_ksampler at fe251146: from a KSampler node to the hooks.

Call order kept: KSampler computes sigmas (normal / karras, denoise < 1, start/end steps) -> CFGGuider clones the
model options and sets transformer_options["sample_sigmas"] -> KSAMPLER wraps the model in KSamplerX0Inpaint (denoise
mask function, blend) -> the k-diffusion loop calls it with sigma * s_in -> sampling_function (cfg1 optimisation) ->
cfg_function -> every sampler_post_cfg_function in turn, whose result the sampler uses.
"""

import math

import torch

from . import k_diffusion_sampling as kd
from . import patcher_extension
from .model_patcher import create_model_options_clone


def calc_cond_batch(model, conds, x_in, timestep, model_options):
    # samplers.py:202-346 (_calc_cond_batch). Simplified: one apply_model per cond instead of cond/uncond batched
    # together (the rows are independent either way); a missing cond (cfg 1) stays a zero tensor, as out_conds
    # starts as torch.zeros_like(x_in) divided by counts of 1e-37 (samplers.py:223-224, 343-344).
    out = []
    for cond in conds:
        if cond is None:
            out.append(torch.zeros_like(x_in))
        else:
            out.append(model.apply_model(x_in, timestep, cond))
    return out


def cfg_function(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options={}, cond=None, uncond=None):
    # samplers.py:352-367
    cfg_result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        args = {"denoised": cfg_result, "cond": cond, "uncond": uncond, "cond_scale": cond_scale, "model": model,
                "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": timestep,
                "model_options": model_options, "input": x}
        cfg_result = fn(args)
    return cfg_result


def sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options={}, seed=None):
    # samplers.py:369-387
    if math.isclose(cond_scale, 1.0) and model_options.get("disable_cfg1_optimization", False) == False:  # noqa: E712
        uncond_ = None
    else:
        uncond_ = uncond
    out = calc_cond_batch(model, [cond, uncond_], x, timestep, model_options)
    return cfg_function(model, out[0], out[1], cond_scale, x, timestep, model_options=model_options, cond=cond,
                        uncond=uncond_)


class KSamplerX0Inpaint:  # samplers.py:390-403
    # test option: a ComfyUI (or a wrapper) that hands the model call a copy of the sigma the mask function saw
    copy_sigma = False

    def __init__(self, model, sigmas):
        self.inner_model = model
        self.sigmas = sigmas

    def __call__(self, x, sigma, denoise_mask, model_options={}, seed=None):
        if denoise_mask is None:  # no inpainting: the model's prediction as it is
            return self.inner_model(x, sigma, model_options=model_options, seed=seed)
        if "denoise_mask_function" in model_options:  # a node may reshape the mask per step
            options = {"model": self.inner_model, "sigmas": self.sigmas}
            denoise_mask = model_options["denoise_mask_function"](sigma, denoise_mask, extra_options=options)
        kept = 1.0 - denoise_mask  # 1 where the original latent stays
        # outside the mask the model sees the original latent noised to this sigma, and predicts it unchanged
        original_noised = self.inner_model.inner_model.scale_latent_inpaint(
            x=x, sigma=sigma, noise=self.noise, latent_image=self.latent_image)
        if self.copy_sigma:  # a ComfyUI that hands the model call its own copy of sigma
            sigma = sigma.clone()
        prediction = self.inner_model(x * denoise_mask + original_noised * kept, sigma, model_options=model_options,
                                      seed=seed)
        return prediction * denoise_mask + self.latent_image * kept


class KSAMPLER:  # samplers.py:714-756 (the function is called without callback/disable: the stand-in's take none)
    def __init__(self, sampler_function, extra_options={}, inpaint_options={}):
        self.sampler_function = sampler_function
        self.extra_options = extra_options
        self.inpaint_options = inpaint_options

    def max_denoise(self, model_wrap, sigmas):
        max_sigma = float(model_wrap.inner_model.model_sampling.sigma_max)
        sigma = float(sigmas[0])
        return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma

    def sample(self, model_wrap, sigmas, extra_args, noise, latent_image=None, denoise_mask=None):
        extra_args["denoise_mask"] = denoise_mask
        model_k = KSamplerX0Inpaint(model_wrap, sigmas)
        model_k.latent_image = latent_image
        if self.inpaint_options.get("random", False):  # "ddim": the masked area is re-noised with fresh noise
            generator = torch.manual_seed(extra_args.get("seed", 41) + 1)
            model_k.noise = torch.randn(noise.shape, generator=generator).to(noise.dtype).to(noise.device)
        else:
            model_k.noise = noise
        noise = model_wrap.inner_model.model_sampling.noise_scaling(sigmas[0], noise, latent_image,
                                                                   self.max_denoise(model_wrap, sigmas))
        samples = self.sampler_function(model_k, noise, sigmas, extra_args=extra_args, **self.extra_options)
        return model_wrap.inner_model.model_sampling.inverse_noise_scaling(sigmas[-1], samples)


def ksampler(sampler_name, extra_options={}, inpaint_options={}):  # samplers.py:756-781 (k-diffusion names only)
    return KSAMPLER(kd.SAMPLERS[sampler_name], extra_options, inpaint_options)


def sampler_object(name):  # samplers.py:1102-1111: ComfyUI's "ddim" is Euler with random inpaint noise
    if name == "ddim":
        return ksampler("euler", inpaint_options={"random": True})
    return ksampler(name)


class CFGGuider:  # samplers.py:934-1061 (wrappers, hooks and model loading left out)
    def __init__(self, model_patcher):
        self.model_patcher = model_patcher
        self.model_options = model_patcher.model_options
        self.cfg = 1.0

    def __call__(self, x, timestep, model_options={}, seed=None):  # -> outer_predict_noise -> predict_noise
        return sampling_function(self.inner_model, x, timestep, self.conds.get("negative", None),
                                 self.conds.get("positive", None), self.cfg, model_options=model_options, seed=seed)

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, seed=None):
        # samplers.py:1002-1053 -> outer_sample 982-1000 -> inner_sample 964-980
        self.model_options = create_model_options_clone(self.model_options)  # 1036-1037
        # sampler_helpers.prepare_model_patcher (1042): the patcher's wrappers join the options' own
        patcher_extension.merge_into(self.model_options["transformer_options"].setdefault("wrappers", {}),
                                     self.model_patcher.wrappers)
        self.inner_model = self.model_patcher.model
        device = self.model_patcher.load_device
        if denoise_mask is not None:  # sampler_helpers.prepare_mask -> utils.reshape_mask 1212-1231
            denoise_mask = torch.nn.functional.interpolate(
                denoise_mask.reshape((-1, 1, denoise_mask.shape[-2], denoise_mask.shape[-1])),
                size=noise.shape[2:], mode="bilinear")
            denoise_mask = denoise_mask.repeat((1, noise.shape[1], 1, 1))[:, :noise.shape[1]]
            if denoise_mask.shape[0] < noise.shape[0]:
                denoise_mask = denoise_mask.repeat(math.ceil(noise.shape[0] / denoise_mask.shape[0]), 1, 1, 1)[:noise.shape[0]]
            denoise_mask = denoise_mask.to(device)
        noise, latent_image, sigmas = noise.to(device), latent_image.to(device), sigmas.to(device)  # 986-988
        if torch.count_nonzero(latent_image) > 0:  # 965-966
            latent_image = self.inner_model.process_latent_in(latent_image)
        extra_model_options = create_model_options_clone(self.model_options)  # 970-972
        extra_model_options.setdefault("transformer_options", {})["sample_sigmas"] = sigmas
        extra_args = {"model_options": extra_model_options, "seed": seed}
        executor = patcher_extension.WrapperExecutor.new_class_executor(  # 974-979: SAMPLER_SAMPLE wrappers
            sampler.sample, sampler,
            patcher_extension.get_all_wrappers(patcher_extension.SAMPLER_SAMPLE, extra_model_options, is_model_options=True))
        samples = executor.execute(self, sigmas, extra_args, noise, latent_image, denoise_mask)
        return self.inner_model.process_latent_out(samples.to(torch.float32))  # 980


def normal_scheduler(model_sampling, steps):  # samplers.py:431-453 (sgm=False)
    ms = model_sampling
    first, last = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    # evenly spaced timesteps from the noisiest to the cleanest; a final 0 is appended unless the cleanest sigma
    # already is (about) 0, which then takes its place as one more point
    ends_at_zero = math.isclose(float(ms.sigma(last)), 0, abs_tol=0.00001)
    points = torch.linspace(first, last, steps + 1 if ends_at_zero else steps)
    values = [float(ms.sigma(t)) for t in points]
    return torch.FloatTensor(values if ends_at_zero else values + [0.0])


def calculate_sigmas(model_sampling, scheduler_name, steps):  # samplers.py:1092-1100
    if scheduler_name == "normal":
        return normal_scheduler(model_sampling, steps)
    if scheduler_name == "karras":
        return kd.get_sigmas_karras(n=steps, sigma_min=float(model_sampling.sigma_min),
                                    sigma_max=float(model_sampling.sigma_max))
    raise ValueError(f"error invalid scheduler {scheduler_name}")


class KSampler:  # samplers.py:1113-1177
    def __init__(self, model, steps, device, sampler=None, scheduler=None, denoise=None):
        self.model = model
        self.device = device
        self.scheduler = scheduler
        self.sampler = sampler
        self.set_steps(steps, denoise)

    def set_steps(self, steps, denoise=None):  # 1145-1155
        ms = self.model.get_model_object("model_sampling")
        if denoise is None or denoise > 0.9999:
            self.sigmas = calculate_sigmas(ms, self.scheduler, steps).to(self.device)
        else:
            new_steps = int(steps / denoise)
            self.sigmas = calculate_sigmas(ms, self.scheduler, new_steps).to(self.device)[-(steps + 1):]

    def sample(self, noise, positive, negative, cfg, latent_image=None, start_step=None, last_step=None,
               force_full_denoise=False, denoise_mask=None, seed=None):  # 1157-1177
        sigmas = self.sigmas
        # an advanced KSampler may stop early (last_step; its final sigma set to 0 in place when the run must end
        # fully denoised) and start late (start_step; past the end there is nothing to sample)
        if last_step is not None and last_step + 1 < len(sigmas):
            sigmas = sigmas[: last_step + 1]
            if force_full_denoise:
                sigmas[-1] = 0
        if start_step is not None and start_step + 1 >= len(sigmas):
            return latent_image
        if start_step is not None:
            sigmas = sigmas[start_step:]
        # ComfyUI's sample(): a CFGGuider with both conds and the scale, then its sample()
        guider = CFGGuider(self.model)
        guider.conds = dict(positive=positive, negative=negative)
        guider.cfg = cfg
        return guider.sample(noise, latent_image, sampler_object(self.sampler), sigmas, denoise_mask=denoise_mask,
                             seed=seed)


def common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise=1.0,
                    disable_noise=False, start_step=None, last_step=None, force_full_denoise=False):
    # nodes.py:1539-1561 -> comfy/sample.py:63-68 (KSampler built with the patcher's model_options)
    latent_image = latent["samples"]
    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, device="cpu")
    else:
        noise = torch.randn(latent_image.size(), dtype=latent_image.dtype, generator=torch.manual_seed(seed))
    sampler = KSampler(model, steps, model.load_device, sampler_name, scheduler, denoise)
    samples = sampler.sample(noise, positive, negative, cfg, latent_image, start_step, last_step, force_full_denoise,
                             denoise_mask=latent.get("noise_mask"), seed=seed)
    out = latent.copy()
    out["samples"] = samples.to("cpu")
    return (out,)


def ksampler_advanced(model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
                      latent_image, start_at_step, end_at_step, return_with_leftover_noise):
    # nodes.py KSamplerAdvanced.sample: force_full_denoise unless leftover noise is returned, noise optional
    return common_ksampler(model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                           disable_noise=not add_noise, start_step=start_at_step, last_step=end_at_step,
                           force_full_denoise=not return_with_leftover_noise)


def sample_custom(model, noise_seed, cfg, positive, negative, sampler, sigmas, latent):
    # comfy_extras/nodes_custom_sampler.py SamplerCustom -> comfy/sample.py sample_custom: any SAMPLER (e.g. a
    # KSAMPLER around a function of another node pack) over any SIGMAS, noise added
    latent_image = latent["samples"]
    noise = torch.randn(latent_image.size(), dtype=latent_image.dtype, generator=torch.manual_seed(noise_seed))
    guider = CFGGuider(model)
    guider.conds = {"positive": positive, "negative": negative}
    guider.cfg = cfg
    return guider.sample(noise, latent_image, sampler, sigmas, denoise_mask=latent.get("noise_mask"), seed=noise_seed)
