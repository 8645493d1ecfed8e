"""lib_latentfix.post is the post's code as published, quirks included (the other tests measure against it)."""

import torch

from lib_latentfix import post


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
