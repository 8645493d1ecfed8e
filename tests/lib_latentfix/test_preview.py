"""Tests for lib_latentfix.preview: the post's RGB approximation and the channel view."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageFont

from lib_latentfix import drawing
from lib_latentfix.preview import (
    BACKGROUND,
    CHANNEL_NAMES,
    NON_FINITE_COLOUR,
    POST_RGB_BIASES,
    POST_RGB_WEIGHTS,
    channel_view,
    channel_view_pair,
    latents_to_rgb,
    latents_to_rgb_array,
)
from support import post_reference

ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts")


# the reference: the post's preview as its code computes it (image 0 only), written in tests/support
post_latents_to_rgb = post_reference.latents_to_rgb


def _latent_arrays(max_batch: int = 1, max_side: int = 8, dtype=np.float32, bound: float = 60.0):
    """Hypothesis strategy: finite [B, 4, H, W] arrays, values well beyond +/-4."""
    shapes = st.tuples(
        st.integers(1, max_batch), st.just(4), st.integers(1, max_side), st.integers(1, max_side)
    )
    return shapes.flatmap(
        lambda shape: arrays(
            dtype,
            shape,
            elements=st.floats(-bound, bound, allow_nan=False, width=32 if dtype == np.float32 else 64),
        )
    )


def _count(image: Image.Image, colour, tol: int = 0) -> int:
    """Number of pixels within ``tol`` of ``colour`` on every component."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return int(np.all(np.abs(pixels - np.array(colour)) <= tol, axis=-1).sum())


