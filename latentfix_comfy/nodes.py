"""The ComfyUI nodes: LatentFix (preset + strength), LatentFix advanced (every filter setting), latent view.

Node inputs are generated from ``lib_latentfix.settings.FIELDS`` (names, ranges, steps, defaults, tooltips), so the
ComfyUI nodes and the WebUI show one table. Settings travel the ComfyUI way, as node inputs in the workflow JSON
(and in the ``prompt``/``workflow`` PNG text chunks); ComfyUI checks ranges and choices itself before a run
(execution.py ``validate_inputs``), and the channel lists are checked by ``VALIDATE_INPUTS`` through the same
coercion as the WebUI's API.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import torch

from .core import arguments as lf_arguments, preview, settings as lf_settings
from .patch import SAMPLER_SAMPLE, WRAPPER_KEY, LatentFixPatch, message, sampler_wrapper

CATEGORY = "latent/LatentFix"
FILTER_GROUPS = ("clamp", "center", "maximize")
CHANNELS_HINT = " Channel numbers separated by commas: 0 luminance, 1 cyan/red, 2 lime/purple, 3 pattern."


# -------------------------------------------------------------------------------------------------------------
# inputs from the settings table


def _main_numbers() -> list[lf_settings.Field]:
    """Main-group number fields (the overall strength) — on both nodes."""
    return [f for f in lf_settings.FIELDS if f.group == "main" and f.kind == "float"]


def _filter_fields() -> list[lf_settings.Field]:
    return [f for f in lf_settings.FIELDS if f.group in FILTER_GROUPS]


def channels_text(channels: Any) -> str:
    return ",".join(str(c) for c in channels)


def input_spec(field: lf_settings.Field) -> tuple:
    """The ComfyUI input definition of one settings field."""
    default = field.default
    if field.kind == "bool":
        return ("BOOLEAN", {"default": default, "tooltip": field.hint})
    if field.kind == "float":
        return ("FLOAT", {"default": default, "min": field.minimum, "max": field.maximum, "step": field.step,
                          "round": field.step, "tooltip": field.hint})
    if field.kind == "choice":
        return (list(field.choices), {"default": default, "tooltip": field.hint})
    if field.kind == "channels":
        return ("STRING", {"default": channels_text(default), "tooltip": field.hint + CHANNELS_HINT})
    raise ValueError(f"no ComfyUI input for setting kind {field.kind!r} ({field.name})")


def _validate_channels(names: list[str]) -> Callable[..., Any]:
    """A VALIDATE_INPUTS taking exactly the channel inputs (ComfyUI passes the inputs its signature names and
    keeps its own range/choice checks for every other input, execution.py:777-792, 912 at ComfyUI fe251146).

    ComfyUI attaches the one result to every input the signature names, so the result names each bad input with
    its own problem (all of them, not only the first) and says nothing of the valid ones."""

    def validate(**values: Any) -> Any:
        found = []
        for name, value in values.items():
            if value is None:  # connected to another node's output: checked when the node runs
                continue
            try:
                lf_settings.coerce(name, value)
            except lf_settings.SettingsError as error:
                found.append(str(error))
        return " | ".join(found) if found else True

    validate.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return staticmethod(validate)


def _values(fields: list[lf_settings.Field], inputs: dict) -> dict[str, Any]:
    return {f.name: inputs[f.name] for f in fields if f.name in inputs}


# The correction points ComfyUI offers: "before guidance" needs A1111's separate-prediction hook, which ComfyUI has not.
COMFY_POINTS = (lf_settings.LATENT, lf_settings.AFTER_CFG)


def point_spec() -> tuple:
    """The advanced node's correction point input: the table's field, offered with the points ComfyUI can run."""
    field = lf_settings.FIELD_BY_NAME["correction_point"]
    return ([field.choice_label(c) for c in COMFY_POINTS],
            {"default": field.choice_label(field.default), "tooltip": field.hint})


def patched(model: Any, named: dict[str, Any]) -> Any:
    """A clone of ``model`` that corrects each image as the settings say (by default on the sampler latent, as the
    post); ``model`` itself when nothing would change.

    Settings that do not fit together (e.g. a window whose start is below its end) print one line and leave the
    model uncorrected.
    """
    try:
        settings = lf_arguments.from_named({"enabled": True, **named})
    except lf_settings.SettingsError as error:
        message(f"{error}; the model passes through uncorrected")
        return model
    schedule = settings.schedule()
    if not schedule.steps:
        return model
    point = settings.correction_point
    if point not in COMFY_POINTS:
        message(f"the correction point {lf_settings.POINT_LABELS.get(point, point)!r} needs AUTOMATIC1111; ComfyUI has "
                f"no such hook, so this model is corrected {lf_settings.POINT_LABELS[lf_settings.AFTER_CFG]}")
        point = lf_settings.AFTER_CFG
    clone = model.clone()
    patch = LatentFixPatch(schedule, clone.model_options.get("denoise_mask_function"), point)
    clone.set_model_sampler_post_cfg_function(patch)
    clone.set_model_denoise_mask_function(patch.denoise_mask)
    if callable(getattr(clone, "add_wrapper_with_key", None)):
        present = clone.get_wrappers(SAMPLER_SAMPLE, WRAPPER_KEY) if callable(getattr(clone, "get_wrappers", None)) else []
        if sampler_wrapper not in present:  # (a ComfyUI without sampler wrappers: each run falls back, one line)
            clone.add_wrapper_with_key(SAMPLER_SAMPLE, WRAPPER_KEY, sampler_wrapper)  # which sampler runs, per run
    # (both points use it: the model calls' timesteps, hence the windows, are known on the host from the sampler)
    return clone


# -------------------------------------------------------------------------------------------------------------
# nodes


class LatentFix:
    """Preset + overall strength."""

    DESCRIPTION = ("Corrects each image's latent after every sampler step, as the post's callback does, with the SDXL "
                   "latent filters of 'SDXL latent space explained' (soft clamp, colour centering, range maximize), "
                   "as the WebUI extension does (exact for euler, ddim, heun and dpmpp_2m; euler_ancestral before its "
                   "added noise; other samplers: the guided prediction). SD 1.x/2.x and SDXL models; other latent "
                   "formats pass through.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        preset = lf_settings.FIELD_BY_NAME["preset"]
        presets = [name for name in lf_settings.PRESET_NAMES if name in lf_settings.PRESETS]
        required: dict[str, tuple] = {
            "model": ("MODEL", {"tooltip": "The model to correct (a patched clone is returned; the input is unchanged)."}),
            "preset": (presets, {"default": preset.default, "tooltip": "The set of filter values to use (the "
                       "WebUI's presets; LatentFix advanced sets each value)."}),
        }
        required.update({f.name: input_spec(f) for f in _main_numbers()})
        return {"required": required}

    def patch(self, model: Any, preset: str, **numbers: Any) -> tuple:
        return (patched(model, {"preset": preset, **_values(_main_numbers(), numbers)}),)


class LatentFixAdvanced:
    """Every filter setting of the WebUI's table, with its name, range and default."""

    DESCRIPTION = LatentFix.DESCRIPTION + " Every filter setting, as in the WebUI's sliders."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    VALIDATE_INPUTS = _validate_channels([f.name for f in lf_settings.FIELDS if f.kind == "channels"
                                          and f.group in FILTER_GROUPS])

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        required: dict[str, tuple] = {"model": LatentFix.INPUT_TYPES()["required"]["model"]}
        required.update({f.name: input_spec(f) for f in _main_numbers() + _filter_fields()})
        required["correction_point"] = point_spec()
        return {"required": required}

    def patch(self, model: Any, **inputs: Any) -> tuple:
        named = _values(_main_numbers() + _filter_fields(), inputs)
        if "correction_point" in inputs:
            named["correction_point"] = inputs["correction_point"]
        return (patched(model, named),)


