"""Opt-in integration suite: talks HTTP to a running Stable Diffusion WebUI that has this extension installed.

Nothing here imports the WebUI or the extension: every check goes through the WebUI's public API
(``/sdapi/v1/...``), exactly as a user's script or another program would, and looks at what a user would
notice (the returned images and their infotext).

Running it against your own WebUI
---------------------------------

1. Install the extension into the WebUI's ``extensions/`` folder (*Extensions → Install from URL*, or
   ``git clone`` / a symlink of this repository into ``stable-diffusion-webui/extensions/``).
2. Start the WebUI with the API enabled, e.g. ``./webui.sh --api`` (add your usual flags; ``--nowebui`` works
   too: the API then builds the UI's paste fields itself, which the infotext round-trip test needs).
   Load an SDXL checkpoint; the suite uses small, fast requests (256×256, 12 steps, fixed seeds, nothing is
   saved to disk; about 30 requests in all).
3. From this repository::

       LATENTFIX_WEBUI_URL=http://127.0.0.1:7860 python -m pytest tests/integration -v

Without ``LATENTFIX_WEBUI_URL`` every test here is skipped. Optional knobs: ``LATENTFIX_TEST_SIZE`` (image
side in pixels, default 256, a multiple of 64), ``LATENTFIX_TEST_STEPS`` (default 12: from 11 steps on, the
normal schedule calls the model inside the post's late window 1 < t < 100, so every filter acts; with fewer
only the early filters run, and their effect can be too small for the "on differs from off" checks) and
``LATENTFIX_WEBUI_TIMEOUT`` (seconds per request, default 600).

Host bugs: on Forge (recognised by the version in ``/internal/sysinfo``; dfdcbab6 reports
``f2.0.1v1.10.1-…``) the checks marked ``infotext_field`` are skipped, naming the cause, when one probe request
confirms Forge's own API bug (HTTP 500 ``isinstance() argument 2 cannot be a parameterized generic`` for any
request using the ``infotext`` field); everything else runs.

The tests need a deterministic host (the same request twice gives the same image), which a WebUI on one
machine is unless an extension adds randomness. A1111's own CI server (``launch.py --test-server``) loads an
SD1 config with empty weights (``test/test_files/empty.pt``): what this suite checks (off means untouched, on
changes the image, infotext, batches, samplers, hires, inpaint) is behaviour, so it is still meaningful there,
but such a model is not SDXL-calibrated (the extension prints a note that the model is SD 1.x) and the
pictures say nothing about image quality. The suite was developed against a real A1111 v1.10.1 on CPU with a
tiny random-weight SDXL-architecture checkpoint, where a full run takes well under a minute.
"""

from __future__ import annotations

import os
import sys
import urllib.error
from typing import Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from latentfix_webui_client import (  # noqa: E402
    SCRIPT_NAME,
    SKIP_REASON,
    URL_ENV,
    Generation,
    WebUI,
    WebUIError,
    host_version,
    infotext_field_blocker,
    txt2img_payload,
)


def pytest_collection_modifyitems(config, items):
    """Skip this directory's tests that talk to a WebUI, with the reason above, when no WebUI URL is given.

    (This hook sees every collected item of the session, so it only touches the ones under this folder; the
    checks of the suite's own helpers, which use no WebUI fixture, always run.)
    """
    if os.environ.get(URL_ENV):
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if os.path.abspath(str(item.path)).startswith(HERE + os.sep) and "base_url" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


# ------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def base_url() -> str:
    url = os.environ.get(URL_ENV)
    if not url:
        pytest.skip(SKIP_REASON)
    return url.rstrip("/")


@pytest.fixture(scope="session")
def webui(base_url) -> WebUI:
    """A client for the WebUI, after checking it answers and lists this extension for both tabs."""
    client = WebUI(base_url)
    try:
        scripts = client.get("/sdapi/v1/scripts")
    except (urllib.error.URLError, OSError, WebUIError) as error:
        pytest.fail(f"cannot reach the WebUI at {base_url} ({URL_ENV}): {error}. Start it with --api "
                    "(and check the port).", pytrace=False)
    for tab in ("txt2img", "img2img"):
        names = [str(n).lower() for n in (scripts.get(tab) or [])]
        if SCRIPT_NAME not in names:
            pytest.fail(f"the extension is not installed in the WebUI at {base_url}: GET /sdapi/v1/scripts does "
                        f"not list {SCRIPT_NAME!r} for {tab} (listed: {names}). Put this repository into the "
                        "WebUI's extensions/ folder, make sure it is enabled, and restart the WebUI; its console "
                        "shows why a script failed to load.", pytrace=False)
    return client


@pytest.fixture(scope="session")
def script_defaults(webui) -> list:
    """The extension's positional args with their UI defaults, in ui() order, from /sdapi/v1/script-info."""
    info = webui.get("/sdapi/v1/script-info")
    entries = [e for e in info if str(e.get("name", "")).lower() == SCRIPT_NAME and not e.get("is_img2img")]
    assert entries, f"/sdapi/v1/script-info has no txt2img entry for {SCRIPT_NAME!r}"
    args = entries[0]["args"]
    assert args, "the extension reports no arguments"
    return [a.get("value") for a in args]


@pytest.fixture(scope="session")
def off_generation(webui) -> Generation:
    """The reference image: the standard request without the extension."""
    return webui.txt2img(txt2img_payload())


@pytest.fixture(scope="session")
def webui_version(webui) -> Optional[str]:
    """What the host reports as its version (None where it does not say)."""
    return host_version(webui)


@pytest.fixture(scope="session")
def infotext_field_blocked(webui, webui_version) -> Optional[str]:
    """The reason this host cannot take the request's ``infotext`` field (a known host bug), or None."""
    return infotext_field_blocker(webui, webui_version)


@pytest.fixture(autouse=True)
def _skip_what_the_host_cannot_do(request):
    """Tests marked ``infotext_field`` are skipped, with the host's reason, where that field is broken."""
    if request.node.get_closest_marker("infotext_field") is None:
        return
    reason = request.getfixturevalue("infotext_field_blocked")
    if reason:
        pytest.skip(reason)
