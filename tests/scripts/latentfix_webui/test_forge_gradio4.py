"""The UI under gradio 4.40 (Forge's and reForge's pin) with Forge's InputAccordion: no 'before guidance' choice,
folded sections whose headers gradio 4.40 updates, a pasted 'before guidance' arriving as 'after guidance'.

The repository's tests run under gradio 3.41 (A1111's pin); gradio 4.40 cannot share that environment. This test
runs ``forge_gradio4_probe.py`` under another Python that has gradio 4.40 and torch: ``$LATENTFIX_GRADIO4_PYTHON``
(e.g. the python of a Forge install's venv). Where it is not set (CI), it is skipped, saying so.
"""

import dataclasses
import json
import os
import subprocess

import pytest

from lib_latentfix import settings as lf_settings

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "forge_gradio4_probe.py")
PYTHON = os.environ.get("LATENTFIX_GRADIO4_PYTHON", "")


def _probe() -> dict:
    if not PYTHON or not os.access(PYTHON, os.X_OK):
        pytest.skip(f"no Python with gradio 4.40 at {PYTHON!r} (set LATENTFIX_GRADIO4_PYTHON to one, e.g. Forge's venv)")
    version = subprocess.run([PYTHON, "-c", "import gradio, torch; print(gradio.__version__)"], capture_output=True,
                             text=True, timeout=120)
    if version.returncode != 0 or not version.stdout.strip().startswith("4.40"):
        pytest.skip(f"{PYTHON} has no gradio 4.40 with torch: {(version.stdout + version.stderr).strip()[-200:]}")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([PYTHON, PROBE], capture_output=True, text=True, timeout=300, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-4000:]
    return {"result": json.loads(lines[-1][len("PROBE "):]), "console": done.stdout}


@pytest.fixture(scope="module")
def probed():
    return _probe()


def test_forge_ui_under_gradio_4_40_offers_no_before_guidance(probed):
    result = probed["result"]
    assert result["gradio"].startswith("4.40")
    assert result["enabled_class"] == "InputAccordionImpl"  # Forge's InputAccordion, not the A1111 class
    assert result["controls"] == len(lf_settings.FIELDS)  # every control still reaches the script, in order
    assert result["correction_point_choices"] == [["sampler latent (as the post)", "sampler latent (as the post)"],
                                                  ["after guidance", "after guidance"]]


def test_forge_ui_under_gradio_4_40_folds_sections_and_updates_their_headers(probed):
    result = probed["result"]
    on = dataclasses.replace(lf_settings.DEFAULTS, enabled=True)
    assert result["headers"] == {s: lf_settings.section_header(on, s) for s in lf_settings.FILTER_SECTIONS}
    assert result["header_wired"] == 3  # the section's enable box, its strength, the overall strength
    # what gradio 4.40 sends to the page: the new label alone (the open state is left as the user set it)
    assert result["sent_on_switch_off"] == [{"label": "Maximize (range) \u2014 off", "__type__": "update"}]


def test_forge_paste_of_before_guidance_arrives_as_after_guidance(probed):
    assert probed["result"]["pasted_before"] == probed["result"]["pasted_accepted"] == "after guidance"
    assert "pasted as 'after guidance'" in probed["console"]
