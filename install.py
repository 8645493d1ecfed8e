"""Run by the WebUI at start-up (launch_utils.py:228-241): checks the host, installs and downloads nothing.

The extension needs only what the WebUI already ships (torch, gradio, numpy, pillow), so this file only
reports whether torch and gradio are present in supported versions, in one console line.
"""

import importlib.metadata
import importlib.util
import os

# hostcheck.py is loaded by path: importing the lib_latentfix package would import torch, which may be missing.
_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib_latentfix", "hostcheck.py")
_spec = importlib.util.spec_from_file_location("latentfix_hostcheck", _path)
hostcheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostcheck)


def installed_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


print(hostcheck.check_host(installed_version)[1])
