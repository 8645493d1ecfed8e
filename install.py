"""Run by the WebUI at start-up (launch_utils.py:228-241): checks the host, installs and downloads nothing.

The extension needs only what the WebUI already ships (torch, gradio, numpy, pillow), so this file only
reports whether torch and gradio are present in supported versions, in one console line.
"""

import importlib.metadata
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


print(hostcheck.check_host(installed_version)[1])
