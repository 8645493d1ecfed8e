"""ComfyUI node pack of sd-webui-latentfix: thin adapters over the host-free core in ``lib_latentfix``."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
