"""LatentFix probe: a TEST-ONLY WebUI extension that records what the sampler sees at each model call.

Used by tests/integration/test_latent_point_real_host.py; never shipped with LatentFix. Install it beside
LatentFix (the test module's docstring says how) and start the WebUI with ``LATENTFIX_PROBE_DIR`` naming a folder;
without that variable it records nothing and changes nothing.

Per generation it writes ``<LATENTFIX_PROBE_DIR>/<time_ns>.pt``, a dict of:

* ``x``: per model call, the sampler's own latent rows (the last ``batch`` rows of the model input at
  ``on_cfg_denoiser``: A1111 puts the uncond rows, a copy of the latent, last);
* ``sigma``: per model call, the matching rows of ``params.sigma`` (k-diffusion: σ; DDIM: the timestep);
* ``prediction``: per model call, the guided prediction as it reaches this probe's after-CFG callback, which runs
  before LatentFix's (LatentFix moves its own last before each sampler run): the RAW prediction;
* ``after_cfg_order``: the names of the after-CFG callbacks in the order the host calls them (first call);
* ``final``: the samples the sampler returned (``post_sample``), ``alphas_cumprod``: the model's table (on Forge,
  where the model has no such attribute until a DDIM-family sampler sets one, ᾱ = 1/(σ² + 1) of its predictor's σ
  table: the same values that sampler would set);
* ``sampler``, ``scheduler``, ``sampler_class``, ``steps``, ``batch``, ``seed``.

Nothing in here modifies a tensor, the request or the infotext.
"""

from __future__ import annotations

import os
import time

import torch

from modules import script_callbacks, scripts

DIR_ENV = "LATENTFIX_PROBE_DIR"
TITLE = "LatentFix probe"

# One generation runs at a time in the WebUI (its queue lock); the record being filled lives here.
_record = None


def _folder():
    folder = os.environ.get(DIR_ENV)
    return folder if folder else None


def _cpu(tensor):
    return tensor.detach().to("cpu", copy=True)


def _alphas_cumprod(model):
    """The model's ᾱ table: A1111's attribute, else Forge's predictor (F modules/sd_samplers_timesteps.py)."""
    table = getattr(model, "alphas_cumprod", None)
    if isinstance(table, torch.Tensor):
        return _cpu(table)
    unet = getattr(getattr(model, "forge_objects", None), "unet", None)
    sigmas = getattr(getattr(getattr(unet, "model", None), "predictor", None), "sigmas", None)
    return _cpu(1.0 / (sigmas ** 2.0 + 1.0)) if isinstance(sigmas, torch.Tensor) else None


def _callback_names(category):
    ordered = script_callbacks.ordered_callbacks(category)
    return [str(getattr(c, "name", None) or getattr(c, "script", "?")) for c in ordered]


def _on_denoiser(params):
    rec = _record
    if rec is None:
        return
    rows = rec["batch"]
    rec["x"].append(_cpu(params.x[-rows:]))
    rec["sigma"].append(_cpu(params.sigma[-rows:]))


def _on_after_cfg(params):
    rec = _record
    if rec is None:
        return
    if rec["after_cfg_order"] is None:
        rec["after_cfg_order"] = _callback_names("cfg_after_cfg")
    rec["prediction"].append(_cpu(params.x))


class LatentFixProbe(scripts.Script):
    def title(self):
        return TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return []

    def process(self, p, *args):
        global _record
        _record = None
        if _folder() is None:
            return
        _record = {
            "sampler": getattr(p, "sampler_name", None),
            "scheduler": getattr(p, "scheduler", None),
            "steps": getattr(p, "steps", None),
            "batch": int(getattr(p, "batch_size", 1)),
            "seed": getattr(p, "seed", None),
            "alphas_cumprod": None,
            "sampler_class": None,
            "sampler_function": None,
            "x": [],
            "sigma": [],
            "prediction": [],
            "after_cfg_order": None,
            "final": None,
        }

    def process_before_every_sampling(self, p, *args, **kwargs):
        if _record is not None:
            sampler = getattr(p, "sampler", None)
            _record["sampler_class"] = type(sampler).__name__ if sampler is not None else None
            function = getattr(sampler, "funcname", None)  # a name (k-diffusion) or the function (DDIM)
            _record["sampler_function"] = function if isinstance(function, str) else getattr(function, "__name__", None)
            if _record["alphas_cumprod"] is None:  # read once the sampler exists (Forge's DDIM sets the attribute)
                _record["alphas_cumprod"] = _alphas_cumprod(getattr(p, "sd_model", None))

    def post_sample(self, p, ps, *args):
        # a latent tensor; a hires pass hands over images already decoded (not recorded)
        if _record is not None and _record["final"] is None and isinstance(ps.samples, torch.Tensor):
            _record["final"] = _cpu(ps.samples)

    def postprocess(self, p, processed, *args):
        global _record
        rec, _record = _record, None
        folder = _folder()
        if rec is None or folder is None:
            return
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{time.time_ns()}.pt")
        torch.save(rec, path + ".part")
        os.replace(path + ".part", path)
        print(f"[{TITLE}] {len(rec['x'])} model calls recorded in {path}")


script_callbacks.on_cfg_denoiser(_on_denoiser, name="latentfix_probe")
script_callbacks.on_cfg_after_cfg(_on_after_cfg, name="latentfix_probe")
