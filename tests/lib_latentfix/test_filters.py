"""The three filters: exactly the post's math, per image, sync-free, dtype-keeping, safe on bad values."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_latentfix import center, maximize, soft_clamp
from lib_latentfix.filters import channel_stats
from support import post_reference as post
from support.sync_guard import NoHostSync

FILTERS = {
    "soft_clamp": lambda x, **kw: soft_clamp(x, **kw),
    "center": lambda x, **kw: center(x, **kw),
    "maximize": lambda x, **kw: maximize(x, **kw),
}


def latent(batch=1, h=16, w=16, scale=6.0, seed=0, dtype=torch.float64):
    """A latent with values well beyond ±4 and a per-channel colour cast, like an SDXL mid-run x0."""
    g = torch.Generator().manual_seed(seed)
    cast = torch.tensor([0.8, -1.5, 2.0, -0.3], dtype=torch.float64)[None, :, None, None]
    x = torch.randn(batch, 4, h, w, generator=g, dtype=torch.float64) * scale / 2 + cast
    return x.to(dtype)


# ---- exactness against the post (batch size 1, float64) ----------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold,boundary", [(3.5, 4.0), (2.0, 3.0), (3.9, 4.0)])
def test_soft_clamp_matches_post(seed, threshold, boundary):
    x = latent(seed=seed, scale=3 + seed)
    expected = post.soft_clamp_tensor(x.clone(), threshold, boundary)
    torch.testing.assert_close(soft_clamp(x, threshold, boundary), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "channel_shift,full_shift,channels", [(1.0, 1.0, [0, 1, 2, 3]), (0.8, 0.8, [0, 1, 2, 3]), (0.6, 1.0, [1, 2])]
)
def test_center_matches_post(seed, channel_shift, full_shift, channels):
    x = latent(seed=seed)
    expected = post.center_tensor(x.clone(), channel_shift, full_shift, channels)
    torch.testing.assert_close(center(x, channel_shift, full_shift, channels), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("boundary,channels", [(4.0, [0, 1, 2]), (3.0, [0, 1, 2, 3]), (4.0, [1])])
def test_maximize_matches_post(seed, boundary, channels):
    x = latent(seed=seed, scale=0.5 + seed)
    expected = post.maximize_tensor(x.clone(), boundary, channels)
    torch.testing.assert_close(maximize(x, boundary, channels), expected, rtol=0, atol=1e-6)


def test_adaptive_soft_clamp_matches_post_callback_clamp():
    x = latent(seed=3, scale=12)
    m = max(x.max(), abs(x.min())) * 0.998
    expected = post.soft_clamp_tensor(x.clone(), m * 0.998, m)
    torch.testing.assert_close(soft_clamp(x, adaptive=0.998), expected, rtol=0, atol=1e-6)


# ---- what a user sees ---------------------------------------------------------------------------------


def test_soft_clamp_brings_outliers_inside_boundary_and_keeps_inner_values():
    x = latent(batch=2, scale=10, dtype=torch.float32)
    y = soft_clamp(x, 3.5, 4.0)
    assert y.abs().max() <= 4.0 + 1e-5
    inner = x.abs() <= 3.5
    assert torch.equal(y[inner], x[inner])


def test_soft_clamp_leaves_images_inside_boundary_alone():
    quiet = latent(scale=1.0, dtype=torch.float32).clamp(-3.9, 3.9)
    assert torch.equal(soft_clamp(quiet), quiet)


def test_center_removes_colour_cast():
    x = latent(batch=3, dtype=torch.float32)
    y = center(x)
    assert y.mean(dim=(2, 3)).abs().max() < 1e-4


def test_maximize_reaches_boundary():
    x = latent(batch=3, scale=0.5, dtype=torch.float32)
    x[:, 3] *= 0.1  # keep the pattern channel small so the colour channels carry the largest value
    y = maximize(x, 4.0)
    torch.testing.assert_close(y[:, :3].abs().amax(dim=(1, 2, 3)), torch.full((3,), 4.0))
    assert torch.equal(y[:, 3], x[:, 3])


def test_filters_do_not_write_into_input():
    x = latent(batch=2, dtype=torch.float32)
    before = x.clone()
    for f in FILTERS.values():
        f(x)
    assert torch.equal(x, before)


# ---- batch correctness ----------------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9))


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    scale=st.floats(0.01, 40.0),
    seed=st.integers(0, 2**16),
    name=st.sampled_from(sorted(FILTERS)),
)
def test_each_image_is_filtered_as_if_alone(shape, scale, seed, name):
    b, h, w = shape
    x = latent(batch=b, h=h, w=w, scale=scale, seed=seed, dtype=torch.float32)
    together = FILTERS[name](x)
    for i in range(b):
        assert torch.equal(together[i : i + 1], FILTERS[name](x[i : i + 1]))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_center_is_idempotent_at_full_shift(shape, seed):
    b, h, w = shape
    x = latent(batch=b, h=h, w=w, seed=seed)
    once = center(x)
    torch.testing.assert_close(center(once), once, rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), boundary=st.floats(0.5, 8.0))
def test_maximize_is_idempotent_and_in_range(shape, seed, boundary):
    b, h, w = shape
    x = latent(batch=b, h=h, w=w, seed=seed)
    x[:, 3] = x[:, 3].clamp(-0.1, 0.1)
    once = maximize(x, boundary)
    assert once.abs().max() <= boundary * (1 + 1e-9)
    torch.testing.assert_close(maximize(once, boundary), once, rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), scale=st.floats(1.0, 50.0))
def test_soft_clamp_output_within_boundary(shape, seed, scale):
    b, h, w = shape
    x = latent(batch=b, h=h, w=w, seed=seed, scale=scale)
    y = soft_clamp(x, 3.0, 4.0)
    assert y.abs().max() <= 4.0 + 1e-9
    assert (torch.sign(y) == torch.sign(x)).all()


# ---- no host sync ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_never_sync_with_the_host(name):
    x = latent(batch=4, dtype=torch.float32)
    mask = torch.zeros(4, 16, 16)
    mask[:, 4:12, 4:12] = 1
    with NoHostSync() as guard:
        FILTERS[name](x)
        FILTERS[name](x, mask=mask)
    assert guard.calls > 0


# ---- dtype and device -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-2), (torch.bfloat16, 1e-1), (torch.float32, 1e-5)])
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_dtype_is_kept_and_values_follow_float32(dtype, tol, name):
    x32 = latent(batch=2, scale=8, dtype=torch.float32)
    x = x32.to(dtype)
    y = FILTERS[name](x)
    assert y.dtype == dtype and y.device == x.device and y.shape == x.shape
    reference = FILTERS[name](x.to(torch.float32))
    torch.testing.assert_close(y.to(torch.float32), reference, rtol=tol, atol=tol * 4)


def test_statistics_accumulate_in_float32_for_half_input():
    x = torch.full((1, 4, 256, 256), 1.0009765625, dtype=torch.float16)  # a sum in float16 would overflow
    stats = channel_stats(x)
    assert stats.mean.dtype == torch.float32
    torch.testing.assert_close(stats.mean, torch.full((1, 4), 1.0009765625))


# ---- bad values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_non_finite_value_does_not_spread(bad, name, masked):
    x = latent(batch=3, scale=9, dtype=torch.float32)
    x[1, 2, 5, 7] = bad
    kw = {"mask": torch.ones(1, 1, *x.shape[-2:])} if masked else {}
    y = FILTERS[name](x, **kw)
    # the poisoned image comes back as it was (with an inpaint mask too), the others exactly as if filtered alone
    assert torch.equal(y[1].nan_to_num(nan=123.0), x[1].nan_to_num(nan=123.0))
    for i in (0, 2):
        assert torch.isfinite(y[i]).all()
        assert torch.equal(y[i : i + 1], FILTERS[name](x[i : i + 1], **kw))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("shifts, channels", [((0.8, 0.8), (0, 1, 2, 3)), ((0.6, 1.0), (0, 1, 2, 3)),
                                              ((1.0, 1.0), (0, 1, 2, 3)), ((1.0, 0.0), (0, 1, 2, 3)),
                                              ((0.5, 0.0), (0, 2)), ((1.0, 0.5), (1, 3))])
def test_center_leaves_a_poisoned_image_alone_whatever_its_shifts(bad, shifts, channels):
    """Every mix of shifts and channels (offsets that depend on every channel's mean, or only on their own): an image
    with one bad value in any channel comes back bit for bit, and the others are centered as if alone."""
    for poisoned_channel in range(4):
        x = latent(batch=3, scale=9, dtype=torch.float32)
        x[1, poisoned_channel, 5, 7] = bad
        y = center(x, *shifts, channels)
        assert torch.equal(y[1].nan_to_num(nan=123.0), x[1].nan_to_num(nan=123.0))
        for i in (0, 2):
            assert torch.equal(y[i : i + 1], center(x[i : i + 1], *shifts, channels))


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_all_zero_image_stays_zero(name):
    x = torch.zeros(2, 4, 8, 8)
    x[1] = latent(scale=9, h=8, w=8, dtype=torch.float32)[0]
    y = FILTERS[name](x)
    assert torch.equal(y[0], torch.zeros(4, 8, 8))
    assert torch.isfinite(y).all()


# ---- inpainting mask --------------------------------------------------------------------------------------


def test_mask_keeps_untouched_area_and_uses_only_repainted_statistics():
    x = latent(batch=1, scale=4, dtype=torch.float64)
    mask = torch.zeros(4, 16, 16, dtype=torch.float64)  # A1111's p.nmask layout: [C, h, w]
    mask[:, :, 8:] = 1
    y = center(x, mask=mask)
    assert torch.equal(y[..., :8], x[..., :8])
    assert y[..., 8:].mean(dim=(2, 3)).abs().max() < 1e-9  # the patch itself is balanced
    alone = center(x[..., 8:])
    torch.testing.assert_close(y[..., 8:], alone)


# ---- argument checking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,argument",
    [
        (lambda x: soft_clamp(x, threshold=5.0, boundary=4.0), "threshold"),
        (lambda x: soft_clamp(x, boundary=0.0), "boundary"),
        (lambda x: soft_clamp(x, boundary=math.nan), "boundary"),
        (lambda x: soft_clamp(x, adaptive=1.5), "adaptive"),
        (lambda x: center(x, channel_shift=-0.1), "channel_shift"),
        (lambda x: center(x, full_shift=2.0), "full_shift"),
        (lambda x: center(x, channels=(0, 4)), "channels"),
        (lambda x: center(x, channels=(1, 1)), "channels"),
        (lambda x: maximize(x, boundary=-1.0), "boundary"),
        (lambda x: maximize(x, channels=("a",)), "channels"),
        (lambda x: maximize(x[0]), "x"),
        (lambda x: maximize(x.long()), "x"),
        (lambda x: maximize(x, mask=torch.zeros(1, 0, 16, 16)), "mask"),
    ],
)
def test_out_of_range_arguments_name_themselves(call, argument):
    with pytest.raises(ValueError, match=argument):
        call(latent(dtype=torch.float32))


@pytest.mark.parametrize("largest", [1e3, 1e7, 1e9, 1e12, 1e30])
def test_maximize_reaches_the_boundary_for_huge_images_too(largest):
    x = torch.zeros(1, 4, 4, 4)
    x[0, 0, 0, 0] = largest
    x[0, 1, 1, 1] = -largest / 2
    y = maximize(x, 4.0)
    torch.testing.assert_close(y[0, 0, 0, 0], torch.tensor(4.0), rtol=1e-6, atol=0)
    torch.testing.assert_close(y[0, 1, 1, 1], torch.tensor(-2.0), rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", [(1, 4, 0, 8), (1, 4, 8, 0), (2, 0, 8, 8), (1, 4, 0, 0)])
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_empty_dimension_is_refused_naming_x(shape, name):
    with pytest.raises(ValueError, match=r"^x must not have an empty .*" + str(shape).replace("(", r"\(").replace(")", r"\)")):
        FILTERS[name](torch.zeros(shape))


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_empty_batch_gives_an_empty_batch(name):
    x = torch.zeros(0, 4, 8, 8, dtype=torch.float16)
    y = FILTERS[name](x)
    assert y.shape == x.shape and y.dtype == x.dtype


# ---- huge finite values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("power", [113, 115, 120, 124])  # 1e34, 4e34, 1.3e36, 2.1e37
@pytest.mark.parametrize(
    "name,call",
    [
        ("soft_clamp", lambda x: soft_clamp(x, adaptive=0.998)),  # adaptive: scales with the image
        ("center", lambda x: center(x, 0.8, 0.8)),
        ("maximize", lambda x: maximize(x)),
    ],
)
def test_huge_finite_image_is_corrected_like_a_small_one(power, name, call):
    """An image of huge but finite values (a sum over it overflows float32) is still usable and corrected.

    Multiplying by a power of two is exact, so the huge image's result is the small one's, scaled.
    """
    small = latent(batch=2, h=128, w=128, dtype=torch.float32).abs_().add_(1.0)  # one sign: the sum grows
    big = small * 2.0**power
    assert not torch.isfinite(big.flatten(1).sum(dim=1)).any()  # (what made it "non-finite" before)
    got = call(big)
    assert torch.isfinite(got).all()
    assert not torch.equal(got, big)
    expected = call(small) * 2.0**power
    if name == "maximize":  # the listed channels reach ±4 whatever the size; channel 3 is left as it was
        expected[:, :3] = call(small)[:, :3]
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


def test_huge_finite_statistics_are_finite_and_usable():
    x = torch.full((2, 4, 128, 128), 3.0e38)
    x[1, 2, 3, 4] = math.inf
    stats = channel_stats(x)
    assert stats.usable.tolist() == [True, False]
    assert torch.isfinite(stats.mean[0]).all()
    torch.testing.assert_close(stats.mean[0], torch.full((4,), 3.0e38), rtol=1e-4, atol=0)
    masked = channel_stats(x, torch.ones(1, 1, 128, 128))
    assert masked.usable.tolist() == [True, False]
    torch.testing.assert_close(masked.mean[0], torch.full((4,), 3.0e38), rtol=1e-6, atol=0)


def test_mean_of_ordinary_images_is_as_accurate_as_a_float32_mean():
    x = latent(batch=3, scale=9, dtype=torch.float32)
    exact = x.double().flatten(2).mean(dim=2)
    plain = (x.flatten(2).mean(dim=2).double() - exact).abs().max()
    ours = (channel_stats(x).mean.double() - exact).abs().max()
    assert ours <= max(20 * plain, 1e-6)


# ---- values near the dtype's largest saturate (issue 17 N6) ---------------------------------------------


def _near_largest(dtype, sign=1.0):
    big = torch.finfo(dtype).max * 0.92
    x = torch.full((2, 4, 4, 4), -big * sign, dtype=dtype)
    x[:, 0, 0, 0] = big * sign
    x[1] *= 1e-6  # an ordinary second image: filtered as ever
    return x


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_finite_values_near_the_largest_never_become_inf(dtype, sign):
    from lib_latentfix.schedule import BLOG, apply

    x = _near_largest(dtype, sign)
    mask = torch.ones(4, 4)
    for out in (center(x, 0.8, 0.8), center(x), maximize(x), soft_clamp(x), center(x, 0.8, 0.8, mask=mask),
                apply(BLOG, x, 800.0), apply(BLOG, x, 50.0), apply(BLOG, x, 990.0), apply(BLOG, x, 800.0, mask=mask)):
        assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(center(x, 0.8, 0.8)[1:], center(x[1:], 0.8, 0.8))


def test_the_issue_latent_saturates_at_the_float16_largest():
    from lib_latentfix.schedule import BLOG, apply

    x = torch.full((1, 4, 4, 4), -60000.0, dtype=torch.float16)
    x[0, 0, 0, 0] = 60000
    for out in (center(x, 0.8, 0.8), apply(BLOG, x, 800.0)):
        assert torch.isfinite(out).all() and out[0, 0, 0, 0] == torch.finfo(torch.float16).max
        expected = center(x.float(), 0.8, 0.8)
        inside = expected.abs() < torch.finfo(torch.float16).max
        torch.testing.assert_close(out.float()[inside], expected[inside], rtol=1e-3, atol=0)


def test_saturation_keeps_images_with_inf_and_nan_as_they_were():
    x = _near_largest(torch.float16)
    x[1, 2, 1, 1] = math.inf
    x[1, 3, 2, 2] = math.nan
    out = center(x, 0.8, 0.8)
    assert torch.equal(out[1].nan_to_num(nan=7.0), x[1].nan_to_num(nan=7.0)) and torch.isfinite(out[0]).all()


# ---- center's mixing is not a matrix product (TF32, issue 17 R3) ----------------------------------------


class _MatmulRecorder(torch.overrides.TorchFunctionMode):
    NAMES = {"matmul", "mm", "bmm", "einsum", "linear", "mv", "addmm", "baddbmm", "tensordot", "__matmul__", "inner",
             "dot", "addmv", "chain_matmul", "multi_dot"}

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if name in self.NAMES and any(t.dtype == torch.float32 for t in tensors):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


def test_the_hot_path_on_a_gpu_like_device_calls_no_float32_matrix_product():
    """On a device other than the CPU (meta stands in for a GPU, where A1111 turns TF32 on) no filter and no
    schedule runs a float32 matrix product, which TF32 would round to ~1e-3 (the CPU's averaging product is its
    own, CPU-only path)."""
    from lib_latentfix.schedule import BLOG, Center, Schedule, Step, apply

    x = torch.empty(3, 4, 16, 16, device="meta")
    mask = torch.ones(16, 16, device="meta")
    t = torch.tensor([990.0, 500.0, 50.0], device="meta")
    with _MatmulRecorder() as recorder:
        for out in (center(x, 0.8, 0.8), center(x, 0.6, 1.0, (0, 2)), maximize(x), soft_clamp(x, adaptive=0.998),
                    center(x, mask=mask), apply(BLOG, x, t), apply(BLOG, x, 800.0), apply(BLOG, x, 50.0, mask=mask),
                    apply(Schedule("c", (Step(Center(0.5, 0.25)),)), x, t)):
            assert out.shape == x.shape
    assert recorder.seen == []


def test_center_mixing_is_exact_in_float32():
    x = latent(batch=3, dtype=torch.float32) + 1000.0
    expected = center(x.double(), 0.8, 0.8)
    torch.testing.assert_close(center(x, 0.8, 0.8).double(), expected, rtol=0, atol=2e-4)


# ---- gradients and inference mode (issue 17 N7) ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_are_declared_non_differentiable_and_accept_a_latent_requiring_grad(name):
    x = latent(batch=2, dtype=torch.float32).requires_grad_(True)
    out = FILTERS[name](x)
    assert not out.requires_grad and out.grad_fn is None
    assert torch.equal(out, FILTERS[name](x.detach())) and x.grad is None
    public = {"center": center, "maximize": maximize, "soft_clamp": soft_clamp}[name]
    assert "differentiable" in public.__doc__.lower().split()


def test_constants_cached_in_inference_mode_serve_later_calls_with_gradients():
    from lib_latentfix import filters
    from lib_latentfix.schedule import BLOG, apply

    for cached in (filters._averaging_vector, filters._selector, filters._center_matrix):
        cached.cache_clear()
    x = latent(batch=2, h=8, w=8, dtype=torch.float32)
    with torch.inference_mode():
        first = [f(x) for f in FILTERS.values()] + [apply(BLOG, x, 50.0), apply(BLOG, x, 800.0)]
    w = torch.nn.Parameter(torch.ones(()))
    y = x * w  # a latent in an autograd graph
    again = [f(y) for f in FILTERS.values()] + [apply(BLOG, y, 50.0), apply(BLOG, y, 800.0)]
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    (y * 2).sum().backward()  # the graph around the filters still works
    assert w.grad is not None
    for cached in (filters._averaging_vector, filters._selector, filters._center_matrix):
        assert cached.cache_info().currsize > 0
