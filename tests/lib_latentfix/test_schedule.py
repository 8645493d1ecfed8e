"""The schedule: BLOG reproduces the post's callback; windows are per image; no sync, no per-image loop."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_latentfix import BLOG, Center, Maximize, Schedule, SoftClamp, Step, apply
from support import post_reference as post
from support.sync_guard import NoHostSync

EDGE_TIMESTEPS = [999.0, 951.0, 950.5, 950.0, 949.5, 800.0, 700.5, 700.0, 699.5, 400.0,
                  100.5, 100.0, 99.5, 50.0, 1.5, 1.0, 0.5, 0.0]


def latent(batch=1, h=12, w=12, scale=8.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    cast = torch.tensor([0.5, -1.0, 1.5, 0.2], dtype=torch.float64)[None, :, None, None]
    return (torch.randn(batch, 4, h, w, generator=g, dtype=torch.float64) * scale / 2 + cast).to(dtype)


@pytest.mark.parametrize("t", EDGE_TIMESTEPS)
@pytest.mark.parametrize("seed,scale", [(0, 8.0), (1, 30.0), (2, 1.0)])
def test_blog_matches_post_callback_on_both_sides_of_every_edge(t, seed, scale):
    x = latent(seed=seed, scale=scale)
    expected = post.callback(None, 0, t, {"latents": x.clone()})["latents"]
    torch.testing.assert_close(apply(BLOG, x, t), expected, rtol=0, atol=1e-6)


def test_blog_over_a_whole_run_matches_post_callback():
    """Chained over a 30-step schedule, as a sampler would feed it, the result still matches."""
    ours = theirs = latent(seed=5, scale=20)
    for t in torch.linspace(999, 0, 30).tolist():
        ours = apply(BLOG, ours, t) * 0.97 + 0.05
        theirs = post.callback(None, 0, t, {"latents": theirs.clone()})["latents"] * 0.97 + 0.05
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    b=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 40.0),
    t=st.lists(st.sampled_from(EDGE_TIMESTEPS), min_size=6, max_size=6),
)
def test_each_image_follows_its_own_timestep_as_if_alone(b, seed, scale, t):
    x = latent(batch=b, seed=seed, scale=scale, dtype=torch.float32)
    timesteps = torch.tensor(t[:b])
    together = apply(BLOG, x, timesteps)
    for i in range(b):
        assert torch.equal(together[i : i + 1], apply(BLOG, x[i : i + 1], timesteps[i : i + 1]))


def test_outside_every_window_nothing_changes():
    x = latent(batch=2, dtype=torch.float32)
    assert torch.equal(apply(BLOG, x, torch.tensor([500.0, 300.0])), x)


def test_zero_strength_step_is_dropped():
    schedule = Schedule("off", (Step(Center(), strength=0.0), Step(Maximize(), strength=0.0)))
    assert not any(step.can_change() for step in schedule.steps)
    x = latent(dtype=torch.float32)
    out = apply(schedule, x, 500.0)
    assert torch.equal(out, x) and out is not x


def test_strength_blends_between_input_and_filter():
    x = latent(dtype=torch.float64)
    full = apply(Schedule("c", (Step(Center()),)), x, 500.0)
    half = apply(Schedule("c", (Step(Center(), strength=0.5),)), x, 500.0)
    torch.testing.assert_close(half, (x + full) / 2)


def test_window_ends_reach_the_ends_of_the_scale():
    step = Step(Center(), t_min=0.0, t_max=1000.0)
    assert step.active(torch.tensor([0.0, 999.0, 1000.0])).all()
    strict = Step(Center(), t_min=1.0, t_max=100.0)
    assert strict.active(torch.tensor([1.0, 1.5, 99.9, 100.0])).tolist() == [False, True, True, False]


def _calls(schedule, batch, mask=None):
    x = latent(batch=batch, dtype=torch.float32)
    t = torch.linspace(999, 0, batch)
    with NoHostSync() as guard:
        apply(schedule, x, t, mask=mask)
    return guard.calls


def test_apply_never_syncs_and_does_not_loop_over_images():
    # (a batch of one takes a shortcut for its single timestep, so compare 2 with 8)
    assert _calls(BLOG, 2) == _calls(BLOG, 8), "the work grows with the batch: a per-image Python loop"
    mask = torch.ones(4, 12, 12)
    assert _calls(BLOG, 2, mask) == _calls(BLOG, 8, mask)


def test_late_window_folds_into_one_statistics_pass():
    """center + maximize run as one affine map: one statistics pass, one elementwise pass.

    The statistics pass is the mean (a matrix-vector product with 1/N on the CPU, so that the mean of a huge
    finite image cannot overflow), then min and max for the maximize.
    """
    late = Schedule("late", BLOG.steps[2:])
    x = latent(batch=2, dtype=torch.float32)
    for timesteps in (50.0, torch.tensor([50.0, 60.0])):
        with NoHostSync() as guard:
            apply(late, x, timesteps)
        on_latent = [n for n, size in guard.sizes if size == x.numel() and not n.startswith("__get__")]
        work = [n for n in on_latent if n in ("mean", "matmul", "amin", "amax", "aminmax", "sum", "mul", "add", "add_",
                                              "sub", "where", "addcmul", "clone")]
        assert work == ["matmul", "amin", "amax", "mul", "add_"]


def test_half_precision_keeps_dtype():
    x = latent(batch=2, dtype=torch.float16)
    out = apply(BLOG, x, torch.tensor([999.0, 50.0]))
    assert out.dtype == torch.float16
    ref = apply(BLOG, x.float(), torch.tensor([999.0, 50.0]))
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=5e-2)


def test_nan_image_left_alone_by_schedule():
    x = latent(batch=2, dtype=torch.float32)
    x[0, 1, 3, 3] = float("nan")
    out = apply(BLOG, x, torch.tensor([999.0, 999.0]))
    assert torch.equal(out[0].nan_to_num(7.0), x[0].nan_to_num(7.0))
    assert torch.equal(out[1:], apply(BLOG, x[1:], torch.tensor([999.0])))


def test_mask_limits_schedule_to_repainted_area():
    x = latent(batch=1, dtype=torch.float32)
    mask = torch.zeros(4, 12, 12)
    mask[:, 3:9, 3:9] = 1
    out = apply(BLOG, x, 50.0, mask=mask)
    outside = mask[None] == 0
    assert torch.equal(out[outside], x[outside])
    assert not torch.equal(out, x)


@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: Step(Center(), t_min=500, t_max=100), "t_min"),
        (lambda: Step(Center(), t_max=1200), "t_max"),
        (lambda: Step(Center(), strength=1.5), "strength"),
        (lambda: Step("center"), "filter"),
        (lambda: Center(channels=(0, 0)), "channels"),
        (lambda: SoftClamp(threshold=4.5), "threshold"),
        (lambda: Maximize(boundary=0), "boundary"),
    ],
)
def test_bad_schedule_data_is_refused_with_the_argument_named(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_channels_beyond_the_latent_are_refused():
    with pytest.raises(ValueError, match="channels"):
        apply(Schedule("x", (Step(Center(channels=(0, 5))),)), latent(), 500.0)


def test_timesteps_must_match_batch():
    with pytest.raises(ValueError, match="timesteps"):
        apply(BLOG, latent(batch=3), torch.tensor([1.0, 2.0]))


def test_a_diffusers_style_scalar_timestep_tensor_is_used_for_every_image():
    """The README's callback_on_step_end example hands diffusers' 0-d (integer) timestep tensor to apply."""
    x = latent(batch=3, dtype=torch.float32)
    for t in (999, 50):
        with NoHostSync():
            out = apply(BLOG, x, torch.tensor(t))
        assert torch.equal(out, apply(BLOG, x, float(t)))


def test_steps_that_cannot_change_anything_are_dropped():
    schedule = Schedule("noop", (Step(Center(0.0, 0.0)), Step(Maximize(channels=())), Step(Center(0.0, 1.0))))
    assert [s.filter for s in schedule.steps if s.can_change()] == [Center(0.0, 1.0)]


# ---- windows decided on the host -------------------------------------------------------------------------------


def test_steps_between_decides_on_the_host_or_says_it_cannot():
    from lib_latentfix.schedule import steps_between

    clamp, early, late, stretch = BLOG.steps
    assert steps_between(BLOG, 999.0, 999.0) == (clamp, early)
    assert steps_between(BLOG, 500.0, 500.0) == ()  # nothing to do: no tensor work at all
    assert steps_between(BLOG, 50.0, 50.0) == (late, stretch)
    assert steps_between(BLOG, 0.0, 0.0) == ()  # the final t = 0 is outside the strict 1 < t < 100
    assert steps_between(BLOG, 950.2, 950.2) is None  # within rounding of an edge: the device decides
    assert steps_between(BLOG, 600.0, 800.0) is None  # a second-order call between two schedule entries
    assert steps_between(BLOG, 300.0, 600.0) == ()


@settings(max_examples=300, deadline=None)
@given(t=st.floats(0, 999), width=st.floats(0, 30))
def test_steps_between_agrees_with_the_device_masks(t, width):
    """Whatever the host decides holds for every timestep the device could see in that range."""
    from lib_latentfix.schedule import EDGE_MARGIN, steps_between

    decided = steps_between(BLOG, t, t + width)
    if decided is None:
        return
    for probe in (t - EDGE_MARGIN + 1e-3, t, t + width / 2, t + width, t + width + EDGE_MARGIN - 1e-3):
        active = tuple(s for s in BLOG.steps if s.is_active_at(probe))
        assert active == decided


@pytest.mark.parametrize("shape", [(1, 4, 0, 8), (2, 4, 8, 0), (1, 0, 8, 8)])
def test_empty_dimension_is_refused_naming_x(shape):
    for timesteps in (50.0, torch.full((shape[0],), 50.0)):
        with pytest.raises(ValueError, match=r"^x must not have an empty "):
            apply(BLOG, torch.zeros(shape), timesteps)


def test_huge_finite_latent_is_corrected():
    x = latent(batch=2, h=128, w=128, dtype=torch.float32).abs_().add_(1.0) * 2.0**120  # sums overflow float32
    out = apply(BLOG, x, torch.tensor([999.0, 50.0]))
    assert torch.isfinite(out).all()
    assert not torch.equal(out[0], x[0]) and not torch.equal(out[1], x[1])
    assert out[1, :3].abs().amax() <= 4.0 * (1 + 1e-6)  # maximize reached the boundary


@pytest.mark.parametrize("t", [999.0, 800.0, 50.0, 500.0])
@pytest.mark.parametrize("masked", [False, True])
def test_the_change_a_schedule_makes_is_its_result_minus_the_input(t, masked):
    from lib_latentfix.schedule import BLOG, apply, run

    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 5
    mask = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4)) > 0.5).double() if masked else None
    moved, _ = run(BLOG, x, t, mask=mask, change=True)
    assert torch.allclose(moved, apply(BLOG, x, t, mask=mask) - x, rtol=0, atol=1e-12)


# ---- bad arguments name themselves; gradients (issue 17 N7) ---------------------------------------------


@pytest.mark.parametrize("call,error,named", [
    (lambda x: apply(None, x, 500.0), TypeError, "schedule"),
    (lambda x: apply(BLOG, x, 500.0, mask=[[1.0]]), TypeError, "mask"),
    (lambda x: apply(BLOG, x, "50"), TypeError, "timesteps"),
    (lambda x: apply(BLOG, x, ["a", "b"]), TypeError, "timesteps"),
    (lambda x: apply(BLOG, x, True), TypeError, "timesteps"),
    (lambda x: apply(BLOG, x, torch.tensor([True, False])), TypeError, "timesteps"),
    (lambda x: apply(BLOG, x, [1.0, 2.0, 3.0]), ValueError, "timesteps"),
    (lambda x: Schedule("s", (BLOG.steps[0], "center")), TypeError, "Step"),
    (lambda x: Schedule("s", 5), TypeError, "steps"),
])
def test_bad_arguments_are_a_clear_error_naming_the_argument(call, error, named):
    from lib_latentfix import center as center_filter

    x = torch.randn(2, 4, 8, 8)
    with pytest.raises(error, match=named):
        call(x)
    with pytest.raises(TypeError, match="mask"):
        center_filter(x, mask=[[1.0] * 8] * 8)


def test_a_schedule_given_a_list_of_steps_holds_a_tuple():
    assert Schedule("s", list(BLOG.steps)).steps == BLOG.steps


def test_apply_is_declared_non_differentiable_and_takes_a_latent_requiring_grad():
    x = (torch.randn(2, 4, 8, 8) * 5).requires_grad_(True)
    for t in (torch.tensor([990.0, 50.0]), 800.0, None):
        out = apply(BLOG, x, t)
        assert not out.requires_grad and torch.equal(out, apply(BLOG, x.detach(), t))
    assert "differentiable" in apply.__doc__


def test_the_hot_path_on_a_device_copies_nothing_from_the_host_once_warm():
    """On a device (meta stands in for a GPU) a model call's work — sigma to timestep, the schedule — neither waits
    for the device nor copies from the host, once the first call has built the cached tables and constants."""
    from lib_latentfix.sigmas import sigma_to_t

    x = torch.empty(3, 4, 16, 16, device="meta")
    sigma = torch.empty(3, device="meta")
    mask = torch.ones(1, 1, 16, 16, device="meta")

    def call():
        t = sigma_to_t(sigma)
        return apply(BLOG, x, t), apply(BLOG, x, t, mask=mask), apply(BLOG, x, 50.0), apply(BLOG, x, 990.0)

    call()  # warm-up: the tables and constants are built (and copied to the device) here, once
    with NoHostSync() as guard:
        call()
    assert guard.calls > 0
