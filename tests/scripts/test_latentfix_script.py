"""The WebUI glue, driven through the stand-in host's real hook order and sampling loops.

Every test loads ``scripts/latentfix.py`` the way A1111 does and runs whole generations (txt2img, hires,
img2img/inpaint, refiner, batch count) with the k-diffusion-style samplers and A1111's eps (DDIM) sampler.
"""

from dataclasses import replace

import pytest
import torch

from webui_standin import harness
from lib_latentfix import runtime
from lib_latentfix.infotext import GROUP_KEYS, PRESET_KEY, VERSION_KEY
from lib_latentfix.schedule import apply
from lib_latentfix.sigmas import eps_to_x0
from lib_latentfix.arguments import to_positional
from lib_latentfix.settings import AFTER_CFG, BEFORE_CFG, DEFAULTS
from support.sync_guard import NoHostSync

ON = replace(DEFAULTS, enabled=True)


def args(**changes):
    """Positional script args (ui() order) for the defaults with ``changes``, enabled."""
    return to_positional(replace(ON, **changes))


@pytest.fixture
def a1111():
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    return host


@pytest.fixture
def forge():
    host = harness.make_host("forge", "sdxl")
    host.load_extension()
    return host


@pytest.fixture
def device_windows(monkeypatch):
    """Make the host say it cannot know the timesteps before sampling: every model call is then corrected with
    the windows tested on the device (the path every call took before windows were decided on the host)."""
    import latentfix_webui.host as glue_host

    monkeypatch.setattr(glue_host, "host_timesteps", lambda p: (None, None, "tests: windows on the device"))


@pytest.fixture
def corrections(monkeypatch, device_windows):
    """Record every call the glue makes into the core: (prediction, ModelCall, result), one per model call."""
    seen = []
    original = runtime.correct

    def spy(schedule, prediction, call):
        result = original(schedule, prediction, call)
        seen.append((prediction.clone(), call, result.clone()))
        return result

    monkeypatch.setattr(runtime, "correct", spy)
    return seen


def run_without_extension(flavour="a1111", **kw):
    host = harness.make_host(flavour, "sdxl")
    return host.txt2img(**kw)


# ---- disabled = absent ---------------------------------------------------------------------------------------


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
    import modules.script_callbacks as sc

    counts = {"calls": 0}
    for category in ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg"):
        for entry in sc.callback_map["callbacks_" + category]:
            if "latentfix" not in entry.name:
                continue
            inner = entry.callback

            def counted(params, inner=inner):
                with NoHostSync() as guard:
                    inner(params)
                counts["calls"] += guard.calls

            entry.callback = counted
    a1111.txt2img(batch_size=2, steps=6, seed=1)
    assert counts["calls"] == 0


# ---- on: the right math, at the right timesteps, on the right rows -------------------------------------------


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
    events = a1111.record_callbacks()
    a1111.txt2img(args(), batch_size=2, steps=12, seed=4, sampler="Euler")
    assert len(corrections) == 12
    after = [e for e in events if e["kind"] == "cfg_after_cfg"]
    for (prediction, call, result), event in zip(corrections, after):
        assert prediction.shape[0] == 2  # one row per image
        expected = apply(ON.schedule(), prediction, call.timesteps[-2:])
        assert torch.equal(result, expected)
        assert torch.equal(event["x"], result)  # the sampler received the corrected x0


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


# ---- correction point ------------------------------------------------------------------------------------------


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


# ---- passes ---------------------------------------------------------------------------------------------------------


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


# ---- inpainting --------------------------------------------------------------------------------------------------------


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


# ---- models and failures ---------------------------------------------------------------------------------------------


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
    latents, processed = a1111.txt2img(args(), steps=6, seed=2)
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


# ---- API and infotext -----------------------------------------------------------------------------------------------


def test_named_settings_dict_as_the_only_api_arg(a1111):
    named, processed = a1111.txt2img([{"enabled": True, "preset": "Gentle", "maximize_boundary": 3.5}], steps=12,
                                     seed=1, is_api=True)
    positional, _ = a1111.txt2img(args(clamp_strength=0.5, center_strength=0.5, maximize_strength=0.5,
                                       maximize_boundary=3.5), steps=12, seed=1, is_api=True)
    assert torch.equal(named, positional)
    assert "boundary=3.5" in processed.infotexts[0]


