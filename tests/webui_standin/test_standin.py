"""The stand-in behaves like the host (facts from A1111 v1.10.1's and Forge's source)."""
import sys
import textwrap

import pytest
import torch

from webui_standin import harness
from modules import infotext_utils, script_callbacks, scripts, shared
from modules.prompt_parser import reconstruct_multicond_batch


def kinds(events):
    return [e["kind"] for e in events]


def test_a1111_order_rows_and_lagging_step():
    host = harness.make_host("a1111")
    ev = host.record_callbacks()
    host.txt2img(batch_size=2, steps=4, sampler="Euler a")
    assert kinds(ev) == ["cfg_denoiser", "cfg_denoised", "cfg_after_cfg"] * 4
    assert [e["shape"][0] for e in ev[:3]] == [4, 4, 2]
    den = [e for e in ev if e["kind"] == "cfg_denoiser"]
    assert [e["sampling_step"] for e in den] == [0, 0, 1, 2] and {e["total"] for e in den} == {4}
    assert [e["step"] for e in den] == [0, 1, 2, 3]
    assert [round(e["sigma"][0].item(), 2) for e in den] == [14.61, 2.92, 0.93, 0.03]
    assert host.errors == []


def test_forge_order_no_cfg_denoised_and_b_rows():
    host = harness.make_host("forge")
    ev = host.record_callbacks()
    host.txt2img(batch_size=2, steps=4, sampler="DDIM")
    assert "cfg_denoised" not in kinds(ev)
    assert kinds(ev) == ["cfg_denoiser", "cfg_after_cfg"] * 3
    assert all(e["shape"][0] == 2 for e in ev)
    assert ev[0]["sigma"][0].item() == pytest.approx(float(host.model.sigmas[751]), rel=1e-4)  # real sigma, not t


def test_and_prompt_row_layout():
    host = harness.make_host("a1111")
    seen = []
    script_callbacks.on_cfg_denoiser(lambda p: seen.append(p) if not seen else None)
    host.txt2img(prompt=["red AND blue:0.5", "green"], negative_prompt="ugly", batch_size=2, steps=2, sampler="Euler")
    p = seen[0]
    x = p.x
    assert x.shape[0] == 3 + 2 and p.text_cond["crossattn"].shape[0] == 3 and p.text_uncond["crossattn"].shape[0] == 2
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[3]) and torch.equal(x[2], x[4]) and not torch.equal(x[0], x[2])
    conds_list, _ = reconstruct_multicond_batch(p.denoiser.sampler.sampler_extra_args["cond"], 0)
    assert conds_list == [[(0, 1.0), (1, 0.5)], [(2, 1.0)]]


def test_kdiffusion_outputs_are_x0_and_ddim_outputs_are_eps():
    host = harness.make_host("a1111")
    ev = host.record_callbacks()
    host.txt2img(steps=3, sampler="Euler", cfg_scale=1.0)
    den, out, after = ev[0], ev[1], ev[2]
    sigma, x_in, m = den["sigma"], den["x"], host.model
    wrap = harness.current().model  # eps of the cond row, computed directly
    from modules.standin_model import CompVisDenoiser
    t = CompVisDenoiser(m).sigma_to_t(sigma)
    cond = {"c_crossattn": [m.get_learned_conditioning(["a photo of a cat", ""])["crossattn"]]}
    eps = wrap.apply_model(x_in / (sigma[:, None, None, None] ** 2 + 1) ** 0.5, t, cond=cond)
    assert torch.allclose(out["x"], x_in - sigma[:, None, None, None] * eps, atol=1e-4)
    assert torch.allclose(after["x"], out["x"][:1], atol=1e-5)  # cfg 1: CFG result = cond x0

    host = harness.make_host("a1111")
    ev = host.record_callbacks()
    host.txt2img(steps=4, sampler="DDIM", cfg_scale=1.0)
    den = [e for e in ev if e["kind"] == "cfg_denoiser"]
    assert [e["sigma"][0].item() for e in den] == [751.0, 501.0, 251.0] and den[0]["total"] == 4
    eps = host.model.apply_model(den[0]["x"], den[0]["sigma"], cond={"c_crossattn": [cond["c_crossattn"][0]]})
    assert torch.allclose(ev[2]["x"], eps[:1], atol=1e-5)


