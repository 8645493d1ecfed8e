"""The CFG-denoiser callbacks through the stand-in host: off = absent, the right math at the right timesteps on the right rows, correction points, passes, inpainting, models and failures."""


import pytest
import torch

from webui_standin import harness
from lib_latentfix import runtime
from lib_latentfix.infotext import GROUP_KEYS, PRESET_KEY, VERSION_KEY
from lib_latentfix.schedule import apply
from lib_latentfix.sigmas import eps_to_x0
from lib_latentfix.settings import AFTER_CFG, BEFORE_CFG
from support.glue import wrap_our_callbacks, ON, args, run_without_extension
from support.sync_guard import NoHostSync


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM"])
def test_off_is_bit_identical_to_absent(a1111, sampler):
    absent, _ = run_without_extension(batch_size=2, steps=8, seed=11, sampler=sampler)
    a1111.load_extension()
    off, _ = a1111.txt2img(batch_size=2, steps=8, seed=11, sampler=sampler)
    assert torch.equal(off, absent)


def test_zero_strength_is_bit_identical_and_does_no_tensor_work(a1111, corrections):
    absent, _ = run_without_extension(batch_size=2, steps=8, seed=5)
    a1111.load_extension()
    zero = args(clamp_strength=0.0, center_strength=0.0, maximize_strength=0.0)
    latents, processed = a1111.txt2img(zero, batch_size=2, steps=8, seed=5)
    assert torch.equal(latents, absent)
    assert corrections == []
    assert VERSION_KEY not in processed.infotexts[0]


def test_callbacks_do_no_tensor_work_when_off(a1111):
    counts = {"calls": 0}

    def counting(inner, _category):
        def counted(params):
            with NoHostSync() as guard:
                inner(params)
            counts["calls"] += guard.calls
        return counted

    wrap_our_callbacks(counting)
    a1111.txt2img(batch_size=2, steps=6, seed=1)
    assert counts["calls"] == 0


def test_on_changes_the_image_and_writes_infotext(a1111):
    off, _ = a1111.txt2img(batch_size=2, steps=12, seed=3)
    on, processed = a1111.txt2img(args(), batch_size=2, steps=12, seed=3)
    assert not torch.equal(on, off)
    info = processed.infotexts[0]
    assert f"{VERSION_KEY}: " in info and f"{PRESET_KEY}: Post defaults" in info
    assert GROUP_KEYS["clamp"] in info


def test_post_defaults_remove_the_colour_cast_and_use_the_range(a1111):
    """The stand-in model drifts to a colour cast and a narrow range; the post's schedule fixes both."""
    off, _ = a1111.txt2img(batch_size=2, steps=20, seed=3, cfg_scale=12)
    on, _ = a1111.txt2img(args(), batch_size=2, steps=20, seed=3, cfg_scale=12)
    cast_off, cast_on = off.mean(dim=(2, 3)).abs(), on.mean(dim=(2, 3)).abs()
    assert (cast_on[:, :3] < cast_off[:, :3] / 2).all()
    assert (on[:, :3].abs().amax(dim=(1, 2, 3)) > 3.5).all() and (off.abs().amax(dim=(1, 2, 3)) < 3).all()


def test_after_cfg_correction_is_the_schedule_on_each_images_x0(a1111, corrections):
    received = []  # LatentFix's after-CFG callback runs last: what it leaves in params.x is what the sampler gets

    def recording(inner, category):
        def recorded(params):
            inner(params)
            if category == "cfg_after_cfg":
                received.append(params.x.clone())
        return recorded

    wrap_our_callbacks(recording)
    a1111.txt2img(args(), batch_size=2, steps=12, seed=4, sampler="Euler")
    assert len(corrections) == 12 == len(received)
    for (prediction, call, result), x in zip(corrections, received):
        assert prediction.shape[0] == 2  # one row per image
        expected = apply(ON.schedule(), prediction, call.timesteps[-2:])
        assert torch.equal(result, expected)
        assert torch.equal(x, result)  # the sampler received the corrected x0


