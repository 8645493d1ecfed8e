"""Sigma ↔ training timestep for the SD / SDXL discrete schedule, vectorized and free of host syncs.

The default schedule is the one SD 1.x, SD 2.x and SDXL were trained with: 1000 steps, "scaled linear" betas
from 0.00085 to 0.012 (betas = linspace(√0.00085, √0.012, 1000)²), ᾱ = cumprod(1 − β), σ = √((1 − ᾱ) / ᾱ).
Conversions interpolate linearly in log-sigma between neighbouring table entries, as k-diffusion's
``DiscreteSchedule.sigma_to_t`` / ``t_to_sigma`` do, so fractional timesteps come out for sigmas between
entries. Pass a model's own ``alphas_cumprod`` to use its schedule instead (e.g. a zero-terminal-SNR one).
"""

from __future__ import annotations

import collections
import threading
import weakref
from typing import Optional

import torch

from .filters import constant

Tensor = torch.Tensor

NUM_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012


def scaled_linear_alphas_cumprod(
    num_timesteps: int = NUM_TIMESTEPS, beta_start: float = BETA_START, beta_end: float = BETA_END
) -> Tensor:
    """ᾱ of the "scaled linear" DDPM schedule (float64, on the CPU)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def sigmas_from_alphas_cumprod(alphas_cumprod: Tensor) -> Tensor:
    """σ_t = √((1 − ᾱ_t) / ᾱ_t) for every table entry, on the table's device: in float64 on the CPU, in float32
    elsewhere (MPS has no float64)."""
    if not isinstance(alphas_cumprod, Tensor):
        raise TypeError(f"alphas_cumprod must be a torch.Tensor, got {type(alphas_cumprod).__name__}")
    ac = alphas_cumprod.to(torch.float64 if alphas_cumprod.device.type == "cpu" else torch.float32)
    return ((1.0 - ac) / ac).sqrt()


def _table_dtype(device: torch.device) -> torch.dtype:
    """The log-sigma tables' dtype on ``device``: float64 on the CPU, float32 on accelerators (MPS has none)."""
    return torch.float64 if device.type == "cpu" else torch.float32


def _to_device(log_sigmas: Tensor, device: torch.device) -> Tensor:
    """A float64 CPU table cast on the CPU, then moved: no float64 tensor ever exists on another device."""
    return log_sigmas.to(_table_dtype(device)).to(device)


@constant
def _default_log_sigmas(device: torch.device) -> Tensor:
    with torch.no_grad():
        return _to_device(sigmas_from_alphas_cumprod(scaled_linear_alphas_cumprod()).log(), device)


# A model's own tables, per (table, its in-place version, device): the model hands the same tensor every call.
_MODEL_TABLES: "collections.deque[tuple[weakref.ref, int, torch.device, Tensor]]" = collections.deque(maxlen=8)
_MODEL_LOCK = threading.Lock()


def _model_log_sigmas(alphas_cumprod: Tensor, device: torch.device) -> Tensor:
    # an inference tensor (made under torch.inference_mode, as Forge samples) has no version counter: it is held by
    # identity alone (a table rewritten in place inside inference mode is not noticed; hand over a new tensor)
    version = -1 if alphas_cumprod.is_inference() else alphas_cumprod._version
    with _MODEL_LOCK:
        for ref, held_version, held_device, table in _MODEL_TABLES:
            if ref() is alphas_cumprod and held_version == version and held_device == device:
                return table
    with torch.inference_mode(False), torch.no_grad():  # (a normal tensor, whatever mode the first call ran in)
        host = alphas_cumprod.detach().to("cpu")  # once per table: a copy to the host, widened there
        table = _to_device(sigmas_from_alphas_cumprod(host.to(torch.float64)).log(), device)
    with _MODEL_LOCK:
        _MODEL_TABLES.append((weakref.ref(alphas_cumprod), version, device, table))
    return table


def _log_sigmas(alphas_cumprod: Optional[Tensor], device: torch.device) -> Tensor:
    """log σ of the table (the default schedule's when None) on ``device``, built once per table and device."""
    if alphas_cumprod is None:
        return _default_log_sigmas(device)
    if not isinstance(alphas_cumprod, Tensor):
        raise TypeError(f"alphas_cumprod must be a torch.Tensor or None, got {type(alphas_cumprod).__name__}")
    return _model_log_sigmas(alphas_cumprod, device)


def _check_tensor(name: str, value: object) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def sigma_to_t(sigma: Tensor, alphas_cumprod: Optional[Tensor] = None) -> Tensor:
    """Fractional timestep (0…N−1) of each sigma, float32, same shape and device as ``sigma``.

    Sigmas below the table's smallest give 0, above its largest give N − 1; σ = 0 gives 0. The table is built
    once per device (float64 on the CPU, float32 elsewhere).
    """
    _check_tensor("sigma", sigma)
    log_sigmas = _log_sigmas(alphas_cumprod, sigma.device)
    log_sigma = sigma.to(log_sigmas.dtype).clamp_min(torch.finfo(log_sigmas.dtype).tiny).log()
    n = log_sigmas.shape[0]
    upper = torch.searchsorted(log_sigmas, log_sigma.reshape(-1)).reshape(log_sigma.shape)
    low = (upper - 1).clamp(0, n - 2)
    log_low, log_high = log_sigmas[low], log_sigmas[low + 1]
    w = ((log_sigma - log_low) / (log_high - log_low)).clamp(0.0, 1.0)
    return (low.to(w.dtype) + w).to(torch.float32)


def t_to_sigma(t: Tensor, alphas_cumprod: Optional[Tensor] = None) -> Tensor:
    """Sigma of each (fractional) timestep, float32, same shape and device as ``t`` (clamped to 0…N−1)."""
    _check_tensor("t", t)
    log_sigmas = _log_sigmas(alphas_cumprod, t.device)
    n = log_sigmas.shape[0]
    t = t.to(log_sigmas.dtype).clamp(0.0, n - 1)
    low = t.floor().long().clamp(0, n - 2)
    w = t - low.to(t.dtype)
    log_sigma = (1.0 - w) * log_sigmas[low] + w * log_sigmas[low + 1]
    return log_sigma.exp().to(torch.float32)



# --------------------------------------------------------------------------------------------------------
# eps ↔ x0 (DDPM space: x_t = √ᾱ·x0 + √(1−ᾱ)·ε), for samplers whose model output is ε


def eps_to_x0(x_t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """x0 = (x_t − √(1−ᾱ)·ε) / √ᾱ, per row (``alpha_bar`` is ``[rows]``), in float32."""
    a = alpha_bar.to(torch.float32)[:, None, None, None]
    return (x_t.to(torch.float32) - (1.0 - a).sqrt() * eps.to(torch.float32)) / a.sqrt()


def eps_after_x0_change(eps: Tensor, x0_before: Tensor, x0_after: Tensor, alpha_bar: Tensor) -> Tensor:
    """The ε that yields ``x0_after`` from the same x_t: ε − √ᾱ/√(1−ᾱ)·(x0_after − x0_before).

    Rows the filter left alone (difference exactly 0) keep their ε bit for bit.
    """
    a = alpha_bar.to(torch.float32)[:, None, None, None]
    delta = x0_after.to(torch.float32) - x0_before.to(torch.float32)
    changed = eps.to(torch.float32) - (a / (1.0 - a)).sqrt() * delta
    return torch.where(delta != 0, changed.to(eps.dtype), eps)
