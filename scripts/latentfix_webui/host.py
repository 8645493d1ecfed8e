"""What this extension knows about its WebUI host (A1111 1.10, Forge, reForge): which host it is, the model
family, other extensions' inner passes, and each model call's timesteps — on the device, and before sampling on
the host. Everything here only reads host objects; the maths is in ``lib_latentfix``.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

import torch

from modules import sd_samplers_common, shared

from lib_latentfix import landing as lf_landing
from lib_latentfix import sigmas as lf_sigmas
from lib_latentfix.runtime import HostTimesteps

try:  # A1111 / Forge: the DDIM/PLMS/UniPC denoiser
    from modules.sd_samplers_timesteps import CFGDenoiserTimesteps
except Exception:  # pragma: no cover - hosts without it
    CFGDenoiserTimesteps = ()

LOG_PREFIX = "[LatentFix]"

SDXL, SD, UNSUPPORTED = "sdxl", "sd", "unsupported"

# Attributes other extensions set on the processing object of their own inner passes.
INNER_PASS_FLAGS: tuple[str, ...] = ("_ad_inner",)  # ADetailer (adetailer/scripts/!adetailer.py)

# Samplers whose model calls are known before sampling, by the k-diffusion function they run (the name survives
# wrappers that rename the sampler, e.g. Dynamic Thresholding's "Euler a_dynthres3"): first-order samplers evaluate
# the model exactly at each schedule sigma; these second-order ones twice per step, first at sigma_i, then between
# sigma_i and sigma_i+1 (Heun exactly at sigma_i+1, DPM2 at the log-midpoint, DPM++ SDE at t + h/2). Ancestral
# second-order samplers (DPM2 a, DPM++ 2S a) evaluate below sigma_i+1, Restart and DPM fast/adaptive follow their
# own schedules: those fall back to testing the windows on the device.
FIRST_ORDER = lf_landing.ONE_CALL_PER_STEP
SECOND_ORDER = {"sample_heun", "sample_dpm_2", "sample_dpmpp_sde"}


def log(message: str) -> None:
    """One console line. Through tqdm when it is there (every WebUI has it): a progress bar being drawn is cleared
    first and drawn again below, so the line starts at the left edge instead of after the bar."""
    text = f"{LOG_PREFIX} {message}"
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - a host without tqdm has no progress bar either
        print(text)
        return
    tqdm.write(text)


def forge_like() -> bool:
    """Forge and reForge (a top-level ``modules_forge`` package): every sampler runs in k-diffusion space there,
    and ``on_cfg_denoised`` is never called (F sd_samplers_cfg_denoiser.py:163-169)."""
    return importlib.util.find_spec("modules_forge") is not None


def model_family(model: Any) -> str:
    """"sdxl" for SDXL (base, refiner, SSD-1B, inpaint), "sd" for SD 1.x/2.x, else "unsupported"."""
    if model is None:
        return UNSUPPORTED
    if getattr(model, "is_sd3", False) or getattr(model, "latent_channels", 4) != 4:
        return UNSUPPORTED
    if getattr(model, "is_sdxl", False):
        return SDXL
    if getattr(model, "is_sd1", False) or getattr(model, "is_sd2", False):
        return SD
    return UNSUPPORTED


def is_inner_pass(p: Any) -> bool:
    """True for the processing object of another extension's inner pass (ADetailer and the like)."""
    for flag in INNER_PASS_FLAGS:  # (a loop, not any() over a generator: this runs on every model call)
        if getattr(p, flag, False):
            return True
    return False


def is_hr_pass(p: Any) -> bool:
    return bool(getattr(p, "is_hr_pass", False))


def pass_name(p: Any) -> str:
    """How a message calls the sampler run about to start on ``p``."""
    if is_hr_pass(p):
        return "hires fix pass"
    return "img2img pass" if getattr(p, "init_latent", None) is not None else "first pass"


def repaint_mask(denoiser: Any) -> Optional[torch.Tensor]:
    """The inpainting repaint weight (A1111 ``nmask``), None without a mask."""
    if getattr(denoiser, "mask", None) is None:
        return None
    return getattr(denoiser, "nmask", None)


FORGE_ATTR = "latentfix_forge_like"  # on p: whether this host is Forge-like, decided once per generation


def forge_like_for(p: Any) -> bool:
    """:func:`forge_like`, as decided for this generation (looking it up costs tens of µs: not once per call)."""
    decided = getattr(p, FORGE_ATTR, None)
    return forge_like() if decided is None else decided


