"""sd-webui-latentfix: WebUI glue (AUTOMATIC1111 1.10, Forge, reForge).

Thin adapter from WebUI objects to ``lib_latentfix``: the UI, the per-generation job on ``p``, and the
CFG-denoiser callbacks that rewrite each image's prediction in place of the WebUI's. Every decision (which
filters, at which timestep, on which rows) is made by plain functions in ``lib_latentfix``.

Everything this file needs is imported here, at import time: A1111 removes the extension root from
``sys.path`` right after loading ``scripts/`` (modules/scripts.py:509-524).
"""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

import gradio as gr
import torch

from modules import script_callbacks, scripts, shared
from modules.ui_components import InputAccordion  # Forge: a function, not a class (never isinstance it)

try:  # A1111 / Forge: the eps-predicting DDIM/PLMS/UniPC denoiser
    from modules.sd_samplers_timesteps import CFGDenoiserTimesteps
except Exception:  # pragma: no cover - hosts without it
    CFGDenoiserTimesteps = ()

from lib_latentfix import __version__
from lib_latentfix import diagnostics as lf_diagnostics
from lib_latentfix import infotext as lf_infotext
from lib_latentfix import runtime
from lib_latentfix import settings as lf_settings
from lib_latentfix import sigmas as lf_sigmas

TITLE = "LatentFix"
LOG_PREFIX = "[LatentFix]"
JOB_ATTR = "latentfix_job"
OVERRIDES_ATTR = "latentfix_overrides"

# Forge and reForge move every sampler into k-diffusion space before the callbacks (F
# sd_samplers_cfg_denoiser.py:163-169), so only A1111's timestep denoisers hand eps with the timestep as sigma.
FORGE_LIKE = importlib.util.find_spec("modules_forge") is not None


def log(message: str) -> None:
    print(f"{LOG_PREFIX} {message}")


# ------------------------------------------------------------------------------------------------------------
# the model call in progress: on_cfg_after_cfg gets neither p nor sigma, so on_cfg_denoiser of the same
# forward() hands its job over here (one model call at a time; cleared as soon as it is used).


class _Handoff:
    job: Optional[runtime.Job] = None


_current = _Handoff()


def job_of(p: Any) -> Optional[runtime.Job]:
    job = getattr(p, JOB_ATTR, None)
    return job if isinstance(job, runtime.Job) and job.active else None


def _timesteps(denoiser: Any, sigma: torch.Tensor, eps_mode: bool) -> torch.Tensor:
    """Each row's training timestep from its sigma, through the model's own schedule."""
    if eps_mode:  # A1111 DDIM/PLMS/UniPC: the sigma argument is the timestep
        return sigma.to(torch.float32)
    inner = getattr(denoiser, "inner_model", None)
    sigma_to_t = getattr(inner, "sigma_to_t", None)
    if callable(sigma_to_t):  # A1111: k-diffusion's log-sigma interpolation; Forge: the predictor
        return sigma_to_t(sigma).to(torch.float32)
    predictor = _forge_predictor()
    if predictor is not None:  # Forge's DDIM-family denoisers: the same predictor, reached through the model
        return predictor.timestep(sigma).to(torch.float32)
    alphas = getattr(shared.sd_model, "alphas_cumprod", None)
    return lf_sigmas.sigma_to_t(sigma, alphas if isinstance(alphas, torch.Tensor) else None)


def _forge_predictor() -> Any:
    """Forge's noise predictor (F backend/modules/k_prediction.py), if this host has one."""
    unet = getattr(getattr(shared.sd_model, "forge_objects", None), "unet", None)
    predictor = getattr(getattr(unet, "model", None), "predictor", None)
    return predictor if callable(getattr(predictor, "timestep", None)) else None


def _repaint_mask(denoiser: Any) -> Optional[torch.Tensor]:
    if getattr(denoiser, "mask", None) is None:
        return None
    return getattr(denoiser, "nmask", None)


def on_cfg_denoiser(params: Any) -> None:
    """Capture the rows' timesteps, inputs and mask for this model call (no change to the latent here)."""
    _current.job = None
    denoiser = getattr(params, "denoiser", None)
    p = getattr(denoiser, "p", None)
    job = job_of(p)
    if job is None:
        return
    job.started = True
    try:
        if runtime.skip_reason(job.settings, is_hr_pass=bool(getattr(p, "is_hr_pass", False)),
                               inner_pass=runtime.is_inner_pass(p)):
            return
        problem = runtime.latent_problem(params.x)
        if problem is not None:
            job.active = False
            log(f"skipped for this generation: {problem}")
            return
        eps_mode = bool(CFGDenoiserTimesteps) and isinstance(denoiser, CFGDenoiserTimesteps) and not FORGE_LIKE
        sigma = params.sigma
        alpha_bar = denoiser.alphas[sigma.to(dtype=torch.int64)] if eps_mode else None
        job.call = runtime.ModelCall(_timesteps(denoiser, sigma, eps_mode), params.x, alpha_bar, _repaint_mask(denoiser))
        _current.job = job
    except Exception as error:  # never break the generation
        log(job.fail(error))


