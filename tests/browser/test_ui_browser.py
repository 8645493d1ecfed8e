"""The extension's UI in a real browser: gradio 3.41 (A1111's pin) served locally, driven by headless Chromium.

The stand-in host imports ``scripts/latentfix.py`` the way A1111 does and its ``ui()`` runs inside a real
``gradio.Blocks``; a "Generate" button sends every component the script returned, in ``ui()`` order, to a
recorder (what the script would receive as ``*args``). The page carries ``javascript/latentfix.js`` after
``webui_shim.js``, a test-only reduction of A1111's script.js / inputAccordion.js / hints.js (the accordion's
open state drives the hidden checkbox, as in the WebUI).

Needs the ``playwright`` Python package (its bundled driver only: no ``playwright install``) and Debian's
Chromium at /usr/bin/chromium; ``.ci/browser-deps.sh`` installs both. Skipped with the reason when missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--no-proxy-server"]
HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(REPO_ROOT, "tests", "artifacts")
README_PICTURES = os.path.join(REPO_ROOT, "tests", "readme")
# the README's pictures of the panel: folded (as a user first sees it) and with one section opened
SCREENSHOTS = {"folded": "ui_accordion.png", "opened": "ui_section_center.png"}
# LATENTFIX_UPDATE_README=1 also writes them to tests/readme (what the README shows); otherwise tests/artifacts only
UPDATE_README = os.environ.get("LATENTFIX_UPDATE_README") == "1"
VIEWPORT = {"width": 1400, "height": 1000}
FOLDED_MAX_HEIGHT = 350  # px, the LatentFix accordion open (Enable ticked) with its sections folded
TIMEOUT_MS = 15_000
# the rules of A1111's style.css that touch these controls, so the screenshot looks as in the WebUI
# (A1111 1.10 style.css:22-70, 151, 200-210, with the "gradio-<kind>" classes it gives every component, added in
# the fixture; not its checkbox margin, which without the rest of its stylesheet leaves grey bands in the groups)
WEBUI_CSS = """
div.gradio-group, div.styler { border-width: 0 !important; background: none; }
.gradio-slider input[type="number"] { width: 6em; }
div.gradio-container, .block.gradio-textbox, div.gradio-group, div.gradio-dropdown { overflow: visible !important; }
input[type="checkbox"].input-accordion-checkbox { vertical-align: sub; margin-right: 0.5em; }
.block.padded:not(.gradio-accordion) { padding: 0 !important; }
.compact { background: transparent !important; padding: 0 !important; }
div.form { border-width: 0; box-shadow: none; background: transparent; overflow: visible; gap: 0.5em; }
.block.gradio-dropdown, .block.gradio-slider, .block.gradio-checkbox, .block.gradio-textbox, .block.gradio-radio,
.block.gradio-checkboxgroup { border-width: 0 !important; box-shadow: none !important; }
.gap.compact { padding: 0; gap: 0.2em 0; }
div.compact { gap: 1em; }
div.block.gradio-accordion { border: 1px solid var(--block-border-color) !important; border-radius: 8px !important;
    margin: 2px 0; padding: 8px 8px; }