def test_forge_after_cfg_is_x0_for_ddim_and_sigma_to_t_is_integer():
    host = harness.make_host("forge")
    seen = []
    script_callbacks.on_cfg_denoiser(lambda p: seen.append(p.denoiser.inner_model.sigma_to_t(p.sigma)))
    ev = host.record_callbacks()
    host.txt2img(steps=4, sampler="Euler a")
    assert [int(t[0]) for t in seen] == [999, 666, 333, 0] and seen[1].dtype == torch.int64
    assert ev[1]["x"].abs().mean() < 3  # x0 magnitude, not eps scaled by sigma


def test_timesteps_euler_a_normal_and_karras():
    for sched, want in ((None, [999, 908, 817, 727, 636, 545, 454, 363, 272, 182, 91, 0]),
                        ("Karras", [999, 932, 854, 761, 646, 506, 345, 190, 78, 23, 4.5, 0])):
        host = harness.make_host("a1111")
        ts = []
        script_callbacks.on_cfg_denoiser(lambda p: ts.append(p.denoiser.inner_model.sigma_to_t(p.sigma[-1:]).item()))
        host.txt2img(steps=12, sampler="Euler a", scheduler=sched)
        assert ts == pytest.approx(want, abs=1.0)


def test_batch_image_equals_same_seed_alone():
    host = harness.make_host("a1111")
    batch, _ = host.txt2img(batch_size=3, steps=12, seed=100, sampler="Euler a")
    alone, _ = host.txt2img(batch_size=1, steps=12, seed=102, sampler="Euler a")
    assert torch.allclose(batch[2], alone[0], atol=1e-5)
    two_batches, proc = host.txt2img(batch_size=1, n_iter=3, steps=12, seed=100, sampler="Euler a")
    assert torch.allclose(two_batches, batch, atol=1e-5) and len(proc.infotexts) == 3


def test_heun_two_calls_per_step_and_refiner_switch():
    host = harness.make_host("a1111")
    ev = host.record_callbacks()
    host.txt2img(steps=3, sampler="Heun")
    den = [e for e in ev if e["kind"] == "cfg_denoiser"]
    assert [e["step"] for e in den] == [0, 1, 2, 3, 4] and [e["sampling_step"] for e in den] == [0, 0, 0, 1, 1]

    host = harness.make_host("a1111")
    ev = host.record_callbacks()
    run = host.txt2img(steps=4, sampler="Euler", refiner_checkpoint="refiner", refiner_switch_at=0.5)
    den = [e for e in ev if e["kind"] == "cfg_denoiser"]
    assert [e["model"] for e in den] == ["base", "base", "refiner", "refiner"] and [e["step"] for e in den] == [0, 1, 2, 3]
    assert "Refiner: refiner" in run.processed.infotexts[0]
    host.txt2img(steps=4, sampler="Euler")  # next generation starts on the base model again
    assert shared.sd_model is host.model


def test_hires_pass_and_forge_hires_cfg1_has_no_uncond():
    host = harness.make_host("a1111")
    ev = host.record_callbacks()
    run = host.txt2img(steps=4, sampler="Euler", enable_hr=True, hr_scale=1.5, hr_second_pass_steps=3, denoising_strength=0.5)
    assert run.latents.shape == (1, 4, 48, 48) and run.p.standin_first_pass_latents[0].shape == (1, 4, 32, 32)
    den = [e for e in ev if e["kind"] == "cfg_denoiser"]
    assert [e["is_hr_pass"] for e in den] == [False] * 4 + [True] * 3
    assert [e["sampling_step"] for e in den[4:]] == [0, 0, 1] and den[4]["total"] == 3
    assert run.p.is_hr_pass is False

    host = harness.make_host("forge")
    ev = host.record_callbacks()
    host.txt2img(steps=3, sampler="Euler", enable_hr=True, hr_cfg=1.0)
    den = [e for e in ev if e["kind"] == "cfg_denoiser"]
    assert den[0]["text_uncond"] is not None and all(e["text_uncond"] is None for e in den if e["is_hr_pass"])


