"""ComfyUI entry point (the repository cloned into ComfyUI/custom_nodes/): re-exports the node pack.

A1111, Forge and reForge load ``scripts/*.py`` only and never import this file. ComfyUI imports the folder as a
package (nodes.py ``load_custom_node``); pytest, which sees this file because the repository root is a package
directory, imports it without a parent package, and gets nothing to export.
"""

if __package__:
    from .latentfix_comfy import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
