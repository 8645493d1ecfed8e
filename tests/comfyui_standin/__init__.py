"""A stand-in for the pieces of ComfyUI the LatentFix nodes touch, written from ComfyUI's source at upstream commit
fe2511468d6b3f7a1581a711ae480f3313f2b39d (read from the hiddenswitch/pip-and-uv-installable-ComfyUI mirror).

Each module names the file and lines it imitates; the call order, argument dicts and tensor layouts are ComfyUI's.
Simplifications (a tiny deterministic "UNet", cond and uncond evaluated one after the other instead of batched)
are marked where they are made; they keep every row of the batch independent, as the real UNet does.
"""
