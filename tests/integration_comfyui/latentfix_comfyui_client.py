"""HTTP client and workflow builders for the ComfyUI integration suite (standard library, numpy and Pillow)."""

from __future__ import annotations

import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Optional

import numpy as np
from PIL import Image

URL_ENV = "LATENTFIX_COMFYUI_URL"
SKIP_REASON = f"set {URL_ENV} to a running ComfyUI with this repository in custom_nodes/"
SIZE = int(os.environ.get("LATENTFIX_TEST_SIZE", "256"))
STEPS = int(os.environ.get("LATENTFIX_TEST_STEPS", "12"))
TIMEOUT = float(os.environ.get("LATENTFIX_COMFYUI_TIMEOUT", "600"))
SEED = 1234


class PromptRejected(AssertionError):
    """ComfyUI refused a prompt (HTTP 400): ``.body`` is its JSON answer (error, node_errors)."""

    def __init__(self, body: dict):
        super().__init__(json.dumps(body)[:2000])
        self.body = body


class ComfyUI:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self._ckpt: Optional[str] = None

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return r.read()

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def free(self) -> None:
        """Empty ComfyUI's caches (POST /free): the next prompt runs every node again."""
        request = urllib.request.Request(self.url + "/free", data=json.dumps({"free_memory": True}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=60).read()

    def checkpoint(self) -> str:
        if self._ckpt is None:
            names = self.get_json("/object_info/CheckpointLoaderSimple")["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
            self._ckpt = os.environ.get("LATENTFIX_COMFYUI_CKPT") or names[0]
        return self._ckpt

    def queue(self, prompt: dict, workflow: Optional[dict] = None) -> str:
        body = {"prompt": prompt, "client_id": self.client_id}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        request = urllib.request.Request(self.url + "/prompt", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return json.loads(r.read())["prompt_id"]
        except urllib.error.HTTPError as error:
            if error.code == 400:
                raise PromptRejected(json.loads(error.read())) from None
            raise

    def run(self, prompt: dict, workflow: Optional[dict] = None) -> dict:
        """Queue ``prompt``, wait for it, return its /history entry (outputs per node id)."""
        prompt_id = self.queue(prompt, workflow)
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            history = self.get_json(f"/history/{prompt_id}")
            if prompt_id in history:
                entry = history[prompt_id]
                status = entry.get("status", {})
                if status.get("status_str") == "error":
                    raise AssertionError(f"prompt failed: {json.dumps(status)[:2000]}")
                if status.get("completed", True):
                    return entry
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {TIMEOUT:.0f} s")

    def images(self, entry: dict, node: str) -> list[Image.Image]:
        out = []
        for info in entry["outputs"][node]["images"]:
            query = urllib.parse.urlencode({k: info[k] for k in ("filename", "subfolder", "type")})
            image = Image.open(io.BytesIO(self.get("/view?" + query)))
            image.load()
            out.append(image)
        return out


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


# ------------------------------------------------------------------------------------------------------------
# workflows (API format: node id -> class_type + inputs; a link is [node id, output index])


def txt2img(ckpt: str, *, latentfix: Optional[dict] = None, advanced: bool = False, batch: int = 1,
            sampler: str = "euler", scheduler: str = "normal", seed: int = SEED, prefix: str = "latentfix_it",
            view: bool = False) -> dict:
    """Checkpoint -> [LatentFix] -> KSampler -> VAEDecode -> SaveImage (+ the latent view of the sampler's output)."""
    prompt: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a woman in a garden, blue sky", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": batch}},
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": seed, "steps": STEPS, "cfg": 7.0, "sampler_name": sampler,
            "scheduler": scheduler, "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": prefix}},
    }
    if latentfix is not None:
        cls = "LatentFixAdvanced" if advanced else "LatentFix"
        prompt["5"] = {"class_type": cls, "inputs": {"model": ["1", 0], **latentfix}}
        prompt["6"]["inputs"]["model"] = ["5", 0]
    if view:
        prompt["9"] = {"class_type": "LatentFixLatentView", "inputs": {
            "samples": ["6", 0], "latent_space": "SDXL", "value_range": 4.0, "rgb_scale": 8}}
        prompt["10"] = {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": prefix + "_view"}}
        prompt["11"] = {"class_type": "SaveImage", "inputs": {"images": ["9", 1], "filename_prefix": prefix + "_rgb"}}
    return prompt


def node_defaults(comfy: ComfyUI, node: str) -> dict:
    """A node's inputs with their defaults, as the server describes them (the frontend sends every widget)."""
    required = comfy.get_json(f"/object_info/{node}")[node]["input"]["required"]
    return {name: spec[1]["default"] for name, spec in required.items() if name != "model"}


def advanced_defaults(comfy: ComfyUI) -> dict:
    return node_defaults(comfy, "LatentFixAdvanced")


def simple_settings(comfy: ComfyUI, **values: Any) -> dict:
    """The LatentFix node's inputs: its defaults (preset, strength) with ``values`` over them."""
    return dict(node_defaults(comfy, "LatentFix"), **values)
