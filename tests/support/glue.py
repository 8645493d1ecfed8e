"""Shared by the glue tests: the settings in positional form, a run without the extension."""

from dataclasses import replace

from webui_standin import harness

from lib_latentfix.settings import DEFAULTS
from support.positional import to_positional

ON = replace(DEFAULTS, enabled=True)


def args(**changes):
    """Positional script args (ui() order) for the defaults with ``changes``, enabled."""
    return to_positional(replace(ON, **changes))


def run_without_extension(flavour="a1111", **kw):
    host = harness.make_host(flavour, "sdxl")
    return host.txt2img(**kw)


def our_callbacks():
    """The names of this extension's registered callbacks, per category."""
    import modules.script_callbacks as sc

    return {cat: [e.name for e in entries if "latentfix" in e.name] for cat, entries in sc.callback_map.items()}


def wrap_our_callbacks(wrap):
    """Replace each of LatentFix's CFG callbacks by ``wrap(inner, category)`` (a function of ``params``)."""
    import modules.script_callbacks as sc

    for category in ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg"):
        for entry in sc.callback_map["callbacks_" + category]:
            if "latentfix" in entry.name:
                entry.callback = wrap(entry.callback, category)
