"""The latent point on a real host: each sampler step lands on the post's filtered latent (Euler and DDIM).

With ``correction_point = "latent"`` (the default) LatentFix rewrites each model call's guided prediction so that the
sampler's own step lands on the post's filtered latent. This module checks that on a running WebUI (A1111, Forge, reForge),
from what the sampler itself hands to the CFG callbacks: for every step i, the latent the sampler shows at model call
i + 1 must equal the post's callback (``tests/support/post_reference.py`` ``correct(latents, t)``, one image at a
time) applied to the latent step i would have made from call i's latent and its RAW guided prediction (before
LatentFix's after-CFG callback), keyed on step i's timestep:

* Euler (k-diffusion, "Automatic" schedule): ``x + (x − D)/σ·(σ_next − σ)``; t is the fractional training timestep
  of σ, interpolated in the model's log-sigma table;
* DDIM (A1111's own sampler, η = 0): the latent is the VP latent √ᾱ·x0 + √(1−ᾱ)·ε and the prediction ε;
  ``x0 = (x − √(1−ᾱ_t)·ε)/√ᾱ_t``, ``x_next = √ᾱ_prev·x0 + √(1−ᾱ_prev)·ε`` with ᾱ_prev at the next lower of the
  sampler's timesteps; t is the integer timestep. Forge and reForge run the same DDIM loop but show the callbacks the
  VP latent × √(σ² + 1) at the timestep's real σ, and an x0 (F sd_samplers_cfg_denoiser.py): the test converts back.

The last step's latent never reaches a CFG callback; the probe takes it from the sampler's returned samples
(``post_sample``), so the last step is checked too. Agreement is float32 round-off: at most ``TOLERANCE`` of the
latent's largest magnitude (measured on A1111 1.10.1 CPU with the tiny SDXL test checkpoint, 256², batch 2,
12 steps: ≤ 1.3e-7 for Euler, ≤ 2.4e-7 for DDIM; the run prints the figures).

What it needs (besides the suite's ``LATENTFIX_WEBUI_URL``, see conftest.py):

1. The TEST-ONLY probe extension ``tests/integration/probe_extension`` installed beside LatentFix, e.g.
   ``cp -r tests/integration/probe_extension <webui>/extensions/latentfix-probe`` (it records, never changes
   anything, and only when the variable below is set for the WebUI process).
2. The WebUI started with ``LATENTFIX_PROBE_DIR=<folder>`` in its environment (it writes one ``.pt`` per generation
   there), and the same variable given to pytest (the test reads the files; the WebUI must run on this machine)::

       LATENTFIX_PROBE_DIR=/tmp/lfprobe ./webui.sh --api       # or the realhost start.sh, which passes it through
       LATENTFIX_WEBUI_URL=http://127.0.0.1:7861 LATENTFIX_PROBE_DIR=/tmp/lfprobe \\
           python -m pytest tests/integration/test_latent_point_real_host.py -v -s

Without ``LATENTFIX_PROBE_DIR``, or when the WebUI does not list the probe, the tests here are skipped (with the
reason); without ``LATENTFIX_WEBUI_URL`` the whole suite is.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import pytest
import torch

from latentfix_webui_client import STEPS, txt2img_payload, with_latentfix

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from support.post_reference import correct  # noqa: E402

pytestmark = pytest.mark.integration

PROBE_DIR_ENV = "LATENTFIX_PROBE_DIR"
PROBE_SCRIPT = "latentfix probe"  # the probe's script title, as /sdapi/v1/scripts lists it
TOLERANCE = 1e-4  # of the latent's largest magnitude: float32 round-off, with room
LATENT_POINT = {"enabled": True, "preset": "Post defaults", "correction_point": "latent"}


@pytest.fixture(scope="module")
def probe_dir(webui) -> str:
    folder = os.environ.get(PROBE_DIR_ENV)
    if not folder:
        pytest.skip(f"set {PROBE_DIR_ENV} (for the WebUI process and for pytest) to a folder, with the probe "
                    "extension tests/integration/probe_extension installed in the WebUI")
    listed = [str(n).lower() for n in (webui.get("/sdapi/v1/scripts").get("txt2img") or [])]
    if PROBE_SCRIPT not in listed:
        pytest.skip(f"the probe extension is not installed in the WebUI (GET /sdapi/v1/scripts does not list "
                    f"{PROBE_SCRIPT!r}): copy tests/integration/probe_extension into its extensions/ folder")
    os.makedirs(folder, exist_ok=True)
    return folder


def _records_in(folder: str) -> set:
    return {name for name in os.listdir(folder) if name.endswith(".pt")}


def _generate_and_record(webui, folder: str, payload: dict):
    """Run one generation; return (its infotext, what the probe recorded for it)."""
    before = _records_in(folder)
    generation = webui.txt2img(payload)
    new = sorted(_records_in(folder) - before)
    for _ in range(50):  # the file is written in postprocess, before the answer: this is only a guard
        if new:
            break
        time.sleep(0.1)
        new = sorted(_records_in(folder) - before)
    assert new, (f"the probe wrote nothing to {folder}: start the WebUI with {PROBE_DIR_ENV} set to this same "
                 "folder (the WebUI must run on this machine)")
    assert len(new) == 1, f"expected one probe record for one generation, found {new}"
    record = torch.load(os.path.join(folder, new[0]), weights_only=True)
    return generation.infotext, record


def _per_image(latents: torch.Tensor, t: float) -> torch.Tensor:
    """The post's callback on each image of the batch on its own (its code corrects image 0 only)."""
    return torch.cat([correct(latents[i:i + 1].clone(), t) for i in range(latents.shape[0])])