def eps_mode(denoiser: Any, forge: bool) -> bool:
    """A1111's DDIM/PLMS/UniPC: the 'sigma' is the timestep and predictions are ε (Forge converts them)."""
    return bool(CFGDenoiserTimesteps) and isinstance(denoiser, CFGDenoiserTimesteps) and not forge


def device_timesteps(denoiser: Any, sigma: torch.Tensor, eps: bool) -> torch.Tensor:
    """Each row's training timestep from its sigma, through the model's own schedule (on the device)."""
    if eps:  # A1111 DDIM/PLMS/UniPC: the sigma argument is the timestep
        return sigma.to(torch.float32)
    inner = getattr(denoiser, "inner_model", None)
    sigma_to_t = getattr(inner, "sigma_to_t", None)
    if callable(sigma_to_t):  # A1111: k-diffusion's log-sigma interpolation; Forge: the predictor
        return sigma_to_t(sigma).to(torch.float32)
    predictor = forge_predictor()
    if predictor is not None:  # Forge's DDIM-family denoisers: the same predictor, reached through the model
        return predictor.timestep(sigma).to(torch.float32)
    alphas = getattr(shared.sd_model, "alphas_cumprod", None)
    return lf_sigmas.sigma_to_t(sigma, alphas if isinstance(alphas, torch.Tensor) else None)


def forge_predictor() -> Any:
    """Forge's noise predictor (F backend/modules/k_prediction.py), if this host has one."""
    unet = getattr(getattr(shared.sd_model, "forge_objects", None), "unet", None)
    predictor = getattr(getattr(unet, "model", None), "predictor", None)
    return predictor if callable(getattr(predictor, "timestep", None)) else None


def _alphas_on_host() -> Optional[torch.Tensor]:
    """The model's ᾱ table on the CPU (one copy per sampler run), None for the SD/SDXL default."""
    predictor = forge_predictor()
    alphas = getattr(predictor, "alphas_cumprod", None) if predictor is not None else None
    if not isinstance(alphas, torch.Tensor):
        alphas = getattr(shared.sd_model, "alphas_cumprod", None)
    return alphas.to("cpu").to(torch.float64) if isinstance(alphas, torch.Tensor) else None


def _steps_of_run(p: Any) -> tuple[int, Optional[int]]:
    """(steps the schedule is built for, t_enc or None) as the sampler will compute them (A processing.py:1454,
    sd_samplers_common.py:22-31): the hires pass and img2img run the last t_enc + 1 steps of a longer schedule."""
    if is_hr_pass(p):
        return sd_samplers_common.setup_img2img_steps(p, getattr(p, "hr_second_pass_steps", 0) or p.steps)
    if getattr(p, "init_latent", None) is not None:
        return sd_samplers_common.setup_img2img_steps(p, None)
    return p.steps, None


def sampler_function(sampler: Any) -> Optional[str]:
    """The name of the function a WebUI sampler runs ("sample_euler_ancestral", "ddim"): A1111 and Forge keep it as
    ``funcname`` (a k-diffusion function's name, or the function itself for DDIM/PLMS/UniPC/LCM)."""
    for held in (getattr(sampler, "funcname", None), getattr(sampler, "func", None)):
        name = held if isinstance(held, str) else getattr(held, "__name__", None)
        if isinstance(name, str):
            return name
    return None


def _sampler_eta(p: Any, sampler: Any) -> float:
    """The eta the sampler will use (A Sampler.initialize: p.eta, else the sampler's option)."""
    eta = getattr(p, "eta", None)
    if eta is None:
        field = getattr(sampler, "eta_option_field", "eta_ancestral")
        eta = getattr(shared.opts, field, getattr(sampler, "eta_default", 1.0))
    return float(eta)


def _k_landings(p: Any, sampler: Any, function: str, sigmas: torch.Tensor) -> tuple[Optional[tuple], Optional[str]]:
    """The latent point's steps for a k-diffusion run over ``sigmas`` (the sampler's own tensor), or why not."""
    kind = lf_landing.sampler_kind(function)
    if kind is None:
        return None, f"no known step for {function}"
    if function in lf_landing.CHURN and float(getattr(p, "s_churn", 0.0) or 0.0) > 0:
        return None, f"{function} with s_churn adds noise before each model call"
    return lf_landing.k_diffusion_landings(kind, sigmas, eta=_sampler_eta(p, sampler)), None