"""

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

if sync_playwright is None:
    pytest.skip("playwright is not installed (pip install playwright; .ci/browser-deps.sh)", allow_module_level=True)
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/browser-deps.sh)", allow_module_level=True)
gr = pytest.importorskip("gradio", reason="gradio is not installed (tests/requirements.txt pins 3.41.2)")

from lib_latentfix import arguments as lf_arguments  # noqa: E402
from lib_latentfix import settings as lf_settings  # noqa: E402
from webui_standin import harness  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


class Served:
    """The served demo: its URL, the script instance and its ui() components per tab, what Generate received."""

    def __init__(self):
        self.url = ""
        self.scripts: dict = {}
        self.controls: dict = {}
        self.received: list[list] = []
        self.lock = threading.Lock()


def _paster(fields):
    def paste(text):
        from modules import infotext_utils

        values = infotext_utils.paste_infotext(fields, text)
        return [gr.update() if v == "unchanged" else gr.update(value=v) for v in values]

    return paste


@pytest.fixture(scope="module")
def served():
    host = harness.make_host("a1111", "sdxl")
    ext = host.load_extension(build_ui=False)  # imported like A1111 (load_script_file); ui() runs below
    state = Served()

    def generate(*values):
        """Stands in for the WebUI's generate: records the script's args and checks that they parse."""
        with state.lock:
            state.received.append(list(values))
            count = len(state.received)
        try:
            parsed = lf_arguments.from_script_args(values)
        except lf_settings.SettingsError as error:
            return json.dumps({"count": count, "error": str(error)})
        return json.dumps({"count": count, "enabled": parsed.enabled, "preset": parsed.preset})

    with gr.Blocks(title="LatentFix browser test", analytics_enabled=False, css=WEBUI_CSS) as demo:
        with gr.Tabs(elem_id="tabs"):
            for tab, is_img2img in (("txt2img", False), ("img2img", True)):
                with gr.Tab(tab, id=f"tab_{tab}", elem_id=f"tab_{tab}"):
                    gr.Textbox(label="Prompt", elem_id=f"{tab}_prompt", lines=1)
                    # A1111's generation tab: settings and results side by side in a ResizeHandleRow
                    # (modules/ui.py:275-279, ui_components.py:23-32), so the panel is as wide as it is there
                    with gr.Row(equal_height=False, elem_classes=["resize-handle-row"]):
                        with gr.Column(variant="compact", elem_id=f"{tab}_settings"):
                            script = ext.scripts[tab][0]
                            controls = script.ui(is_img2img)
                            state.scripts[tab], state.controls[tab] = script, controls
                        with gr.Column(elem_id=f"{tab}_results"):
                            if tab == "txt2img":
                                button = gr.Button("Generate", elem_id="txt2img_generate", variant="primary")
                                received = gr.Textbox(label="Received", elem_id="lf_received")
                                button.click(fn=generate, inputs=controls, outputs=[received])
                                # A1111's paste (PNG Info -> Send to txt2img; infotext_utils.connect_paste): one
                                # event whose outputs set every pasted control (a key not there: unchanged)
                                infotext = gr.Textbox(label="Infotext", elem_id="lf_infotext")
                                paste = gr.Button("Paste", elem_id="lf_paste")
                                fields = list(script.infotext_fields)
                                paste.click(fn=_paster(fields), inputs=[infotext], outputs=[c for c, _ in fields])
        for block in demo.blocks.values():  # A1111 tags every component "gradio-<kind>" (gradio_extensions.py)
            classes = block.elem_classes or []
            block.elem_classes = [f"gradio-{block.get_block_name()}", *([classes] if isinstance(classes, str) else classes)]

    # the WebUI adds its page scripts to <head> by wrapping gradio's TemplateResponse
    # (modules/ui_gradio_extensions.py reload_javascript); the same here, inline
    head = "".join(f"<script type=\"text/javascript\">{_read(path)}</script>\n" for path in (
        os.path.join(HERE, "webui_shim.js"), os.path.join(REPO_ROOT, "javascript", "latentfix.js")))
    original = gr.routes.templates.TemplateResponse

    def template_response(*args, **kwargs):
        if args and isinstance(args[0], str):  # gradio 3.41 calls (name, context); Starlette >= 1.0 wants request first
            name, context, *rest = args
            args = (context["request"], name, context, *rest)
        res = original(*args, **kwargs)
        res.body = res.body.replace(b"</head>", f"{head}</head>".encode("utf8"))
        res.init_headers()
        return res

    gr.routes.templates.TemplateResponse = template_response
    port = _free_port()
    try:
        demo.queue()
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, show_error=True,
                    quiet=True, inbrowser=False)
        state.url = f"http://127.0.0.1:{port}/"
        yield state
    finally:
        demo.close()
        gr.routes.templates.TemplateResponse = original


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _local_only(route):
    """Nothing leaves the machine (gradio's theme asks Google for fonts): other hosts are refused at once."""
    url = route.request.url
    if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
        route.continue_()
    else:
        route.abort()


def _blocked_request_noise(text: str) -> bool:
    """Console errors about the requests _local_only refused (the theme's Google fonts)."""
    return "Failed to load resource" in text or "fonts.googleapis.com" in text


def _hint_at_point(page, x: float, y: float):
    """The tooltip the browser would show there: the title of the element under the point or its nearest ancestor."""
    return page.evaluate("""([x, y]) => {
        let e = document.elementFromPoint(x, y);
        while (e && !(e.title)) e = e.parentElement;
        return e ? e.title : null;
    }""", [x, y])


def _ui_id(name: str, tab: str = "txt2img") -> str:
    return f"script_{tab}_latentfix_{name}"


def _is_open(page, element_id: str) -> bool:
    return page.evaluate("id => document.querySelector('#' + id + ' .label-wrap').classList.contains('open')",
                         element_id)


def _open(page, element_id: str) -> None:
    page.locator(f"#{element_id} .label-wrap").first.click()
    page.wait_for_function("id => document.querySelector('#' + id + ' .label-wrap').classList.contains('open')",
                           arg=element_id)


def _section_header(page, section: str) -> str:
    return page.locator(f"#{_ui_id('section_' + section)} .label-wrap > span").first.inner_text().strip()


def _wait_header(page, section: str, text: str) -> None:
    try:
        page.wait_for_function("([id, text]) => document.querySelector('#' + id + ' .label-wrap > span').innerText.trim() "
                               "== text", arg=[_ui_id("section_" + section), text], timeout=5000)
    except Exception:
        raise AssertionError(f"{section} header is {_section_header(page, section)!r}, expected {text!r}") from None


def _set_number(page, name: str, value: str) -> None:
    """Type into a slider's number box and leave it, as a user does (gradio sends the value on change)."""
    box = page.locator(f"#{_ui_id(name)} input[type=number]")
    box.fill(value)
    box.press("Enter")


def _screenshot(element, which: str) -> None:
    """The README's pictures, taken from the real ui(): always to tests/artifacts, with LATENTFIX_UPDATE_README=1
    also to tests/readme."""
    folders = [ARTIFACTS] + ([README_PICTURES] if UPDATE_README else [])
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
        element.screenshot(path=os.path.join(folder, SCREENSHOTS[which]), animations="disabled")


def test_ui_in_browser(served, browser):
    hints = {f.name: f.hint for f in lf_settings.FIELDS}
    script = served.scripts["txt2img"]
    assert script.elem_id("clamp_strength") == _ui_id("clamp_strength")  # the ids latentfix.js looks up

    context = browser.new_context(viewport=VIEWPORT, color_scheme="light", device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}")
            if msg.type == "error" and not _blocked_request_noise(msg.text) else None)
    page.route("**/*", _local_only)
    try:
        page.goto(served.url, wait_until="domcontentloaded")
        accordion = page.locator(f"#{_ui_id('enabled')}")
        header = accordion.locator(".label-wrap").first
        header.wait_for(state="visible")
        page.wait_for_selector(f"#{_ui_id('enabled')}-visible-checkbox", state="attached")  # the shim ran
        assert "open" not in (header.get_attribute("class") or "")  # Enable defaults to off: closed

        # open the accordion (in the WebUI this is what ticks Enable): the common choice up front, the filter
        # sections and Advanced folded, each section's header saying whether it is on and how strong
        header.click()
        page.wait_for_function("id => document.querySelector('#' + id + ' .label-wrap').classList.contains('open')",
                               arg=_ui_id("enabled"))
        page.locator(f"#{_ui_id('strength')}").wait_for(state="visible")
        enabled = dataclasses.replace(lf_settings.DEFAULTS, enabled=True)
        for section in lf_settings.FILTER_SECTIONS:
            assert _section_header(page, section) == lf_settings.section_header(enabled, section)
            assert not _is_open(page, _ui_id(f"section_{section}"))
        for field in lf_settings.FIELDS:  # folded: only the common choice shows
            visible = page.locator(f"#{_ui_id(field.name)}").is_visible()
            assert visible == (field.name in ("enabled", "preset", "strength")), field.name
        page.mouse.move(0, 0)
        page.wait_for_timeout(300)
        height = accordion.bounding_box()["height"]
        print(f"LatentFix accordion, open with details folded, at {VIEWPORT['width']} px: {height:.0f} px tall")
        _screenshot(accordion, "folded")
        assert height <= FOLDED_MAX_HEIGHT, f"{height:.0f} px"

        # one section opened: its controls, as today (the README's second picture)
        _open(page, _ui_id("section_center"))
        page.locator(f"#{_ui_id('center_late_t_max')}").wait_for(state="visible")
        page.mouse.move(0, 0)
        page.wait_for_timeout(300)
        _screenshot(accordion, "opened")

        # then every other section and Advanced: every control is there and shows its hint, as before
        for section in ("clamp", "maximize", "advanced"):
            _open(page, _ui_id(section if section == "advanced" else f"section_{section}"))
        page.locator(f"#{_ui_id('diagnostics')}").wait_for(state="visible")
        page.locator(f"#{_ui_id('maximize_t_max')}").wait_for(state="visible")

        # hints: every control of both tabs has its FIELDS hint as title (after latentfix.js and the hints.js
        # stand-in have run), and hovering shows it, even over labels another extension has a hint for
        page.wait_for_timeout(1300)
        for tab in ("txt2img", "img2img"):
            titles = page.evaluate("""([ids]) => ids.map(([name, id]) => {
                const e = document.getElementById(id);
                if (!e) return [name, null];
                const target = name === 'enabled' ? e.querySelector('.label-wrap') : e;
                return [name, target ? target.title : null];
            })""", [[(f.name, _ui_id(f.name, tab)) for f in lf_settings.FIELDS]])
            assert dict(titles) == hints, f"{tab}: titles differ from FIELDS hints"
        for field in lf_settings.FIELDS:
            block = page.locator(f"#{_ui_id(field.name)}")
            target = block.locator(".label-wrap span").first if field.name == "enabled" else block
            target.scroll_into_view_if_needed()
            box = target.bounding_box()
            assert box, f"{field.name} is not visible"
            spots = [(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2), (box["x"] + 12, box["y"] + 12)]
            label = block.get_by_text(field.label, exact=True).first if field.name != "enabled" else None
            if label is not None and label.count():
                lb = label.bounding_box()
                spots.append((lb["x"] + lb["width"] / 2, lb["y"] + lb["height"] / 2))
            for x, y in spots:
                assert _hint_at_point(page, x, y) == field.hint, f"hover over {field.name} at {x:.0f},{y:.0f}"
        for section in lf_settings.FILTER_SECTIONS:  # a section's header: the hint of its enable box
            head = page.locator(f"#{_ui_id('section_' + section)} .label-wrap > span").first
            head.scroll_into_view_if_needed()
            box = head.bounding_box()
            assert _hint_at_point(page, box["x"] + box["width"] / 2, box["y"] + box["height"] / 2) == \
                hints[f"{section}_enabled"], section
        block = page.locator(f"#{_ui_id('center_strength')}")
        block.get_by_text("Center strength", exact=True).first.hover()
        assert page.evaluate("() => { const e = document.querySelector(':hover:not(:has(:hover))'); return e && e.title; }") \
            == hints["center_strength"]

        # the preset sets every filter control, and the headers follow (the sections stay open)
        page.locator(f"#{_ui_id('preset')} input").first.click()
        page.locator(f"#{_ui_id('preset')} li[data-value='Gentle']").click()
        for name in ("clamp_strength", "center_strength", "maximize_strength"):
            page.wait_for_function("id => document.querySelector('#' + id + ' input[type=number]').value == '0.5'",
                                   arg=_ui_id(name))
        assert page.locator(f"#{_ui_id('preset')} input").first.input_value() == "Gentle"
        gentle = lf_settings.apply_preset(enabled, "Gentle")
        for section in lf_settings.FILTER_SECTIONS:
            _wait_header(page, section, lf_settings.section_header(gentle, section))
            assert _is_open(page, _ui_id(f"section_{section}")), section

        # switching a section off, and the overall strength, show in the headers (then back as they were)
        page.locator(f"#{_ui_id('maximize_enabled')} input").uncheck()
        _wait_header(page, "maximize", "Maximize (range) \u2014 off")
        page.locator(f"#{_ui_id('maximize_enabled')} input").check()
        _wait_header(page, "maximize", lf_settings.section_header(gentle, "maximize"))
        _set_number(page, "strength", "0.8")
        _wait_header(page, "clamp", "Soft clamp \u2014 on, strength 0.5 \u00d7 0.8 overall")
        _set_number(page, "strength", "1")
        _wait_header(page, "clamp", lf_settings.section_header(gentle, "clamp"))

        # moving a slider makes it Custom
        _set_number(page, "maximize_boundary", "3.5")
        page.wait_for_function("id => document.querySelector('#' + id + ' input').value == 'Custom'",
                               arg=_ui_id("preset"))

        # Generate: what the script would receive
        page.locator("#txt2img_generate").click()
        page.wait_for_function("() => (document.querySelector('#lf_received textarea') || {}).value")
        reply = json.loads(page.locator("#lf_received textarea").input_value())
        assert reply == {"count": 1, "enabled": True, "preset": "Custom"}
        assert not errors, errors
    finally:
        context.close()

    (values,) = served.received
    assert len(values) == len(lf_settings.FIELDS) == len(served.controls["txt2img"])
    named = dict(zip((f.name for f in lf_settings.FIELDS), values))
    assert named["enabled"] is True
    assert named["preset"] == "Custom"
    assert named["maximize_boundary"] == pytest.approx(3.5)
    for name in ("clamp_strength", "center_strength", "maximize_strength"):
        assert named[name] == pytest.approx(0.5)
    expected = lf_settings.apply_preset(lf_settings.DEFAULTS, "Gentle")
    parsed = lf_arguments.from_script_args(values)
    assert parsed.enabled and parsed.preset == lf_settings.CUSTOM
    assert parsed.maximize_boundary == pytest.approx(3.5)
    assert parsed.center_channels == expected.center_channels and parsed.maximize_channels == expected.maximize_channels
    for field in lf_settings.FIELDS:
        if field.name not in ("enabled", "preset", "maximize_boundary"):
            assert getattr(parsed, field.name) == pytest.approx(getattr(expected, field.name)), field.name