def _timestep_of_sigma(sigma: float, alphas_cumprod: torch.Tensor) -> float:
    """The fractional training timestep of σ: linear in log σ between the model's table entries."""
    log_sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().log().numpy()
    return float(np.interp(math.log(sigma), log_sigmas, np.arange(len(log_sigmas))))


def _euler_steps(record):
    """Per step: (t, latent step i made from the raw prediction, the latent the sampler holds after step i), from σ_i
    and σ_{i+1} (0 after the last)."""
    table = record["alphas_cumprod"].double()
    sigmas = [float(s[0]) for s in record["sigma"]] + [0.0]
    after = record["x"][1:] + [record["final"]]
    for i, (x, denoised, got) in enumerate(zip(record["x"], record["prediction"], after)):
        x, denoised = x.double(), denoised.double()
        made = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
        yield _timestep_of_sigma(sigmas[i], table), made, got.double()


def _ddim_calls(record):
    """Per model call: (integer timestep, VP latent, ε), as the DDIM loop holds them.

    A1111 hands the callbacks exactly these (its ``sigma`` field is the timestep). Forge-like hosts (Forge, reForge)
    convert before any callback: they show the VP latent × √(σ² + 1) at the real σ = √((1 − ᾱ)/ᾱ) of the rounded
    timestep, and an x0; the loop gets back ε = (x − x0)/σ."""
    fields = [float(s[0]) for s in record["sigma"]]
    if all(f == round(f) for f in fields):  # timesteps (a real σ is never a whole number here)
        return [int(f) for f in fields], [x.double() for x in record["x"]], [e.double() for e in record["prediction"]]
    table = record["alphas_cumprod"].double()
    table_sigmas = ((1 - table) / table).sqrt()
    timesteps = [int((table_sigmas - f).abs().argmin()) for f in fields]
    latents = [x.double() / math.sqrt(f * f + 1) for x, f in zip(record["x"], fields)]
    eps = [(x.double() - x0.double()) / f for x, x0, f in zip(record["x"], record["prediction"], fields)]
    return timesteps, latents, eps


def _ddim_steps(record):
    """Per step: (t, VP latent step i made from the raw ε, the VP latent the sampler holds after step i): A1111's
    η = 0 DDIM update from ᾱ_t to ᾱ at the next lower timestep (Forge and reForge run the same loop)."""
    table = record["alphas_cumprod"].double()
    timesteps, latents, predictions = _ddim_calls(record)
    spacing = timesteps[-2] - timesteps[-1]
    # A1111 (sd_samplers_timesteps.get_timesteps) walks range(0, 1000, 1000 // steps) + 1 downwards: evenly spaced,
    # and the last call's next lower timestep is the first entry, 1
    assert all(a - b == spacing for a, b in zip(timesteps, timesteps[1:])), timesteps
    assert timesteps[-1] - spacing == 1, timesteps
    following = timesteps[1:] + [timesteps[-1] - spacing]
    after = latents[1:] + [record["final"].double()]  # the loop returns the VP latent
    for x, eps, t, t_next, got in zip(latents, predictions, timesteps, following, after):
        a_t, a_next = table[t], table[t_next]
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        yield float(t), a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps, got


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / got.abs().max())


CASES = [("Euler", "sample_euler", _euler_steps), ("DDIM", "ddim", _ddim_steps)]


@pytest.mark.parametrize("sampler,function,steps_of", CASES, ids=[c[0] for c in CASES])
def test_each_step_lands_on_the_post_callback_of_the_step_it_would_have_made(webui, probe_dir, sampler, function,
                                                                             steps_of):
    payload = with_latentfix(txt2img_payload(sampler_name=sampler, scheduler="Automatic", batch_size=2),
                             LATENT_POINT)
    infotext, record = _generate_and_record(webui, probe_dir, payload)
    assert "point=latent" in infotext, f"the infotext does not say the latent point ran:\n{infotext}"
    assert record["sampler_function"] == function, record["sampler_function"]
    assert record["batch"] == 2 and record["x"][0].shape[0] == 2
    calls = len(record["x"])
    assert calls == len(record["prediction"]) == len(record["sigma"]) and calls >= STEPS - 1, calls
    # the probe saw the prediction LatentFix had not touched yet: its after-CFG callback runs first
    order = record["after_cfg_order"]
    ours = [i for i, name in enumerate(order) if "latentfix.py/cfg_after_cfg" in name and "probe" not in name]
    probe = [i for i, name in enumerate(order) if "latentfix_probe" in name]
    assert ours and probe and max(probe) < min(ours), f"after-CFG callbacks run in this order: {order}"

    deviations, moved, times = [], [], []
    for t, made, got in steps_of(record):  # got: the latent after step i (the next call's, or the returned one)
        deviations.append(_relative(got, _per_image(made, t)))
        moved.append(_relative(got, made))  # how far the filters moved that step's latent
        times.append(t)
    print(f"\n{sampler}: {calls} steps, t = {[round(t, 1) for t in times]}\n"
          f"  |latent - post(step)| / max|latent| per step: {[f'{d:.1e}' for d in deviations]}\n"
          f"  max {max(deviations):.2e} (not last step: {max(deviations[:-1]):.2e}); filters moved the latent "
          f"by up to {max(moved):.2e}")
    assert max(deviations) <= TOLERANCE, (
        f"{sampler}: a step did not land on the post's filtered latent: relative deviation per step "
        f"{[f'{d:.1e}' for d in deviations]} at t = {[round(t, 1) for t in times]}")
    # the filters really acted (so the check can fail): the early window and the late window both moved the latent
    early = [m for m, t in zip(moved, times) if t > 700]
    late = [m for m, t in zip(moved, times) if 1 < t < 100]
    assert early and max(early) > 1e-3, f"the early filters did not move the latent: {moved}"
    assert late and max(late) > 1e-3, f"the late filters did not move the latent: {moved}"
