"""What install.py says about the host: are torch and gradio there, in versions the extension supports?"""

from __future__ import annotations

import re
from typing import Callable, Optional

# (minimum inclusive, maximum exclusive) major.minor; A1111 1.10 pins gradio 3.41.2, Forge 4.40.0.
SUPPORTED = {
    "torch": ((1, 13), (3, 0)),
    "gradio": ((3, 41), (5, 0)),
}


def parse_version(text: str) -> Optional[tuple[int, int]]:
    """Major and minor of a version string ("2.1.2+cu121" → (2, 1)); None if it has none."""
    match = re.match(r"\s*(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_host(version_of: Callable[[str], Optional[str]]) -> tuple[bool, str]:
    """(ok, one line for the console); ``version_of(name)`` returns an installed version or None."""
    found, problems = [], []
    for name, (low, high) in SUPPORTED.items():
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
