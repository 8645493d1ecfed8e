"""HTTP client and helpers for the integration suite (standard library, numpy and Pillow only).

Kept apart from conftest.py so that test modules can import the helpers by name.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

URL_ENV = "LATENTFIX_WEBUI_URL"
SKIP_REASON = "set LATENTFIX_WEBUI_URL to a running WebUI started with --api and this extension installed"
SCRIPT_NAME = "latentfix"  # the API name: the script title "LatentFix", lower-cased
INFOTEXT_KEYS = ("LatentFix", "LatentFix preset", "LatentFix clamp", "LatentFix center", "LatentFix maximize",
                 "LatentFix options")

SIZE = int(os.environ.get("LATENTFIX_TEST_SIZE", "256"))
STEPS = int(os.environ.get("LATENTFIX_TEST_STEPS", "12"))
TIMEOUT = float(os.environ.get("LATENTFIX_WEBUI_TIMEOUT", "600"))
SEED = 1234


# ------------------------------------------------------------------------------------------------------------
# HTTP client (standard library only)


class WebUIError(AssertionError):
    pass


@dataclass
class Generation:
    """One txt2img/img2img answer: the images as uint8 arrays [H, W, 3], the raw base64 PNGs, the info dict."""

    images: list
    pngs: list
    info: dict
    raw: dict = field(repr=False)

    @property
    def image(self) -> np.ndarray:
        return self.images[0]

    @property
    def infotext(self) -> str:
        return self.info["infotexts"][0]

    @property
    def infotexts(self) -> list:
        return self.info["infotexts"]


def decode_png(b64: str) -> np.ndarray:
    if "," in b64[:64] and b64.startswith("data:"):
        b64 = b64.split(",", 1)[1]
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.array(image.convert("RGB"), dtype=np.uint8)


def encode_png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class WebUI:
    def __init__(self, base_url: str, timeout: float = TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, payload: Optional[dict] = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON or text) — never raises for an HTTP error status."""
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        text = body.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise WebUIError(f"GET {path} answered HTTP {status}: {str(body)[:2000]}")
        return body

    def post(self, path: str, payload: dict) -> Any:
        status, body = self.request("POST", path, payload)
        if status != 200:
            raise WebUIError(f"POST {path} answered HTTP {status} (see the WebUI console for the traceback): "
                             f"{str(body)[:2000]}")
        return body

    def generate(self, mode: str, payload: dict) -> Generation:
        body = self.post(f"/sdapi/v1/{mode}", payload)
        pngs = list(body.get("images") or [])
        if not pngs:
            raise WebUIError(f"{mode} returned no images (is send_images false?): {str(body)[:500]}")
        info = body["info"]
        info = json.loads(info) if isinstance(info, str) else info
        return Generation([decode_png(p) for p in pngs], pngs, info, body)

    def txt2img(self, payload: dict) -> Generation:
        return self.generate("txt2img", payload)

    def img2img(self, payload: dict) -> Generation:
        return self.generate("img2img", payload)

    def png_info(self, png_b64: str) -> dict:
        return self.post("/sdapi/v1/png-info", {"image": png_b64})


# ------------------------------------------------------------------------------------------------------------
# which host


# lllyasviel/stable-diffusion-webui-forge reports its version (GET /internal/sysinfo, "Version") as
# 'f' + modules_forge/forge_version.py's version ('2.0.1v1.10.1' at dfdcbab6) + '-' + the A1111 tag
# (modules/launch_utils.py git_tag), e.g. "f2.0.1v1.10.1-1.10.1"; reForge writes "f2.0.0dev-v1.10.1RC-…" and
# A1111 "v1.10.1", so neither matches.
FORGE_VERSION = re.compile(r"^f\d+\.\d+\.\d+v\d")
# Forge dfdcbab6's modules/api/api.py get_field_value calls isinstance(value, list[str]) for list-typed request
# fields: every txt2img/img2img request that sends the "infotext" field answers HTTP 500 with this message,
# with or without this extension, before anything is generated.
FORGE_INFOTEXT_BUG = "isinstance() argument 2 cannot be a parameterized generic"
INFOTEXT_PROBE = {"infotext": "probe\nSteps: 1, Size: 64x64, Seed: 1", "steps": 1, "width": 64, "height": 64,
                  "save_images": False, "send_images": False}


