"""The accordion: controls from the settings table, paste, Send to img2img."""

from dataclasses import replace


from support.positional import to_positional
from support.glue import our_callbacks, ON


def test_infotext_pastes_back_every_control(a1111):
    from modules import infotext_utils

    chosen = replace(ON, preset="Custom", clamp_adaptive=False, clamp_threshold=3.0, center_channels=(1, 2),
                     maximize_boundary=3.25, apply_in_hires=False)
    _, processed = a1111.txt2img(to_positional(chosen), steps=12, seed=1)
    script = a1111.extension.script("txt2img")
    pasted = infotext_utils.paste_infotext(script.infotext_fields, processed.infotexts[0])
    assert pasted == to_positional(chosen)


def test_paste_without_our_keys_turns_the_extension_off(a1111):
    from modules import infotext_utils

    script = a1111.extension.script("txt2img")
    pasted = infotext_utils.paste_infotext(script.infotext_fields, "a cat\nSteps: 20, Sampler: Euler, Seed: 1")
    assert pasted[0] is False
    assert all(v == "unchanged" for v in pasted[1:])


def test_ui_has_no_side_effects_when_called_again(a1111):
    import gradio as gr

    before = our_callbacks()
    script = a1111.extension.script("txt2img")
    with gr.Blocks():  # the API builds the UI again to read defaults (api/api.py:326-332)
        components = script.ui(False)
    assert our_callbacks() == before
    assert [c.elem_id for c in components] == [c.elem_id for c in script.controls]  # stable ids
    assert components[0].elem_id == "script_txt2img_latentfix_enabled-checkbox"  # InputAccordion: <id>-checkbox


def test_every_control_is_laid_out_exactly_once_from_the_table(a1111):
    """The UI is built from the settings table: each field is one control, and the table's sections place it."""
    from lib_latentfix.settings import FIELDS, section_fields

    placed = [f.name for section in ("main", "clamp", "center", "maximize", "advanced") for f in section_fields(section)]
    assert sorted(placed) == sorted(f.name for f in FIELDS)
    script = a1111.extension.script("txt2img")
    assert [c.elem_id for c in script.controls[1:]] == [script.elem_id(f.name) for f in FIELDS[1:]]


def test_send_to_img2img_carries_every_control(a1111):
    """Replays A1111's "Send to img2img" wiring (infotext_utils.py:169-173): source and target fields are picked by
    `name in paste_field_names` in each tab's paste fields, and must line up one to one."""
    source = a1111.extension.script("txt2img")
    target = a1111.extension.script("img2img")
    names = source.paste_field_names
    inputs = [component for component, name in source.infotext_fields if name in names]
    outputs = [component for component, name in target.infotext_fields if name in names]
    assert len(inputs) == len(outputs) == len(source.controls)
    for a, b in zip(inputs, outputs):
        assert a.elem_id.replace("txt2img", "img2img") == b.elem_id


def _fire(demo, state, changed):
    """What the page does after values were set by an event's outputs (a paste, a preset): each changed component
    fires its .change listeners (never .input, which only a user's own edit fires), whose outputs may change more.
    ``state`` maps block id -> value and is updated in place."""
    pending = list(changed)
    for _ in range(1000):
        if not pending:
            return
        target = pending.pop(0)
        for dep, block_fn in zip(demo.dependencies, demo.fns):
            if dep["trigger"] != "change" or target not in dep["targets"]:
                continue
            out = block_fn.fn(*[state[i] for i in dep["inputs"]])
            out = list(out) if len(dep["outputs"]) > 1 else [out]
            for i, value in zip(dep["outputs"], out):
                if isinstance(value, dict):
                    if "value" not in value:
                        continue
                    value = value["value"]
                if state.get(i) != value:
                    state[i] = value
                    pending.append(i)
    raise AssertionError("change events do not settle")


def test_the_summary_line_follows_a_paste(a1111):
    """PNG Info -> Send to txt2img sets every control from the infotext; the line under Preset/Strength then
    describes the pasted controls, not the ones before (here: an 8-step image on which the late window, and so the
    maximize, never ran: its infotext says maximize off)."""
    import gradio as gr
    from modules import infotext_utils

    from lib_latentfix import arguments as lf_arguments
    from lib_latentfix import settings as lf_settings

    _, processed = a1111.txt2img(to_positional(ON), steps=8, seed=1, sampler="Euler a")
    script = a1111.extension.script("txt2img")
    with gr.Blocks() as demo:
        controls = script.ui(False)
    summary = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == script.elem_id("summary"))
    state = {i: getattr(b, "value", None) for i, b in demo.blocks.items()}
    assert "stretches the range to ±4" in state[summary._id]
    pasted = infotext_utils.paste_infotext(script.infotext_fields, processed.infotexts[0])
    assert "LatentFix maximize" not in processed.infotexts[0]  # the infotext says what ran: no maximize
    changed = []
    for control, value in zip(controls, pasted):
        if value != "unchanged" and state[control._id] != value:
            state[control._id] = value
            changed.append(control._id)
    _fire(demo, state, changed)
    shown = lf_arguments.from_named(dict(zip((f.name for f in lf_settings.FIELDS), pasted)))
    assert not shown.maximize_enabled
    assert state[summary._id] == lf_settings.describe(shown)
    assert "stretches" not in state[summary._id]


def test_a_crafted_key_in_the_infotext_cannot_forge_what_is_pasted(a1111):
    """A key the infotext can hold (any name, any text) never reaches the decode cache: every reader still pastes
    what the LatentFix keys say (here: the version alone, so the defaults, turned on)."""
    from modules import infotext_utils
    from lib_latentfix.infotext import decode

    expected = to_positional(decode({"LatentFix": "0.1.0"})[0])
    script = a1111.extension.script("txt2img")
    readers = [reader for _, reader in script.infotext_fields]
    for value in ("x", "", "1"):
        text = f"a cat\nSteps: 20, Seed: 1, LatentFix: 0.1.0, __latentfix_decoded__: {value}"
        params = infotext_utils.parse_generation_parameters(text)
        assert params["__latentfix_decoded__"] == value
        assert [read(params) for read in readers] == expected  # (each reader on its own raised before)
        assert infotext_utils.paste_infotext(script.infotext_fields, text) == expected