def test_bad_api_settings_leave_the_generation_untouched_with_a_message(a1111, capsys):
    off, _ = a1111.txt2img(steps=6, seed=1)
    bad, processed = a1111.txt2img([{"enabled": True, "maximize_boundry": 3}], steps=6, seed=1, is_api=True)
    assert torch.equal(bad, off)
    assert "maximize_boundry" in capsys.readouterr().out
    # the API caller gets the reason back in the response's info, and the paste of it stays off
    assert "LatentFix error: \"not applied: unknown setting(s) 'maximize_boundry'" in processed.infotexts[0]
    assert "LatentFix: " not in processed.infotexts[0]
    good, processed = a1111.txt2img(args(), steps=6, seed=1)
    assert "LatentFix error" not in processed.infotexts[0]  # never left behind for the next generation


def test_infotext_pastes_back_every_control(a1111):
    from modules import infotext_utils

    chosen = replace(ON, preset="Custom", clamp_adaptive=False, clamp_threshold=3.0, center_channels=(1, 2),
                     maximize_boundary=3.25, apply_in_hires=False)
    _, processed = a1111.txt2img(to_positional(chosen), steps=12, seed=1)
    script = a1111.extension.script("txt2img")
    pasted = infotext_utils.paste_infotext(script.infotext_fields, processed.infotexts[0])
    assert pasted == to_positional(chosen)


def test_paste_without_our_keys_turns_the_extension_off(a1111):
    from modules import infotext_utils

    script = a1111.extension.script("txt2img")
    pasted = infotext_utils.paste_infotext(script.infotext_fields, "a cat\nSteps: 20, Sampler: Euler, Seed: 1")
    assert pasted[0] is False
    assert all(v == "unchanged" for v in pasted[1:])


def test_xyz_shared_extra_params_never_leak_between_cells(a1111):
    """X/Y/Z copies p shallowly: a cell with the extension off must not inherit a previous cell's keys."""
    from copy import copy

    from modules import processing

    run = a1111.txt2img(args(), steps=4, seed=1)
    cell = copy(run.p)
    cell.script_args = [None] + to_positional(DEFAULTS)
    cell.scripts.setup_scrips(cell, is_ui=True)
    processed = processing.process_images(cell)
    assert VERSION_KEY not in processed.infotexts[0]


# ---- X/Y/Z plot ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def with_xyz():
    import os

    from modules import scripts

    host = harness.make_host("a1111", "sdxl")
    xyz_path = os.path.join(os.path.dirname(harness.__file__), "builtin_scripts", "xyz_grid.py")
    xyz = scripts.load_script_file(xyz_path, os.path.dirname(xyz_path))[0]
    host.load_extension()  # its before_ui callback registers the axes on the loaded xyz module
    return host, next(d.module for d in scripts.scripts_data if d.script_class is xyz)


def test_xyz_axes_are_registered_once(with_xyz):
    import modules.script_callbacks as sc

    host, xyz = with_xyz
    ours = [o.label for o in xyz.axis_options if o.label.startswith("[LatentFix]")]
    assert "[LatentFix] Enable" in ours and "[LatentFix] Preset" in ours and "[LatentFix] Maximize boundary" in ours
    sc.before_ui_callback()  # a second before_ui (e.g. --api building the UI again) adds nothing
    assert [o.label for o in xyz.axis_options if o.label.startswith("[LatentFix]")] == ours


def test_xyz_cells_get_their_own_values_and_infotext(with_xyz):
    host, xyz = with_xyz
    base = host.txt2img(steps=12, seed=1)  # extension off in the UI
    cells = xyz.run_cells(base.p, "[LatentFix] Enable", ["True", "False"])
    assert "LatentFix: " in cells[0].infotexts[0]
    assert "LatentFix" not in cells[1].infotexts[0]
    boundary = xyz.run_cells(base.p, "[LatentFix] Maximize boundary", [2.0, 3.5])
    assert all("LatentFix" not in r.infotexts[0] for r in boundary)  # a parameter axis alone does not enable
    on = host.txt2img(args(), steps=12, seed=1)
    two = xyz.run_cells(on.p, "[LatentFix] Maximize boundary", [2.0, 3.5])
    assert "boundary=2;" in two[0].infotexts[0] and "boundary=3.5;" in two[1].infotexts[0]
    assert not hasattr(on.p, "latentfix_overrides")  # the original p is untouched


def test_xyz_rejects_bad_values_before_running(with_xyz):
    host, xyz = with_xyz
    base = host.txt2img(args(), steps=12, seed=1)
    with pytest.raises(ValueError, match="maximize_boundary"):
        xyz.run_cells(base.p, "[LatentFix] Maximize boundary", [2.0, 99.0])


# ---- lifecycle, settings page, command line --------------------------------------------------------------------------


def _our_callbacks():
    import modules.script_callbacks as sc

    return {cat: [e.name for e in entries if "latentfix" in e.name] for cat, entries in sc.callback_map.items()}