def test_hints_script_is_harmless_without_the_ui(browser):
    """latentfix.js on pages without our elements (other tab unbuilt, another layout), with and without the
    WebUI's callbacks: no error; what is there gets its hint."""
    js = _read(os.path.join(REPO_ROOT, "javascript", "latentfix.js"))
    shim = _read(os.path.join(HERE, "webui_shim.js"))
    html = ("<html><head></head><body><gradio-app><div id='txt2img_prompt'></div>"
            "<div id='script_txt2img_latentfix_enabled'></div>"  # an accordion without its header
            "<div id='script_img2img_latentfix_preset'><span>Preset</span></div>"
            "</gradio-app></body></html>")
    context = browser.new_context()
    try:
        for prelude in ("", shim):
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.set_content(html)
            if prelude:
                page.add_script_tag(content=prelude)
            page.add_script_tag(content=js)
            page.evaluate("() => document.dispatchEvent(new Event('DOMContentLoaded'))")
            page.evaluate("() => document.querySelector('gradio-app').appendChild(document.createElement('div'))")  # UI update
            page.wait_for_function("() => document.querySelector('#script_img2img_latentfix_preset').title",
                                   timeout=5000)
            assert page.evaluate("() => document.querySelector('#script_img2img_latentfix_preset span').title") == \
                lf_settings.FIELD_BY_NAME["preset"].hint
            assert page.evaluate("() => document.querySelector('#script_txt2img_latentfix_enabled').title") == ""
            assert not errors, errors
            page.close()
    finally:
        context.close()