def test_timesteps_follow_sigma_through_the_models_schedule(a1111, corrections):
    a1111.txt2img(args(), batch_size=1, steps=12, seed=4, sampler="Euler", scheduler="Karras")
    seen = [call.timesteps[-1].item() for _, call, _ in corrections]
    host_reported = [999, 932, 854, 761, 646, 506, 345, 190, 78, 23, 4.5, 0]  # host contract §11
    assert len(seen) == len(host_reported)
    for ours, host in zip(seen, host_reported):
        assert abs(ours - host) <= 1.0


def test_windows_decide_which_steps_change(a1111, corrections):
    a1111.txt2img(args(), batch_size=1, steps=12, seed=4, sampler="Euler")
    for prediction, call, result in corrections:
        t = call.timesteps[-1].item()
        in_a_window = t > 700 or 1 < t < 100
        assert torch.equal(prediction, result) != in_a_window, t


def test_and_prompts_cond_rows_are_not_mixed_into_the_images(a1111, corrections):
    a1111.txt2img(args(), prompt="a cat AND a dog AND a bird", batch_size=2, steps=6, seed=9)
    for prediction, call, _ in corrections:
        assert call.timesteps.shape[0] == 2 * 3 + 2  # three cond rows per image, then two uncond rows
        assert prediction.shape[0] == 2


@pytest.mark.parametrize("flavour", ["a1111", "forge"])
@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "Heun", "DDIM"])
def test_each_image_of_a_batch_equals_the_image_alone(flavour, sampler):
    host = harness.make_host(flavour, "sdxl")
    host.load_extension()
    batch, _ = host.txt2img(args(), batch_size=3, steps=8, seed=100, sampler=sampler)
    for i in range(3):
        alone, _ = host.txt2img(args(), batch_size=1, steps=8, seed=100 + i, sampler=sampler)
        assert torch.equal(batch[i : i + 1], alone), i


def test_second_order_sampler_is_corrected_once_per_model_evaluation(a1111, corrections):
    a1111.txt2img(args(), batch_size=1, steps=6, seed=2, sampler="Heun")
    timesteps = [call.timesteps[-1].item() for _, call, _ in corrections]
    # Heun evaluates at σ_i and again at σ_i+1 (not on the last step, which goes to σ = 0): 2·6 − 1 calls,
    # each corrected once at the sigma of that evaluation
    assert len(timesteps) == 11
    assert timesteps == sorted(timesteps, reverse=True)
    assert all(timesteps.count(t) <= 2 for t in timesteps)


def test_ddim_gets_the_same_correction_in_x0_space(a1111, corrections):
    events = a1111.record_callbacks()
    a1111.txt2img(args(), batch_size=2, steps=4, seed=8, sampler="DDIM")
    assert [round(c.timesteps[-1].item()) for _, c, _ in corrections] == [751, 501, 251]
    for prediction, call, result in corrections:
        assert call.alpha_bar is not None  # eps mode
        x0 = eps_to_x0(call.x_in[-2:], prediction, call.alpha_bar[-2:])
        x0_after = eps_to_x0(call.x_in[-2:], result, call.alpha_bar[-2:])
        torch.testing.assert_close(x0_after, apply(ON.schedule(), x0, call.timesteps[-2:]), rtol=1e-4, atol=1e-4)
    assert all(e["x"].shape[0] == 2 for e in events if e["kind"] == "cfg_after_cfg")


def test_before_guidance_on_a1111_edits_every_prediction_row_in_place(a1111, corrections):
    latents, processed = a1111.txt2img(args(correction_point=BEFORE_CFG), batch_size=2, steps=6, seed=1)
    assert corrections and all(p.shape[0] == 4 for p, _, _ in corrections)  # 2 cond + 2 uncond rows
    assert "point=before" in processed.infotexts[0]
    after, _ = a1111.txt2img(args(correction_point=AFTER_CFG), batch_size=2, steps=6, seed=1)
    assert not torch.equal(latents, after)


def test_before_guidance_on_forge_never_runs_and_never_claims_it(forge, capsys):
    absent, _ = run_without_extension("forge", batch_size=1, steps=6, seed=1)
    forge.load_extension()
    latents, processed = forge.txt2img(args(correction_point=BEFORE_CFG), batch_size=1, steps=6, seed=1)
    assert torch.equal(latents, absent)
    assert VERSION_KEY not in processed.infotexts[0]
    assert "before guidance" in capsys.readouterr().out