def _ddim_landings(p: Any, sampler: Any, denoiser: Any, timesteps: torch.Tensor, forge: bool) -> tuple:
    """The latent point's steps for a DDIM run over ``timesteps`` (as its loop walks them: last entry first; A
    sd_samplers_timesteps_impl.ddim): ᾱ at each timestep, ᾱ at the one below (ᾱ[0] below the first), η's noise."""
    table = denoiser.inner_model.inner_model.alphas_cumprod.detach().to("cpu")
    index = timesteps.to(torch.long)
    alphas = table[index]
    alphas_prev = table[torch.nn.functional.pad(index[:-1], (1, 0))].to(torch.float64)
    eta = _sampler_eta(p, sampler)
    noise = (eta * ((1 - alphas_prev) / (1 - alphas.to(torch.float64)) * (1 - alphas.to(torch.float64) / alphas_prev)).sqrt()
             if eta else torch.zeros_like(alphas_prev))
    order = list(range(len(index) - 1, 0, -1))  # call i uses entry len - 1 - i
    k_space = None
    if forge:  # Forge hands the callbacks x·√(σ²+1) at σ = √((1-ᾱ)/ᾱ) of the rounded timestep (in the table's
        # dtype), and an x0 (F CFGDenoiser.forward, classic_ddim_eps_estimation)
        sigmas = ((1 - table) / table) ** 0.5
        k_space = [(float(sigmas[int(index[i])]), float((sigmas[int(index[i])] ** 2 + 1) ** 0.5)) for i in order]
    return lf_landing.ddim_landings([float(alphas[i]) for i in order], [float(alphas_prev[i]) for i in order],
                                    [float(noise[i]) for i in order], k_space)


def run_key(sampler: Any, steps: int) -> tuple[int, int]:
    """Names one sampler run: the sampler object and the step count it was launched with (CFGDenoiser.steps)."""
    return id(sampler), int(steps)


def host_timesteps(p: Any) -> tuple[Optional[tuple[int, int]], Optional[HostTimesteps], Optional[str]]:
    """Before a sampler run (``process_before_every_sampling``): the run's key and each model call's timesteps as
    the host will produce them, from the sampler's own schedule (A sd_samplers_kdiffusion.py:79-132 returns it on
    the CPU; A sd_samplers_timesteps.py:86-96 for DDIM). (None, None, why) when the host cannot know them."""
    sampler = getattr(p, "sampler", None)
    function = sampler_function(sampler)
    denoiser = getattr(sampler, "model_wrap_cfg", None)
    if sampler is None or function is None:
        return None, None, "no sampler"
    if getattr(p, "sampler_noise_scheduler_override", None) is not None:
        return None, None, "another extension overrides the sigma schedule"  # asking it twice could disturb it
    steps, t_enc = _steps_of_run(p)
    if callable(getattr(sampler, "get_sigmas", None)) and (function in FIRST_ORDER or function in SECOND_ORDER):
        own = sampler.get_sigmas(p, steps).detach().to("cpu")  # the sampler's own tensor (its dtype: the steps)
        if t_enc is not None:
            own = own[steps - t_enc - 1:]
        sigmas = own.to(torch.float64)
        t = lf_sigmas.sigma_to_t(sigmas, _alphas_on_host()).to(torch.float64)
        t = torch.where(sigmas > 0, t, torch.zeros_like(t))
        landings, no_landing = _k_landings(p, sampler, function, own)
        host = HostTimesteps(tuple(t.tolist()), 2 if function in SECOND_ORDER else 1,
                             second_at_next=function == "sample_heun", landings=landings, no_landing=no_landing)
        return run_key(sampler, len(sigmas) - 1), host, None
    if callable(getattr(sampler, "get_timesteps", None)) and function == "ddim" \
            and isinstance(denoiser, CFGDenoiserTimesteps or ()):
        timesteps = sampler.get_timesteps(p, steps).to("cpu")
        if t_enc is not None:
            timesteps = timesteps[:t_enc]
        launched = len(timesteps) + 1 if t_enc is not None else steps
        landings = _ddim_landings(p, sampler, denoiser, timesteps, forge_like_for(p))
        host = HostTimesteps(tuple(timesteps.to(torch.float64).tolist()), 1, first_call_at=-1, landings=landings)
        return run_key(sampler, launched), host, None
    return None, None, f"sampler {function!r}"