def _correct_in_callback(params: Any, point: str, *, in_place: bool) -> None:
    job = _current.job
    if job is None or not job.active or job.call is None:
        return
    try:
        x = params.x
        problem = runtime.latent_problem(x)
        if problem is not None or x.shape[0] > job.call.timesteps.shape[0]:
            job.active = False
            log(f"skipped for this generation: {problem or 'prediction rows do not match the model input'}")
            return
        corrected = runtime.correct(job.schedule, x, job.call)
        bad = runtime.count_nonfinite(x)
        job.nonfinite = bad if job.nonfinite is None else job.nonfinite + bad
        if job.observer is not None:
            job.observer(point, x, corrected, job.call)
        if in_place:
            x.copy_(corrected)
        else:
            params.x = corrected
        job.ran_points.add(point)
    except Exception as error:
        log(job.fail(error))


def on_cfg_denoised(params: Any) -> None:
    """Before guidance (A1111 only): every cond/uncond prediction row, in place (reassigning is ignored)."""
    job = _current.job
    if job is not None and job.before_guidance:
        _correct_in_callback(params, lf_settings.BEFORE_CFG, in_place=True)


def on_cfg_after_cfg(params: Any) -> None:
    """After guidance (default): each image's CFG-combined prediction (reassignment is honoured everywhere)."""
    job = _current.job
    if job is not None and not job.before_guidance:
        _correct_in_callback(params, lf_settings.AFTER_CFG, in_place=False)
    _current.job = None
    if job is not None:
        job.call = None  # the model call is over: drop its tensors


# ------------------------------------------------------------------------------------------------------------
# the script


def _infotext_value(key: str):
    """An infotext value computed whenever the WebUI writes the infotext (lf_infotext.report decides what)."""

    def value(p: Any = None, **_: Any) -> Optional[str]:
        job = getattr(p, JOB_ATTR, None)
        if not isinstance(job, runtime.Job):
            return None
        said = lf_infotext.report(job.settings, __version__, started=job.started, corrected=bool(job.ran_points),
                                  failure=job.failure)
        return said.get(key)

    return value


def settings_defaults() -> lf_settings.Settings:
    """The defaults chosen on the Settings page (enable, preset, advanced options)."""
    return lf_settings.defaults_from_options(lambda key, fallback: getattr(shared.opts, key, fallback))


# ------------------------------------------------------------------------------------------------------------
# UI: one component per settings field, laid out by group; labels, ranges and hints come from lf_settings.FIELDS

# Each filter group: rows of fields; a row of lists is a row of columns. Window start (the noisy end) comes first.
LAYOUT: dict[str, list] = {
    "clamp": [
        ("clamp_enabled", "clamp_adaptive"),
        ("clamp_strength", "clamp_ratio"),
        ("clamp_threshold", "clamp_boundary"),
        ("clamp_t_max", "clamp_t_min"),
    ],
    "center": [
        ("center_enabled",),
        ("center_channels",),
        ("center_strength",),
        (["center_early_channel_shift", "center_early_full_shift", "center_early_t_max", "center_early_t_min"],
         ["center_late_channel_shift", "center_late_full_shift", "center_late_t_max", "center_late_t_min"]),
    ],
    "maximize": [
        ("maximize_enabled",),
        ("maximize_channels",),
        ("maximize_boundary", "maximize_strength"),
        ("maximize_t_max", "maximize_t_min"),
    ],
}


def _component(field: lf_settings.Field, value: Any, elem_id: str, forge_like: bool):
    if field.kind == "bool":
        return gr.Checkbox(value=value, label=field.label, elem_id=elem_id)
    if field.kind == "float":
        return gr.Slider(minimum=field.minimum, maximum=field.maximum, step=field.step, value=value,
                         label=field.label, elem_id=elem_id)
    if field.kind == "channels":
        return gr.CheckboxGroup(choices=list(lf_settings.CHANNEL_LABELS), label=field.label, elem_id=elem_id,
                                value=[lf_settings.CHANNEL_LABELS[c] for c in value])
    choices = list(field.choices)
    if field.name == "correction_point":
        info = "Forge and reForge never call the 'before guidance' hook: use 'after guidance' there." if forge_like else None
        return gr.Radio(choices=choices, value=value, label=field.label, elem_id=elem_id, info=info)
    return gr.Dropdown(choices=choices, value=value, label=field.label, elem_id=elem_id)


