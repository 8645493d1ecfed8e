"""Imitates modules/shared.py + modules/options.py (A options.py:13-58 OptionInfo, 82-142 Options) and
modules/shared_state.py (State). Simplified: no config.json, no freeze checks, no restricted options.

`standin_host` ("a1111" | "forge") selects which host's CFG-denoiser order is replayed; it does not exist in
a real WebUI. `standin_checkpoints` maps checkpoint names to toy models (base / refiner)."""
import argparse

standin_host = "a1111"
standin_checkpoints = {}
standin_base_checkpoint = "base"


class OptionInfo:  # A options.py:13-58
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before='', comment_after='', infotext=None, restrict_api=False, category_id=None):
        self.default, self.label, self.component, self.component_args = default, label, component, component_args
        self.onchange, self.section, self.refresh, self.category_id = onchange, section, refresh, category_id
        self.comment_before, self.comment_after, self.infotext = comment_before, comment_after, infotext
        self.restrict_api, self.do_not_save = restrict_api, False

    def link(self, label, url):
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def html(self, html):
        self.comment_after += html
        return self

    def needs_restart(self):
        self.comment_after += " <span class='info'>(requires restart)</span>"
        return self

    def needs_reload_ui(self):
        self.comment_after += " <span class='info'>(requires Reload UI)</span>"
        return self


class OptionHTML(OptionInfo):  # A options.py:61-65
    def __init__(self, text):
        super().__init__(str(text).strip(), label='')
        self.do_not_save = True


def options_section(section_identifier, options_dict):  # A options.py:68-76
    for v in options_dict.values():
        if len(section_identifier) == 2:
            v.section = section_identifier
        elif len(section_identifier) == 3:
            v.section, v.category_id = section_identifier[0:2], section_identifier[2]
    return options_dict


latent_upscale_modes = {  # A shared.py:55-62 (subset)
    "Latent": {"mode": "bilinear", "antialias": False},
    "Latent (nearest)": {"mode": "nearest", "antialias": False},
    "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
}


_builtin_fields = {"data_labels", "data"}


class Options:  # A options.py:82-142, 229-259
    def __init__(self, data_labels):
        self.data_labels = data_labels
        self.data = {k: v.default for k, v in data_labels.items() if not v.do_not_save}

    def __setattr__(self, key, value):
        if key not in _builtin_fields and (key in self.data or key in self.data_labels):
            self.data[key] = value
            return
        super().__setattr__(key, value)

    def __getattr__(self, item):  # stored value, else registered default, else AttributeError
        if item in _builtin_fields:
            return super().__getattribute__(item)
        if item in self.data:
            return self.data[item]
        if item in self.data_labels:
            return self.data_labels[item].default
        return super().__getattribute__(item)

    def add_option(self, key, info):
        self.data_labels[key] = info
        if key not in self.data and not info.do_not_save:
            self.data[key] = info.default

    def get_default(self, key):
        info = self.data_labels.get(key)
        return None if info is None else info.default

    def set(self, key, value, is_api=False, run_callbacks=True):
        if self.data.get(key, None) == value:
            return False
        self.data[key] = value
        info = self.data_labels.get(key)
        if run_callbacks and info is not None and info.onchange is not None:
            info.onchange()
        return True

    def onchange(self, key, func, call=True):
        self.data_labels[key].onchange = func
        if call:
            func()


# the built-in settings the stand-in reads (defaults as in A shared_options.py)
BUILTIN_DEFAULTS = dict(
    skip_early_cond=0.0, s_min_uncond_all=False, pad_cond_uncond=False, pad_cond_uncond_v0=False,
    batch_cond_uncond=True, live_preview_content="Prompt", img2img_fix_steps=False, img2img_extra_noise=0.0,
    enable_quantization=False, refiner_switch_by_sample_steps=False, hires_fix_refiner_pass="second pass",
    sgm_noise_multiplier=False, always_discard_next_to_last_sigma=False, eta_ancestral=1.0, eta_ddim=0.0,
    infotext_skip_pasting=[], initial_noise_multiplier=1.0, sd_model_checkpoint="base", CLIP_stop_at_last_layers=1,
)


def fresh_options():
    return Options({k: OptionInfo(v) for k, v in BUILTIN_DEFAULTS.items()})


class State:  # A shared_state.py (fields only)
    def __init__(self):
        self.interrupted = self.skipped = self.stopping_generation = False
        self.job, self.job_no, self.job_count = "", 0, -1
        self.processing_has_refined_job_count = False
        self.sampling_step, self.sampling_steps = 0, 0
        self.current_latent = None

    def interrupt(self):
        self.interrupted = True

    def skip(self):
        self.skipped = True

    def nextjob(self):
        self.job_no += 1
        self.sampling_step = 0


opts = fresh_options()
state = State()
sd_model = None
cmd_opts = argparse.Namespace(api=False, nowebui=False, no_half=True, skip_install=False, freeze_settings=False,
                              hide_ui_dir_config=False, no_prompt_history=True)
device = "cpu"


def reset(flavour="a1111"):
    """Test-only: reset opts/state in place (so `from modules.shared import opts` bindings stay valid), no model."""
    global sd_model, standin_host
    fresh = fresh_options()
    opts.data_labels.clear()
    opts.data_labels.update(fresh.data_labels)
    opts.data.clear()
    opts.data.update(fresh.data)
    state.__init__()
    sd_model, standin_host = None, flavour
    standin_checkpoints.clear()
