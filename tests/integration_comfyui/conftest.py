"""Opt-in integration suite: talks HTTP to a running ComfyUI that has this repository in ``custom_nodes/``.

Nothing here imports ComfyUI or the nodes: every check goes through ComfyUI's HTTP API (``/object_info``,
``/prompt``, ``/history``, ``/view``), as the ComfyUI frontend or a user's script does, and looks at what a user would
notice (the saved images and the workflow stored in them).

1. Clone (or symlink) this repository into ``ComfyUI/custom_nodes/``; start ComfyUI (``python main.py``; add
   ``--cpu`` on a machine without a GPU). Put an SDXL checkpoint into ``models/checkpoints``.
2. From this repository::

       LATENTFIX_COMFYUI_URL=http://127.0.0.1:8188 python -m pytest tests/integration_comfyui -v

Without ``LATENTFIX_COMFYUI_URL`` every test here is skipped. Optional: ``LATENTFIX_COMFYUI_CKPT`` (checkpoint file
name; default: the first one ComfyUI lists), ``LATENTFIX_TEST_SIZE`` (default 256), ``LATENTFIX_TEST_STEPS``
(default 12: with the normal scheduler, 12 steps reach the post's late window 1 < t < 100) and
``LATENTFIX_COMFYUI_TIMEOUT`` (seconds per prompt, default 600).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from latentfix_comfyui_client import SKIP_REASON, URL_ENV, ComfyUI  # noqa: E402


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.integration)
            if not os.environ.get(URL_ENV):
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def comfy():
    return ComfyUI(os.environ[URL_ENV])
