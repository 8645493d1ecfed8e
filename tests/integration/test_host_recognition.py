"""The suite's own host recognition (runs without a WebUI): Forge's infotext bug is skipped, nothing else is.

The answers below are what the real hosts send: Forge dfdcbab6 (a git clone, set up outside this repository) reports
``"Version": "f2.0.1v1.10.1-1.10.1"`` in GET /internal/sysinfo (``git describe`` form when it is a git clone) and
answers a txt2img request carrying ``infotext`` with HTTP 500
``{"error": "TypeError", "detail": "", "body": "", "message": "isinstance() argument 2 cannot be a parameterized generic"}``.
"""

from __future__ import annotations

import pytest

from latentfix_webui_client import FORGE_INFOTEXT_BUG, host_version, infotext_field_blocker, is_forge

FORGE_500 = {"error": "TypeError", "detail": "", "body": "", "message": FORGE_INFOTEXT_BUG}


class FakeWebUI:
    """Answers ``request`` from a table of (method, path) → (status, body); records what was asked."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def request(self, method, path, payload=None):
        self.asked.append((method, path, payload))
        return self.answers.get((method, path), (404, {"detail": "Not Found"}))


@pytest.mark.parametrize(
    "version,forge",
    [
        ("f2.0.1v1.10.1-1.10.1", True),                    # Forge dfdcbab6 from a git archive (CHANGELOG tag)
        ("f2.0.1v1.10.1-previous-669-gdfdcbab6", True),     # the same from a git clone (git describe --tags)
        ("f2.0.0dev-v1.10.1RC-1.10.1", False),              # reForge
        ("v1.10.1", False),                                 # A1111
        ("1.10.1", False),
        (None, False),                                      # no /internal/sysinfo (--nowebui)
        ("", False),
    ],
)
def test_forge_is_recognised_by_its_version_string(version, forge):
    assert is_forge(version) is forge


def test_version_comes_from_sysinfo_and_is_none_without_it():
    assert host_version(FakeWebUI({("GET", "/internal/sysinfo"): (200, {"Version": "f2.0.1v1.10.1-1.10.1"})})) \
        == "f2.0.1v1.10.1-1.10.1"
    assert host_version(FakeWebUI({})) is None
    assert host_version(FakeWebUI({("GET", "/internal/sysinfo"): (200, "not json")})) is None


def test_forge_with_the_bug_skips_infotext_checks_naming_the_bug():
    webui = FakeWebUI({("POST", "/sdapi/v1/txt2img"): (500, FORGE_500)})
    reason = infotext_field_blocker(webui, "f2.0.1v1.10.1-1.10.1")
    assert reason and "Forge f2.0.1v1.10.1-1.10.1" in reason and FORGE_INFOTEXT_BUG in reason
    assert "infotext" in reason and "api.py" in reason
    (method, path, payload), = webui.asked
    assert payload["infotext"] and payload["send_images"] is False


def test_forge_without_the_bug_runs_the_infotext_checks():
    webui = FakeWebUI({("POST", "/sdapi/v1/txt2img"): (200, {"images": [], "info": "{}"})})
    assert infotext_field_blocker(webui, "f2.0.1v1.10.1-1.10.1") is None


@pytest.mark.parametrize("version", ["v1.10.1", "f2.0.0dev-v1.10.1RC-1.10.1", None])
def test_other_hosts_are_neither_probed_nor_skipped(version):
    webui = FakeWebUI({("POST", "/sdapi/v1/txt2img"): (500, FORGE_500)})
    assert infotext_field_blocker(webui, version) is None
    assert webui.asked == []


def test_a_different_500_on_forge_is_not_mistaken_for_the_bug():
    webui = FakeWebUI({("POST", "/sdapi/v1/txt2img"): (500, {"error": "RuntimeError", "message": "out of memory"})})
    assert infotext_field_blocker(webui, "f2.0.1v1.10.1-1.10.1") is None
