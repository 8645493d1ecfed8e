"""The WebUI shell of sd-webui-latentfix, split by concern; ``scripts/latentfix.py`` is the one file the WebUI loads.

- ``host``: what the extension knows of the host (model family, passes, timesteps on the device and the host)
- ``handoff``: the per-thread hand-off from ``on_cfg_denoiser`` to the callbacks after the model
- ``callbacks``: the CFG-denoiser callbacks
- ``ui``: the accordion, presets, paste readers
- ``options``: the Settings page section
- ``xyz``: X/Y/Z plot axes and the grid check
- ``gallery``: diagnostics images and trace files

Every submodule is imported here, at import time: A1111 removes the extension root from ``sys.path`` right after
loading ``scripts/`` (``load_scripts`` in modules/scripts.py).

Line citations in this package are pinned: ``A file.py:N`` and ``modules/file.py:N`` are AUTOMATIC1111 v1.10.1,
``F file.py:N`` Forge dfdcbab6, ``K k_diffusion/...`` the k-diffusion commit A1111 v1.10.1 pins.
"""

from . import callbacks, gallery, handoff, host, options, ui, xyz  # noqa: F401