def _grey_count(image: Image.Image, level: float, tol: float = 1.0) -> int:
    """Pixels that are pure grey (R == G == B) within ``tol`` of ``level``."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    grey = (pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2])
    return int((grey & (np.abs(pixels[..., 0] - level) <= tol)).sum())


# ------------------------------------------------------------------ the post's constants


def test_constants_are_the_posts_numbers():
    assert POST_RGB_WEIGHTS == ((60, -60, 25, -70), (60, -5, 15, -50), (60, 10, -5, -35))
    assert POST_RGB_BIASES == (150, 140, 130)
    assert CHANNEL_NAMES == ("luminance", "cyan/red", "lime/purple", "pattern")


# ------------------------------------------------------------------ exactness vs the post


@settings(max_examples=200, deadline=None)
@given(_latent_arrays(dtype=np.float32))
def test_matches_post_exactly_float32(values):
    latents = torch.from_numpy(values)
    expected = np.asarray(post_latents_to_rgb(latents))
    assert np.array_equal(latents_to_rgb_array(latents)[0], expected)


@settings(max_examples=200, deadline=None)
@given(_latent_arrays(dtype=np.float64))
def test_matches_post_exactly_float64(values):
    latents = torch.from_numpy(values)
    expected = np.asarray(post_latents_to_rgb(latents))
    assert np.array_equal(latents_to_rgb_array(latents)[0], expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spread", [1.0, 4.0, 20.0])
def test_matches_post_exactly_on_full_size_latents(dtype, spread):
    gen = torch.Generator().manual_seed(int(spread * 10))
    latents = (torch.randn(1, 4, 128, 96, generator=gen, dtype=dtype) * spread)
    out = latents_to_rgb_array(latents)
    assert out.dtype == np.uint8 and out.shape == (1, 128, 96, 3)
    assert np.array_equal(out[0], np.asarray(post_latents_to_rgb(latents)))


def test_unbatched_input_is_one_image():
    latents = torch.randn(4, 16, 24) * 3
    out = latents_to_rgb_array(latents)
    assert out.shape == (1, 16, 24, 3)
    assert np.array_equal(out[0], np.asarray(post_latents_to_rgb(latents[None])))


# ------------------------------------------------------------------ batches


@settings(max_examples=100, deadline=None)
@given(_latent_arrays(max_batch=5, max_side=10))
def test_each_batch_image_equals_its_single_image(values):
    batch = torch.from_numpy(values)
    whole = latents_to_rgb_array(batch)
    assert whole.shape == (batch.shape[0], batch.shape[2], batch.shape[3], 3)
    for i in range(batch.shape[0]):
        assert np.array_equal(whole[i], latents_to_rgb_array(batch[i : i + 1])[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(4))
def test_batch_images_equal_the_posts_single_images(dtype, seed):
    # Short decimals land exactly on integer boundaries after the weighted sum; a batched
    # einsum rounds some of them differently from the post's single-image call, so the
    # truncation gives off-by-one pixels unless every image is computed the post's way.
    gen = torch.Generator().manual_seed(seed)
    for batch_size, height, width in [(4, 1, 25), (5, 7, 4), (6, 64, 80), (3, 33, 17)]:
        batch = (torch.randn(batch_size, 4, height, width, generator=gen, dtype=dtype) * 30).round(decimals=1)
        whole = latents_to_rgb_array(batch)
        for i in range(batch_size):
            expected = np.asarray(post_latents_to_rgb(batch[i : i + 1]))
            assert np.array_equal(whole[i], expected)
            assert np.array_equal(whole[i], latents_to_rgb_array(batch[i])[0])


def test_latents_to_rgb_returns_every_image_in_the_batch():
    batch = torch.randn(3, 4, 10, 12) * 3
    images = latents_to_rgb(batch)
    assert len(images) == 3
    for i, image in enumerate(images):
        assert image.mode == "RGB" and image.size == (12, 10)
        assert np.array_equal(np.asarray(image), latents_to_rgb_array(batch)[i])


def test_latents_to_rgb_scale_is_nearest_neighbour():
    latents = torch.randn(1, 4, 128, 128) * 3
    (big,) = latents_to_rgb(latents, scale=8)
    assert big.size == (1024, 1024)
    small = latents_to_rgb_array(latents)[0]
    assert np.array_equal(np.asarray(big)[::8, ::8], small)
    assert np.array_equal(np.asarray(big)[7::8, 7::8], small)


@pytest.mark.parametrize("scale", [0, -1, 1.5, True])
def test_latents_to_rgb_rejects_bad_scale(scale):
    with pytest.raises(ValueError):
        latents_to_rgb(torch.zeros(1, 4, 2, 2), scale=scale)


def test_rgb_needs_four_channels():
    with pytest.raises(ValueError, match="4 latent channels"):
        latents_to_rgb_array(torch.zeros(1, 16, 4, 4))


# ------------------------------------------------------------------ dtypes


def test_float16_input_matches_float32_within_one():
    gen = torch.Generator().manual_seed(2)
    latents = (torch.randn(2, 4, 64, 64, generator=gen) * 2).clamp(-4, 4)
    half = latents.half()
    # computed in float32: identical to the float32 result on the same (rounded) values
    assert np.array_equal(latents_to_rgb_array(half), latents_to_rgb_array(half.float()))
    # and within one grey level of the unrounded float32 input
    diff = np.abs(latents_to_rgb_array(half).astype(int) - latents_to_rgb_array(latents).astype(int))
    assert diff.max() <= 1


def test_bfloat16_input_is_computed_in_float32():
    gen = torch.Generator().manual_seed(3)
    latents = (torch.randn(2, 4, 64, 64, generator=gen) * 2).clamp(-4, 4).bfloat16()
    assert np.array_equal(latents_to_rgb_array(latents), latents_to_rgb_array(latents.float()))


def test_requires_grad_input_is_fine():
    latents = torch.randn(1, 4, 8, 8, requires_grad=True)
    assert latents_to_rgb_array(latents).shape == (1, 8, 8, 3)
    assert channel_view(latents).mode == "RGB"


# ------------------------------------------------------------------ colours mean what the post says


def _pixel(c0=0.0, c1=0.0, c2=0.0, c3=0.0) -> np.ndarray:
    latent = torch.tensor([c0, c1, c2, c3], dtype=torch.float32).reshape(1, 4, 1, 1)
    return latents_to_rgb_array(latent)[0, 0, 0].astype(int)


def test_zero_latent_is_the_bias_colour():
    assert tuple(_pixel()) == (150, 140, 130)


def test_channel0_is_luminance():
    base, brighter, darker = _pixel(), _pixel(c0=1.0), _pixel(c0=-1.0)
    assert np.all(brighter > base) and np.all(darker < base)
    assert tuple(_pixel(c0=4.0)) == (255, 255, 255)
    assert tuple(_pixel(c0=-4.0)) == (0, 0, 0)


def test_channel1_is_cyan_red():
    reddish, cyanish = _pixel(c1=-2.0), _pixel(c1=2.0)
    assert reddish[0] > reddish[2] and reddish[0] > reddish[1]
    assert cyanish[2] > cyanish[0] and cyanish[1] > cyanish[0]


def test_channel2_is_lime_purple():
    base, lime, purple = _pixel(), _pixel(c2=2.0), _pixel(c2=-2.0)
    assert lime[1] > base[1] and lime[2] < base[2]  # more green, less blue
    assert purple[1] < base[1] and purple[2] > base[2]  # less green, more blue


def test_channel3_pattern_darkens():
    assert np.all(_pixel(c3=1.0) < _pixel())


def test_non_finite_rule():
    nan, inf = float("nan"), float("inf")
    assert tuple(_pixel(c0=nan)) == (0, 0, 0)
    assert tuple(_pixel(c0=inf)) == (255, 255, 255)
    assert tuple(_pixel(c0=-inf)) == (0, 0, 0)
    # +inf on channel 1: weights (-60, -5, +10) -> R, G to 0, B to 255
    assert tuple(_pixel(c1=inf)) == (0, 0, 255)
    # inf - inf = NaN -> 0
    assert tuple(_pixel(c0=inf, c3=inf)) == (0, 0, 0)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, (1, 4, 3, 3), elements=st.floats(width=32)))
def test_non_finite_never_raises_and_finite_pixels_are_unchanged(values):
    latents = torch.from_numpy(values)
    out = latents_to_rgb_array(latents)
    finite_pixels = np.isfinite(values[0]).all(axis=0)
    clean = torch.from_numpy(np.where(np.isfinite(values), values, 0).astype(np.float32))
    with np.errstate(all="ignore"):
        expected = latents_to_rgb_array(clean)
    # a finite pixel can still overflow to inf in float32; those follow the documented rule
    ok = finite_pixels & np.isfinite(values[0].astype(np.float64) * 70).all(axis=0)
    assert np.array_equal(out[0][ok], expected[0][ok])


# ------------------------------------------------------------------ channel_view


def _tile_top(image: Image.Image, level: int = 128) -> int:
    """First row containing a pure grey pixel of ``level`` (a zero channel's tile)."""
    pixels = np.asarray(image).astype(int)
    grey = (pixels[..., 0] == level) & (pixels[..., 1] == level) & (pixels[..., 2] == level)
    rows = np.nonzero(grey.any(axis=1))[0]
    assert rows.size, "no mid-grey tile found"
    return int(rows[0])


def test_channel_view_is_rgb_and_wide_enough():
    image = channel_view(torch.zeros(4, 8, 8))
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.width >= 5 * 160
    # four mid-grey channel tiles and one RGB tile of the bias colour, each >= 160 x 160
    assert _grey_count(image, 127.5, tol=0.5) >= 4 * 160 * 160
    assert _count(image, (150, 140, 130)) >= 160 * 160


@settings(max_examples=30, deadline=None)
@given(
    value=st.floats(-1.0, 1.0),
    value_range=st.sampled_from([1.0, 2.5, 4.0, 8.0]),
    channel=st.integers(0, 3),
)
def test_constant_channel_grey_level(value, value_range, channel):
    latent = torch.full((4, 8, 8), 0.0, dtype=torch.float64)
    latent[channel] = value * value_range
    image = channel_view(latent, value_range=value_range)
    expected = 127.5 + 127.5 * value
    assert _grey_count(image, expected, tol=1.0) >= 160 * 160


def test_minus_range_is_black_and_plus_range_is_white():
    latent = torch.zeros(4, 8, 8)
    latent[0], latent[3] = -4.0, 4.0
    image = channel_view(latent)
    assert _count(image, (0, 0, 0)) >= 160 * 160
    assert _count(image, (255, 255, 255)) >= 160 * 160


def _red_count(image):
    p = np.asarray(image).astype(int)
    return int(((p[..., 0] >= 200) & (p[..., 1] <= 100) & (p[..., 2] <= 100)).sum())


def _blue_count(image):
    p = np.asarray(image).astype(int)
    return int(((p[..., 2] >= 200) & (p[..., 0] <= 100) & (p[..., 1] <= 150)).sum())


def test_values_beyond_range_show_clipping_tint():
    latent = torch.zeros(4, 8, 8)
    latent[0] = 6.0
    above = channel_view(latent)
    assert _red_count(above) >= 160 * 160
    assert _red_count(channel_view(latent, value_range=8.0)) == 0  # within range: plain grey

    latent = torch.zeros(4, 8, 8)
    latent[2] = -6.0
    below = channel_view(latent)
    assert _blue_count(below) >= 160 * 160
    assert _blue_count(channel_view(latent, value_range=8.0)) == 0


def test_labels_are_drawn_above_tiles_and_show_the_numbers():
    zeros = torch.zeros(4, 8, 8)
    image = channel_view(zeros)
    top = _tile_top(image)
    assert top > 20
    strip = np.asarray(image)[:top]
    assert (np.abs(strip.astype(int) - np.array(BACKGROUND)).sum(axis=-1) > 60).sum() > 100

    # different statistics -> different label text (tiles differ by only one latent pixel)
    bumped = zeros.clone()
    bumped[0, 0, 0] = 3.0
    other = channel_view(bumped)
    assert other.size == image.size
    assert not np.array_equal(np.asarray(other)[:top], strip)


def test_title_adds_a_text_line():
    plain = channel_view(torch.zeros(4, 8, 8))
    titled = channel_view(torch.zeros(4, 8, 8), title="step 12 / 30")
    assert titled.height > plain.height
    head = np.asarray(titled)[: titled.height - plain.height + 5].astype(int)
    assert (np.abs(head - np.array(BACKGROUND)).sum(axis=-1) > 60).sum() > 30


def test_nan_and_inf_do_not_raise_and_are_magenta():
    latent = torch.zeros(4, 8, 8)
    latent[1, 2, 3] = float("nan")
    latent[2, 0, 0] = float("inf")
    latent[3, 7, 7] = float("-inf")
    image = channel_view(latent)
    factor = 20  # 8 px latent -> 160 px tiles
    assert _count(image, NON_FINITE_COLOUR) >= 3 * factor * factor


def test_all_nan_channel_does_not_raise():
    latent = torch.full((1, 4, 6, 6), float("nan"), dtype=torch.bfloat16)
    image = channel_view(latent)
    assert image.mode == "RGB"
    assert _count(image, NON_FINITE_COLOUR) >= 4 * 160 * 160


def test_small_latents_are_upscaled_and_large_ones_are_not_shrunk():
    small = channel_view(torch.zeros(4, 4, 6))  # factor 40 -> 160 x 240 tiles
    assert _grey_count(small, 127.5, tol=0.5) >= 4 * 160 * 240
    custom = channel_view(torch.zeros(4, 4, 6), tile=64)  # factor 16 -> 64 x 96 tiles
    assert _grey_count(custom, 127.5, tol=0.5) >= 4 * 64 * 96
    assert custom.height < small.height
    large = channel_view(torch.zeros(4, 200, 210))
    assert _grey_count(large, 127.5, tol=0.5) >= 4 * 200 * 210
    assert large.width >= 5 * 210


def test_sixteen_channels_have_no_rgb_tile():
    zeros16 = channel_view(torch.zeros(16, 8, 8))
    assert _grey_count(zeros16, 127.5, tol=0.5) >= 16 * 160 * 160
    assert _count(zeros16, (150, 140, 130)) == 0  # the RGB tile of a zero latent would have this colour
    assert _count(channel_view(torch.zeros(4, 8, 8)), (150, 140, 130)) >= 160 * 160


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 10), st.integers(1, 12), st.integers(1, 12)),
        elements=st.floats(width=32),
    )
)
def test_channel_view_never_raises(values):
    image = channel_view(torch.from_numpy(values))
    assert image.mode == "RGB" and image.width >= 160 and image.height >= 160


