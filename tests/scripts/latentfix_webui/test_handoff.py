"""The hand-off between the callbacks of one model call: per call and per thread, never pinning a generation."""

import gc
import threading
import weakref
from dataclasses import replace

import pytest
import torch

from webui_standin import harness

import latentfix_webui.handoff as handoff
from support.positional import to_positional
from lib_latentfix.settings import DEFAULTS

ON = replace(DEFAULTS, enabled=True)


def args(**changes):
    return to_positional(replace(ON, **changes))


def test_a_nested_generation_between_the_callbacks_leaves_the_outer_step_corrected(capsys):
    """Another extension runs a whole generation inside its cfg_denoiser callback, i.e. between our cfg_denoiser
    and after_cfg of the outer call: both generations are corrected in full, and neither infotext lies."""
    import modules.script_callbacks as sc

    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    reference = host.txt2img(args(), steps=6, seed=9, sampler="Euler")
    nested = {"done": False}

    def other_extension(params):
        if not nested["done"] and params.denoiser.step == 0:
            nested["done"] = True
            nested["run"] = host.txt2img(args(), steps=6, seed=9, sampler="Euler")

    sc.callback_map["callbacks_cfg_denoiser"].append(sc.ScriptCallback("other.py", other_extension, "other"))
    outer = host.txt2img(args(), steps=6, seed=9, sampler="Euler")
    assert torch.equal(outer.latents, reference.latents)
    assert torch.equal(nested["run"].latents, reference.latents)
    assert "LatentFix error" not in outer.processed.infotexts[0] and "LatentFix: " in outer.processed.infotexts[0]


def test_an_unmatched_call_is_said_in_the_infotext_not_claimed(capsys):
    """A call whose prediction never reaches the after-CFG callback (another extension swallowed it) is counted;
    the infotext says the correction was partial instead of listing settings that did not fully run."""
    import modules.script_callbacks as sc

    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    ours = next(e for e in sc.callback_map["callbacks_cfg_after_cfg"] if "latentfix" in e.name)
    original, state = ours.callback, {"n": 0}

    def flaky(params):
        state["n"] += 1
        if state["n"] != 1:  # the first model call's after-CFG never reaches us
            original(params)

    ours.callback = flaky
    run = host.txt2img(args(), steps=6, seed=9, sampler="Euler")
    assert "LatentFix error" in run.processed.infotexts[0] and "could not be matched" in run.processed.infotexts[0]
    assert "ended before their prediction reached LatentFix" in capsys.readouterr().out


def test_threads_have_their_own_hand_off():
    seen = {}

    def worker(name):
        handoff.push(None)
        seen[name] = handoff.pending()
        handoff.pop()

    handoff.push(None)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == 0 for v in seen.values())  # empty entries only: nothing of another thread is visible
    assert handoff.pop() is None


def test_a_failed_model_call_does_not_pin_the_generation():
    """The sampler raises after cfg_denoiser (OOM, NaN check, interrupt): the job and its processing object are
    released as soon as the host lets go of them, even with diagnostics on."""
    import modules.script_callbacks as sc

    host = harness.make_host("a1111", "sdxl")
    host.load_extension()

    def boom(*args, **kwargs):
        raise MemoryError("out of memory")

    ref = {}

    def grab(params):
        ref["p"] = weakref.ref(params.denoiser.p)
        ref["job"] = weakref.ref(params.denoiser.p.latentfix_job)

    sc.callback_map["callbacks_cfg_denoiser"].append(sc.ScriptCallback("grab.py", grab, "grab"))
    host.model.apply_model = boom  # the UNet fails after our cfg_denoiser ran
    with pytest.raises(MemoryError):
        host.txt2img(args(diagnostics=True), steps=4, seed=1, sampler="Euler", is_api=True)
    del host.model.apply_model
    gc.collect()
    assert ref["job"]() is None and ref["p"]() is None
