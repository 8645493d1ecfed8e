"""The ComfyUI nodes through a stand-in of ComfyUI fe251146 (tests/comfyui_standin): patching, every sampler,
refiner, denoise < 1, noise masks, other latent formats, inputs from the settings table, the latent view."""

import copy
import importlib.util
import logging
import os
import sys

import pytest
import torch
from hypothesis import given, settings as hsettings, strategies as st

from comfyui_standin import model_base, samplers
from latentfix_comfy import nodes
from latentfix_comfy.patch import LatentFixPatch, _Run
from lib_latentfix import preview, settings as lf_settings
from lib_latentfix.arguments import from_named
from lib_latentfix.schedule import apply
from comfyui_standin.workflow import NEGATIVE, POSITIVE, Recorder, empty_latent, ksample, make_model, wrap
from support.sync_guard import NoHostSync

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def simple(model, preset="Post defaults", **numbers):
    return nodes.LatentFix().patch(model, preset, **numbers)[0]


def after(model, preset="Post defaults", **numbers):
    """The node with the "after guidance" point: the guided x0 of each model call is corrected (0.1.0's default)."""
    return nodes.patched(model, {"preset": preset, "correction_point": "after", **numbers})


def advanced(model, **overrides):
    inputs = {name: spec[1]["default"] for name, spec in nodes.LatentFixAdvanced.INPUT_TYPES()["required"].items()
              if name != "model"}
    inputs.update(overrides)
    return nodes.LatentFixAdvanced().patch(model, **inputs)[0]


def patch_of(patched):
    (fn,) = [f for f in patched.model_options["sampler_post_cfg_function"] if isinstance(f, LatentFixPatch)]
    return fn


def schedule_of(patched):
    return patch_of(patched).schedule


def assert_calls_equal_core(recorder, schedule, mask=None):
    """Per call and per image: what the sampler got equals the core's apply at that image's timestep."""
    assert recorder.before and len(recorder.before) == len(recorder.after)
    for (sigma, x0, _options, model), out in zip(recorder.before, recorder.after):
        t = model.model_sampling.timestep(sigma)
        assert t.shape == (x0.shape[0],)
        expected = apply(schedule, x0, t, mask=mask)
        assert torch.equal(out, expected)
        for i in range(x0.shape[0]):  # each image on its own gives the same row
            one = apply(schedule, x0[i:i + 1], t[i:i + 1], mask=None if mask is None else mask[i:i + 1])
            assert torch.equal(out[i:i + 1], one)


# ---------------------------------------------------------------------------------------------------------------
# patching and cloning


def test_node_returns_a_patched_clone_and_never_mutates_the_input_model():
    model = make_model()
    before = copy.deepcopy(model.model_options)
    patched = simple(model)
    assert patched is not model and patched.parent is model and patched.model is model.model
    assert model.model_options == before  # nothing registered on the input
    assert len(patched.model_options["sampler_post_cfg_function"]) == 1
    assert patched.model_options["denoise_mask_function"].__self__ is patched.model_options["sampler_post_cfg_function"][0]


def test_unpatched_model_is_bit_identical_to_no_node():
    reference = ksample(make_model(), empty_latent(), sampler="euler")
    model = make_model()
    patched = simple(model)
    ksample(patched, empty_latent())  # the patched clone runs in between
    again = ksample(model, empty_latent())
    assert torch.equal(again, reference)
    assert not torch.equal(ksample(patched, empty_latent()), reference)  # and the node does change the image


@pytest.mark.parametrize("sampler,scheduler,calls", [
    ("euler", "normal", 8), ("euler_ancestral", "normal", 8), ("dpmpp_2m", "karras", 8), ("heun", "normal", 15)])
