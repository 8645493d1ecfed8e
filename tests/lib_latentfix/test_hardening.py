"""Hostile and careless input to the settings, the infotext and the API arguments: one clear refusal naming each
offending setting, never a traceback; the infotext says exactly what ran."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_latentfix.arguments import defaults_from_options, from_named, from_positional
from support.positional import to_positional
from lib_latentfix.infotext import decode, encode
from lib_latentfix.settings import DEFAULTS, FIELDS, PRESET_NAMES, SettingsError, check


@pytest.mark.parametrize("value", [10**400, -10**400, "1e400", float("inf"), float("nan"), "nan", 2**1024])
def test_huge_and_non_finite_numbers_are_refused_in_one_line(value):
    with pytest.raises(SettingsError) as caught:
        from_named({"maximize_boundary": value})
    assert "maximize_boundary (Maximize boundary)" in str(caught.value) and "\n" not in str(caught.value)


def test_every_refusal_names_the_setting_by_api_name_and_label():
    cases = {
        "center_channels": ({"center_channels": [0, 5]}, "center_channels (Center channels)"),
        "window": ({"clamp_t_min": 990, "clamp_t_max": 960},
                   "clamp_t_min (Clamp: t from) must be below clamp_t_max (Clamp: t to)"),
        "threshold": ({"clamp_adaptive": False, "clamp_threshold": 6.0, "clamp_boundary": 4.0},
                      "clamp_threshold (Clamp threshold) must not exceed clamp_boundary (Clamp boundary)"),
        "choice": ({"correction_point": "sometimes"}, "correction_point (Correction point)"),
    }
    for named, expected in cases.values():
        with pytest.raises(SettingsError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            from_named(named)


def test_every_bad_relation_is_reported_not_only_the_first():
    with pytest.raises(SettingsError) as caught:
        from_named({"clamp_t_min": 990, "clamp_t_max": 960, "maximize_t_min": 200, "maximize_t_max": 100})
    assert "clamp_t_min" in str(caught.value) and "maximize_t_min" in str(caught.value)


def test_every_bad_positional_value_is_reported():
    args = to_positional(replace(DEFAULTS, enabled=True))
    names = [f.name for f in FIELDS]
    args[names.index("clamp_ratio")] = 7
    args[names.index("maximize_boundary")] = "wide"
    with pytest.raises(SettingsError) as caught:
        from_positional(args)
    assert "clamp_ratio (Adaptive ratio)" in str(caught.value) and "maximize_boundary" in str(caught.value)


def test_old_display_labels_of_the_correction_point_are_still_accepted():
    assert from_named({"correction_point": "before guidance (A1111 only)"}).correction_point == "before"
    assert from_named({"correction_point": "after guidance"}).correction_point == "after"


def test_a_bad_settings_page_value_is_named_once_with_the_value_used():
    said = []
    chosen = defaults_from_options(lambda key, fallback: "gentle" if key.endswith("preset") else fallback, said.append)
    assert chosen.preset == DEFAULTS.preset
    assert len(said) == 1 and "latentfix_default_preset = 'gentle'" in said[0] and "'Post defaults'" in said[0]


def _value(field):
    if field.kind == "bool":
        return st.booleans()
    if field.kind == "float":
        return st.floats(field.minimum, field.maximum, allow_nan=False, allow_infinity=False)
    if field.kind == "channels":
        return st.lists(st.integers(0, 3), unique=True).map(lambda c: tuple(sorted(c)))
    return st.sampled_from([c for c in field.choices if c != "Custom"] or list(PRESET_NAMES))


@st.composite
def accepted_settings(draw):
    values = {f.name: draw(_value(f)) for f in FIELDS if f.name not in ("preset", "enabled")}
    chosen = replace(DEFAULTS, **values, enabled=True)
    try:
        check(chosen)
    except SettingsError:
        from hypothesis import assume
        assume(False)
    return chosen


@settings(max_examples=300, deadline=None)
@given(accepted_settings())
def test_infotext_round_trips_every_accepted_setting_exactly(chosen):
    """What the infotext says is exactly what ran: decode(encode(s)) == s for every value the API accepts
    (1e-7 is not written as 0, 99.9999996 not as 100)."""
    back, found = decode(encode(chosen, "x"))
    assert found == []
    expected = replace(chosen, preset=back.preset, diagnostics=DEFAULTS.diagnostics)
    for section in ("clamp", "center", "maximize"):
        if not getattr(chosen, f"{section}_enabled"):  # a section that is off is written as off, values aside
            expected = replace(expected, **{f.name: getattr(back, f.name) for f in FIELDS if f.section == section})
    assert back == expected


@pytest.mark.parametrize("changes", [dict(maximize_t_min=1e-7), dict(center_late_t_max=99.9999996,
                                                                        center_late_t_min=99.9999995),
                                     dict(clamp_strength=4e-7), dict(strength=1e-300)])
def test_tiny_and_long_values_survive_the_infotext(changes):
    chosen = replace(DEFAULTS, enabled=True, **changes)
    check(chosen)
    back, found = decode(encode(chosen, "x"))
    assert found == [] and all(getattr(back, k) == v for k, v in changes.items())
    assert all("e-" not in v for v in encode(chosen, "x").values())
