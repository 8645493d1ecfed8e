"""Helpers shared by the node tests: a stand-in ComfyUI model, conds, and a recorder around the LatentFix hook."""

import torch

from . import model_base, samplers
from .model_patcher import ModelPatcher

POSITIVE = {"bias": torch.tensor([[0.6, 0.4, -0.3, 0.1]])}
NEGATIVE = {"bias": torch.tensor([[-0.2, 0.1, 0.2, 0.0]])}


def make_model(latent_format=None, channels=4, seed=0):
    return ModelPatcher(model_base.BaseModel(latent_format, channels=channels, seed=seed))


def empty_latent(batch=2, size=16, channels=4):
    return {"samples": torch.zeros(batch, channels, size, size)}


class Recorder:
    """Post-CFG functions put around the node's: what went into and came out of each LatentFix call."""

    def __init__(self):
        self.before = []  # (sigma, denoised, model_options) per call
        self.after = []

    def __deepcopy__(self, memo):  # ModelPatcher.clone() deep-copies model_options: keep recording here
        return self

    def pre(self, args):
        self.before.append((args["sigma"], args["denoised"].clone(), args["model_options"], args["model"]))
        return args["denoised"]

    def post(self, args):
        self.after.append(args["denoised"].clone())
        return args["denoised"]


def wrap(model, node_fn, recorder):
    """model -> (recorder.pre) -> node -> (recorder.post), in ComfyUI's post-CFG order."""
    base = model.clone()
    base.set_model_sampler_post_cfg_function(recorder.pre)
    patched = node_fn(base)
    out = patched.clone()
    out.set_model_sampler_post_cfg_function(recorder.post)
    return patched, out


def ksample(model, latent, *, sampler="euler", scheduler="normal", steps=8, cfg=7.0, seed=42, denoise=1.0):
    return samplers.common_ksampler(model, seed, steps, cfg, sampler, scheduler, POSITIVE, NEGATIVE, latent,
                                    denoise=denoise)[0]["samples"]
