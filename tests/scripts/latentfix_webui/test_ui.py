"""The accordion: controls from the settings table, paste, Send to img2img."""

from dataclasses import replace


from lib_latentfix.arguments import to_positional
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