def test_every_call_of_real_sampler_loops_equals_the_core_per_image(sampler, scheduler, calls):
    rec = Recorder()
    patched, run_model = wrap(make_model(), after, rec)
    ksample(run_model, empty_latent(batch=3), sampler=sampler, scheduler=scheduler)
    assert len(rec.before) == calls  # heun: 2 calls per step except the last (HOST-FACTS)
    assert_calls_equal_core(rec, schedule_of(patched))
    # every filter window of the post was reached during the run: clamp first, maximize last
    ts = [int(m.model_sampling.timestep(s)[0]) for s, _, _, m in rec.before]
    assert ts[0] == 999 and min(ts) < 100


def test_post_cfg_args_are_the_guided_x0_with_one_sigma_per_row():
    rec = Recorder()
    _, run_model = wrap(make_model(), after, rec)
    ksample(run_model, empty_latent(batch=2), cfg=5.0)
    sigma, x0, options, _ = rec.before[0]
    assert sigma.shape == (2,) and x0.shape == (2, 4, 16, 16)
    assert options["transformer_options"]["sample_sigmas"].shape == (9,)


def test_cfg_one_corrects_the_conditional_prediction():
    rec = Recorder()
    patched, run_model = wrap(make_model(), after, rec)
    ksample(run_model, empty_latent(), cfg=1.0)
    assert_calls_equal_core(rec, schedule_of(patched))


def test_batch_rows_are_independent_of_their_neighbours():
    model = simple(make_model())
    noise = torch.randn(3, 4, 16, 16, generator=torch.manual_seed(3))
    sampler = samplers.KSampler(model, 8, "cpu", "euler", "normal")
    batch = sampler.sample(noise, POSITIVE, NEGATIVE, 7.0, torch.zeros_like(noise))
    for i in range(3):
        one = sampler.sample(noise[i:i + 1], POSITIVE, NEGATIVE, 7.0, torch.zeros_like(noise[i:i + 1]))
        torch.testing.assert_close(batch[i:i + 1], one, rtol=1e-5, atol=1e-5)


def test_two_sampler_refiner_workflow_corrects_each_stage_in_its_own_window():
    rec = Recorder()
    patched, run_model = wrap(make_model(), after, rec)
    first = samplers.ksampler_advanced(run_model, True, 7, 8, 7.0, "euler", "normal", POSITIVE, NEGATIVE,
                                       empty_latent(), 0, 5, True)[0]
    calls_first = len(rec.before)
    samplers.ksampler_advanced(run_model, False, 7, 8, 7.0, "euler", "normal", POSITIVE, NEGATIVE, first, 5, 10000,
                               False)
    assert (calls_first, len(rec.before) - calls_first) == (5, 3)
    assert_calls_equal_core(rec, schedule_of(patched))
    patch = patch_of(run_model)  # the clone that ran
    # the second stage (t < 300) never reaches the clamp (t > 950) or the early centering (t > 700)
    assert [type(s.filter).__name__ for s in patch._run.schedule.steps] == ["Center", "Maximize"]


def test_denoise_half_starts_at_a_lower_timestep_and_still_equals_the_core():
    rec = Recorder()
    patched, run_model = wrap(make_model(), after, rec)
    source = {"samples": torch.randn(2, 4, 16, 16, generator=torch.manual_seed(5)) * 5}
    ksample(run_model, source, denoise=0.5)
    ts = [int(m.model_sampling.timestep(s)[0]) for s, _, _, m in rec.before]
    assert len(ts) == 8 and 400 < ts[0] < 600
    assert_calls_equal_core(rec, schedule_of(patched))
    # the soft clamp (t > 950) cannot act in this run and was dropped on the host before the first call
    assert "SoftClamp" not in [type(s.filter).__name__ for s in patch_of(run_model)._run.schedule.steps]


