"""sd-webui-latentfix: the script the WebUI loads (AUTOMATIC1111 1.10, Forge, reForge).

The Script's lifecycle (a job per generation on ``p``, its infotext, its end) and the callback registration.
Everything else is in the shell package ``scripts/latentfix_webui`` (by concern) over the host-free core
``lib_latentfix``. Everything is imported here, at import time: A1111 removes the extension root from
``sys.path`` right after loading ``scripts/`` (``load_scripts`` in A1111 v1.10.1 modules/scripts.py).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from modules import script_callbacks, scripts, shared

from lib_latentfix import __version__
from lib_latentfix import arguments as lf_arguments
from lib_latentfix import infotext as lf_infotext
from lib_latentfix import settings as lf_settings
from lib_latentfix.runtime import Job

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)  # the shell package sits beside this file; only for this import
try:
    from latentfix_webui import callbacks, gallery, handoff, host, options, ui, xyz
finally:
    sys.path.remove(_HERE)

TITLE = ui.TITLE
RECORDER_ATTR = "latentfix_recorder"
# On p from process() to postprocess(): the extra_generation_params dict this generation writes its infotext to.
# A nested generation on copy(p) (another extension's inner pass) inherits it with the very same dict (a shallow
# copy): it then takes a copy of its own, so neither generation's keys land in the other's infotext.
PARAMS_ATTR = "latentfix_params_in_use"


def _infotext_value(key: str):
    """An infotext value, computed whenever the WebUI writes the infotext (the job caches its text)."""

    def value(p: Any = None, **_: Any):
        job = getattr(p, callbacks.JOB_ATTR, None)
        return job.infotext().get(key) if isinstance(job, Job) else None

    return value


INFOTEXT_VALUES = {key: _infotext_value(key) for key in lf_infotext.ALL_KEYS}


class LatentFixScript(scripts.Script):
    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool):
        made = ui.build(self.elem_id, options.defaults(), host.forge_like(),
                        getattr(shared.cmd_opts, "latentfix_disable", False))
        self.infotext_fields = [(made[f.name], ui.PASTE_READERS[f.name]) for f in lf_settings.FIELDS]
        self.paste_field_names = list(ui.PASTE_READERS.values())
        controls = [made[f.name] for f in lf_settings.FIELDS]
        # what the API pads unsent args with: the values of the last ui() built (api.py init_default_script_args)
        self.latentfix_padding = [getattr(c, "value", None) for c in controls]
        return controls

    def process(self, p: Any, *args: Any) -> None:
        if getattr(p, PARAMS_ATTR, None) is p.extra_generation_params:  # a generation in progress owns this dict
            p.extra_generation_params = dict(p.extra_generation_params)
        setattr(p, PARAMS_ATTR, p.extra_generation_params)
        for key in lf_infotext.ALL_KEYS:  # X/Y/Z cells share this dict: never leave another cell's keys
            p.extra_generation_params.pop(key, None)
        setattr(p, callbacks.JOB_ATTR, None)
        if getattr(shared.cmd_opts, "latentfix_disable", False):
            return
        try:
            padding = getattr(self, "latentfix_padding", None) if getattr(p, "is_api", False) else None
            base = lf_arguments.from_script_args(args, options.defaults(), padding)
            xyz.report_refused_cells(p, base)
            chosen = lf_arguments.with_overrides(base, xyz.overrides_of(p))
        except lf_settings.SettingsError as error:
            host.log(f"not applied, bad settings: {error}")
            # the caller sees it too: in the response's info (API) and the infotext, without failing the request
            p.extra_generation_params[lf_infotext.ERROR_KEY] = f"not applied: {error}"
            return
        if not self._supported(p, chosen):
            return
        recorder = gallery.Recorder(p) if gallery.wanted(chosen) else None
        job = Job(chosen, version=__version__, report=host.log, observer=recorder)
        if job.skip_reason(is_hr_pass=False, inner_pass=host.is_inner_pass(p)) is not None:
            return
        setattr(p, callbacks.JOB_ATTR, job)
        setattr(p, host.FORGE_ATTR, host.forge_like())
        setattr(p, RECORDER_ATTR, recorder)
        p.extra_generation_params.update(INFOTEXT_VALUES)

    @staticmethod
    def _supported(p: Any, chosen: lf_settings.Settings) -> bool:
        if not chosen.does_something():
            return False
        family = host.model_family(getattr(p, "sd_model", None) or shared.sd_model)
        if family == host.UNSUPPORTED:
            host.log("skipped: the model is not SD/SDXL with a 4-channel latent (SD3, Flux and similar are not "
                     "supported)")
            return False
        if family == host.SD:
            host.log("note: SD 1.x/2.x model; the filters were calibrated for SDXL latents and may act differently")
        if chosen.correction_point == lf_settings.BEFORE_CFG and host.forge_like():
            host.log("the 'before guidance' correction point needs AUTOMATIC1111; this WebUI never calls it, "
                     "so nothing will be corrected (choose 'after guidance')")
            return False
        return True

    def process_before_every_sampling(self, p: Any, *args: Any, **kwargs: Any) -> None:
        """A sampler run starts (first pass, hires pass, img2img): tell the job its timesteps, known on the host."""
        job = callbacks.job_of(p)
        if job is None:
            return
        try:
            callbacks.keep_after_cfg_last()
        except Exception as error:  # an unusual host: the order stays as it registered
            host.log(f"could not move the after-guidance callback last: {type(error).__name__}: {error}")
        try:
            key, timesteps, why = host.host_timesteps(p)
        except Exception as error:  # an unexpected host: the windows are then tested on the device
            key, timesteps, why = None, None, f"{type(error).__name__}: {error}"
        job.begin_pass(key, timesteps, why, name=host.pass_name(p))

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        setattr(p, PARAMS_ATTR, None)
        job = getattr(p, callbacks.JOB_ATTR, None)
        if not isinstance(job, Job):
            return
        handoff.forget(job)
        job.finish()
        params = p.extra_generation_params  # the API's info serialises callables as null: settle them as text
        for key, value in job.infotext().items():
            params[key] = value
        for key in lf_infotext.ALL_KEYS:
            if callable(params.get(key)):
                params.pop(key)
        recorder = getattr(p, RECORDER_ATTR, None)
        if recorder is not None:
            gallery.finish(p, processed, job, recorder)


# Registered once, at import of this file: Reload UI re-imports it after clearing all callbacks.
script_callbacks.on_cfg_denoiser(callbacks.on_cfg_denoiser, name="latentfix")
script_callbacks.on_cfg_denoised(callbacks.on_cfg_denoised, name="latentfix")
script_callbacks.on_cfg_after_cfg(callbacks.on_cfg_after_cfg, name="latentfix")
script_callbacks.on_ui_settings(options.register, name="latentfix")
script_callbacks.on_before_ui(lambda: xyz.register(TITLE), name="latentfix")
