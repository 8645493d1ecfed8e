"""Imitates modules/script_callbacks.py (A v1.10.1). Param classes: 45-96; registration add_callback 127-147
(names `<extension>/<file>/<category>[/name]`, `-1` suffix on duplicates); runners 298-399 catch exceptions,
report them and continue (330-351); clear_callbacks 246-250.
Simplified: no metadata.ini / user ordering (callbacks run in registration order); extension name is the
folder above `scripts/` of the registering file, else "base". Kept: the per-category cache of the ordered list,
rebuilt only when the number of callbacks changes (ordered_callbacks 194-207, ordered_callbacks_map)."""
import dataclasses
import inspect
import os

from modules import errors


class CFGDenoiserParams:  # script_callbacks.py:45-69
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None):
        self.x, self.image_cond, self.sigma = x, image_cond, sigma
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.text_cond, self.text_uncond, self.denoiser = text_cond, text_uncond, denoiser


class CFGDenoisedParams:  # script_callbacks.py:72-84
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x, self.sampling_step, self.total_sampling_steps, self.inner_model = x, sampling_step, total_sampling_steps, inner_model


class AfterCFGCallbackParams:  # script_callbacks.py:87-96
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x, self.sampling_step, self.total_sampling_steps = x, sampling_step, total_sampling_steps


@dataclasses.dataclass
class ScriptCallback:
    script: str
    callback: object
    name: str = "unnamed"


CATEGORIES = ["app_started", "model_loaded", "ui_tabs", "ui_settings", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg",
              "infotext_pasted", "script_unloaded", "before_ui", "on_reload", "extra_noise", "before_image_saved", "image_saved"]
callback_map = {"callbacks_" + c: [] for c in CATEGORIES}


def add_callback(callbacks, fun, *, name=None, category="unknown", filename=None):
    if filename is None:
        stack = [x for x in inspect.stack() if x.filename != __file__]
        filename = stack[0].filename if stack else "unknown file"
    parent = os.path.dirname(os.path.dirname(os.path.abspath(filename)))
    ext = os.path.basename(parent).lower() if os.path.basename(os.path.dirname(filename)) == "scripts" else "base"
    base = f"{ext}/{os.path.basename(filename)}/{category}" + (f"/{name}" if name is not None else "")
    unique, index = base, 0
    while any(c.name == unique for c in callbacks):
        index += 1
        unique = f"{base}-{index}"
    callbacks.append(ScriptCallback(filename, fun, unique))


ordered_callbacks_map = {}


def ordered_callbacks(category):
    unordered = callback_map["callbacks_" + category]
    cached = ordered_callbacks_map.get(category)
    if cached is not None and len(cached) == len(unordered):
        return cached
    ordered_callbacks_map[category] = list(unordered)
    return ordered_callbacks_map[category]


def clear_callbacks():
    for lst in callback_map.values():
        lst.clear()
    ordered_callbacks_map.clear()


def remove_current_script_callbacks():  # script_callbacks.py:434-444
    stack = [x for x in inspect.stack() if x.filename != __file__]
    filename = stack[0].filename if stack else "unknown file"
    for lst in list(callback_map.values()) + list(ordered_callbacks_map.values()):
        lst[:] = [c for c in lst if c.script != filename]


def remove_callbacks_for_function(callback_func):  # script_callbacks.py:447-453
    for lst in list(callback_map.values()) + list(ordered_callbacks_map.values()):
        lst[:] = [c for c in lst if c.callback != callback_func]


def _run(category, job, *args, reverse=False):
    cbs = ordered_callbacks(category)
    for c in (reversed(cbs) if reverse else cbs):
        try:
            c.callback(*args)
        except Exception:
            errors.report(f"Error executing callback {job} for {c.script}", exc_info=True)


def cfg_denoiser_callback(params):
    _run("cfg_denoiser", "cfg_denoiser_callback", params)


def cfg_denoised_callback(params):
    _run("cfg_denoised", "cfg_denoised_callback", params)


def cfg_after_cfg_callback(params):
    _run("cfg_after_cfg", "cfg_after_cfg_callback", params)


def before_ui_callback():  # reverse order, script_callbacks.py:394-399
    _run("before_ui", "before_ui", reverse=True)


def ui_settings_callback():
    _run("ui_settings", "ui_settings_callback")


def infotext_pasted_callback(infotext, params):
    _run("infotext_pasted", "infotext_pasted", infotext, params)


def script_unloaded_callback():  # reverse order, script_callbacks.py:386-391
    _run("script_unloaded", "script_unloaded", reverse=True)


def model_loaded_callback(sd_model):
    _run("model_loaded", "model_loaded_callback", sd_model)


def app_started_callback(demo, app):
    _run("app_started", "app_started_callback", demo, app)


def _register(category):
    def on(callback, *, name=None):
        add_callback(callback_map["callbacks_" + category], callback, name=name, category=category)
    on.__name__ = "on_" + category
    return on


on_cfg_denoiser = _register("cfg_denoiser")
on_cfg_denoised = _register("cfg_denoised")
on_cfg_after_cfg = _register("cfg_after_cfg")
on_before_ui = _register("before_ui")
on_ui_settings = _register("ui_settings")
on_infotext_pasted = _register("infotext_pasted")
on_script_unloaded = _register("script_unloaded")
on_model_loaded = _register("model_loaded")
on_app_started = _register("app_started")
on_ui_tabs = _register("ui_tabs")
on_before_reload = _register("on_reload")
on_extra_noise = _register("extra_noise")