def test_noise_mask_statistics_come_from_the_repainted_area():
    rec = Recorder()
    patched, run_model = wrap(make_model(), after, rec)
    source = torch.randn(1, 4, 16, 16, generator=torch.manual_seed(9)) * 6
    mask = torch.zeros(1, 16, 16)
    mask[:, 4:12, 4:12] = 1.0  # SetLatentNoiseMask: 1 = repaint
    ksample(run_model, {"samples": source, "noise_mask": mask}, denoise=0.8)
    full_mask = mask[:, None].expand(1, 4, 16, 16)
    assert_calls_equal_core(rec, schedule_of(patched), mask=full_mask)
    # and it differs from whole-image statistics
    whole = [apply(schedule_of(patched), x0, m.model_sampling.timestep(s)) for s, x0, _, m in rec.before]
    assert any(not torch.equal(out, w) for out, w in zip(rec.after, whole))


def test_noise_mask_is_used_when_the_model_call_gets_a_copy_of_sigma(monkeypatch):
    """The mask is paired with the model call that follows it, not by the identity of the sigma tensor: a ComfyUI
    whose model call gets a copy of the sigma the mask function saw still takes statistics from the repainted area."""
    monkeypatch.setattr(samplers.KSamplerX0Inpaint, "copy_sigma", True)
    rec = Recorder()
    patched, run_model = wrap(make_model(), after, rec)
    source = torch.randn(1, 4, 16, 16, generator=torch.manual_seed(9)) * 6
    mask = torch.zeros(1, 16, 16)
    mask[:, 4:12, 4:12] = 1.0
    ksample(run_model, {"samples": source, "noise_mask": mask}, denoise=0.8)
    assert_calls_equal_core(rec, schedule_of(patched), mask=mask[:, None].expand(1, 4, 16, 16))


def test_a_mask_is_used_by_the_next_call_only_and_only_when_its_sigma_has_the_calls_shape():
    patch = patch_of(simple(make_model()))
    x0 = torch.randn(2, 4, 8, 8)
    mask = torch.ones(2, 4, 8, 8)
    state = _Run(None, patch.schedule, None)
    assert patch._mask_for((torch.tensor([3.0, 3.0]), mask), torch.tensor([3.0, 3.0]), x0, state) is mask
    assert patch._mask_for((torch.tensor([3.0]), mask), torch.tensor([3.0, 3.0]), x0, state) is None  # another call's
    assert patch._mask_for(None, torch.tensor([3.0, 3.0]), x0, state) is None


def test_an_existing_denoise_mask_function_is_chained_and_its_mask_used():
    seen = []

    def threshold(sigma, denoise_mask, extra_options):  # like DifferentialDiffusion: the mask actually used
        seen.append(sigma)
        return (denoise_mask > 0.5).to(denoise_mask.dtype)

    base = make_model()
    base.set_model_denoise_mask_function(threshold)
    rec = Recorder()
    patched, run_model = wrap(base, after, rec)
    mask = torch.zeros(1, 16, 16)
    mask[:, 2:14, 2:9] = 0.7
    ksample(run_model, {"samples": torch.randn(1, 4, 16, 16) * 4, "noise_mask": mask}, denoise=0.7)
    assert len(seen) == len(rec.before) == 8
    binary = (mask[:, None].expand(1, 4, 16, 16) > 0.5).float()
    assert_calls_equal_core(rec, schedule_of(patched), mask=binary)


def test_other_latent_formats_pass_through_with_one_line_per_run(caplog):
    model = make_model(model_base.SD3(), channels=16)
    plain = ksample(model, empty_latent(channels=16))
    patched = simple(model)
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        out = ksample(patched, empty_latent(channels=16))
        ksample(patched, empty_latent(channels=16))
    assert torch.equal(out, plain)
    lines = [r.getMessage() for r in caplog.records if r.name == "latentfix"]
    assert len(lines) == 2 and "SD3" in lines[0]


def test_sd15_latents_are_corrected():
    rec = Recorder()
    patched, run_model = wrap(make_model(model_base.SD15()), after, rec)
    ksample(run_model, empty_latent())
    assert_calls_equal_core(rec, schedule_of(patched))