LATENT_SPACES = {
    # ComfyUI's LATENT holds VAE latents before the model's scale (latent_formats.py: SDXL 0.13025, SD15 0.18215);
    # the filters and the post's RGB weights work on the scaled latent the model sees.
    "SDXL": 0.13025,
    "SD 1.x/2.x": 0.18215,
    "as is (already scaled)": 1.0,
}


class LatentFixLatentView:
    """A LATENT as the four channels (grey maps) and as the post's linear RGB approximation."""

    DESCRIPTION = ("Shows a latent the way the LatentFix diagnostics do: each channel as a grey map (-range black, "
                   "0 grey, +range white, red/blue beyond) with its min/mean/max, and the post's linear RGB "
                   "approximation. Put one before and one after a sampler.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("channels", "rgb")
    FUNCTION = "view"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "samples": ("LATENT", {"tooltip": "The latent to show (e.g. the output of a sampler)."}),
            "latent_space": (list(LATENT_SPACES), {"default": "SDXL", "tooltip": "Which model's scale to apply "
                             "(ComfyUI's LATENT is unscaled; the channel values quoted by the post are scaled)."}),
            "value_range": ("FLOAT", {"default": 4.0, "min": 0.5, "max": 20.0, "step": 0.5, "tooltip":
                            "Grey scale of the channel view: -range black, +range white."}),
            "rgb_scale": ("INT", {"default": 8, "min": 1, "max": 8, "tooltip":
                          "Upscale of the RGB approximation (8 = the image's size)."}),
        }}

    def view(self, samples: dict, latent_space: str, value_range: float, rgb_scale: int) -> tuple:
        latents = samples["samples"].detach().to("cpu", torch.float32) * LATENT_SPACES[latent_space]
        if latents.dim() == 5:  # video latents [B, C, T, H, W]: one view per frame
            latents = latents.movedim(2, 1).reshape(-1, latents.shape[1], *latents.shape[-2:])
        if latents.numel() == 0:  # nothing to draw: an empty batch (no image) for both outputs
            message(f"latent view: the latent is empty (shape {tuple(samples['samples'].shape)}); nothing to show")
            empty = torch.zeros((0, 8, 8, 3), dtype=torch.float32)
            return (empty, empty.clone())
        views = [preview.channel_view(latents[i], value_range=float(value_range)) for i in range(len(latents))]
        channels = _stack(views)
        if latents.shape[1] != 4:
            message(f"latent view: {latents.shape[1]}-channel latent; the RGB approximation needs 4 channels "
                    "(the channel view is returned instead)")
            return (channels, channels)
        return (channels, _stack(preview.latents_to_rgb(latents, scale=int(rgb_scale))))


def _stack(images: list) -> torch.Tensor:
    """PIL images as a ComfyUI IMAGE batch ``[B, H, W, 3]`` in 0..1, padded to the largest with the view's background."""
    height = max(im.height for im in images)
    width = max(im.width for im in images)
    out = np.empty((len(images), height, width, 3), dtype=np.float32)
    out[:] = np.asarray(preview.BACKGROUND, dtype=np.float32) / 255.0
    for i, im in enumerate(images):
        out[i, :im.height, :im.width] = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(out)


NODE_CLASS_MAPPINGS = {
    "LatentFix": LatentFix,
    "LatentFixAdvanced": LatentFixAdvanced,
    "LatentFixLatentView": LatentFixLatentView,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LatentFix": "LatentFix (SDXL latent correction)",
    "LatentFixAdvanced": "LatentFix advanced (SDXL latent correction)",
    "LatentFixLatentView": "LatentFix latent view",
}
