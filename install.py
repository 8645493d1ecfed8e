"""Run by the WebUI at start-up (launch_utils.py:228-241) and by ComfyUI-Manager when it installs the node pack:
checks the host, installs and downloads nothing.

The extension needs only what the host already ships (the WebUI: torch, gradio, numpy, pillow; ComfyUI: torch,
numpy, pillow), so this file only reports, in one console line, whether torch and gradio are present in supported
versions under a WebUI; under ComfyUI it says nothing unless torch is missing or outside the supported range.
"""

import importlib.metadata
import importlib.util
import os
import sys

# The package's __init__ is lazy: this imports the host check alone, not torch (which may not be installed yet).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_latentfix import hostcheck  # noqa: E402


def installed_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


line = hostcheck.install_line(installed_version, importlib.util.find_spec)
if line:
    print(line)