def test_channel_view_accepts_one_image_batch_and_rejects_larger_batches():
    latent = torch.randn(4, 8, 8)
    assert np.array_equal(np.asarray(channel_view(latent[None])), np.asarray(channel_view(latent)))
    with pytest.raises(ValueError, match="one image"):
        channel_view(torch.zeros(2, 4, 8, 8))


@pytest.mark.parametrize("kwargs", [{"value_range": 0}, {"value_range": float("nan")}, {"tile": 0}])
def test_channel_view_rejects_bad_options(kwargs):
    with pytest.raises(ValueError):
        channel_view(torch.zeros(4, 8, 8), **kwargs)


def test_channel_view_with_older_pillow_default_font(monkeypatch):
    original = ImageFont.load_default
    bitmap = getattr(ImageFont, "load_default_imagefont", original)

    def load_default_without_size():  # Pillow < 10.1 signature
        return bitmap()

    monkeypatch.setattr(ImageFont, "load_default", load_default_without_size)
    drawing.load_font.cache_clear()
    try:
        image = channel_view(torch.zeros(4, 8, 8), title="old pillow")
        assert image.mode == "RGB" and image.width >= 5 * 160
        top = _tile_top(image)
        strip = np.asarray(image)[:top].astype(int)
        assert (np.abs(strip - np.array(BACKGROUND)).sum(axis=-1) > 60).sum() > 100
    finally:
        drawing.load_font.cache_clear()


