"""The post's step-end callback applied to each image of a batch on its own, at one timestep (the reference of
the latent point): the post's code corrects the batch's first image only, so each image goes through it alone."""

import torch

from lib_latentfix import post


def post_step_per_image(latents: torch.Tensor, timestep: float) -> torch.Tensor:
    return torch.cat([post.callback(None, 0, timestep, {"latents": latents[i:i + 1].clone()})["latents"]
                      for i in range(latents.shape[0])])
