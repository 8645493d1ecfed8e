"""What the source post's code does, written here from its description: the tests' reference (never shipped).

Source: Timothy Alexis Vass, "Explaining the SDXL latent space"
(https://huggingface.co/blog/TimothyAlexisVass/explaining-the-sdxl-latent-space), in its Chinese translation
"【译】解释 SDXL 的隐空间" (2024-02-18). The post describes three corrections of a scaled SDXL latent ``[B, 4, H, W]``,
a diffusers ``callback_on_step_end`` running them on a timestep schedule, and a linear 4 → 3 RGB preview. This
module is an independent implementation of that behaviour, with the post's numbers; the tests measure
``lib_latentfix`` against it, so it reproduces what the post's code does *including its quirks* (``lib_latentfix``
fixes them):

* **only image 0 is corrected** by center and maximize: their per-channel steps index batch element 0, so the other
  images of a batch only get center's whole-tensor shift (and nothing from maximize);
* **in-place writes**: center and maximize write image 0's channels into the tensor they are given (maximize returns
  that very tensor; center returns a new one after its last step); soft clamp never writes its input;
* **whole-batch decisions**: soft clamp's guard, maximize's factor, center's last shift and the callback's adaptive
  limits all look at every image of the batch (and all four channels) together;
* soft clamp's guard compares the largest magnitude with a **fixed 4**, whatever ``boundary`` is, and hands back the
  input object itself when it stays below;
* soft clamp squeezes each value beyond ±threshold towards ±boundary relative to **that pixel's** largest (smallest)
  value across the channels — not the image's;
* the callback's adaptive limit is ``max(max(x), |min(x)|)`` (the top value itself, not its magnitude);
* windows are strict: ``t > 950`` clamp, ``t > 700`` early center, ``1 < t < 100`` late center and maximize;
* the preview (``latents_to_rgb``) shows image 0 only, clamps to [0, 255] and truncates towards zero;
* scalars are read on the host (Python ``max``/``if`` on tensors), so a CUDA caller waits each time: harmless here.

The arithmetic is kept in the post's order (same products, sums and divisions) so results agree to the last bit.
"""

from __future__ import annotations

import torch
from PIL import Image

# the post's schedule (training timesteps: 1000 = noise, 0 = done) and its numbers
CLAMP_ABOVE = 950  # adaptive soft clamp while t > 950
EARLY_CENTER_ABOVE = 700  # center(0.8, 0.8) while t > 700
EARLY_SHIFTS = (0.8, 0.8)
LATE_WINDOW = (1, 100)  # center(0.6, 1.0) then maximize while 1 < t < 100
LATE_SHIFTS = (0.6, 1.0)
ADAPTIVE = 0.998  # the adaptive boundary is 0.998 of the peak, its threshold 0.998 of that
GUARD = 4  # soft clamp acts only when some magnitude reaches 4

# the preview: rows R, G, B over latent channels 0..3, then the offsets added to each
RGB_FROM_LATENT = ((60, -60, 25, -70), (60, -5, 15, -50), (60, 10, -5, -35))
RGB_OFFSET = (150, 140, 130)


def _peak(x: torch.Tensor) -> torch.Tensor:
    """The largest magnitude in the whole tensor (every image, every channel), as the post takes it."""
    return max(abs(x.max()), abs(x.min()))


def soft_clamp_tensor(input_tensor, threshold=3.5, boundary=4):
    """Squeeze values beyond ±threshold into ±boundary, each relative to its pixel's extreme across the channels."""
    if _peak(input_tensor) < GUARD:
        return input_tensor
    # per pixel: the largest and the smallest value among its channels, [B, 1, H, W]
    pixel_top = input_tensor.amax(dim=1, keepdim=True)
    pixel_bottom = input_tensor.amin(dim=1, keepdim=True)
    # linear maps sending threshold → threshold and the pixel's extreme → boundary (resp. their negatives)
    upper = (input_tensor - threshold) / (pixel_top - threshold) * (boundary - threshold) + threshold
    lower = (input_tensor + threshold) / (pixel_bottom + threshold) * (threshold - boundary) - threshold
    result = torch.where(input_tensor < -threshold, lower, input_tensor)
    return torch.where(input_tensor > threshold, upper, result)


def center_tensor(input_tensor, channel_shift=1, full_shift=1, channels=(0, 1, 2, 3)):
    """Pull each listed channel of image 0 towards zero by ``channel_shift`` of its mean (in place), then shift the
    whole batch by ``full_shift`` of the overall mean (a new tensor)."""
    first = input_tensor[0]  # a view: what is subtracted here lands in the caller's tensor
    for c in channels:
        first[c].sub_(first[c].mean() * channel_shift)
    overall = input_tensor.mean()
    return input_tensor - overall * full_shift


def maximize_tensor(input_tensor, boundary=4, channels=(0, 1, 2)):
    """Scale the listed channels of image 0 (in place) so the batch's largest magnitude would reach ``boundary``."""
    gain = boundary / max(abs(input_tensor.min()), abs(input_tensor.max()))
    first = input_tensor[0]
    for c in dict.fromkeys(channels):  # a channel named twice is still scaled once
        first[c].mul_(gain)
    return input_tensor


def correct(latents: torch.Tensor, timestep) -> torch.Tensor:
    """The post's callback body for one step at ``timestep`` (a number or a 0-d tensor), on the whole batch."""
    if timestep > CLAMP_ABOVE:
        peak = max(latents.max(), abs(latents.min()))
        limit = peak * ADAPTIVE
        latents = soft_clamp_tensor(latents, limit * ADAPTIVE, limit)
    if timestep > EARLY_CENTER_ABOVE:
        latents = center_tensor(latents, *EARLY_SHIFTS)
    low, high = LATE_WINDOW
    if low < timestep < high:
        latents = maximize_tensor(center_tensor(latents, *LATE_SHIFTS))
    return latents


def callback(pipe, step_index, timestep, callback_kwargs):
    """The post's diffusers ``callback_on_step_end``: corrects ``callback_kwargs["latents"]`` and returns the dict."""
    callback_kwargs["latents"] = correct(callback_kwargs["latents"], timestep)
    return callback_kwargs


def latents_to_rgb(latents: torch.Tensor) -> Image.Image:
    """The post's linear preview of image 0 of ``[B, 4, H, W]``: an RGB image H × W."""
    matrix = torch.tensor(RGB_FROM_LATENT, dtype=latents.dtype, device=latents.device).T  # [4, 3]
    offset = torch.tensor(RGB_OFFSET, dtype=latents.dtype, device=latents.device)[:, None, None]
    # the weighted sum over the latent channels, contracted as the post does it (same operands, same layout)
    rgb = torch.einsum("bchw,co->bohw", latents, matrix) + offset
    pixels = rgb.clamp(0, 255)[0].to(torch.uint8)  # truncation, like .byte()
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())