def build_ui(elem_id, defaults: lf_settings.Settings, forge_like: bool) -> dict[str, Any]:
    """Create the accordion; return the components by field name (creation has no other side effect)."""
    made: dict[str, Any] = {}

    def make(name: str):
        field = lf_settings.FIELD_BY_NAME[name]
        made[name] = _component(field, getattr(defaults, name), elem_id(name), forge_like)
        return made[name]

    label = f"{TITLE}: SDXL latent correction"
    if getattr(shared.cmd_opts, "latentfix_disable", False):
        label += " (off for this launch: --latentfix-disable)"
    with InputAccordion(defaults.enabled, label=label, elem_id=elem_id("enabled")) as enabled:
        made["enabled"] = enabled
        make("preset")
        for group, rows in LAYOUT.items():
            with gr.Group(elem_id=elem_id(f"group_{group}")):
                for row in rows:
                    with gr.Row():
                        for item in row:
                            if isinstance(item, list):
                                with gr.Column(min_width=160):
                                    for name in item:
                                        make(name)
                            else:
                                make(item)
        with gr.Accordion("Advanced", open=False, elem_id=elem_id("advanced")):
            for field in lf_settings.FIELDS:
                if field.group == "advanced":
                    make(field.name)
    _wire_presets(made)
    return made


def _preset_values(name: str) -> list[Any]:
    if name not in lf_settings.PRESETS:
        return [gr.update() for _ in lf_settings.PRESET_FIELDS]
    chosen = lf_settings.apply_preset(lf_settings.DEFAULTS, name)
    return [gr.update(value=value) for value in _ui_values(chosen, lf_settings.PRESET_FIELDS)]


def _ui_values(chosen: lf_settings.Settings, names) -> list[Any]:
    positional = dict(zip((f.name for f in lf_settings.FIELDS), lf_settings.to_positional(chosen)))
    return [positional[name] for name in names]


def _preset_of(*values: Any) -> str:
    try:
        chosen = lf_settings.from_named(dict(zip(lf_settings.PRESET_FIELDS, values)))
    except lf_settings.SettingsError:
        return lf_settings.CUSTOM
    return lf_settings.matching_preset(chosen)


def _wire_presets(made: dict[str, Any]) -> None:
    """Choosing a preset sets every filter control; editing any of them shows which preset (or Custom) it is."""
    controls = [made[name] for name in lf_settings.PRESET_FIELDS]
    made["preset"].input(fn=_preset_values, inputs=[made["preset"]], outputs=controls, show_progress=False)
    for control in controls:
        control.input(fn=_preset_of, inputs=controls, outputs=[made["preset"]], show_progress=False)


def _paste_reader(name: str):
    """Infotext paste: the control's value from the LatentFix keys; the enable box turns off without them."""

    def read(params: dict) -> Any:
        chosen = lf_infotext.decode_cached(params, log)
        if chosen is None:
            return False if name == "enabled" else None
        return _ui_values(chosen, (name,))[0]

    return read


# ------------------------------------------------------------------------------------------------------------
# diagnostics: a per-step trace per batch iteration, charts and channel views at the end, JSON lines


def _trace_observer(p: Any, job: runtime.Job):
    """Record each corrected evaluation; a failure here switches diagnostics off, never the correction."""

    def observe(point: str, before: torch.Tensor, after: torch.Tensor, call: runtime.ModelCall) -> None:
        try:
            images = int(getattr(p, "batch_size", before.shape[0])) if point == lf_settings.BEFORE_CFG else before.shape[0]
            label = "hires pass" if getattr(p, "is_hr_pass", False) else "first pass"
            if point == lf_settings.BEFORE_CFG:
                label += " (negative-prompt rows)"  # before guidance: one uncond row per image, the last rows
            trace = job.traces.setdefault(int(getattr(p, "iteration", 0)), lf_diagnostics.Trace())
            trace.record_call(before[-images:], after[-images:], call, label=label)
        except Exception as error:
            job.observer = None
            log(f"diagnostics turned off for this generation after an error: {type(error).__name__}: {error}")

    return observe


