"""Make the README's ComfyUI example workflow and screenshot from a running ComfyUI (headless Chromium).

    LATENTFIX_COMFYUI_URL=http://127.0.0.1:8188 python tests/integration_comfyui/make_example.py

Builds the example graph through the frontend's own ``app.loadApiJson``, lays it out, runs it once (so the latent
view shows its images), saves the frontend's workflow (``app.graph.serialize()``) to
``latentfix_comfy/examples/latentfix_sdxl.json`` and the API form to ``latentfix_comfy/examples/latentfix_sdxl_api.json``,
and the screenshot to ``tests/readme/comfyui_nodes.png``.
"""

from __future__ import annotations

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from latentfix_comfyui_client import URL_ENV, ComfyUI, simple_settings, txt2img  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
# node id -> (x, y, width); heights are the frontend's own
LAYOUT = {"1": (20, 60, 330), "2": (380, 300, 330), "3": (380, 540, 330), "4": (20, 300, 330), "5": (380, 60, 330),
          "6": (740, 60, 300), "7": (1070, 60, 200), "8": (1070, 160, 330), "9": (740, 400, 300),
          "10": (1070, 560, 560), "11": (1430, 160, 300)}
TITLES = {"10": "Preview: channels", "11": "Preview: RGB approximation"}


def example_prompt(comfy: ComfyUI) -> dict:
    prompt = txt2img(comfy.checkpoint(), latentfix=simple_settings(comfy), view=True, prefix="latentfix")
    prompt["4"]["inputs"].update(width=1024, height=1024)
    prompt["6"]["inputs"].update(steps=25, seed=42)
    for node in ("10", "11"):  # the views are for looking at, not for saving
        prompt[node] = {"class_type": "PreviewImage", "inputs": {"images": prompt[node]["inputs"]["images"]}}
    return prompt


def main() -> int:
    from playwright.sync_api import sync_playwright

    url = os.environ.get(URL_ENV, "http://127.0.0.1:8188")
    comfy = ComfyUI(url)
    api = example_prompt(comfy)
    examples = os.path.join(REPO, "latentfix_comfy", "examples")
    os.makedirs(examples, exist_ok=True)
    portable = json.loads(json.dumps(api).replace(comfy.checkpoint(), "sd_xl_base_1.0.safetensors"))
    with open(os.path.join(examples, "latentfix_sdxl_api.json"), "w") as f:
        json.dump(portable, f, indent=2)
        f.write("\n")
    shot = dict(api)
    shot["4"] = dict(api["4"], inputs=dict(api["4"]["inputs"], width=256, height=256))  # CPU host: small and fast
    shot["6"] = dict(api["6"], inputs=dict(api["6"]["inputs"], steps=12))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1860, "height": 960})
        page.goto(url, wait_until="networkidle", timeout=120000)
        page.wait_for_function("window.app && window.app.graph", timeout=120000)
        page.keyboard.press("Escape")  # the Templates dialog of a first visit
        time.sleep(1)
        page.evaluate("""async ([api, layout, titles]) => {
            await window.app.loadApiJson(api, "latentfix_sdxl.json");
            for (const node of window.app.graph._nodes) {
                const spot = layout[String(node.id)];
                if (spot) { node.pos = [spot[0], spot[1]]; node.size = [spot[2], node.computeSize()[1]]; }
                if (titles[String(node.id)]) node.title = titles[String(node.id)];
            }
            for (const node of window.app.graph._nodes) {
                for (const w of node.widgets || []) if (w.name === "control_after_generate") w.value = "fixed";
            }
            try { await window.app.extensionManager.setting.set("Comfy.Minimap.Visible", false); } catch (e) {}
            window.app.canvas.ds.offset = [40, 20]; window.app.canvas.ds.scale = 1.0;
            window.app.graph.setDirtyCanvas(true, true);
        }""", [shot, LAYOUT, TITLES])
        workflow = page.evaluate("() => window.app.graph.serialize()")
        page.evaluate("() => window.app.queuePrompt(0, 1)")
        page.wait_for_function("""() => { const n = window.app.graph.getNodeById(11);
            return n && n.imgs && n.imgs.length > 0; }""", timeout=600000)
        time.sleep(2)
        page.screenshot(path=os.path.join(REPO, "tests", "readme", "comfyui_nodes.png"))
        browser.close()
    for node in workflow["nodes"]:  # the example: full size, the usual checkpoint name
        if node["type"] == "EmptyLatentImage":
            node["widgets_values"][:2] = [1024, 1024]
        if node["type"] == "KSampler":
            node["widgets_values"][1:3] = ["fixed", 25]
        if node["type"] == "CheckpointLoaderSimple":
            node["widgets_values"][0] = "sd_xl_base_1.0.safetensors"
    with open(os.path.join(examples, "latentfix_sdxl.json"), "w") as f:
        json.dump(workflow, f, indent=2)
        f.write("\n")
    print("wrote", examples, "and tests/readme/comfyui_nodes.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
