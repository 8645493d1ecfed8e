"""Test harness over the WebUI stand-in: a fresh host per test, load the extension like A1111 does, run
txt2img / img2img through the real hook + sampling order, record the CFG callbacks.

    from webui_standin import harness
    host = harness.make_host(flavour="a1111", model="sdxl")      # or flavour="forge", model="sd1"
    ext = host.load_extension()                                 # scripts/latentfix.py of this repo
    latents, processed = host.txt2img(script_args=[True, 0.5], batch_size=2, steps=8, seed=1)
    events = host.record_callbacks()                            # before running: list filled per callback
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

from modules import errors, processing, script_callbacks, scripts, shared  # noqa: E402
from modules.standin_model import ToySDModel  # noqa: E402

FORGE_ROOT = os.path.join(HERE, "forge_root")


def _set_forge_marker(on):
    """Forge has a top-level `modules_forge` package; A1111 has none (see report / Host docs)."""
    sys.modules.pop("modules_forge", None)
    while FORGE_ROOT in sys.path:
        sys.path.remove(FORGE_ROOT)
    if on:
        sys.path.append(FORGE_ROOT)


def _gradio_available():
    import importlib.util
    return importlib.util.find_spec("gradio") is not None

_current = None


class Run(tuple):
    """(latents, processed) with `.p`: latents = final latents before decode, all batches concatenated [N,4,h,w]."""

    def __new__(cls, latents, processed, p):
        self = super().__new__(cls, (latents, processed))
        self.latents, self.processed, self.p = latents, processed, p
        return self


class Extension:
    def __init__(self, module_classes, path):
        self.classes, self.path = module_classes, path
        self.module = module_classes[0].__module__ if module_classes else None
        self.scripts = {"txt2img": [], "img2img": []}
        self.defaults = {"txt2img": None, "img2img": None}  # per tab: list of ui() default values, or None
        self.ui_error = None

    def script(self, tab="txt2img"):
        return self.scripts[tab][0]


class Host:
    def __init__(self, flavour="a1111", model="sdxl"):
        assert flavour in ("a1111", "forge") and model in ("sdxl", "sd1")
        script_callbacks.clear_callbacks()
        scripts.scripts_data.clear()
        errors.reported.clear()
        shared.reset(flavour)
        _set_forge_marker(flavour == "forge")
        self.flavour, self.kind = flavour, model
        self.model = ToySDModel(model, flavour, "base")
        self.refiner = ToySDModel(model, flavour, "refiner", bias=(-0.2, 0.25, -0.1, 0.15))
        shared.standin_checkpoints.update(base=self.model, refiner=self.refiner)
        shared.standin_base_checkpoint = "base"
        shared.sd_model = self.model
        self.extension = None

    shared = shared
    errors = property(lambda self: errors.reported)

    def load_extension(self, repo_root=REPO_ROOT, script_file="scripts/latentfix.py", build_ui=True, reload_packages=(),
                       gradio_stub=True):
        """Imitates load_scripts -> before_ui -> ui_settings -> per tab ui() (scripts.py:487-524; webui.py:61-64;
        ui.py:261-265). reload_packages: top-level package names to drop from sys.modules first (the real host
        keeps them cached across Reload UI; pass e.g. ("lib_latentfix",) for a cold start). gradio_stub: when the
        real gradio is missing, serve webui_standin/gradio_stub.py as `gradio` while the script is imported and
        its ui() runs (then removed from sys.modules again; the script keeps its reference)."""
        for name in list(sys.modules):
            if name.split(".")[0] in reload_packages:
                del sys.modules[name]
        path = os.path.join(repo_root, script_file)
        stub = gradio_stub and not _gradio_available()
        if stub:
            from webui_standin import gradio_stub as stub_module
            sys.modules["gradio"] = stub_module
        try:
            ext = Extension(scripts.load_script_file(path, repo_root), path)
            script_callbacks.before_ui_callback()
            script_callbacks.ui_settings_callback()
            self._build_tabs(ext, path, build_ui)
        finally:
            if stub:
                sys.modules.pop("gradio", None)
        self.extension = ext
        return ext

    def _build_tabs(self, ext, path, build_ui):
        for tab, is_img2img in (("txt2img", False), ("img2img", True)):
            pos, defaults = 1, []
            for cls in ext.classes:
                s = cls()
                s.filename, s.is_txt2img, s.is_img2img, s.tabname = path, not is_img2img, is_img2img, tab
                if s.show(is_img2img) is not scripts.AlwaysVisible:
                    continue
                s.alwayson = True
                controls = None
                if build_ui:
                    try:
                        import gradio as gr  # real or stub; ui() runs inside a Blocks context like ui.py / api.py:326-332
                        with gr.Blocks():
                            controls = s.ui(is_img2img)
                    except Exception as e:  # e.g. gradio not installed
                        ext.ui_error = e
                if controls is None:
                    defaults = None
                else:
                    s.controls = list(controls)
                    s.args_from, s.args_to = pos, pos + len(s.controls)
                    pos = s.args_to
                    if defaults is not None:
                        defaults += [getattr(c, "value", None) for c in s.controls]
                ext.scripts[tab].append(s)
            ext.defaults[tab] = defaults

    def _script_args(self, tab, script_args):
        """Flat p.script_args: [None (Script dropdown)] + args. Like the API, given args replace the ui()
        defaults positionally and missing trailing ones keep them (api/api.py:315-361)."""
        if self.extension is None or not self.extension.scripts[tab]:
            return [None], []
        given = list(script_args or [])
        defaults = self.extension.defaults[tab]
        if defaults is None:  # no ui(): the given list is the whole arg list of the (single) script
            s = self.extension.scripts[tab][0]
            s.args_from, s.args_to = 1, 1 + len(given)
            return [None] + given, self.extension.scripts[tab]
        return [None] + given + list(defaults[len(given):]), self.extension.scripts[tab]

    def _run(self, p, tab, script_args, is_api):
        flat, alwayson = self._script_args(tab, script_args)
        p.scripts, p.script_args, p.is_api = scripts.ScriptRunner(alwayson), tuple(flat) if is_api else flat, is_api
        p.scripts.setup_scrips(p, is_ui=not is_api)  # processing.py:269-294
        processed = processing.process_images(p)
        latents = torch.cat(p.standin_latents) if p.standin_latents else None
        return Run(latents, processed, p)

    def txt2img(self, script_args=None, *, prompt="a photo of a cat", negative_prompt="", batch_size=1, n_iter=1, steps=8,
                sampler="Euler a", scheduler=None, seed=1234, cfg_scale=7.0, width=256, height=256, enable_hr=False,
                hr_scale=1.5, hr_second_pass_steps=0, hr_upscaler="Latent", hr_sampler_name=None, hr_cfg=1.0,
                denoising_strength=0.5, refiner_checkpoint=None, refiner_switch_at=0.8, is_api=False, **p_attrs):
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=prompt, negative_prompt=negative_prompt, batch_size=batch_size, n_iter=n_iter, steps=steps,
            sampler_name=sampler, scheduler=scheduler, seed=seed, cfg_scale=cfg_scale, width=width, height=height,
            enable_hr=enable_hr, hr_scale=hr_scale, hr_second_pass_steps=hr_second_pass_steps, hr_upscaler=hr_upscaler,
            hr_sampler_name=hr_sampler_name, hr_cfg=hr_cfg, denoising_strength=denoising_strength,
            refiner_checkpoint=refiner_checkpoint, refiner_switch_at=refiner_switch_at if refiner_checkpoint else None, **p_attrs)
        return self._run(p, "txt2img", script_args, is_api)

    def img2img(self, script_args=None, *, init_latent=None, mask=None, denoising_strength=0.75, prompt="a photo of a cat",
                negative_prompt="", batch_size=1, n_iter=1, steps=8, sampler="Euler a", scheduler=None, seed=1234,
                cfg_scale=7.0, width=256, height=256, is_api=False, **p_attrs):
        """init_latent: [4,h,w] or [1|B,4,h,w] sampler-space latent (default: a smooth ramp + the model's cast);
        mask: latent-resolution [h,w] values in 0..1, 1 = repaint (becomes p.nmask), 0 = keep (p.mask)."""
        if init_latent is None:
            h, w = height // 8, width // 8
            init_latent = torch.linspace(-1, 1, h * w).view(1, 1, h, w).repeat(1, 4, 1, 1) * 0.5 + self.model.channel_bias
        p = processing.StableDiffusionProcessingImg2Img(
            init_latent=init_latent, mask=mask, denoising_strength=denoising_strength, prompt=prompt,
            negative_prompt=negative_prompt, batch_size=batch_size, n_iter=n_iter, steps=steps, sampler_name=sampler,
            scheduler=scheduler, seed=seed, cfg_scale=cfg_scale, width=width, height=height, **p_attrs)
        return self._run(p, "img2img", script_args, is_api)

    def record_callbacks(self, keep_tensors=True):
        """Register recorders for cfg_denoiser / cfg_denoised / cfg_after_cfg (registered now, so they run after
        callbacks registered earlier; LatentFix moves its cfg_after_cfg callback behind them before each sampler
        run). Returns the list they append dicts to."""
        events = []

        def rec(kind):
            def cb(params):
                d = getattr(params, "denoiser", None)
                events.append(dict(
                    kind=kind, shape=tuple(params.x.shape), sampling_step=params.sampling_step,
                    total=params.total_sampling_steps, step=None if d is None else d.step,
                    sigma=None if getattr(params, "sigma", None) is None else params.sigma.detach().clone(),
                    x=params.x.detach().clone() if keep_tensors else None,
                    text_uncond=getattr(params, "text_uncond", "n/a"), model=shared.sd_model.sd_checkpoint_info.name,
                    is_hr_pass=None if d is None else d.p.is_hr_pass))
            return cb

        script_callbacks.on_cfg_denoiser(rec("cfg_denoiser"), name="standin-recorder")
        script_callbacks.on_cfg_denoised(rec("cfg_denoised"), name="standin-recorder")
        script_callbacks.on_cfg_after_cfg(rec("cfg_after_cfg"), name="standin-recorder")
        return events


def make_host(flavour="a1111", model="sdxl"):
    """Fresh host: callbacks and scripts_data cleared, opts/state reset in place, shared.sd_model = toy model."""
    global _current
    _current = Host(flavour, model)
    return _current


def current():
    return _current or make_host()


def load_extension(repo_root=REPO_ROOT, **kwargs):
    return current().load_extension(repo_root, **kwargs)


def txt2img(script_args=None, **kwargs):
    return current().txt2img(script_args, **kwargs)


def img2img(script_args=None, **kwargs):
    return current().img2img(script_args, **kwargs)


try:
    import pytest

    @pytest.fixture
    def standin_host():
        """pytest fixture: `from webui_standin.harness import standin_host` in a test module or conftest."""
        host = make_host()
        yield host
        script_callbacks.clear_callbacks()
except ImportError:  # pragma: no cover
    pass
