"""Run by test_forge_gradio4.py under a Python that has gradio 4.40 (Forge's pin): builds the extension's ui() on
the Forge stand-in with Forge's InputAccordion inside a real gradio 4.40 Blocks, and prints what a Forge user
would get, as one JSON line: the correction point's choices, the section headers, what gradio 4.40 sends to the
page when a header changes (through its own output processing), and what a pasted 'before guidance' becomes.

    <python with gradio 4.40> tests/scripts/latentfix_webui/forge_gradio4_probe.py
"""

import asyncio
import json
import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO = os.path.dirname(TESTS)
sys.path[:0] = [TESTS, REPO]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from webui_standin import harness  # noqa: E402
from modules import ui_components  # noqa: E402

ui_components.InputAccordion = ui_components.forge_input_accordion  # Forge's: a function (F ui_components.py:169)


def main() -> dict:
    host = harness.make_host("forge", "sdxl")
    ext = host.load_extension(build_ui=False)
    script = ext.script("txt2img")
    with gr.Blocks() as demo:
        controls = script.ui(False)
    from latentfix_webui import ui  # the copy the script imported

    by_id = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    radio = by_id[script.elem_id("correction_point")]
    headers = {section: by_id[script.elem_id(f"section_{section}")].label for section in ("clamp", "center", "maximize")}

    # switching the maximize section off: the function wired to its header, run through gradio's own processing
    header = by_id[script.elem_id("section_maximize")]
    wired = [fn for fn in demo.fns.values() if [o._id for o in fn.outputs] == [header._id]]
    enabled = by_id[script.elem_id("maximize_enabled")]
    fn = next(f for f in wired if any(target[0] == enabled._id for target in f.targets))  # (block id, event)
    update = fn.fn(False, 1.0, 1.0)
    sent = asyncio.run(demo.postprocess_data(fn, update, None))

    pasted = ui.PASTE_READERS["correction_point"]({"LatentFix": "0.1.0", "LatentFix options": "point=before"})
    return {
        "gradio": gr.__version__,
        "enabled_class": type(controls[0]).__name__,
        "controls": len(controls),
        "correction_point_choices": [list(c) if isinstance(c, (list, tuple)) else c for c in radio.choices],
        "headers": headers,
        "header_wired": len(wired),
        "sent_on_switch_off": sent,
        "pasted_before": pasted,
        "pasted_accepted": radio.preprocess(pasted),
    }


if __name__ == "__main__":
    print("PROBE " + json.dumps(main(), default=str))
