"""The overall strength end to end, and refused API settings answered in one line (never a traceback)."""

from dataclasses import replace

import torch

from webui_standin import harness

from support.positional import to_positional
from lib_latentfix.settings import DEFAULTS

ON = replace(DEFAULTS, enabled=True)


def args(**changes):
    return to_positional(replace(ON, **changes))


def _host():
    host = harness.make_host("a1111", "sdxl")
    host.load_extension()
    return host


def test_strength_0_is_bit_identical_to_off_and_1_is_the_preset():
    host = _host()
    off = host.txt2img(to_positional(DEFAULTS), steps=8, seed=4, batch_size=2)
    zero = host.txt2img(args(strength=0.0), steps=8, seed=4, batch_size=2)
    assert torch.equal(zero.latents, off.latents) and "LatentFix" not in zero.processed.infotexts[0]
    full = host.txt2img(args(strength=1.0), steps=8, seed=4, batch_size=2)
    named = host.txt2img([{"enabled": True, "preset": "Post defaults"}], steps=8, seed=4, batch_size=2)
    assert torch.equal(full.latents, named.latents)
    half = host.txt2img(args(strength=0.5), steps=8, seed=4, batch_size=2)
    assert not torch.equal(half.latents, full.latents) and not torch.equal(half.latents, off.latents)


def test_strength_is_written_pasted_and_an_old_infotext_pastes_as_1():
    from modules import infotext_utils

    host = _host()
    run = host.txt2img(args(strength=0.35), steps=6, seed=4)
    text = run.processed.infotexts[0]
    assert "strength=0.35" in text.split("LatentFix options: ")[1]
    params = infotext_utils.parse_generation_parameters(text)
    script = host.extension.script("txt2img")
    readers = dict((c.elem_id, r) for c, r in script.infotext_fields)
    assert readers[script.elem_id("strength")](params) == 0.35
    old = {k: v for k, v in params.items() if not k.startswith("__")}
    old["LatentFix options"] = "point=after;hires=1;skip_inner=1"  # written before the strength existed
    assert readers[script.elem_id("strength")](old) == 1.0


def test_strength_has_an_xyz_axis_and_an_api_name():
    from lib_latentfix.arguments import xyz_axes

    assert any(a.field == "strength" and a.label == "[LatentFix] Strength" for a in xyz_axes())
    host = _host()
    run = host.txt2img([{"enabled": True, "strength": 0.5}], steps=6, seed=4)
    assert "strength=0.5" in run.processed.infotexts[0]


def test_a_huge_number_over_the_api_is_refused_in_the_info_not_a_traceback(capsys):
    host = _host()
    run = host.txt2img([{"enabled": True, "maximize_boundary": 10**400}], steps=4, seed=1, is_api=True)
    out = capsys.readouterr().out
    assert "LatentFix error" in run.processed.infotexts[0] and "maximize_boundary (Maximize boundary)" in out
    assert host.errors == [] and "Traceback" not in out


def test_before_guidance_is_not_offered_on_forge():
    host = harness.make_host("forge", "sdxl")
    host.load_extension()
    radio = next(c for c in host.extension.script("txt2img").controls if c.elem_id.endswith("correction_point"))
    assert [c if isinstance(c, str) else c[0] for c in radio.choices] == ["sampler latent (as the post)",
                                                                           "after guidance"]
    assert radio.value == "sampler latent (as the post)"



def test_a_huge_unknown_name_over_the_api_is_cut_in_the_info_and_the_console(capsys):
    host = _host()
    huge = "k" * 1_000_000
    run = host.txt2img([{"enabled": True, huge: 1}], steps=4, seed=1, is_api=True)
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "unknown setting" in line)
    assert "LatentFix error" in run.processed.infotexts[0] and len(run.processed.infotexts[0]) < 2000
    assert len(line) < 1000 and "kkk..." in line and host.errors == []


def test_pasting_a_huge_unknown_item_or_window_gives_one_short_console_line(capsys):
    from modules import infotext_utils

    host = _host()
    script = host.extension.script("txt2img")
    for group in ("threshold=3;" + "w" * 1_000_000 + "=1", "window=" + "9" * 1_000_000,
                  ";".join(f"item{i}=1" for i in range(100_000))):
        text = f"a cat\nSteps: 20, Seed: 1, LatentFix: 0.1.0, LatentFix clamp: {group}"
        infotext_utils.paste_infotext(script.infotext_fields, text)
        lines = [line for line in capsys.readouterr().out.splitlines() if "malformed" in line]
        assert len(lines) == 1 and len(lines[0]) < 2000