def test_callbacks_registered_once_and_again_after_reload_ui(a1111):
    once = _our_callbacks()
    assert all(len(names) <= 1 for names in once.values())
    assert once["callbacks_cfg_after_cfg"] and once["callbacks_cfg_denoiser"] and once["callbacks_cfg_denoised"]
    import modules.script_callbacks as sc

    sc.clear_callbacks()  # Reload UI: load_scripts clears every callback, then re-executes scripts/*.py
    a1111.load_extension()
    assert _our_callbacks() == once
    latents, processed = a1111.txt2img(args(), steps=4, seed=1)
    assert "LatentFix: " in processed.infotexts[0]


def test_ui_has_no_side_effects_when_called_again(a1111):
    import gradio as gr

    before = _our_callbacks()
    script = a1111.extension.script("txt2img")
    with gr.Blocks():  # the API builds the UI again to read defaults (api/api.py:326-332)
        components = script.ui(False)
    assert _our_callbacks() == before
    assert [c.elem_id for c in components] == [c.elem_id for c in script.controls]  # stable ids
    assert components[0].elem_id == "script_txt2img_latentfix_enabled-checkbox"  # InputAccordion: <id>-checkbox


def test_settings_page_defaults_reach_the_ui_and_the_api(a1111):
    from modules import shared

    assert "latentfix_default_preset" in shared.opts.data_labels
    shared.opts.data["latentfix_default_enabled"] = True
    shared.opts.data["latentfix_default_preset"] = "Gentle"
    host = harness.make_host("a1111", "sdxl")
    shared.opts.data.update(latentfix_default_enabled=True, latentfix_default_preset="Gentle")
    ext = host.load_extension()
    defaults = ext.defaults["txt2img"]
    assert defaults[0] is True and defaults[1] == "Gentle"
    _, processed = host.txt2img(steps=12, seed=1, is_api=True)  # no args: the defaults apply
    assert "LatentFix preset: Gentle" in processed.infotexts[0]


def test_disable_flag_turns_the_extension_off_for_the_launch(a1111, monkeypatch, corrections):
    from modules import shared

    monkeypatch.setattr(shared.cmd_opts, "latentfix_disable", True, raising=False)
    a1111.txt2img(args(), steps=4, seed=1)
    assert corrections == []


def test_every_control_is_laid_out_exactly_once_from_the_table(a1111):
    """The UI is built from the settings table: each field is one control, and the table's sections place it."""
    from lib_latentfix.settings import FIELDS, section_fields

    placed = [f.name for section in ("main", "clamp", "center", "maximize", "advanced") for f in section_fields(section)]
    assert sorted(placed) == sorted(f.name for f in FIELDS)
    script = a1111.extension.script("txt2img")
    assert [c.elem_id for c in script.controls[1:]] == [script.elem_id(f.name) for f in FIELDS[1:]]


# ---- diagnostics -------------------------------------------------------------------------------------------------------


def test_diagnostics_add_labelled_gallery_images_and_change_no_pixel(a1111):
    plain, plain_processed = a1111.txt2img(args(), batch_size=2, steps=8, seed=3)
    traced, processed = a1111.txt2img(args(diagnostics=True), batch_size=2, steps=8, seed=3)
    assert torch.equal(traced, plain)
    real = len(plain_processed.images)
    extras = processed.images[real:]
    assert len(extras) == 4  # a chart and a channel view per image
    assert all(e.size[0] >= 800 for e in extras)
    assert processed.infotexts[:real] == plain_processed.infotexts  # the real images' infotexts are untouched
    assert all("LatentFix diagnostics" in text for text in processed.infotexts[real:])
    assert "diagnostics" not in processed.infotexts[0].lower()


def test_trace_numbers_equal_the_statistics_of_the_tensors_passed(a1111, corrections, tmp_path, monkeypatch):
    import json

    from modules import shared

    path = tmp_path / "trace.jsonl"
    monkeypatch.setattr(shared.cmd_opts, "latentfix_trace", str(path), raising=False)
    a1111.txt2img(args(), batch_size=2, steps=6, seed=12)  # the flag alone traces, without the gallery images
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 2 * len(corrections)
    for record in records:
        before, call, after = corrections[record["step"]]
        i = record["image"]
        assert abs(record["timestep"] - call.timesteps[-2:][i].item()) < 1e-4
        for name, tensor in (("before", before[i]), ("after", after[i])):
            flat = tensor.float().flatten(1)
            expected = {"mean": flat.mean(1), "std": flat.std(1, unbiased=False), "min": flat.amin(1),
                        "max": flat.amax(1)}
            for stat, values in expected.items():
                torch.testing.assert_close(torch.tensor(record[name][stat]), values, rtol=1e-4, atol=1e-4)
        assert record["seed"] == 12 + record["image_index"]