def _diagnostic_images(p: Any, job: runtime.Job, trace_path: Optional[str]) -> list[tuple[Any, str]]:
    """(image, caption) pairs for the gallery; JSON lines appended to ``trace_path`` on the way."""
    out = []
    boundary = job.settings.maximize_boundary if job.settings.maximize_enabled else 4.0
    windows = lf_diagnostics.schedule_windows(job.schedule)
    for iteration, trace in sorted(job.traces.items()):
        data = trace.finish()
        for image in range(data.images):
            index = iteration * int(getattr(p, "batch_size", data.images)) + image
            seeds = getattr(p, "all_seeds", None) or [getattr(p, "seed", -1)]
            seed = seeds[index] if index < len(seeds) else seeds[-1]
            if trace_path:
                meta = {"image_index": index, "seed": seed, "sampler": getattr(p, "sampler_name", None),
                        "steps": getattr(p, "steps", None), "cfg_scale": getattr(p, "cfg_scale", None)}
                lf_diagnostics.write_jsonl(trace_path, lf_diagnostics.trace_records(data, meta=meta, image=image))
            if job.settings.diagnostics:
                title = f"LatentFix diagnostics: image {index + 1}, seed {seed}"
                plot = lf_diagnostics.render_plot(data, image, boundary=boundary, windows=windows, title=title)
                out.append((plot, f"{title}: channel statistics per step"))
                view = lf_diagnostics.channel_view_images(data, image)
                out.append((view, f"{title}: latent channels before/after the last correction"))
    return out


def _save_extra_image(p: Any, image: Any, caption: str) -> None:
    """Save like a grid when the WebUI saves grids (Settings → Saving images → grids)."""
    if not getattr(shared.opts, "grid_save", False):
        return
    try:
        from modules import images as webui_images
    except ImportError:  # pragma: no cover - every WebUI has it
        return
    webui_images.save_image(image, getattr(p, "outpath_grids", "outputs"), "latentfix",
                            extension=getattr(shared.opts, "grid_format", "png"), info=caption, p=p,
                            suffix="-diagnostics")


# One reader per field, shared by both tabs: A1111's "Send to img2img/inpaint" copies the controls whose paste key
# is in paste_field_names, matched by equality in each tab's fields (infotext_utils.py:169-173).
PASTE_READERS = {f.name: _paste_reader(f.name) for f in lf_settings.FIELDS}


class LatentFixScript(scripts.Script):
    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool):
        made = build_ui(self.elem_id, settings_defaults(), FORGE_LIKE)
        self.infotext_fields = [(made[f.name], PASTE_READERS[f.name]) for f in lf_settings.FIELDS]
        self.paste_field_names = list(PASTE_READERS.values())
        return [made[f.name] for f in lf_settings.FIELDS]

    def process(self, p: Any, *args: Any) -> None:
        for key in lf_infotext.ALL_KEYS:  # X/Y/Z cells share this dict: never leave another cell's keys
            p.extra_generation_params.pop(key, None)
        setattr(p, JOB_ATTR, None)
        if getattr(shared.cmd_opts, "latentfix_disable", False):
            return
        try:
            chosen = lf_settings.from_script_args(args, settings_defaults())
            chosen = lf_settings.with_overrides(chosen, getattr(p, OVERRIDES_ATTR, None))
        except lf_settings.SettingsError as error:
            log(f"not applied, bad settings: {error}")
            # the caller sees it too: in the response's info (API) and the infotext, without failing the request
            p.extra_generation_params[lf_infotext.ERROR_KEY] = f"not applied: {error}"
            return
        reason = runtime.skip_reason(chosen, is_hr_pass=False, inner_pass=runtime.is_inner_pass(p))
        if reason is not None:
            return
        family = runtime.model_family(getattr(p, "sd_model", None) or shared.sd_model)
        if family == runtime.UNSUPPORTED:
            log("skipped: the model is not SD/SDXL with a 4-channel latent (SD3, Flux and similar are not supported)")
            return
        if family == runtime.SD:
            log("note: SD 1.x/2.x model; the filters were calibrated for SDXL latents and may act differently")
        if chosen.correction_point == lf_settings.BEFORE_CFG and FORGE_LIKE:
            log("the 'before guidance' correction point needs AUTOMATIC1111; this WebUI never calls it, "
                "so nothing will be corrected (choose 'after guidance')")
            return
        job = runtime.Job(chosen, chosen.schedule(), family)
        if chosen.diagnostics or getattr(shared.cmd_opts, "latentfix_trace", None):
            job.observer = _trace_observer(p, job)
        setattr(p, JOB_ATTR, job)
        for key in lf_infotext.ALL_KEYS:
            p.extra_generation_params[key] = _infotext_value(key)

    @staticmethod
    def _settle_infotext(p: Any) -> None:
        """Replace the infotext callables by their final text: the API's info serialises callables as null."""
        params = p.extra_generation_params
        for key in lf_infotext.ALL_KEYS:
            if callable(params.get(key)):
                text = params[key](p=p)
                if text is None:
                    params.pop(key)
                else:
                    params[key] = text

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        job = getattr(p, JOB_ATTR, None)
        if not isinstance(job, runtime.Job):
            return
        job.call = None
        self._settle_infotext(p)
        bad = int(job.nonfinite) if job.nonfinite is not None else 0  # the one read of it, after sampling
        if bad:
            log(f"{bad} image prediction(s) held NaN/inf values; those were left uncorrected (the model or another "
                "extension produced them)")
        if job.before_guidance and not job.ran_points and job.failure is None:
            log("nothing was corrected: this WebUI did not call the 'before guidance' hook")
        if not job.traces:
            return
        try:
            extras = _diagnostic_images(p, job, getattr(shared.cmd_opts, "latentfix_trace", None))
            for image, caption in extras:  # after the real images; their infotexts stay untouched
                processed.images.append(image)
                processed.infotexts.append(caption)
                _save_extra_image(p, image, caption)
        except Exception as error:
            log(f"diagnostics could not be drawn: {type(error).__name__}: {error}")
        finally:
            job.traces = {}