def host_version(webui: "WebUI") -> Optional[str]:
    """The version the WebUI reports in /internal/sysinfo (A1111 1.6+, Forge, reForge), or None."""
    status, body = webui.request("GET", "/internal/sysinfo")
    if status != 200 or not isinstance(body, dict):
        return None  # e.g. --nowebui, which does not mount /internal/* routes
    version = body.get("Version")
    return str(version) if version else None


def is_forge(version: Optional[str]) -> bool:
    return bool(version) and FORGE_VERSION.match(version) is not None


def infotext_field_blocker(webui: "WebUI", version: Optional[str]) -> Optional[str]:
    """Why requests using the ``infotext`` field cannot be tested on this host, or None when they can.

    Only a host recognised as Forge is probed (one request: it fails at once where the bug is, and is a
    64×64, 1-step image where it is not); on any other host the infotext checks run and fail if it fails.
    """
    if not is_forge(version):
        return None
    status, body = webui.request("POST", "/sdapi/v1/txt2img", INFOTEXT_PROBE)
    if status == 500 and FORGE_INFOTEXT_BUG in str(body):
        return (f"Forge {version}: its API answers HTTP 500 ({FORGE_INFOTEXT_BUG!r}, from Forge's own "
                "modules/api/api.py get_field_value) to any request that uses the 'infotext' field, with or "
                "without this extension")
    return None


# ------------------------------------------------------------------------------------------------------------
# payloads


def txt2img_payload(**overrides: Any) -> dict:
    """A small, fast, deterministic txt2img request (nothing saved, images returned)."""
    payload = {
        "prompt": "a photo of a red apple on a wooden table, studio lighting",
        "negative_prompt": "blurry, low quality",
        "seed": SEED,
        "subseed": -1,
        "subseed_strength": 0,
        "steps": STEPS,
        "cfg_scale": 7,
        "width": SIZE,
        "height": SIZE,
        "sampler_name": "Euler a",
        "batch_size": 1,
        "n_iter": 1,
        "restore_faces": False,
        "tiling": False,
        "enable_hr": False,
        "save_images": False,
        "send_images": True,
    }
    payload.update(overrides)
    return payload


def with_latentfix(payload: dict, *args: Any) -> dict:
    """``payload`` with this extension's always-on args (positional, or one dict of named settings)."""
    out = dict(payload)
    out["alwayson_scripts"] = {**payload.get("alwayson_scripts", {}), SCRIPT_NAME: {"args": list(args)}}
    return out


def latentfix_keys_in(infotext: str) -> dict:
    """The LatentFix entries of an infotext line, as {key: value} (values are written unquoted)."""
    found = {}
    for part in infotext.splitlines()[-1].split(", "):
        key, sep, value = part.partition(": ")
        if sep and key.startswith("LatentFix"):
            found[key] = value
    return found


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, f"image shapes differ: {a.shape} vs {b.shape}"
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, f"image shapes differ: {a.shape} vs {b.shape}"
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def assert_valid_image(image: np.ndarray, size: tuple[int, int]) -> None:
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, image.shape
    assert image.shape[:2] == size, f"expected {size[1]}x{size[0]}, got {image.shape[1]}x{image.shape[0]}"
    assert float(image.astype(np.float64).std()) > 1.0, "the image is a flat colour"


def assert_differs(a: np.ndarray, b: np.ndarray, what: str, min_mean: float = 0.5) -> None:
    """A change a user would see: the mean absolute difference is at least ``min_mean`` levels (of 255)."""
    mean = mean_abs_diff(a, b)
    assert mean >= min_mean, (f"{what}: images are (nearly) the same — mean |diff| {mean:.3f} levels, "
                              f"max {max_abs_diff(a, b)}")
