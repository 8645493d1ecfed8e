"""Test setup shared by every suite: the repository root and tests/ are importable."""

import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)

# scripts/ too: its shell package latentfix_webui (the WebUI imports it from scripts/latentfix.py)
for path in (REPO_ROOT, TESTS_DIR, os.path.join(REPO_ROOT, "scripts")):
    if path not in sys.path:
        sys.path.insert(0, path)
