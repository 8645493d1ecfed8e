"""The tests' reference behaves as the post's code does, quirks included (the other tests measure against it)."""

import numpy as np
import torch

from support import post_reference as post


def _latent(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=g) * 3 + torch.tensor([1.0, -2.0, 0.5, 0.0])[None, :, None, None]


def test_center_and_maximize_change_element_zero_in_place_as_published():
    x = _latent()
    before = x.clone()
    out = post.center_tensor(x, 1.0, 0.0)
    assert torch.equal(x[1], before[1])  # element 1 untouched by the per-channel step…
    assert not torch.equal(x[0], before[0])  # …element 0 written in place
    assert torch.allclose(out[0].mean(dim=(1, 2)), torch.zeros(4), atol=1e-5)

    x = _latent(seed=1)
    before = x.clone()
    post.maximize_tensor(x)
    factor = 4 / before.abs().max()  # the largest magnitude of the whole batch
    torch.testing.assert_close(x[0, :3], before[0, :3] * factor)
    assert torch.equal(x[0, 3], before[0, 3]) and torch.equal(x[1], before[1])


def test_soft_clamp_leaves_a_tensor_inside_four_alone_and_bounds_the_rest():
    small = torch.full((1, 4, 2, 2), 3.9)
    assert post.soft_clamp_tensor(small) is small
    big = _latent(1) * 3
    assert post.soft_clamp_tensor(big).abs().max() <= 4.0 + 1e-5


def test_callback_windows_as_published():
    x = _latent(1)
    assert torch.equal(post.callback(None, 0, 500, {"latents": x.clone()})["latents"], x)  # 100 ≤ t ≤ 700: nothing
    late = post.callback(None, 0, 50, {"latents": x.clone()})["latents"]
    assert torch.equal(late, post.maximize_tensor(post.center_tensor(x.clone(), 0.6, 1.0)))  # 1 < t < 100
    assert not torch.equal(post.callback(None, 0, 999, {"latents": x.clone()})["latents"], x)


def test_soft_clamp_guard_is_a_fixed_four_taken_over_the_whole_batch():
    x = torch.full((1, 4, 2, 2), 3.8)
    assert post.soft_clamp_tensor(x, 2.0, 3.0) is x  # below 4: untouched although beyond the boundary 3
    quiet, loud = torch.full((1, 4, 2, 2), 3.8), torch.full((1, 4, 2, 2), 9.0)
    out = post.soft_clamp_tensor(torch.cat([loud, quiet]))
    assert torch.equal(post.soft_clamp_tensor(quiet), quiet)  # alone, the quiet image passes the guard…
    assert out[1].max() <= 4.0 and not torch.equal(out[1:], quiet)  # …next to a loud one it is squeezed too


def test_soft_clamp_measures_outliers_against_their_pixels_extreme_across_channels():
    x = torch.zeros(1, 4, 1, 2)
    x[0, :, 0, 0] = torch.tensor([8.0, 6.0, 0.0, -5.0])  # pixel 0: top 8, bottom -5
    x[0, :, 0, 1] = torch.tensor([6.0, 0.0, 0.0, 0.0])  # pixel 1: top 6
    out = post.soft_clamp_tensor(x, 3.5, 4.0)
    assert out[0, 0, 0, 0] == 4.0
    torch.testing.assert_close(out[0, 1, 0, 0], torch.tensor(3.5 + 2.5 / 4.5 * 0.5))  # 6 is not pixel 0's top
    assert out[0, 3, 0, 0] == -4.0 and out[0, 0, 0, 1] == 4.0  # each pixel's extreme lands on ±boundary


def test_callback_corrects_image_zero_and_only_shifts_the_others():
    x = _latent(batch=2, seed=2)
    out = post.callback(None, 0, 50, {"latents": x.clone()})["latents"]
    alone = post.callback(None, 0, 50, {"latents": x[:1].clone()})["latents"]
    assert not torch.equal(out[:1], alone)  # image 0's last shift and gain come from the whole batch
    shift = out[1] - x[1]  # image 1: one constant shift, no per-channel centering, no gain
    torch.testing.assert_close(shift, torch.full_like(shift, shift.mean().item()))


def test_preview_is_image_zero_clamped_and_truncated():
    x = torch.zeros(2, 4, 1, 3)
    x[0, 0, 0, 1] = 1.0  # + (60, 60, 60)
    x[0, 1, 0, 2] = -9.0  # R 150 + 540 → 255, G 140 + 45, B 130 - 90
    x[1] = 5.0  # image 1 is not shown
    x[0, 0, 0, 0] = 0.01  # 150.6 → 150
    pixels = np.asarray(post.latents_to_rgb(x))
    assert pixels.shape == (1, 3, 3)
    assert pixels.tolist() == [[[150, 140, 130], [210, 200, 190], [255, 185, 40]]]
