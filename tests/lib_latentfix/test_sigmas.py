"""Sigma ↔ timestep on the SD/SDXL discrete schedule, checked against what real hosts report."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_latentfix.sigmas import (
    scaled_linear_alphas_cumprod,
    sigma_to_t,
    sigmas_from_alphas_cumprod,
    t_to_sigma,
)
from support.sync_guard import NoHostSync

SIGMAS = sigmas_from_alphas_cumprod(scaled_linear_alphas_cumprod())


def karras(n, sigma_min, sigma_max, rho=7.0):
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def test_sdxl_sigma_range():
    assert abs(SIGMAS[0].item() - 0.0292) < 1e-4
    assert abs(SIGMAS[-1].item() - 14.6146) < 1e-4


def test_table_entries_map_to_their_index():
    t = sigma_to_t(SIGMAS.float())
    torch.testing.assert_close(t, torch.arange(1000, dtype=torch.float32), rtol=0, atol=2e-3)


def test_normal_schedule_timesteps_seen_on_a1111():
    # host contract §11: Euler a, 12 steps, "normal" → 999, 908, 817, 727, …, 91, 0
    sigmas = t_to_sigma(torch.linspace(999, 0, 12))
    t = sigma_to_t(sigmas)
    assert [round(v) for v in t.tolist()][:4] == [999, 908, 817, 727]
    assert round(t[-2].item()) == 91 and round(t[-1].item()) == 0


def test_karras_schedule_timesteps_seen_on_a1111():
    # host contract §11: 999, 932, 854, 761, 646, 506, 345, 190, 78, 23, 4.5, 0
    seen = [999, 932, 854, 761, 646, 506, 345, 190, 78, 23, 4.5, 0]
    t = sigma_to_t(karras(12, SIGMAS[0].item(), SIGMAS[-1].item()).float())
    for ours, host in zip(t.tolist(), seen):
        assert abs(ours - host) <= 1.0


def test_out_of_table_sigmas_clamp():
    t = sigma_to_t(torch.tensor([0.0, 1e-6, 100.0]))
    assert t.tolist() == [0.0, 0.0, 999.0]


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 999.0))
def test_round_trip(t):
    back = sigma_to_t(t_to_sigma(torch.tensor([t], dtype=torch.float64)))
    assert abs(back.item() - t) < 1e-2


def test_model_schedule_is_used_when_given():
    # a schedule with a different beta range moves the timestep of the same sigma
    other = scaled_linear_alphas_cumprod(beta_start=0.0001, beta_end=0.02)
    sigma = torch.tensor([1.0])
    assert abs(sigma_to_t(sigma).item() - sigma_to_t(sigma, other).item()) > 5


def test_batched_and_sync_free():
    sigma = torch.tensor([[14.0, 3.0], [0.5, 0.03]])
    with NoHostSync():
        t = sigma_to_t(sigma)
        s = t_to_sigma(t)
    assert t.shape == sigma.shape and t.dtype == torch.float32
    torch.testing.assert_close(s, sigma, rtol=1e-3, atol=1e-5)


# ---- devices: tables cached per device, never float64 off the CPU (issue 17 R1, R2, N7) ----------------


class _OffHostFloat64(torch.utils._python_dispatch.TorchDispatchMode):
    """Records every op that makes a float64 tensor on a device other than the CPU (``meta`` stands in for MPS,
    which has no float64), and every ``to`` that widens a device tensor to float64 on its way to the host."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "cpu" and t.dtype == torch.float64:
                self.seen.append(str(func))
        source = args[0] if args else None
        if (isinstance(source, torch.Tensor) and source.device.type != "cpu" and source.dtype != torch.float64
                and kwargs.get("dtype") == torch.float64):
            self.seen.append(f"{func} (widened on the device)")
        return out