# ------------------------------------------------------------------ channel_view_pair


def test_pair_stacks_both_views_with_labels():
    before = torch.randn(4, 16, 16) * 5
    after = before.clamp(-4, 4)
    a, b = channel_view(before), channel_view(after)
    pair = channel_view_pair(before, after, labels=("before", "after"))
    assert pair.mode == "RGB"
    assert pair.width >= max(a.width, b.width)
    assert a.height + b.height <= pair.height <= a.height + b.height + 100
    # headings are drawn above each view
    head = np.asarray(pair)[: pair.height - a.height - b.height].astype(int)
    assert (np.abs(head - np.array(BACKGROUND)).sum(axis=-1) > 60).sum() > 20
    # "before" clips (red tint in its channel tiles), "after" does not; the RGB tile
    # (last fifth of the width) is left out as it may hold genuinely red colours
    split, channels_w = pair.height // 2, pair.width * 3 // 4
    assert _red_count(pair.crop((0, 0, channels_w, split))) > 0
    assert _red_count(pair.crop((0, split, channels_w, pair.height))) == 0


def test_pair_passes_options_to_both_views():
    latent = torch.zeros(4, 8, 8)
    pair = channel_view_pair(latent, latent, tile=32, value_range=2.0, title="t")
    assert _grey_count(pair, 127.5, tol=0.5) >= 2 * 4 * 32 * 32
    with pytest.raises(ValueError):
        channel_view_pair(latent, latent, labels=("only one",))