def test_forge_after_guidance_corrects_x0_with_its_own_timesteps(forge, corrections):
    on, processed = forge.txt2img(args(), batch_size=2, steps=8, seed=3, sampler="DDIM")
    assert corrections and all(c.alpha_bar is None for _, c, _ in corrections)  # Forge hands x0 for DDIM too
    timesteps = [c.timesteps[-1].item() for _, c, _ in corrections]
    assert all(t == round(t) for t in timesteps)  # Forge's predictor gives whole timesteps
    assert VERSION_KEY in processed.infotexts[0]


def test_hires_pass_follows_the_option(a1111, corrections):
    a1111.txt2img(args(), steps=6, seed=2, enable_hr=True, hr_second_pass_steps=4, denoising_strength=0.6)
    with_hires = len(corrections)
    corrections.clear()
    a1111.txt2img(args(apply_in_hires=False), steps=6, seed=2, enable_hr=True, hr_second_pass_steps=4,
                  denoising_strength=0.6)
    assert len(corrections) == 6 and with_hires > 6
    assert all(p.shape[-1] == 32 for p, _, _ in corrections)  # only first-pass (256 px → 32 latent) calls


def test_forge_hires_with_cfg_1_has_no_uncond_and_is_still_corrected(forge, corrections):
    latents, processed = forge.txt2img(args(), steps=6, seed=2, enable_hr=True, hr_second_pass_steps=4,
                                       denoising_strength=0.6, hr_cfg=1.0)
    hires = [c for p, c, _ in corrections if p.shape[-1] == 48]  # 256 px × 1.5 → 48-wide latent
    assert hires and all(c.timesteps.shape[0] == 1 for c in hires)  # Forge: one row per image, no uncond
    assert torch.isfinite(latents).all() and forge.errors == []


def test_inner_pass_of_another_extension_is_skipped(a1111, corrections):
    a1111.txt2img(args(), steps=6, seed=2, _ad_inner=True)
    assert corrections == []
    a1111.txt2img(args(skip_inner_passes=False), steps=6, seed=2, _ad_inner=True)
    assert len(corrections) == 6


def test_batch_count_does_not_compound(a1111):
    both, _ = a1111.txt2img(args(), batch_size=1, n_iter=2, steps=6, seed=40)
    for n in range(2):
        alone, _ = a1111.txt2img(args(), batch_size=1, steps=6, seed=40 + n)
        assert torch.equal(both[n : n + 1], alone)


def test_refiner_switch_carries_on(a1111, corrections):
    a1111.txt2img(args(), steps=10, seed=6, refiner_checkpoint="refiner", refiner_switch_at=0.5)
    assert len(corrections) == 10
    assert corrections[-1][1].timesteps[-1].item() < 100


@pytest.mark.parametrize("sampler", ["Euler a", "DDIM"])
def test_inpaint_keeps_the_untouched_area_and_balances_the_patch_alone(a1111, corrections, sampler):
    init = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 + torch.tensor(
        [1.5, -1.0, 0.8, 0.0])[None, :, None, None]
    mask = torch.zeros(32, 32)
    mask[8:24, 8:24] = 1
    off, _ = a1111.img2img(init_latent=init, mask=mask, denoising_strength=0.8, steps=10, seed=3, sampler=sampler)
    on, _ = a1111.img2img(args(), init_latent=init, mask=mask, denoising_strength=0.8, steps=10, seed=3,
                          sampler=sampler)
    keep = (mask == 0)[None, None].expand_as(on)
    assert torch.equal(on[keep], off[keep])  # the area the user did not paint is exactly as without us
    assert not torch.equal(on, off)
    for prediction, call, result in corrections:
        assert call.mask is not None
        outside = (call.mask == 0).expand_as(result)
        assert torch.equal(result[outside], prediction[outside])  # never changed outside the mask
        if call.alpha_bar is None:  # x0 (k-diffusion): the statistics came from the patch alone
            patch = apply(ON.schedule(), prediction[..., 8:24, 8:24], call.timesteps[-1:])
            torch.testing.assert_close(result[..., 8:24, 8:24], patch)