def test_no_float64_tensor_on_a_device_and_tables_built_once_per_device():
    from lib_latentfix import sigmas as lf_sigmas

    lf_sigmas._default_log_sigmas.cache_clear()
    sigma = torch.tensor([14.0, 3.0, 0.5, 0.03], device="meta")
    model_table = scaled_linear_alphas_cumprod().float()  # (a meta table has no values to read on the host)
    with _OffHostFloat64() as recorder:
        for table in (None, model_table):
            t = sigma_to_t(sigma, table)
            s = t_to_sigma(t, table)
            assert t.device.type == s.device.type == "meta" and t.dtype == s.dtype == torch.float32
    assert recorder.seen == []
    # built once: a later call copies nothing from the host (the guard flags host-to-device copies)
    with NoHostSync():
        for table in (None, model_table):
            t_to_sigma(sigma_to_t(sigma, table), table)
    assert lf_sigmas._default_log_sigmas.cache_info().currsize >= 1


def test_a_model_table_changed_in_place_is_read_again():
    table = scaled_linear_alphas_cumprod()
    sigma = torch.tensor([1.0])
    before = sigma_to_t(sigma, table)
    table.copy_(scaled_linear_alphas_cumprod(beta_start=0.0001, beta_end=0.02))
    assert abs(sigma_to_t(sigma, table).item() - before.item()) > 5


@pytest.mark.parametrize("call", [lambda: sigma_to_t(1.0), lambda: t_to_sigma([500.0]),
                                  lambda: sigma_to_t(torch.tensor([1.0]), [0.9, 0.8])])
def test_a_number_or_list_instead_of_a_tensor_is_a_clear_type_error(call):
    with pytest.raises(TypeError, match="sigma|t must|alphas_cumprod"):
        call()


def test_tables_first_built_in_inference_mode_serve_autograd_later():
    from lib_latentfix import sigmas as lf_sigmas

    lf_sigmas._default_log_sigmas.cache_clear()
    with torch.inference_mode():
        sigma_to_t(torch.tensor([1.0]))
    sigma = torch.tensor([1.0, 2.0], requires_grad=True)
    t = sigma_to_t(sigma * 1.0)
    assert t.shape == (2,)


def test_a_model_table_made_in_inference_mode_converts_like_a_normal_one():
    """Forge samples under torch.inference_mode, so the model's table there is an inference tensor, which has no
    version counter: converting with it raised "Inference tensors do not track version counter" (real Forge then
    fell back to after guidance on every generation)."""
    normal = scaled_linear_alphas_cumprod()
    with torch.inference_mode():
        table = scaled_linear_alphas_cumprod()
        sigma = torch.tensor([14.0, 1.0, 0.03])
        inside = sigma_to_t(sigma, table)
    assert table.is_inference()
    outside = sigma_to_t(torch.tensor([14.0, 1.0, 0.03]), table)
    assert torch.equal(inside, sigma_to_t(sigma, normal)) and torch.equal(outside, inside)
    assert torch.equal(t_to_sigma(outside, table), t_to_sigma(outside, normal))


def test_the_guard_flags_a_host_table_copied_to_the_device_on_every_call():
    """What sigma_to_t did before its tables were cached: build on the host, copy to the latent's device."""
    import math

    from support.sync_guard import HostSync

    sigma = torch.tensor([1.0, 2.0], device="meta")
    uploads = (lambda: scaled_linear_alphas_cumprod().to(sigma.device), lambda: SIGMAS.float().to(sigma),
               lambda: torch.tensor([1.0, 2.0], device=sigma.device), lambda: torch.as_tensor([3.0], device="meta"),
               lambda: torch.empty(3, device="meta").copy_(torch.ones(3)))
    for upload in uploads:
        with pytest.raises(HostSync, match="host-to-device"):
            with NoHostSync():
                upload()
    with NoHostSync():  # a scalar, a device-side factory or a CPU-only move are fine
        torch.full((3,), math.pi, device="meta")
        torch.tensor(2.0, device="meta")
        SIGMAS.to("cpu", torch.float32)