# ------------------------------------------------------------------ example for eyeballing


def _synthetic_latent(height: int = 128, width: int = 128) -> torch.Tensor:
    """A smooth, SDXL-like latent with some clipping and a couple of NaNs."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    blob = torch.exp(-((x - 0.3) ** 2 + (y + 0.2) ** 2) / 0.1)
    latent = torch.stack(
        [
            2.5 * torch.sin(3 * x) * torch.cos(2 * y) + 1.5 * blob,  # luminance
            -3.0 * blob + 0.8 * y,  # cyan/red: a red blob
            5.5 * x,  # lime/purple: a ramp clipping at both ends
            1.2 * torch.sin(25 * x) * torch.sin(25 * y),  # pattern: fine texture
        ]
    )
    latent[1, 10:12, 100:102] = float("nan")
    return latent


def test_save_example_png():
    os.makedirs(ARTIFACTS, exist_ok=True)
    latent = _synthetic_latent()
    image = channel_view(latent, title="channel_view example: synthetic 128x128 SDXL latent")
    path = os.path.join(ARTIFACTS, "channel_view_example.png")
    image.save(path)
    assert Image.open(path).size == image.size
    pair = channel_view_pair(latent, latent.nan_to_num(0).clamp(-4, 4), labels=("before", "after clamp"))
    pair.save(os.path.join(ARTIFACTS, "channel_view_pair_example.png"))