def test_no_host_sync_after_the_run_is_set_up():
    model = after(make_model())
    patch = model.model_options["sampler_post_cfg_function"][0]
    sigmas = torch.tensor([14.6, 7.0, 3.0, 0.5, 0.03, 0.0])
    options = {"transformer_options": {"sample_sigmas": sigmas}}
    x0 = torch.randn(2, 4, 8, 8) * 3
    args = {"denoised": x0, "sigma": sigmas[0] * torch.ones(2), "model": model.model, "model_options": options}
    patch(args)  # first call of a run: the run's sigma list is read on the host once
    for s in sigmas[:-1]:
        call = dict(args, sigma=s * torch.ones(2), denoised=x0.clone())
        with NoHostSync():
            out = patch(call)
        assert out.dtype == x0.dtype and out.shape == x0.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_is_kept(dtype):
    model = after(make_model())
    patch = model.model_options["sampler_post_cfg_function"][0]
    x0 = (torch.randn(2, 4, 8, 8) * 3).to(dtype)
    sigma = torch.full((2,), 0.05)
    out = patch({"denoised": x0, "sigma": sigma, "model": model.model, "model_options": {}})
    assert out.dtype == dtype
    t = model.model.model_sampling.timestep(sigma)
    assert torch.equal(out, apply(schedule_of(model), x0, t))


def test_an_error_in_the_hook_turns_correction_off_for_the_run_and_keeps_the_prediction(caplog):
    model = after(make_model())
    patch = model.model_options["sampler_post_cfg_function"][0]

    class Broken:
        latent_format = model_base.SDXL()

        class model_sampling:  # noqa: N801
            @staticmethod
            def timestep(sigma):
                raise RuntimeError("boom")

    x0 = torch.randn(1, 4, 8, 8)
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        for _ in range(3):
            assert patch({"denoised": x0, "sigma": torch.ones(1), "model": Broken(), "model_options": {}}) is x0
    assert sum("boom" in r.getMessage() for r in caplog.records) == 1


def test_a_clone_of_the_patched_model_keeps_correcting():
    patched = simple(make_model())
    again = patched.clone()  # e.g. a LoRA loader after LatentFix
    assert again.model_options["sampler_post_cfg_function"][0] is not patched.model_options["sampler_post_cfg_function"][0]
    assert again.model_options["denoise_mask_function"].__self__ is again.model_options["sampler_post_cfg_function"][0]
    assert torch.equal(ksample(again, empty_latent()), ksample(patched, empty_latent()))


# ---------------------------------------------------------------------------------------------------------------
# settings: presets, strength, the advanced node's inputs


@pytest.mark.parametrize("preset", [p for p in lf_settings.PRESETS])
def test_each_preset_gives_the_settings_tables_schedule(preset):
    expected = from_named({"enabled": True, "preset": preset}).schedule()
    assert schedule_of(simple(make_model(), preset)).steps == expected.steps


def test_simple_node_offers_the_presets_and_the_main_numbers_of_the_table():
    required = nodes.LatentFix.INPUT_TYPES()["required"]
    assert required["preset"][0] == [p for p in lf_settings.PRESET_NAMES if p in lf_settings.PRESETS]
    mains = [f.name for f in lf_settings.FIELDS if f.group == "main" and f.kind == "float"]
    assert list(required) == ["model", "preset", *mains]


def test_advanced_inputs_are_the_settings_table():
    required = nodes.LatentFixAdvanced.INPUT_TYPES()["required"]
    table = [f for f in lf_settings.FIELDS if f.group == "main" and f.kind == "float"] + \
        [f for f in lf_settings.FIELDS if f.group in ("clamp", "center", "maximize")]
    assert list(required) == ["model", *[f.name for f in table], "correction_point"]
    for f in table:
        kind, options = required[f.name]
        if f.kind == "float":
            assert (kind, options["min"], options["max"], options["step"], options["default"]) == \
                ("FLOAT", f.minimum, f.maximum, f.step, f.default)
        elif f.kind == "bool":
            assert (kind, options["default"]) == ("BOOLEAN", f.default)
        elif f.kind == "channels":
            assert kind == "STRING" and lf_settings.coerce(f.name, options["default"]) == f.default
        assert options["tooltip"].startswith(f.hint)
    assert "diagnostics" not in required
    # the correction point: the table's field, offered with the points ComfyUI can run ("before" is A1111's hook)
    choices, options = required["correction_point"]
    assert choices == ["sampler latent (as the post)", "after guidance"]
    assert options["default"] == "sampler latent (as the post)" and options["tooltip"] == \
        lf_settings.FIELD_BY_NAME["correction_point"].hint
    assert [lf_settings.coerce("correction_point", c) for c in choices] == [lf_settings.LATENT, lf_settings.AFTER_CFG]