def test_sd1_runs_with_a_note(capsys):
    host = harness.make_host("a1111", "sd1")
    host.load_extension()
    off, _ = host.txt2img(steps=6, seed=1)
    on, _ = host.txt2img(args(), steps=6, seed=1)
    assert not torch.equal(on, off)
    assert capsys.readouterr().out.count("SD 1.x/2.x") == 1


def test_unsupported_model_is_skipped_with_one_line(a1111, capsys, corrections):
    a1111.shared.sd_model.is_sdxl = False  # flagged as SD3 (the toy model itself still has 4 channels)
    a1111.shared.sd_model.is_sd3 = True
    a1111.txt2img(args(), steps=4, seed=1)
    out = capsys.readouterr().out
    assert corrections == [] and out.count("[LatentFix] skipped") == 1


def test_odd_shaped_latent_is_skipped_without_raising(a1111, capsys):
    """A 16-channel latent reaching the callbacks turns the job off with one line; nothing raises."""
    import modules.script_callbacks as sc
    from lib_latentfix.runtime import Job

    denoiser_cb = next(e.callback for e in sc.callback_map["callbacks_cfg_denoiser"] if "latentfix" in e.name)
    p = type("P", (), {})()
    p.latentfix_job = Job(ON, version="test")
    denoiser = type("D", (), {"p": p})()
    params = sc.CFGDenoiserParams(torch.zeros(2, 16, 8, 8), None, torch.ones(2), 0, 2, None, None, denoiser)
    denoiser_cb(params)
    denoiser_cb(params)
    assert not p.latentfix_job.active
    assert capsys.readouterr().out.count("16 channels") == 1


def test_an_error_turns_the_extension_off_for_the_generation_and_the_image_is_made(a1111, monkeypatch, capsys):
    calls = {"n": 0}

    def broken(schedule, prediction, call):
        calls["n"] += 1
        raise RuntimeError("boom")

    monkeypatch.setattr(runtime, "correct", broken)
    absent, _ = run_without_extension(steps=6, seed=2)
    a1111.load_extension()
    latents, processed = a1111.txt2img(args(correction_point="after"), steps=6, seed=2)
    assert torch.equal(latents, absent)
    assert calls["n"] == 1
    out = capsys.readouterr().out
    assert out.count("RuntimeError: boom") == 1
    assert "LatentFix: " not in processed.infotexts[0]  # no claim that it ran, and the reason instead
    assert 'LatentFix error: "not applied, turned off after an error: RuntimeError: boom"' in processed.infotexts[0]
    assert a1111.errors == []  # nothing escaped into the host


def test_non_finite_latent_does_not_spread_to_other_images(a1111, monkeypatch, capsys, device_windows):
    """A NaN in one image's prediction stays in that image; the others are corrected as usual."""
    import modules.script_callbacks as sc

    def poison(params):
        if params.x.shape[0] == 2:
            params.x = params.x.clone()
            params.x[0, 0, 0, 0] = float("nan")

    sc.callback_map["callbacks_cfg_after_cfg"].insert(0, sc.ScriptCallback("poison.py", poison, "poison"))
    latents, _ = a1111.txt2img(args(), batch_size=2, steps=6, seed=70)
    assert torch.isfinite(latents[1]).all()
    out = capsys.readouterr().out
    assert out.count("held NaN/inf values") == 1 and "[LatentFix] 6 image prediction(s)" in out


@pytest.mark.parametrize("flavour", ["a1111", "forge"])
def test_after_cfg_correction_runs_behind_after_cfg_callbacks_registered_later(flavour, monkeypatch):
    """Another extension's after-CFG callback registered after LatentFix's (a folder sorting later, or one that
    registers per generation): LatentFix still corrects last, the prediction as the others left it."""
    from latentfix_webui import handoff
    from modules import script_callbacks

    host = harness.make_host(flavour, "sdxl")
    host.load_extension()
    order = []
    original = handoff.pop

    def popping():
        order.append("latentfix")
        return original()

    monkeypatch.setattr(handoff, "pop", popping)
    script_callbacks.on_cfg_after_cfg(lambda params: order.append("other"), name="registered-later")
    host.txt2img(steps=2, seed=1)  # LatentFix off: the WebUI caches the order as registered
    order.clear()
    host.txt2img(args(), steps=4, seed=1)
    assert order and order == ["other", "latentfix"] * (len(order) // 2)
