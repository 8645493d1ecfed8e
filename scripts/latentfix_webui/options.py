"""The WebUI's Settings page section: defaults of the enable, the preset, the strength and the advanced options."""

from __future__ import annotations

import gradio as gr

from modules import shared

from lib_latentfix import arguments as lf_arguments
from lib_latentfix import settings as lf_settings

from . import host

SECTION = ("latentfix", "LatentFix")


def register() -> None:
    """``on_ui_settings``: one option per default (options.py:13-58)."""
    for name in lf_arguments.OPTION_FIELDS:
        field = lf_settings.FIELD_BY_NAME[name]
        default = lf_arguments.ui_value(name, getattr(lf_settings.DEFAULTS, name))
        if field.kind == "choice":
            info = shared.OptionInfo(default, f"Default: {field.label}", gr.Dropdown,
                                     {"choices": [field.choice_label(c) for c in field.choices]}, section=SECTION)
        elif field.kind == "float":
            info = shared.OptionInfo(default, f"Default: {field.label}", gr.Slider,
                                     {"minimum": field.minimum, "maximum": field.maximum, "step": field.step},
                                     section=SECTION)
        else:
            info = shared.OptionInfo(default, f"Default: {field.label}", section=SECTION)
        shared.opts.add_option(lf_arguments.option_key(name), info)


_said: set[str] = set()  # console lines already printed (a bad option is named once per launch, not per generation)


def _once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        host.log(message)


def defaults() -> lf_settings.Settings:
    """The defaults chosen on the Settings page; a bad stored value is named on the console and not used."""
    return lf_arguments.defaults_from_options(lambda key, fallback: getattr(shared.opts, key, fallback), _once)
