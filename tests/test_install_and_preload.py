"""install.py and preload.py, run the way the WebUI runs them."""

import argparse
import os
import subprocess
import sys
import importlib.util

from lib_latentfix.hostcheck import check_host, parse_version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_install_prints_one_line_and_downloads_nothing(tmp_path):
    # launch_utils.py:228-241: `python install.py` as a subprocess, cwd unchanged (here: somewhere else)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "install.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[LatentFix] host check")


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
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "install.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[LatentFix] host check")


def test_install_runs_before_torch_is_installed(tmp_path):
    """The WebUI runs install.py before it has installed torch on a first start: the lazy package imports none."""
    (tmp_path / "torch.py").write_text("raise ImportError('torch is not installed yet')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "install.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
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
