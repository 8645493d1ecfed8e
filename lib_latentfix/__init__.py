"""Host-free core of sd-webui-latentfix: the source post's SDXL latent filters, their schedule, previews.

Only torch, numpy and pillow are used here; the WebUI glue lives in ``scripts/``.
"""

import importlib

# Lazy: ``import lib_latentfix.hostcheck`` (install.py, before the WebUI has installed torch) imports no torch; the
# names below are loaded from their modules the first time they are used.
_EXPORTS = {
    "ALL_CHANNELS": "filters", "COLOUR_CHANNELS": "filters", "center": "filters", "maximize": "filters",
    "soft_clamp": "filters",
    "BLOG": "schedule", "Center": "schedule", "Maximize": "schedule", "Schedule": "schedule", "SoftClamp": "schedule",
    "Step": "schedule", "apply": "schedule",
    "scaled_linear_alphas_cumprod": "sigmas", "sigma_to_t": "sigmas", "t_to_sigma": "sigmas",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__version__ = "0.2.0"

__all__ = [
    "ALL_CHANNELS",
    "BLOG",
    "COLOUR_CHANNELS",
    "Center",
    "Maximize",
    "Schedule",
    "SoftClamp",
    "Step",
    "__version__",
    "apply",
    "center",
    "maximize",
    "scaled_linear_alphas_cumprod",
    "sigma_to_t",
    "soft_clamp",
    "t_to_sigma",
]