def test_advanced_defaults_equal_the_post_defaults_preset():
    assert schedule_of(advanced(make_model())).steps == schedule_of(simple(make_model())).steps


def test_advanced_values_reach_the_schedule():
    patched = advanced(make_model(), clamp_enabled=False, maximize_boundary=3.0, center_channels="1,2",
                       center_late_t_max=200.0)
    expected = from_named({"enabled": True, "clamp_enabled": False, "maximize_boundary": 3.0,
                                       "center_channels": (1, 2), "center_late_t_max": 200.0}).schedule()
    assert schedule_of(patched).steps == expected.steps


def test_channel_inputs_are_validated_with_comfyuis_custom_validation():
    validate = nodes.LatentFixAdvanced.VALIDATE_INPUTS
    import inspect
    assert inspect.getfullargspec(validate).args == ["center_channels", "maximize_channels"]  # others: ComfyUI's checks
    assert validate(center_channels="0,1,2,3", maximize_channels="0,1,2") is True
    assert "unknown channel '7'" in validate(center_channels="0,7", maximize_channels="0")


def _custom_validation_errors(node_class, inputs):
    """ComfyUI's custom validation (execution.py validate_inputs at fe251146): VALIDATE_INPUTS gets the inputs its
    signature names; a result other than True is attached to each of those inputs as "<input> - <result>"."""
    import inspect
    named = {k: v for k, v in inputs.items() if k in inspect.getfullargspec(node_class.VALIDATE_INPUTS).args}
    result = node_class.VALIDATE_INPUTS(**named)
    return {} if result is True else {name: f"{name} - {result}" for name in named}


def test_each_bad_channel_list_is_reported_with_its_own_problem():
    """Two bad channel lists: each input's problem is reported (not only the first one found), and a single bad
    list is reported as that list's problem, never as one of the valid list."""
    both = _custom_validation_errors(nodes.LatentFixAdvanced, {"center_channels": "0,9", "maximize_channels": "0,7"})
    assert "center_channels (Center channels) holds unknown channel '9'" in both["center_channels"]
    assert "maximize_channels (Maximize channels) holds unknown channel '7'" in both["maximize_channels"]
    one = _custom_validation_errors(nodes.LatentFixAdvanced, {"center_channels": "0,9", "maximize_channels": "0,1,2"})
    for details in one.values():
        assert "center_channels (Center channels) holds unknown channel '9'" in details
        assert "maximize_channels (" not in details  # the valid list is named by ComfyUI's prefix only
    assert _custom_validation_errors(nodes.LatentFixAdvanced, {"center_channels": "0,1", "maximize_channels": "2"}) == {}


def test_settings_that_do_not_fit_together_leave_the_model_alone_with_one_line(caplog):
    model = make_model()
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        out = advanced(model, maximize_t_min=500.0, maximize_t_max=100.0)
    assert out is model
    assert len(caplog.records) == 1 and "maximize_t_min" in caplog.records[0].getMessage()


def test_nothing_to_do_returns_the_model_itself():
    model = make_model()
    assert advanced(model, clamp_enabled=False, center_enabled=False, maximize_enabled=False) is model


@pytest.mark.skipif("strength" not in lf_settings.FIELD_BY_NAME, reason="the overall strength setting is not in this "
                    "version of lib_latentfix.settings yet")
