"""Host-free core of sd-webui-latentfix: the source post's SDXL latent filters, their schedule, previews.

Only torch, numpy and pillow are used here; the WebUI glue lives in ``scripts/``.
"""

from .filters import ALL_CHANNELS, COLOUR_CHANNELS, center, maximize, soft_clamp
from .schedule import BLOG, Center, Maximize, Schedule, SoftClamp, Step, apply
from .sigmas import scaled_linear_alphas_cumprod, sigma_to_t, t_to_sigma

__version__ = "0.1.0"

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