def test_diagnostics_never_sync_with_the_host_during_sampling(a1111, capsys):
    import modules.script_callbacks as sc

    for category in ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg"):
        for entry in sc.callback_map["callbacks_" + category]:
            if "latentfix" in entry.name:
                inner = entry.callback

                def guarded(params, inner=inner):
                    with NoHostSync():
                        inner(params)

                entry.callback = guarded
    latents, processed = a1111.txt2img(args(diagnostics=True), batch_size=2, steps=6, seed=1)
    out = capsys.readouterr().out
    assert "turned off" not in out and "LatentFix: " in processed.infotexts[0]
    assert len(processed.images) == 2 + 4


def test_diagnostics_with_hires_and_batch_count(a1111):
    _, processed = a1111.txt2img(args(diagnostics=True), batch_size=1, n_iter=2, steps=6, seed=1, enable_hr=True,
                                 hr_second_pass_steps=3, denoising_strength=0.5)
    captions = [t for t in processed.infotexts if t.startswith("LatentFix diagnostics")]
    assert len(captions) == 4 and "seed 2" in captions[2]


# ---- what the infotext and the API info say ------------------------------------------------------------------------


def test_infotext_before_sampling_names_the_settings_that_will_run(a1111):
    """A1111 writes params.txt (what "paste last generation" reads) before sampling starts."""
    from modules import processing

    p = processing.StableDiffusionProcessingTxt2Img(batch_size=1, steps=4, seed=1)
    script = a1111.extension.script("txt2img")
    script.process(p, *args(preset="Custom", maximize_boundary=3.0))
    written = {k: v(p=p) for k, v in p.extra_generation_params.items() if callable(v)}
    assert written["LatentFix"] and "boundary=3;" in written["LatentFix maximize"]


def test_a_failure_after_some_corrections_says_partly_applied(a1111, monkeypatch, device_windows):
    original, calls = runtime.correct, {"n": 0}

    def fails_on_the_third(schedule, prediction, call):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return original(schedule, prediction, call)

    monkeypatch.setattr(runtime, "correct", fails_on_the_third)
    _, processed = a1111.txt2img(args(), steps=6, seed=2)
    info = processed.infotexts[0]
    assert "LatentFix: " not in info and "partly applied, turned off after an error: RuntimeError: boom" in info


def test_api_info_holds_the_values_not_nulls(a1111):
    run = a1111.txt2img([{"enabled": True}], steps=12, seed=1, is_api=True)
    params = run.p.extra_generation_params  # what Processed.js() serialises (processing.py:597, default=None)
    ours = {k: v for k, v in params.items() if k.startswith("LatentFix")}
    assert ours and all(isinstance(v, str) for v in ours.values())
    assert ours["LatentFix preset"] == "Post defaults"


def test_xyz_grid_is_checked_as_a_whole_not_axis_by_axis(with_xyz, capsys):
    """Axes are confirmed one at a time (xyz_grid.py:612-613); a valid grid whose values only fit together passes,
    and an invalid one names exactly the cells that will be refused before the first image."""
    host, xyz = with_xyz
    base = host.txt2img(args(), steps=12, seed=1)  # maximize window: start 100, end 1
    start, end = "[LatentFix] Maximize window start (timestep)", "[LatentFix] Maximize window end (timestep)"
    cells = xyz.run_grid(base.p, [(start, [300, 400]), (end, [150, 200])])
    assert all("LatentFix maximize: " in r.infotexts[0] for _, r in cells)
    assert "refused" not in capsys.readouterr().out
    cells = xyz.run_grid(base.p, [(start, [50, 300]), (end, [80])])
    out = capsys.readouterr().out
    assert out.count("1 cell(s) will be generated without correction") == 1
    assert "Maximize window start (timestep)=50.0, Maximize window end (timestep)=80.0" in out
    refused = [r for cell, r in cells if cell[start] == 50][0]
    assert "LatentFix error" in refused.infotexts[0] and "maximize_t_min" in refused.infotexts[0]
    fine = [r for cell, r in cells if cell[start] == 300][0]
    assert "LatentFix maximize: " in fine.infotexts[0]


def test_send_to_img2img_carries_every_control(a1111):
    """Replays A1111's "Send to img2img" wiring (infotext_utils.py:169-173): source and target fields are picked by
    `name in paste_field_names` in each tab's paste fields, and must line up one to one."""
    source = a1111.extension.script("txt2img")
    target = a1111.extension.script("img2img")
    names = source.paste_field_names
    inputs = [component for component, name in source.infotext_fields if name in names]
    outputs = [component for component, name in target.infotext_fields if name in names]
    assert len(inputs) == len(outputs) == len(source.controls)
    for a, b in zip(inputs, outputs):
        assert a.elem_id.replace("txt2img", "img2img") == b.elem_id
