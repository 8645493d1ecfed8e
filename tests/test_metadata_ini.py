"""metadata.ini, read the way AUTOMATIC1111 1.10 (and Forge, reForge) read it: where LatentFix's after-CFG callback
runs next to other extensions'.

The rules, restated from A modules/extensions.py:40-102 and script_callbacks.py:127-191 (same in F and R):
the extension's canonical name is its folder name, lower-cased ([Extension] Name is read, then overwritten); a
callback is named "<canonical>/<script file>/<category>[/<name>]"; a section "[callbacks/<callback name>]" whose
name does not start with the canonical name is refused with an error; Before/After list callback names (commas or
blanks); only names of registered callbacks count; the result is a depth-first topological sort over the callbacks
in registration order, each after the ones it must follow.
"""

import configparser
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = "sd-webui-latentfix"  # the folder the README clones into (extensions/sd-webui-latentfix)
OURS = f"{FOLDER}/latentfix.py/cfg_after_cfg/latentfix"  # scripts/latentfix.py registers it with name="latentfix"
DIFFUSION_CG = "sd-webui-diffusion-cg/diffusion_cg.py/cfg_after_cfg"  # Haoming02/sd-webui-diffusion-cg, no name


def _config():
    config = configparser.ConfigParser()
    assert config.read(os.path.join(REPO, "metadata.ini")), "metadata.ini is missing"
    return config


def _names(text):
    return [item for item in re.split(r"[,\s]+", text.strip()) if item]


def _order_instructions(config, canonical):
    refused, found = [], {}
    for section in config.sections():
        if not section.startswith("callbacks/"):
            continue
        name = section[len("callbacks/"):]
        if not name.startswith(canonical):
            refused.append(section)
            continue
        found[name] = (_names(config.get(section, "Before", fallback="")),
                       _names(config.get(section, "After", fallback="")))
    return found, refused


def _sorted(registered, instructions):
    """The callbacks in the order the WebUI calls them."""
    present = set(registered)
    needs = {name: [] for name in registered}
    for name in registered:
        before, after = instructions.get(name, ([], []))
        needs[name] += [other for other in after if other in present]
        for other in before:
            if other in present:
                needs[other].append(name)
    done, out = set(), []

    def visit(name):
        done.add(name)
        for other in needs[name]:
            if other not in done:
                visit(other)
        out.append(name)

    for name in registered:
        if name not in done:
            visit(name)
    return out


def test_metadata_ini_names_the_extension_and_is_accepted_for_the_readme_folder():
    config = _config()
    assert config.get("Extension", "Name") == FOLDER
    instructions, refused = _order_instructions(config, FOLDER)
    assert refused == []  # no "referencing the wrong extension" error
    assert OURS in instructions


def test_latentfix_runs_after_diffusion_cg_whichever_registers_first():
    """Both act in on_cfg_after_cfg; without an instruction the folder names decide (diffusion-cg sorts first, a
    folder named otherwise may not): the instruction puts LatentFix after it either way."""
    instructions, _ = _order_instructions(_config(), FOLDER)
    for registered in ([OURS, DIFFUSION_CG], [DIFFUSION_CG, OURS], [OURS, "other/x.py/cfg_after_cfg", DIFFUSION_CG]):
        order = _sorted(registered, instructions)
        assert order.index(OURS) > order.index(DIFFUSION_CG), registered


def test_the_instruction_names_the_callback_scripts_latentfix_registers():
    """The section's name is what A1111 calls LatentFix's after-CFG callback: the script file and the name it
    passes when it registers (a renamed file or name would silently drop the ordering)."""
    with open(os.path.join(REPO, "scripts", "latentfix.py"), encoding="utf-8") as f:
        source = f.read()
    assert 'script_callbacks.on_cfg_after_cfg(callbacks.on_cfg_after_cfg, name="latentfix")' in source
