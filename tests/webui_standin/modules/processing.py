"""Stand-in for the WebUI's modules.processing (A1111 v1.10.1), written for the tests: process_images,
process_images_inner, create_infotext, StableDiffusionProcessingTxt2Img.sample + sample_hr_pass,
StableDiffusionProcessingImg2Img.init (mask part) + sample, and rng.ImageRNG (one torch.Generator per seed). Forge's
differences are replayed when shared.standin_host == "forge": uc None when CFG == 1 (setup_conds), hires uses p.hr_cfg
and hr_uc None when hr_cfg == 1, process_before_every_sampling called twice in hires with the UNet patcher reset from
forge_objects_after_applying_lora before the second call and before txt2img (sample, sample_hr_pass).

Simplified: no VAE — `decode_latent_batch` maps latents to RGB with A's "Approx cheap" SDXL/SD1 matrix
(sd_vae_approx's cheap_approximation) at LATENT resolution, images are float tensors [3,h,w] in 0..1 (not PIL);
img2img takes `init_latent` (a latent, not an image) and `image_mask` as a latent-resolution [h,w] array/tensor
in 0..1 (1 = repaint), rounded with np.around (mask_round) as Img2Img.init does; no extra networks,
styles, face restore, grids, saving, subseeds, prompt scheduling. Test aids: p.standin_latents (final latents
per batch, before decode) and p.standin_first_pass_latents (hires)."""
import json
import random

import numpy as np
import torch

from modules import prompt_parser, scripts, sd_samplers, shared
from modules.infotext_utils import quote

opt_C, opt_f = 4, 8
APPROX = {"sdxl": [[0.3448, 0.4168, 0.4395], [-0.1953, -0.0290, 0.0250], [0.1074, 0.0886, -0.0163], [-0.3730, -0.2499, -0.2088]],
          "sd1": [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]}


class ImageRNG:  # rng.ImageRNG without subseeds: noise for image i depends only on seeds[i]
    def __init__(self, shape, seeds, **kwargs):
        self.shape = tuple(shape)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def next(self):
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])


def decode_latent_batch(model, samples):
    m = torch.tensor(APPROX["sdxl" if model.is_sdxl else "sd1"])
    out = torch.einsum("...lxy,lr->...rxy", samples.float(), m)
    out.already_decoded = True
    return out


def txt2img_image_conditioning(x):
    return x.new_zeros(x.shape[0], 5, 1, 1)