def test_inpaint_mask_blend_k_diffusion_and_ddim():
    mask = torch.zeros(32, 32)
    mask[:, 16:] = 1  # repaint right half
    for sampler in ("Euler", "DDIM"):
        host = harness.make_host("a1111")
        ev = host.record_callbacks()
        run = host.img2img(mask=mask.numpy(), denoising_strength=0.6, steps=5, sampler=sampler, batch_size=2)
        init = run.p.init_latent
        assert run.p.mask.shape == (4, 32, 32) and torch.equal(run.p.nmask[0], mask)
        assert torch.allclose(run.latents[..., :16], init[..., :16])
        den = [e for e in ev if e["kind"] == "cfg_denoiser"]
        after = [e for e in ev if e["kind"] == "cfg_after_cfg"]
        assert den[0]["total"] == int(0.6 * 5) + 1
        if sampler == "Euler":  # blended x0 before after_cfg
            assert torch.allclose(after[0]["x"][..., :16], init[..., :16])
        else:  # blend on the input with the clean init latent
            assert torch.allclose(den[0]["x"][:2, :, :, :16], init[..., :16])


def test_callback_exception_is_reported_and_generation_continues():
    host = harness.make_host("a1111")
    script_callbacks.on_cfg_after_cfg(lambda p: 1 / 0)
    lat, _ = host.txt2img(steps=2, sampler="Euler")
    assert lat is not None and len(host.errors) == 2 and "ZeroDivisionError" in host.errors[0]


def test_reassign_semantics_a1111():
    def run(cb_kind, fn):
        host = harness.make_host("a1111")
        getattr(script_callbacks, "on_" + cb_kind)(fn)
        return host.txt2img(steps=3, sampler="Euler")[0]
    base = run("cfg_after_cfg", lambda p: None)
    assert not torch.allclose(run("cfg_after_cfg", lambda p: setattr(p, "x", p.x + 1)), base)
    assert torch.allclose(run("cfg_denoised", lambda p: setattr(p, "x", p.x + 1)), base)  # reassign ignored
    assert not torch.allclose(run("cfg_denoised", lambda p: p.x.add_(1)), base)  # in-place honoured


def test_options_and_infotext_roundtrip():
    harness.make_host()
    shared.opts.add_option("latentfix_x", shared.OptionInfo(0.5, "x", section=("latentfix", "LF")).info("i").needs_reload_ui())
    assert shared.opts.latentfix_x == 0.5
    shared.opts.latentfix_x = 0.7
    assert shared.opts.data["latentfix_x"] == 0.7
    with pytest.raises(AttributeError):
        shared.opts.no_such_key
    host = harness.current()
    run = host.txt2img(steps=2, sampler="Euler", extra_generation_params={"LF mode": "a, b", "LF strength": 0.5, "LF per": [1, 2]}, batch_size=2)
    text = run.processed.infotexts[1]
    assert 'LF mode: "a, b"' in text and "LF per: 2" in text
    params = infotext_utils.parse_generation_parameters(text)
    assert params["LF mode"] == "a, b" and params["LF strength"] == "0.5" and params["Size-1"] == "256"
    box, slider, n = (type("C", (), {"value": v})() for v in (True, 0.1, 3))
    fields = [(box, lambda d: "LF strength" in d), (slider, "LF strength"), (n, "LF missing")]
    assert infotext_utils.apply_paste_fields(fields, params) == [True, 0.5, "unchanged"]
    assert infotext_utils.apply_paste_fields([(box, "B")], {"B": "False"}) == [False]


