"""What install.py says about the host: are torch and gradio there, in versions the extension supports?

install.py is run by the WebUIs (A1111, Forge, reForge) and by ComfyUI-Manager, which runs the ``install.py`` of
a node pack it installs. The WebUI needs torch and gradio and gets one line either way; ComfyUI uses no gradio,
so there only torch is checked and the line appears only when something is wrong.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Optional

# (minimum inclusive, maximum exclusive) major.minor; A1111 1.10 pins gradio 3.41.2, Forge 4.40.0.
SUPPORTED = {
    "torch": ((1, 13), (3, 0)),
    "gradio": ((3, 41), (5, 0)),
}


def parse_version(text: str) -> Optional[tuple[int, int]]:
    """Major and minor of a version string ("2.1.2+cu121" → (2, 1)); None if it has none."""
    match = re.match(r"\s*(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_host(version_of: Callable[[str], Optional[str]], names: Iterable[str] = tuple(SUPPORTED)) -> tuple[bool, str]:
    """(ok, one line for the console) about the packages ``names``; ``version_of(name)`` returns an installed
    version or None."""
    found, problems = [], []
    for name in names:
        low, high = SUPPORTED[name]
        version = version_of(name)
        if version is None:
            problems.append(f"{name} is not installed")
            continue
        found.append(f"{name} {version}")
        parsed = parse_version(version)
        if parsed is None or not low <= parsed < high:
            problems.append(f"{name} {version} is outside the supported range "
                            f"{low[0]}.{low[1]} to below {high[0]}.{high[1]}")
    if problems:
        return False, "[LatentFix] host check: " + "; ".join(problems) + " — the extension may not work."
    return True, "[LatentFix] host check passed: " + ", ".join(found) + "."


def in_webui(find_spec: Callable[[str], object]) -> bool:
    """Whether install.py runs under a WebUI: it runs ``python install.py`` with its root on PYTHONPATH (so that
    ``import launch`` works), where ``launch`` and the ``modules`` package are found; ComfyUI-Manager runs it with
    ComfyUI's python in the node's folder, where neither is. ``find_spec`` looks a module up without importing it
    (``importlib.util.find_spec``)."""
    return find_spec("launch") is not None and find_spec("modules") is not None


def install_line(version_of: Callable[[str], Optional[str]], find_spec: Callable[[str], object]) -> Optional[str]:
    """What install.py prints: under a WebUI, the host check of torch and gradio, always; elsewhere (ComfyUI), the
    check of torch alone, and only when it fails (None: nothing to say)."""
    if in_webui(find_spec):
        return check_host(version_of)[1]
    ok, line = check_host(version_of, names=("torch",))
    return None if ok else line
