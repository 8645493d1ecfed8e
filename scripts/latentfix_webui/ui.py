"""The accordion: one control per settings field, laid out as the settings table declares, presets wired to the
filter controls, and the infotext paste readers. ``ui()`` may be called more than once (the API builds it in a
throwaway Blocks to read defaults), so building has no side effect beyond the components.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any, Callable

import gradio as gr

from modules.ui_components import InputAccordion  # Forge: a function, not a class (never isinstance it)

from lib_latentfix import arguments as lf_arguments
from lib_latentfix import infotext as lf_infotext
from lib_latentfix import settings as lf_settings

from . import host

TITLE = "LatentFix"


def _component(field: lf_settings.Field, value: Any, elem_id: str, forge_like: bool):
    if field.kind == "bool":
        return gr.Checkbox(value=value, label=field.label, elem_id=elem_id)
    if field.kind == "float":
        return gr.Slider(minimum=field.minimum, maximum=field.maximum, step=field.step, value=value,
                         label=field.label, elem_id=elem_id)
    shown = lf_arguments.ui_value(field.name, value)
    if field.kind == "channels":
        return gr.CheckboxGroup(choices=list(lf_settings.CHANNEL_LABELS), label=field.label, elem_id=elem_id,
                                value=shown)
    choices = [field.choice_label(c) for c in field.choices]
    if field.name == "correction_point":
        if forge_like:  # Forge and reForge never call the 'before guidance' hook: offer only what works here
            choices = [field.choice_label(c) for c in field.choices if c != lf_settings.BEFORE_CFG]
            if shown not in choices:
                shown = field.choice_label(lf_settings.AFTER_CFG)
        return gr.Radio(choices=choices, value=shown, label=field.label, elem_id=elem_id)
    return gr.Dropdown(choices=choices, value=shown, label=field.label, elem_id=elem_id)


def _rows(section: str):
    """The section's fields grouped by row; within a row, by column (None: no columns)."""
    for _, row in groupby(lf_settings.section_fields(section), key=lambda f: f.row):
        yield [(column, list(fields)) for column, fields in groupby(row, key=lambda f: f.column)]


def build(elem_id: Callable[[str], str], defaults: lf_settings.Settings, forge_like: bool, disabled: bool) -> dict[str, Any]:
    """Create the accordion; return the components by field name (plus "summary", the preset's description, and
    "section_<name>", each filter section's folded panel)."""
    made: dict[str, Any] = {}

    def make(field: lf_settings.Field):
        made[field.name] = _component(field, getattr(defaults, field.name), elem_id(field.name), forge_like)

    label = f"{TITLE}: SDXL latent correction"
    if disabled:
        label += " (off for this launch: --latentfix-disable)"
    with InputAccordion(defaults.enabled, label=label, elem_id=elem_id("enabled")) as enabled:
        made["enabled"] = enabled
        with gr.Column(variant="compact"):  # the WebUI's compact spacing, as in its settings column
            with gr.Row():  # the common choice up front
                make(lf_settings.FIELD_BY_NAME["preset"])
                make(lf_settings.FIELD_BY_NAME["strength"])
            made["summary"] = gr.Markdown(lf_settings.describe(defaults), elem_id=elem_id("summary"))
            with gr.Group(elem_id=elem_id("sections")):  # the details, folded and stacked without gaps
                for section in lf_settings.FILTER_SECTIONS:  # each header says whether it is on, and how strong
                    header = lf_settings.section_header(defaults, section)
                    with gr.Accordion(header, open=False, elem_id=elem_id(f"section_{section}")) as made[f"section_{section}"]:
                        _lay_out(section, make)
                with gr.Accordion("Advanced", open=False, elem_id=elem_id("advanced")):
                    _lay_out("advanced", make)
    _wire_presets(made)
    _wire_headers(made)
    return made


def _lay_out(section: str, make: Callable[[lf_settings.Field], None]) -> None:
    for row in _rows(section):
        with gr.Row():
            for column, fields in row:
                if column is None:
                    for field in fields:
                        make(field)
                    continue
                with gr.Column(min_width=160):
                    for field in fields:
                        make(field)