def test_script_loading_and_hook_order(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "pkg_standin_probe").mkdir()
    (tmp_path / "pkg_standin_probe" / "__init__.py").write_text("VALUE = 1\n")
    (tmp_path / "scripts" / "probe.py").write_text(textwrap.dedent("""
        import sys
        import pkg_standin_probe
        from modules import scripts
        BASEDIR = scripts.basedir()
        IN_PATH = sys.path[0]
        calls = []
        class Probe(scripts.Script):
            def title(self): return "Probe Script"
            def show(self, is_img2img): return scripts.AlwaysVisible
            def ui(self, is_img2img): return [type("C", (), {"value": 1})(), type("C", (), {"value": "d"})()]
        def make(name, skip):
            def hook(self, p, *a, **k):
                calls.append((name, a[skip:]))
            return hook
        for name, skip in (("setup", 0), ("before_process", 0), ("process", 0), ("before_process_batch", 0),
                           ("process_batch", 0), ("process_before_every_sampling", 0), ("before_hr", 0),
                           ("post_sample", 1), ("postprocess_batch", 0), ("postprocess_batch_list", 1),
                           ("postprocess_image", 1), ("postprocess", 1)):
            setattr(Probe, name, make(name, skip))
    """))
    host = harness.make_host()
    ext = host.load_extension(str(tmp_path), script_file="scripts/probe.py")
    s = ext.script()
    mod = sys.modules.get("probe.py")
    module = type(s).__module__
    assert module == "probe.py" and mod is None and str(tmp_path) not in sys.path
    assert (s.args_from, s.args_to) == (1, 3) and s.elem_id("x") == "script_txt2img_probe_script_x"
    calls = scripts.scripts_data[0].module.calls
    assert scripts.scripts_data[0].module.BASEDIR == str(tmp_path) == scripts.scripts_data[0].module.IN_PATH
    host.txt2img([5], steps=2, sampler="Euler", n_iter=2, batch_size=2, enable_hr=True, hr_second_pass_steps=2)
    names = [c[0] for c in calls]
    per_batch = ["before_process_batch", "process_batch", "process_before_every_sampling", "before_hr",
                 "process_before_every_sampling", "post_sample", "postprocess_batch", "postprocess_batch_list",
                 "postprocess_image", "postprocess_image"]
    assert names == ["setup", "before_process", "process"] + per_batch * 2 + ["postprocess"]
    assert calls[0][1] == (5, "d")
    del sys.modules["pkg_standin_probe"]


def test_forge_in_place_on_params_x_moves_the_sampler_latent():
    def run(flavour, fn):
        host = harness.make_host(flavour)
        script_callbacks.on_cfg_denoiser(fn)
        return host.txt2img(steps=3, sampler="Euler")[0]
    bump = lambda p: p.x.add_(0.5) if p.denoiser.step == 1 else None
    assert not torch.allclose(run("forge", bump), run("forge", lambda p: None))
    # A1111: x_in is a fresh torch.cat, so the same edit only changes what the UNet sees this call
    a_bumped, a_base = run("a1111", bump), run("a1111", lambda p: None)
    assert not torch.allclose(a_bumped, a_base) and (a_bumped - a_base).abs().mean() < (run("forge", bump) - run("forge", lambda p: None)).abs().mean()


def test_skip_early_cond_fakes_uncond_rows():
    host = harness.make_host("a1111")
    shared.opts.skip_early_cond = 0.5
    ev = host.record_callbacks()
    run = host.txt2img(prompt=["a AND b", "c"], batch_size=2, steps=4, sampler="Euler")
    out = [e for e in ev if e["kind"] == "cfg_denoised"]
    assert out[0]["shape"][0] == 5 and torch.equal(out[0]["x"][3], out[0]["x"][0]) and torch.equal(out[0]["x"][4], out[0]["x"][2])
    assert not torch.equal(out[3]["x"][3], out[3]["x"][0]) and "Skip Early CFG: 0.5" in run.processed.infotexts[0]


def test_forge_marker_and_gradio_stub():
    import importlib.util
    harness.make_host("forge")
    assert importlib.util.find_spec("modules_forge") is not None and hasattr(shared.sd_model, "forge_objects")
    harness.make_host("a1111")
    assert importlib.util.find_spec("modules_forge") is None and not hasattr(shared.sd_model, "forge_objects")
    from webui_standin import gradio_stub as gr
    with gr.Blocks(), gr.Row():
        s = gr.Slider(0.0, 2.0, step=0.1, label="x")
        c, d = gr.Checkbox(label="on"), gr.Dropdown(choices=["a", "b"], value="b")
    s.input(fn=None, inputs=[s])
    assert (s.value, c.value, d.value) == (0.0, False, "b") and s.events[0][0] == "input"
    assert gr.update(value=1) == {"__type__": "update", "value": 1}
