"""Stand-in for ComfyUI's comfy.k_diffusion.sampling (commit fe251146), written for the tests: the schedule helpers
and the samplers the tests run (Euler, Euler ancestral, Heun, DPM++ 2M), without progress bars or callbacks. The
steps keep the usual arithmetic of these methods, in the same order, so results match the host's to the bit."""

import torch


def append_zero(x):
    """The schedule with a final 0: the last step lands on the clean image."""
    return torch.cat((x, x.new_zeros(1)))


def get_sigmas_karras(n, sigma_min, sigma_max, rho=7.0, device="cpu"):  # sampling.py:51-57
    # Karras et al.: evenly spaced in sigma^(1/rho), from sigma_max down to sigma_min
    top, bottom = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    fraction = torch.linspace(0, 1, n, device=device)
    return append_zero((top + fraction * (bottom - top)) ** rho).to(device)


def to_d(x, sigma, denoised):  # sampling.py:91-93
    """The ODE's slope dx/dsigma = (x - x0) / sigma, sigma broadcast over the trailing dimensions of x."""
    column = sigma.reshape(*sigma.shape, *([1] * (x.ndim - sigma.ndim)))
    return (x - denoised) / column


def get_ancestral_step(sigma_from, sigma_to, eta=1.0):  # sampling.py:96-103
    """(down, up): step deterministically to ``down``, then add fresh noise of size ``up``; down² + up² = sigma_to²."""
    if not eta:
        return sigma_to, 0.0
    fresh = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    return (sigma_to ** 2 - fresh ** 2) ** 0.5, fresh


def default_noise_sampler(x, seed=None):  # sampling.py:106-115 (per-call randn from a seeded generator)
    source = torch.Generator(device=x.device).manual_seed((0 if seed is None else seed) + 1)

    def draw(sigma, sigma_next):  # unit noise shaped like x, the next draw of the seeded generator
        return torch.randn(x.size(), generator=source, dtype=x.dtype, layout=x.layout, device=x.device)

    return draw


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None):  # sampling.py:218-240 (s_churn = 0)
    kwargs = extra_args or {}
    per_image = x.new_ones([x.shape[0]])
    for now, after in zip(sigmas[:-1], sigmas[1:]):
        slope = to_d(x, now, model(x, now * per_image, **kwargs))
        x = x + slope * (after - now)  # one Euler step along the slope
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, eta=1.0, s_noise=1.0):  # sampling.py:244-265
    kwargs = extra_args or {}
    fresh_noise = default_noise_sampler(x, seed=kwargs.get("seed"))
    per_image = x.new_ones([x.shape[0]])
    for now, after in zip(sigmas[:-1], sigmas[1:]):
        denoised = model(x, now * per_image, **kwargs)
        down, up = get_ancestral_step(now, after, eta=eta)
        if down == 0:  # the last step: the prediction itself
            x = denoised
            continue
        # an Euler step down to `down`, then noise back up to `after`
        x = x + to_d(x, now, denoised) * (down - now) + fresh_noise(now, after) * s_noise * up
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None):  # sampling.py:296-326 (s_churn = 0)
    kwargs = extra_args or {}
    per_image = x.new_ones([x.shape[0]])
    for now, after in zip(sigmas[:-1], sigmas[1:]):
        slope = to_d(x, now, model(x, now * per_image, **kwargs))
        step = after - now
        euler = x + slope * step
        if after == 0:  # nothing to evaluate at sigma 0: the Euler step ends the run
            x = euler
            continue
        # trapezoidal correction: the mean of the slopes at both ends
        slope_after = to_d(euler, after, model(euler, after * per_image, **kwargs))
        x = x + (slope + slope_after) / 2 * step
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None):  # sampling.py:820-843
    kwargs = extra_args or {}
    per_image = x.new_ones([x.shape[0]])
    lam = [-s.log() for s in sigmas]  # log-SNR time λ = -log σ (∞ at σ = 0)
    previous = None  # the prediction of the step before, for the second-order estimate
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * per_image, **kwargs)
        h = lam[i + 1] - lam[i]
        estimate = denoised
        if previous is not None and sigmas[i + 1] != 0:
            half_over_r = 1 / (2 * ((lam[i] - lam[i - 1]) / h))  # r: the last step's length over this one's
            estimate = (1 + half_over_r) * denoised - half_over_r * previous
        x = ((-lam[i + 1]).exp() / (-lam[i]).exp()) * x - (-h).expm1() * estimate
        previous = denoised
    return x


SAMPLERS = {"euler": sample_euler, "euler_ancestral": sample_euler_ancestral, "heun": sample_heun,
            "dpmpp_2m": sample_dpmpp_2m}