def test_overall_strength_scales_the_correction():
    half = schedule_of(simple(make_model(), strength=0.5))
    assert half.steps == from_named({"enabled": True, "strength": 0.5}).schedule().steps
    assert [s.strength for s in half.steps] == [0.5 * s.strength for s in schedule_of(simple(make_model())).steps]
    model = make_model()
    assert simple(model, strength=0.0) is model  # nothing left to do: no patch, no tensor work


# ---------------------------------------------------------------------------------------------------------------
# loading the way ComfyUI does, and the latent view


def test_repository_root_loads_like_a_custom_node():
    # nodes.py:2196-2216 load_custom_node: the folder's __init__.py as a module named after its path
    name = REPO.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        assert set(module.NODE_CLASS_MAPPINGS) == {"LatentFix", "LatentFixAdvanced", "LatentFixLatentView"}
        assert module.NODE_DISPLAY_NAME_MAPPINGS["LatentFix"] == "LatentFix (SDXL latent correction)"
        assert module.NODE_DISPLAY_NAME_MAPPINGS["LatentFixLatentView"] == "LatentFix latent view"
        # the core next to the nodes was used, relative to the repository package (not an installed copy)
        assert sys.modules[name + ".latentfix_comfy.core"].settings.__name__ == name + ".lib_latentfix.settings"
        assert not any(m == "comfy" or m.startswith("comfy.") for m in sys.modules)
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_latent_view_shows_the_scaled_latent_per_image():
    latent = torch.randn(2, 4, 12, 10, generator=torch.manual_seed(1)) * 20
    channels, rgb = nodes.LatentFixLatentView().view({"samples": latent}, "SDXL", 4.0, 8)
    assert rgb.shape == (2, 96, 80, 3) and rgb.dtype == torch.float32
    expected = torch.from_numpy(preview.latents_to_rgb_array(latent * 0.13025)).float() / 255
    torch.testing.assert_close(rgb[:, ::8, ::8], expected)
    assert channels.shape[0] == 2 and channels.shape[-1] == 3 and channels.shape[2] > rgb.shape[2]
    single = nodes.LatentFixLatentView().view({"samples": latent[1:]}, "SDXL", 4.0, 8)[0]
    assert torch.equal(channels[1, :single.shape[1], :single.shape[2]], single[0])


def test_latent_view_of_a_16_channel_latent_gives_the_channel_view_twice(caplog):
    latent = torch.randn(1, 16, 8, 8)
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        channels, rgb = nodes.LatentFixLatentView().view({"samples": latent}, "as is (already scaled)", 4.0, 8)
    assert torch.equal(channels, rgb) and len(caplog.records) == 1


@hsettings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), sigma=st.floats(0.03, 14.6), scale=st.floats(0.1, 8.0), seed=st.integers(0, 99))
def test_hook_equals_the_core_for_any_sigma_and_batch(batch, sigma, scale, seed):
    model = after(make_model())
    patch = model.model_options["sampler_post_cfg_function"][0]
    x0 = torch.randn(batch, 4, 8, 8, generator=torch.manual_seed(seed)) * scale
    sig = torch.full((batch,), sigma)
    out = patch({"denoised": x0, "sigma": sig, "model": model.model, "model_options": {}})
    assert torch.equal(out, apply(schedule_of(model), x0, model.model.model_sampling.timestep(sig)))


@pytest.mark.parametrize("shape", [(0, 4, 8, 8), (1, 4, 0, 8, 8), (2, 4, 0, 8)])
def test_latent_view_of_an_empty_latent_gives_empty_images_and_one_line(shape, caplog):
    with caplog.at_level(logging.WARNING, logger="latentfix"):
        channels, rgb = nodes.LatentFixLatentView().view({"samples": torch.zeros(shape)}, "SDXL", 4.0, 8)
    assert channels.shape[0] == 0 and rgb.shape[0] == 0 and channels.shape[-1] == 3 and rgb.dtype == torch.float32
    assert len(caplog.records) == 1 and "empty" in caplog.records[0].getMessage()