def register_options() -> None:
    """Settings page: defaults for the enable, the preset and the advanced options."""
    section = ("latentfix", TITLE)
    for name in lf_settings.OPTION_FIELDS:
        field = lf_settings.FIELD_BY_NAME[name]
        default = getattr(lf_settings.DEFAULTS, name)
        if field.kind == "choice":
            info = shared.OptionInfo(default, f"Default: {field.label}", gr.Dropdown,
                                     {"choices": list(field.choices)}, section=section)
        else:
            info = shared.OptionInfo(default, f"Default: {field.label}", section=section)
        shared.opts.add_option(lf_settings.option_key(name), info)


def _xyz_apply(name: str):
    def apply_value(p: Any, value: Any, _values: Any) -> None:
        overrides = dict(getattr(p, OVERRIDES_ATTR, None) or {})
        overrides[name] = value
        setattr(p, OVERRIDES_ATTR, overrides)  # a new dict on this cell's p: cells never share it

    return apply_value


def _settings_of(p: Any) -> lf_settings.Settings:
    """The settings this generation's own LatentFix controls hold (defaults if they cannot be read)."""
    runner = getattr(p, "scripts", None)
    ours = next((s for s in getattr(runner, "alwayson_scripts", []) if isinstance(s, LatentFixScript)), None)
    try:
        return lf_settings.from_script_args(p.script_args[ours.args_from:ours.args_to], settings_defaults())
    except Exception:
        return settings_defaults()


def _xyz_confirm(name: str):
    """Check each axis value together with the rest of the settings (a window end above its start, say)."""

    def confirm(p: Any, values: Any) -> None:
        base = _settings_of(p)
        for value in values:
            overrides = {**(getattr(p, OVERRIDES_ATTR, None) or {}), name: value}
            lf_settings.with_overrides(base, overrides)  # raises SettingsError, naming the setting

    return confirm


def register_xyz_axes() -> None:
    """Add the X/Y/Z plot axes to the loaded xyz_grid script (module name "xyz_grid.py", not importable)."""
    module = next((d.module for d in scripts.scripts_data if getattr(d.script_class, "__module__", "") == "xyz_grid.py"),
                  None)
    if module is None:
        return
    if any(getattr(opt, "label", "").startswith("[LatentFix]") for opt in module.axis_options):
        return
    for axis in lf_settings.xyz_axes():
        kind = {"bool": str, "choice": str, "float": float}[axis.kind]
        choices = (lambda values=axis.choices: list(values)) if axis.choices else None
        module.axis_options.append(module.AxisOption(axis.label, kind, _xyz_apply(axis.field), choices=choices,
                                                     confirm=_xyz_confirm(axis.field)))


# Registered once, at import of this file: Reload UI re-imports it after clearing all callbacks.
script_callbacks.on_cfg_denoiser(on_cfg_denoiser, name="latentfix")
script_callbacks.on_cfg_denoised(on_cfg_denoised, name="latentfix")
script_callbacks.on_cfg_after_cfg(on_cfg_after_cfg, name="latentfix")
script_callbacks.on_ui_settings(register_options, name="latentfix")
script_callbacks.on_before_ui(register_xyz_axes, name="latentfix")