def test_a_paste_refreshes_the_summary_line(served, browser):
    """Pasting an infotext sets the controls through an event's outputs, which fires their change events only: the
    line under Preset/Strength then describes the pasted controls (here the maximize is off in the infotext)."""
    from modules.infotext_utils import quote

    from lib_latentfix import infotext as lf_infotext

    pasted = dataclasses.replace(lf_settings.DEFAULTS, enabled=True, maximize_enabled=False)
    items = lf_infotext.encode(pasted, "0.1.0")
    text = "a cat\nSteps: 8, Sampler: Euler a, " + ", ".join(f"{k}: {quote(v)}" for k, v in items.items())
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.route("**/*", _local_only)
    summary = f"#{_ui_id('summary')}"  # (gradio 3.41 gives the Markdown's block and its text the same id)

    def shown():
        return " ".join(page.locator(summary).first.inner_text().split())

    try:
        page.goto(served.url, wait_until="domcontentloaded")
        page.locator(f"#{_ui_id('enabled')} .label-wrap").first.click()
        page.locator(summary).first.wait_for(state="visible")
        before = lf_settings.describe(lf_settings.DEFAULTS)
        assert shown() == before and "stretches the range" in before
        page.locator("#lf_infotext textarea").fill(text)
        page.locator("#lf_paste").click()
        page.wait_for_function("id => document.querySelector('#' + id + ' input[type=checkbox]').checked === false",
                               arg=_ui_id("maximize_enabled"))
        expected = lf_settings.describe(pasted)
        assert "stretches" not in expected
        try:
            page.wait_for_function("([sel, text]) => document.querySelector(sel).innerText.split(/\\s+/).join(' ')"
                                   ".trim() == text", arg=[summary, expected], timeout=5000)
        except Exception:
            raise AssertionError(f"summary is {shown()!r}, expected {expected!r}") from None
    finally:
        context.close()