class StableDiffusionProcessing:
    def __init__(self, prompt="", negative_prompt="", seed=-1, sampler_name="Euler a", scheduler=None, batch_size=1,
                 n_iter=1, steps=20, cfg_scale=7.0, width=512, height=512, denoising_strength=None, eta=None,
                 s_min_uncond=0.0, refiner_checkpoint=None, refiner_switch_at=None, override_settings=None,
                 extra_generation_params=None, script_args=None, scripts=None, **kwargs):
        self.prompt, self.negative_prompt, self.seed, self.subseed, self.subseed_strength = prompt, negative_prompt, seed, -1, 0
        self.sampler_name, self.scheduler, self.batch_size, self.n_iter = sampler_name, scheduler, batch_size, n_iter
        self.steps, self.cfg_scale, self.width, self.height = steps, cfg_scale, width, height
        self.denoising_strength, self.eta, self.s_min_uncond = denoising_strength, eta, s_min_uncond
        self.refiner_checkpoint, self.refiner_switch_at, self.refiner_checkpoint_info = refiner_checkpoint, refiner_switch_at, None
        self.override_settings, self.override_settings_restore_afterwards = override_settings or {}, True
        self.extra_generation_params = extra_generation_params or {}
        self.script_args, self.scripts = script_args if script_args is not None else [], scripts
        self.is_api, self.is_hr_pass, self.enable_hr, self.iteration, self.batch_index = False, False, False, 0, 0
        self.sampler, self.c, self.uc, self.rng, self.sd_model_name, self.sd_model_hash = None, None, None, None, None, None
        self.prompts = self.negative_prompts = self.seeds = self.subseeds = None
        self.standin_latents, self.standin_first_pass_latents = [], []
        for k, v in kwargs.items():
            setattr(self, k, v)

    # as in the WebUI, p.sd_model is always shared.sd_model, and assigning to it changes nothing
    sd_model = property(lambda self: shared.sd_model, lambda self, value: None)

    def setup_prompts(self):
        n = self.batch_size * self.n_iter
        self.all_prompts = self.prompt if isinstance(self.prompt, list) else n * [self.prompt]
        neg = self.negative_prompt
        self.all_negative_prompts = neg if isinstance(neg, list) else n * [neg]
        self.main_prompt, self.main_negative_prompt = self.all_prompts[0], self.all_negative_prompts[0]

    def setup_conds(self):  # F: uc None when cfg 1
        total = sd_samplers.find_sampler_config(self.sampler_name).total_steps(self.steps)
        if shared.standin_host == "forge" and self.cfg_scale == 1:
            self.uc = None
        else:
            self.uc = prompt_parser.get_learned_conditioning(shared.sd_model, self.negative_prompts, total)
        self.c = prompt_parser.get_multicond_learned_conditioning(shared.sd_model, self.prompts, total)

    def get_conds(self):
        return self.c, self.uc

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass

    def close(self):
        pass


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    def __init__(self, enable_hr=False, hr_scale=2.0, hr_upscaler="Latent", hr_second_pass_steps=0, hr_sampler_name=None,
                 hr_scheduler=None, hr_prompt="", hr_negative_prompt="", hr_cfg=1.0, denoising_strength=0.75, **kwargs):
        super().__init__(denoising_strength=denoising_strength, **kwargs)
        self.enable_hr, self.hr_scale, self.hr_upscaler, self.hr_second_pass_steps = enable_hr, hr_scale, hr_upscaler, hr_second_pass_steps
        self.hr_sampler_name, self.hr_scheduler, self.hr_prompt, self.hr_negative_prompt = hr_sampler_name, hr_scheduler, hr_prompt, hr_negative_prompt
        self.hr_cfg, self.hr_c, self.hr_uc = hr_cfg, None, None
        self.hr_upscale_to_x, self.hr_upscale_to_y = 0, 0

    def init(self, all_prompts, all_seeds, all_subseeds):
        if self.enable_hr:
            self.extra_generation_params["Denoising strength"] = self.denoising_strength
            self.extra_generation_params["Hires upscale"] = self.hr_scale
            self.extra_generation_params["Hires upscaler"] = self.hr_upscaler
            if self.hr_second_pass_steps:
                self.extra_generation_params["Hires steps"] = self.hr_second_pass_steps
            if shared.standin_host == "forge":
                self.extra_generation_params["Hires CFG Scale"] = self.hr_cfg
            self.hr_upscale_to_x, self.hr_upscale_to_y = int(self.width * self.hr_scale), int(self.height * self.hr_scale)

    def _forge_reset_unet(self):
        if shared.standin_host == "forge":
            self.sd_model.forge_objects = self.sd_model.forge_objects_after_applying_lora.shallow_copy()

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        x = self.rng.next()
        self._forge_reset_unet()
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(p=self, x=x, noise=x, c=conditioning, uc=unconditional_conditioning)
        samples = self.sampler.sample(self, x, conditioning, unconditional_conditioning, image_conditioning=txt2img_image_conditioning(x))
        if not self.enable_hr:
            return samples
        self.standin_first_pass_latents.append(samples)
        return self.sample_hr_pass(samples, seeds)

    def sample_hr_pass(self, samples, seeds):
        self.is_hr_pass = True
        self.sampler = sd_samplers.create_sampler(self.hr_sampler_name or self.sampler_name, self.sd_model)
        # sample_hr_pass's latent upscale; non-latent upscalers (VAE decode/upscale/encode in the real host) fall back to bilinear here
        mode = shared.latent_upscale_modes.get(self.hr_upscaler, shared.latent_upscale_modes["Latent"])["mode"]
        samples = torch.nn.functional.interpolate(samples, size=(self.hr_upscale_to_y // opt_f, self.hr_upscale_to_x // opt_f), mode=mode)
        shared.state.nextjob()
        self.rng = ImageRNG(samples.shape[1:], self.seeds)
        noise = self.rng.next()
        hr_prompts = [self.hr_prompt or p for p in self.prompts]
        hr_neg = [self.hr_negative_prompt or p for p in self.negative_prompts]
        steps = self.hr_second_pass_steps or self.steps
        self.hr_c = prompt_parser.get_multicond_learned_conditioning(shared.sd_model, hr_prompts, steps)
        forge_no_uc = shared.standin_host == "forge" and self.hr_cfg == 1
        self.hr_uc = None if forge_no_uc else prompt_parser.get_learned_conditioning(shared.sd_model, hr_neg, steps)
        if self.scripts is not None:
            self.scripts.before_hr(self)
            self.scripts.process_before_every_sampling(p=self, x=samples, noise=noise, c=self.hr_c, uc=self.hr_uc)
        if shared.standin_host == "forge":
            self._forge_reset_unet()
            if self.scripts is not None:
                self.scripts.process_before_every_sampling(p=self, x=samples, noise=noise, c=self.hr_c, uc=self.hr_uc)
        samples = self.sampler.sample_img2img(self, samples, noise, self.hr_c, self.hr_uc, steps=steps,
                                              image_conditioning=txt2img_image_conditioning(samples))
        self.sampler = None
        self.standin_latents.append(samples)
        decoded = decode_latent_batch(self.sd_model, samples)
        self.is_hr_pass = False
        return decoded

    def get_conds(self):
        return (self.hr_c, self.hr_uc) if self.is_hr_pass else (self.c, self.uc)


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    def __init__(self, init_latent=None, mask=None, denoising_strength=0.75, mask_round=True, initial_noise_multiplier=None, **kwargs):
        super().__init__(denoising_strength=denoising_strength, **kwargs)
        self.standin_init_latent, self.image_mask, self.mask, self.nmask = init_latent, mask, None, None
        self.mask_round, self.init_latent, self.image_conditioning = mask_round, None, None
        self.initial_noise_multiplier = shared.opts.initial_noise_multiplier if initial_noise_multiplier is None else initial_noise_multiplier

    def init(self, all_prompts, all_seeds, all_subseeds):
        self.extra_generation_params["Denoising strength"] = self.denoising_strength
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)  # made once in init, reused for every batch
        lat = torch.as_tensor(self.standin_init_latent, dtype=torch.float32)
        lat = lat[None] if lat.dim() == 3 else lat
        self.init_latent = lat.repeat(self.batch_size, 1, 1, 1) if lat.shape[0] == 1 else lat  # one init latent serves the batch
        if self.image_mask is not None:  # the latent mask: repaint where 1, keep where 0
            latmask = np.asarray(self.image_mask, dtype=np.float32)
            if self.mask_round:
                latmask = np.around(latmask)
            latmask = np.tile(latmask[None], (self.init_latent.shape[1], 1, 1))
            self.mask = torch.asarray(1.0 - latmask).float()
            self.nmask = torch.asarray(latmask).float()
        self.image_conditioning = txt2img_image_conditioning(self.init_latent)

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.rng.next()
        multiplier = self.initial_noise_multiplier
        if multiplier != 1.0:  # the img2img noise multiplier scales the noise in place and is written to the infotext
            x *= multiplier
            self.extra_generation_params["Noise multiplier"] = multiplier
        if shared.standin_host == "forge":
            self.sd_model.forge_objects = self.sd_model.forge_objects_after_applying_lora.shallow_copy()
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(p=self, x=self.init_latent, noise=x, c=conditioning, uc=unconditional_conditioning)
        samples = self.sampler.sample_img2img(self, self.init_latent, x, conditioning, unconditional_conditioning, image_conditioning=self.image_conditioning)
        if self.mask is not None:  # the final blend with the original latent
            samples = samples * self.nmask + self.init_latent * self.mask
        return samples


class Processed:
    def __init__(self, p, images_list, seed=-1, info="", infotexts=None):
        self.images, self.prompt, self.negative_prompt, self.seed, self.info = images_list, p.prompt, p.negative_prompt, seed, info
        self.width, self.height, self.sampler_name, self.cfg_scale, self.steps = p.width, p.height, p.sampler_name, p.cfg_scale, p.steps
        self.batch_size, self.all_prompts, self.all_seeds = p.batch_size, p.all_prompts, p.all_seeds
        self.extra_generation_params = p.extra_generation_params
        self.infotexts = infotexts or [info]
        self.index_of_first_image = 0

    def js(self):
        return json.dumps({"prompt": self.prompt, "seed": self.seed, "extra_generation_params": self.extra_generation_params,
                           "infotexts": self.infotexts}, default=str)


def create_infotext(p, all_prompts, all_seeds, all_subseeds, comments=None, iteration=0, position_in_batch=0, use_main_prompt=False, index=None, all_negative_prompts=None):
    index = 0 if use_main_prompt else (position_in_batch + iteration * p.batch_size if index is None else index)
    all_negative_prompts = all_negative_prompts or p.all_negative_prompts
    generation_params = {
        "Steps": p.steps, "Sampler": p.sampler_name, "Schedule type": p.scheduler, "CFG scale": p.cfg_scale,
        "Seed": p.all_seeds[0] if use_main_prompt else all_seeds[index], "Size": f"{p.width}x{p.height}",
        "Model": shared.sd_model.sd_checkpoint_info.name, "Denoising strength": p.extra_generation_params.get("Denoising strength"),
        **p.extra_generation_params, "Version": "standin",
    }
    # as create_infotext: a list holds one value per image, a callable is asked with the function's local names
    # (p, index, all_seeds, …); one that fails leaves its item out
    asked_with = dict(locals())
    for key in list(generation_params):
        entry = generation_params[key]
        try:
            entry = entry[index] if isinstance(entry, list) else entry(**asked_with) if callable(entry) else entry
        except Exception:
            entry = None
        generation_params[key] = entry
    text = ", ".join([k if k == v else f'{k}: {quote(v)}' for k, v in generation_params.items() if v is not None])
    neg = all_negative_prompts[index]
    return f"{all_prompts[index]}{chr(10) + 'Negative prompt: ' + neg if neg else ''}\n{text}".strip()


def process_images(p):
    if p.scripts is not None:
        p.scripts.before_process(p)
    stored = {k: shared.opts.data.get(k) for k in p.override_settings if k in shared.opts.data}
    try:
        for k, v in p.override_settings.items():
            shared.opts.set(k, v, is_api=True, run_callbacks=False)
        return process_images_inner(p)
    finally:
        if p.override_settings_restore_afterwards:
            for k, v in stored.items():
                shared.opts.data[k] = v


def _handed_to_scripts(p, hook, holder, field, **kwargs):
    """Call the scripts' ``hook`` with ``holder`` (one of the *Args objects) and return its ``field`` afterwards: the
    scripts may have replaced it. Without scripts, the field as it was."""
    if p.scripts is not None:
        getattr(p.scripts, hook)(p, holder, **kwargs)
    return getattr(holder, field)


def process_images_inner(p):
    seed = p.seed if p.seed not in (None, -1, "") else int(random.randrange(4294967294))
    if p.refiner_checkpoint not in (None, "", "None", "none"):
        model = shared.standin_checkpoints.get(p.refiner_checkpoint)
        if model is None:
            raise Exception(f"Could not find checkpoint with name {p.refiner_checkpoint}")
        p.refiner_checkpoint_info = model.sd_checkpoint_info
    p.setup_prompts()
    p.all_seeds = seed if isinstance(seed, list) else [int(seed) + x for x in range(len(p.all_prompts))]
    p.all_subseeds = [-1] * len(p.all_prompts)
    if p.scripts is not None:
        p.scripts.process(p)
    infotexts, output_images = [], []
    with torch.no_grad():
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
        if shared.state.job_count == -1:
            shared.state.job_count = p.n_iter
        for n in range(p.n_iter):
            p.iteration = n
            if shared.state.interrupted or shared.state.stopping_generation:
                break
            shared.sd_model = shared.standin_checkpoints.get(shared.standin_base_checkpoint, shared.sd_model)  # back to the base model (refiner)
            sl = slice(n * p.batch_size, (n + 1) * p.batch_size)
            p.prompts, p.negative_prompts, p.seeds, p.subseeds = p.all_prompts[sl], p.all_negative_prompts[sl], p.all_seeds[sl], p.all_subseeds[sl]
            p.rng = ImageRNG((getattr(shared.sd_model, "latent_channels", opt_C), p.height // opt_f, p.width // opt_f), p.seeds)
            if p.scripts is not None:
                p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
                p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
            p.setup_conds()
            latents = p.sample(conditioning=p.c, unconditional_conditioning=p.uc, seeds=p.seeds, subseeds=p.subseeds,
                               subseed_strength=0, prompts=p.prompts)
            latents = _handed_to_scripts(p, "post_sample", scripts.PostSampleArgs(latents), "samples")
            if getattr(latents, "already_decoded", False):  # hires hands back decoded images
                decoded = latents
            else:
                p.standin_latents.append(latents)
                decoded = decode_latent_batch(p.sd_model, latents)
            pictures = ((decoded.float() + 1.0) / 2.0).clamp(0.0, 1.0)  # decoded -1..1 → 0..1
            shared.state.nextjob()
            if p.scripts is not None:
                p.scripts.postprocess_batch(p, pictures, batch_number=n)
                pictures = _handed_to_scripts(p, "postprocess_batch_list", scripts.PostprocessBatchListArgs(list(pictures)),
                                              "images", batch_number=n)
            for i, picture in enumerate(pictures):
                p.batch_index = i
                picture = _handed_to_scripts(p, "postprocess_image", scripts.PostprocessImageArgs(picture), "image")
                infotexts.append(create_infotext(p, p.prompts, p.seeds, p.subseeds, index=i,
                                                 all_negative_prompts=p.negative_prompts))
                output_images.append(picture)
    res = Processed(p, output_images, seed=p.all_seeds[0], info=infotexts[0] if infotexts else "", infotexts=infotexts)
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res