def _preset_values(name: str, strength: Any) -> list[Any]:
    """Choosing a preset: every filter control takes the preset's value; the summary says what it does."""
    if name not in lf_settings.PRESETS:
        return [gr.update() for _ in lf_settings.PRESET_FIELDS] + [gr.update()]
    chosen = lf_settings.apply_preset(lf_settings.DEFAULTS, name)
    values = [gr.update(value=lf_arguments.ui_value(n, getattr(chosen, n))) for n in lf_settings.PRESET_FIELDS]
    return values + [gr.update(value=_summary(chosen, strength))]


def _summary(chosen: lf_settings.Settings, strength: Any) -> str:
    try:
        return lf_settings.describe(lf_arguments.with_overrides(chosen, {"strength": strength}))
    except lf_settings.SettingsError:
        return lf_settings.describe(chosen)


def _preset_of(*filters: Any) -> str:
    """Editing a filter control by hand: which preset (or Custom) the values are."""
    try:
        chosen = lf_arguments.from_named(dict(zip(lf_settings.PRESET_FIELDS, filters)))
    except lf_settings.SettingsError:
        return lf_settings.CUSTOM
    return lf_settings.matching_preset(chosen)


def _summary_of(*values: Any) -> Any:
    """The line under Preset/Strength, from every control it describes (the filter controls and the strength)."""
    *filters, strength = values
    try:
        chosen = lf_arguments.from_named(dict(zip(lf_settings.PRESET_FIELDS, filters)))
    except lf_settings.SettingsError:  # a value being typed: keep the line until it is a number again
        return gr.update()
    return _summary(chosen, strength)


def _wire_presets(made: dict[str, Any]) -> None:
    """A preset chosen sets every filter control; a filter control edited by hand makes the preset match (.input: the
    user's own edits only). The summary follows every change of what it describes, whatever made it — a hand edit,
    a preset, or a paste (PNG Info, Send to txt2img), which sets the values and fires only their .change."""
    controls = [made[name] for name in lf_settings.PRESET_FIELDS]
    made["preset"].input(fn=_preset_values, inputs=[made["preset"], made["strength"]],
                         outputs=controls + [made["summary"]], show_progress=False)
    for control in controls:
        control.input(fn=_preset_of, inputs=controls, outputs=[made["preset"]], show_progress=False)
    described = controls + [made["strength"]]
    for control in described:
        control.change(fn=_summary_of, inputs=described, outputs=[made["summary"]], show_progress=False)


def _header_of(section: str):
    """A section's header from its enable box, its strength and the overall strength (as the user sets them)."""

    def header(enabled: Any, strength: Any, overall: Any) -> Any:
        try:
            chosen = lf_arguments.with_overrides(lf_settings.DEFAULTS, {
                f"{section}_enabled": enabled, f"{section}_strength": strength, "strength": overall})
        except lf_settings.SettingsError:  # a value being typed: keep the header until it is a number again
            return gr.update()
        return gr.update(label=lf_settings.section_header(chosen, section))

    return header


def _wire_headers(made: dict[str, Any]) -> None:
    """Every change of a section's enable box or strength, or of the overall strength (by hand, a preset or a
    paste), updates that section's header."""
    for section in lf_settings.FILTER_SECTIONS:
        inputs = [made[f"{section}_enabled"], made[f"{section}_strength"], made["strength"]]
        for control in inputs:
            control.change(fn=_header_of(section), inputs=inputs, outputs=[made[f"section_{section}"]],
                           show_progress=False)


def _paste_reader(name: str):
    """Infotext paste: the control's value from the LatentFix keys; the enable box turns off without them."""

    def read(params: dict) -> Any:
        chosen = lf_infotext.decode_cached(params, host.log)
        if chosen is None:
            return False if name == "enabled" else None
        value = getattr(chosen, name)
        if name == "correction_point" and value == lf_settings.BEFORE_CFG and host.forge_like():
            host.log("the pasted infotext asks for 'before guidance', which this WebUI never calls; pasted as "
                     "'after guidance'")
            value = lf_settings.AFTER_CFG
        return lf_arguments.ui_value(name, value)

    return read


# One reader per field, shared by both tabs: A1111's "Send to img2img/inpaint" copies the controls whose paste key
# is in paste_field_names, matched by equality in each tab's fields (infotext_utils.py:169-173).
PASTE_READERS = {f.name: _paste_reader(f.name) for f in lf_settings.FIELDS}
