"""install.py and preload.py, run the way the WebUI runs them."""

import argparse
import os
import subprocess
import sys
import importlib.util

from lib_latentfix.hostcheck import check_host, install_line, parse_version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def as_webui_root(path):
    """``path`` as the WebUI's root on PYTHONPATH: launch.py and the modules package, found but never imported."""
    path.mkdir(exist_ok=True)
    (path / "launch.py").write_text("raise SystemExit('install.py must not import launch')\n")
    (path / "modules").mkdir()
    (path / "modules" / "__init__.py").write_text("raise SystemExit('install.py must not import modules')\n")
    return path


def installed(path, name, version):
    """A stand-in distribution on ``path`` (found by importlib.metadata before the real one in site-packages)."""
    info = path / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return path


def run_install(cwd, pythonpath):
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, os.path.join(ROOT, "install.py")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_install_prints_one_line_and_downloads_nothing(tmp_path):
    # launch_utils.py:228-241: `python install.py` as a subprocess, PYTHONPATH the WebUI root, cwd unchanged
    done = run_install(tmp_path, as_webui_root(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[LatentFix] host check")


def test_install_under_comfyui_manager_says_nothing_about_gradio(tmp_path):
    """ComfyUI-Manager runs `python install.py` in the node's folder with ComfyUI's python (no gradio, no WebUI):
    nothing to say while torch is fine, even where a gradio the WebUI could not use is installed."""
    site = installed(tmp_path / "site", "gradio", "2.0.0")
    (site / "comfy").mkdir()
    (site / "comfy" / "__init__.py").write_text("")
    done = run_install(ROOT, site)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    # the same environment as a WebUI's: the gradio is named
    done = run_install(tmp_path, os.pathsep.join([str(as_webui_root(tmp_path / "webui")), str(site)]))
    assert done.returncode == 0, done.stderr
    assert "gradio 2.0.0 is outside the supported range" in done.stdout


def test_install_under_comfyui_warns_about_torch_only(tmp_path):
    site = installed(installed(tmp_path, "torch", "1.12.0"), "gradio", "2.0.0")
    done = run_install(ROOT, site)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "torch 1.12.0 is outside the supported range" in lines[0]
    assert "gradio" not in lines[0]


def test_install_line_per_host():
    webui = {"launch": object(), "modules": object()}.get
    comfyui = {"comfy": object()}.get
    no_gradio = {"torch": "2.5.1"}.get
    assert "gradio is not installed" in install_line(no_gradio, webui)
    assert install_line(no_gradio, comfyui) is None
    assert install_line({}.get, comfyui) == ("[LatentFix] host check: torch is not installed — the extension may "
                                             "not work.")
    # a `launch` module alone (some other package) is not a WebUI
    assert install_line(no_gradio, {"launch": object()}.get) is None


def test_host_check_messages():
    ok, line = check_host({"torch": "2.1.2+cu121", "gradio": "3.41.2"}.get)
    assert ok and "torch 2.1.2+cu121" in line
    ok, line = check_host({"torch": "2.3.1", "gradio": "4.40.0"}.get)
    assert ok
    ok, line = check_host({"torch": "1.12.0"}.get)
    assert not ok and "gradio is not installed" in line and "torch 1.12.0 is outside" in line
    assert parse_version("nightly") is None


def load_preload():
    spec = importlib.util.spec_from_file_location("preload.py", os.path.join(ROOT, "preload.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preload_adds_real_options():
    parser = argparse.ArgumentParser()
    load_preload().preload(parser)
    args = parser.parse_args(["--latentfix-trace", "trace.jsonl", "--latentfix-disable"])
    assert args.latentfix_trace == "trace.jsonl" and args.latentfix_disable is True
    defaults = parser.parse_args([])
    assert defaults.latentfix_trace is None and defaults.latentfix_disable is False


def test_install_runs_even_where_torch_cannot_be_imported(tmp_path):
    broken = tmp_path / "torch"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('torch is broken here')\n")
    done = run_install(tmp_path, as_webui_root(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[LatentFix] host check")


def test_install_runs_before_torch_is_installed(tmp_path):
    """The WebUI runs install.py before it has installed torch on a first start: the lazy package imports none."""
    (tmp_path / "torch.py").write_text("raise ImportError('torch is not installed yet')\n")
    done = run_install(tmp_path, as_webui_root(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[LatentFix] host check")


def test_the_core_imports_no_host_package():
    """lib_latentfix is host-free: importing every module of it loads neither the WebUI, gradio nor ComfyUI."""
    code = (
        "import pkgutil, importlib, sys, lib_latentfix\n"
        "for m in pkgutil.iter_modules(lib_latentfix.__path__):\n"
        "    importlib.import_module('lib_latentfix.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('modules', 'gradio', 'comfy', 'modules_forge'))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
