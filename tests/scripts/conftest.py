"""Fixtures of the glue tests: a stand-in host with the extension loaded, the recorded corrections."""

import pytest

from webui_standin import harness
from lib_latentfix import runtime


@pytest.fixture
def a1111():
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    return host


@pytest.fixture
def forge():
    host = harness.make_host("forge", "sdxl")
    host.load_extension()
    return host


@pytest.fixture
def device_windows(monkeypatch):
    """Make the host say it cannot know the timesteps before sampling: every model call is then corrected with
    the windows tested on the device (the path every call took before windows were decided on the host)."""
    import latentfix_webui.host as glue_host

    monkeypatch.setattr(glue_host, "host_timesteps", lambda p: (None, None, "tests: windows on the device"))


@pytest.fixture
def corrections(monkeypatch, device_windows):
    """Record every call the glue makes into the core: (prediction, ModelCall, result), one per model call."""
    seen = []
    original = runtime.correct

    def spy(schedule, prediction, call):
        result, evidence = original(schedule, prediction, call)
        seen.append((prediction.clone(), call, result.clone()))
        return result, evidence

    monkeypatch.setattr(runtime, "correct", spy)
    return seen


@pytest.fixture
def with_xyz():
    import os

    from modules import scripts

    host = harness.make_host("a1111", "sdxl")
    xyz_path = os.path.join(os.path.dirname(harness.__file__), "builtin_scripts", "xyz_grid.py")
    xyz = scripts.load_script_file(xyz_path, os.path.dirname(xyz_path))[0]
    host.load_extension()  # its before_ui callback registers the axes on the loaded xyz module
    return host, next(d.module for d in scripts.scripts_data if d.script_class is xyz)
