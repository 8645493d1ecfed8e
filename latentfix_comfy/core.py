"""The one import point of the host-free core for the ComfyUI nodes.

ComfyUI loads the repository as a package named after its folder (nodes.py ``load_custom_node``), so the core is
reached relatively (``..lib_latentfix``), and a ``lib_latentfix`` installed into ComfyUI's venv with pip never
shadows the copy next to these nodes. Tests import ``latentfix_comfy`` as a top-level package with the repository
root on ``sys.path``; there the relative import has no parent and the absolute one is used.
"""

try:
    from ..lib_latentfix import arguments, landing, preview, schedule, settings  # noqa: F401  (ComfyUI: the repository is the package)
except ImportError:  # "attempted relative import beyond top-level package": imported on its own
    from lib_latentfix import arguments, landing, preview, schedule, settings  # noqa: F401
