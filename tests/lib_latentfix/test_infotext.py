"""Infotext codec: written keys round-trip exactly; anything else pastes safely."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_latentfix.infotext import ALL_KEYS, GROUP_KEYS, PRESET_KEY, VERSION_KEY, decode, decode_cached, encode
from lib_latentfix.settings import CUSTOM, DEFAULTS, PRESETS, Settings, apply_preset

KEY_PATTERN = r"\w[\w \-/]+"  # what the WebUI can parse back as a key (infotext_utils.py:16)


def on(**kw) -> Settings:
    return replace(DEFAULTS, enabled=True, **kw)


def as_infotext_params(entries):
    """What parse_generation_parameters gives back for our entries (values hold no , : or newline)."""
    for value in entries.values():
        assert "," not in value and ":" not in value and "\n" not in value
    return dict(entries)


def test_keys_are_parsable_by_the_webui():
    import re

    for key in ALL_KEYS:
        assert re.fullmatch(KEY_PATTERN, key)


def test_round_trip_of_each_preset():
    for name in PRESETS:
        chosen = replace(apply_preset(DEFAULTS, name), enabled=True)
        back, problems = decode(as_infotext_params(encode(chosen, "0.1.0")))
        assert problems == []
        assert back == chosen


def test_round_trip_of_custom_values():
    chosen = on(preset=CUSTOM, clamp_adaptive=False, clamp_threshold=2.75, center_channels=(1, 2),
                maximize_channels=(), center_late_t_min=0.0, correction_point="before",
                apply_in_hires=False)
    back, problems = decode(as_infotext_params(encode(chosen, "0.1.0")))
    assert problems == [] and back == chosen


def test_disabled_groups_are_not_written_and_paste_as_off():
    chosen = on(clamp_enabled=False)
    entries = encode(chosen, "0.1.0")
    assert GROUP_KEYS["clamp"] not in entries
    back, _ = decode(entries)
    assert back.clamp_enabled is False


def test_preset_name_and_values_are_both_written():
    entries = encode(on(), "0.1.0")
    assert entries[PRESET_KEY] == "Post defaults"
    assert "window=950-1000" in entries[GROUP_KEYS["clamp"]]


def test_old_image_keeps_its_values_when_a_preset_changes():
    entries = encode(on(), "0.1.0")
    entries[GROUP_KEYS["maximize"]] = entries[GROUP_KEYS["maximize"]].replace("boundary=4", "boundary=3.2")
    back, problems = decode(entries)  # e.g. "Post defaults" once had boundary 3.2
    assert problems == []
    assert back.maximize_boundary == 3.2 and back.preset == CUSTOM


def test_missing_keys_mean_off():
    assert decode({"Steps": "20", "Sampler": "Euler"}) == (None, [])


def test_malformed_values_fall_back_to_defaults_with_problems():
    entries = encode(on(), "0.1.0")
    entries[GROUP_KEYS["clamp"]] = "threshold=abc;boundary=4;window=950-1000;bogus=1"
    back, problems = decode(entries)
    assert back.enabled and back.clamp_threshold == DEFAULTS.clamp_threshold
    assert len(problems) == 2


def test_unusable_combination_falls_back_to_defaults():
    entries = encode(on(), "0.1.0")
    entries[GROUP_KEYS["clamp"]] = "adaptive=0;threshold=9;boundary=4"
    back, problems = decode(entries)
    assert back == on() and problems


def test_decode_cached_reports_once():
    params = encode(on(), "0.1.0")
    params[GROUP_KEYS["maximize"]] = "boundary=nope"
    lines = []
    for _ in range(31):  # one call per control
        decode_cached(params, lines.append)
    assert len(lines) == 1 and "boundary" in lines[0]


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(ALL_KEYS + ("Steps", "Seed")), text, max_size=8))
def test_fuzz_arbitrary_values_never_raise(params):
    back, problems = decode(params)
    assert (back is None) == (VERSION_KEY not in params)
    if back is not None:
        back.schedule()  # always a usable setting


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_truncated_and_reordered_fields(data):
    entries = encode(on(clamp_adaptive=False, center_channels=(0, 3)), "0.1.0")
    mangled = {}
    for key in data.draw(st.permutations(list(entries))):
        value = entries[key]
        cut = data.draw(st.integers(0, len(value)))
        mangled[key] = value[:cut] if data.draw(st.booleans()) else value
        if data.draw(st.booleans()):
            items = value.split(";")
            mangled[key] = ";".join(data.draw(st.permutations(items)))
    back, _ = decode(mangled)
    assert back is not None
    back.schedule()


def test_not_a_mapping_is_harmless():
    assert decode("LatentFix: 1") == (None, [])


def test_numbers_are_written_without_exponents():
    chosen = on(center_late_t_min=0.0, center_late_t_max=0.00001, clamp_ratio=0.9)
    entries = encode(chosen, "0.1.0")
    assert "late_window=0-0.00001" in entries[GROUP_KEYS["center"]] and "e-" not in entries[GROUP_KEYS["center"]]
    back, problems = decode(entries)
    assert problems == [] and back.center_late_t_max == 0.00001


def test_report_tells_what_happened():
    from lib_latentfix.infotext import ERROR_KEY, report

    chosen = on()
    assert report(chosen, "0.1.0", started=False, corrected=False, failure=None) == encode(chosen, "0.1.0")
    assert report(chosen, "0.1.0", started=True, corrected=True, failure=None) == encode(chosen, "0.1.0")
    assert report(chosen, "0.1.0", started=True, corrected=False, failure=None) == {}
    failed = report(chosen, "0.1.0", started=True, corrected=True, failure="turned off after an error: RuntimeError: boom")
    assert failed == {ERROR_KEY: "partly applied, turned off after an error: RuntimeError: boom"}
    assert decode(failed) == (None, [])  # pasting it leaves the extension off


@pytest.mark.parametrize("crafted", ["__latentfix_decoded__", "__latentfix_decoded", "latentfix_decoded"])
def test_decode_cached_ignores_any_text_key_and_leaves_params_alone(crafted):
    """The cache is not in the params' namespace: no key parsed from text can forge it, and params gain no key."""
    for value in ("x", "", (None,), ("x",)):
        params = {VERSION_KEY: "0.1.0", PRESET_KEY: "Gentle", crafted: value}
        before = dict(params)
        lines = []
        assert decode_cached(params, lines.append) == decode(before)[0]
        assert decode_cached(params, lines.append) == decode(before)[0]
        assert params == before and lines == []
