"""javascript/latentfix.js carries the FIELDS hints verbatim and looks up the elem_ids the script really uses.

Runs without a browser. When this fails after a change to lib_latentfix/settings.py FIELDS, regenerate:
``python tests/browser/gen_hints.py``.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import gen_hints  # noqa: E402
from lib_latentfix import settings as lf_settings  # noqa: E402
from webui_standin import harness  # noqa: E402


def _js() -> str:
    with open(gen_hints.JS_PATH, encoding="utf-8") as f:
        return f.read()


def test_js_hint_table_is_generated_from_fields():
    _, table, _ = gen_hints.split(_js())
    assert table == gen_hints.render_table(), "javascript/latentfix.js is out of date: run python tests/browser/gen_hints.py"


def test_js_hint_table_holds_every_field_with_its_hint():
    _, table, _ = gen_hints.split(_js())
    rows = [json.loads(line.strip().rstrip(",")) for line in table.splitlines() if line.strip().startswith("[")]
    assert rows == [[f.name, f.label, f.hint] for f in lf_settings.FIELDS]
    assert all(hint.strip() for _, _, hint in rows)
    assert table.isascii()  # escapes only: the page's or the server's charset cannot garble ± or ×


@pytest.mark.parametrize("flavour", ["a1111", "forge"])
def test_js_prefix_matches_the_script_elem_ids(flavour):
    """latentfix.js builds ids as script_<tab>_latentfix_<field>; the accordion of `enabled` as ..._enabled."""
    ext = harness.make_host(flavour, "sdxl").load_extension()
    assert ext.ui_error is None
    assert "\"script_\" + TABS[t] + \"_latentfix_\"" in _js()
    assert re.search(r'var TABS = \["txt2img", "img2img"\];', _js())
    for tab in ("txt2img", "img2img"):
        controls = ext.script(tab).controls
        assert len(controls) == len(lf_settings.FIELDS)
        for field, control in zip(lf_settings.FIELDS, controls):
            expected = f"script_{tab}_latentfix_{field.name}"
            actual = control.accordion_id if field.name == "enabled" else control.elem_id
            assert actual == expected, field.name


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (syntax check only)")
def test_js_parses():
    subprocess.run(["node", "--check", gen_hints.JS_PATH], check=True)
