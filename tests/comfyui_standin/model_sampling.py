"""Stand-in for ComfyUI's comfy.model_sampling (commit fe251146), written for the tests: the epsilon
parameterisation (EPS) and the discrete scaled-linear noise schedule of SD 1.x/2.x/SDXL (ModelSamplingDiscrete),
with ComfyUI's names and numbers."""

import torch


def reshape_sigma(sigma, noise_dim):
    """Imitates reshape_sigma: a single sigma becomes a scalar, a per-image sigma ``[B]`` a ``[B, 1, …]`` column that
    broadcasts over ``noise_dim``-dimensional tensors."""
    if sigma.numel() == 1:
        return sigma.reshape(())
    trailing = [1] * (noise_dim - 1)
    return sigma.reshape(sigma.shape[0], *trailing)


class EPS:
    """Imitates EPS: the model predicts the noise; x0 = x − σ·ε, the model sees x / √(σ² + σ_data²)."""

    def calculate_input(self, sigma, noise):
        column = reshape_sigma(sigma, noise.ndim)
        scale = (column ** 2 + self.sigma_data ** 2) ** 0.5
        return noise / scale

    def calculate_denoised(self, sigma, model_output, model_input):
        column = reshape_sigma(sigma, model_output.ndim)
        return model_input - column * model_output

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        column = reshape_sigma(sigma, noise.ndim)
        # at full denoise the start is scaled for σ² + 1 (the latent's own unit variance), else for σ
        factor = torch.sqrt(1.0 + column ** 2.0) if max_denoise else column
        return latent_image + noise * factor

    def inverse_noise_scaling(self, sigma, latent):
        return latent  # EPS samples need no rescaling at the end


class ModelSamplingDiscrete(torch.nn.Module):
    """Imitates ModelSamplingDiscrete with the "linear" schedule (SD's scaled linear betas), 1000 timesteps."""

    def __init__(self, linear_start=0.00085, linear_end=0.012, timesteps=1000):
        super().__init__()
        # the scaled-linear beta schedule (make_beta_schedule "linear"): evenly spaced square roots, squared; float64
        roots = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64)
        alphas_cumprod = torch.cumprod(1.0 - roots ** 2, dim=0)
        noise_levels = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.register_buffer("sigmas", noise_levels.float())
        self.register_buffer("log_sigmas", noise_levels.log().float())
        self.sigma_data = 1.0

    # the ends of the table: the first timestep has the least noise
    sigma_min = property(lambda self: self.sigmas[0])
    sigma_max = property(lambda self: self.sigmas[-1])

    def timestep(self, sigma):
        """Imitates ModelSamplingDiscrete.timestep: the index of the nearest tabulated sigma, in log space."""
        wanted = sigma.log().to(self.log_sigmas.device)
        distance = (self.log_sigmas[:, None] - wanted).abs()  # [timesteps, N]
        return distance.argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep):
        """Imitates ModelSamplingDiscrete.sigma: log-linear interpolation between the two neighbouring timesteps."""
        last = len(self.sigmas) - 1
        position = timestep.float().to(self.log_sigmas.device).clamp(0, last)
        below = self.log_sigmas[position.floor().long()]
        above = self.log_sigmas[position.ceil().long()]
        part = position.frac()
        return ((1 - part) * below + part * above).exp().to(timestep.device)


class ModelSamplingEpsDiscrete(EPS, ModelSamplingDiscrete):
    """What model_base's model_sampling() builds for these models: ModelSampling(s, c) with s = ModelSamplingDiscrete,
    c = EPS."""
