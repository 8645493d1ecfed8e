"""The settings table: schema, ranges, presets, what each refusal says — every other layer derives from it."""

from dataclasses import replace

import pytest

from lib_latentfix import BLOG
from lib_latentfix.arguments import from_named
from lib_latentfix.settings import (
    CHANNEL_LABELS,
    CUSTOM,
    DEFAULTS,
    FIELD_BY_NAME,
    FIELDS,
    PRESET_NAMES,
    PRESETS,
    SettingsError,
    apply_preset,
    matching_preset,
)


def channels_from_labels(value):
    return FIELD_BY_NAME["center_channels"].coerce(value)


def test_defaults_are_the_posts_schedule():
    assert DEFAULTS.schedule().steps == BLOG.steps
    assert matching_preset(DEFAULTS) == "Post defaults"
    assert not DEFAULTS.enabled


def test_every_preset_is_valid_and_recognised():
    for name in PRESETS:
        chosen = apply_preset(DEFAULTS, name)
        assert matching_preset(chosen) == name
        assert chosen.schedule().steps  # each preset does something
    assert PRESET_NAMES[-1] == CUSTOM


def test_presets_differ_as_described():
    colour = apply_preset(DEFAULTS, "Colour balance only").schedule()
    assert {type(s.filter).__name__ for s in colour.steps} == {"Center"}
    gentle = apply_preset(DEFAULTS, "Gentle").schedule()
    assert all(s.strength == 0.5 for s in gentle.steps)


def test_zero_strength_everywhere_does_nothing():
    off = replace(DEFAULTS, enabled=True, clamp_strength=0.0, center_strength=0.0, maximize_strength=0.0)
    assert not off.does_something()
    assert replace(DEFAULTS, enabled=True).does_something()


def test_channels_accept_labels_names_and_digits():
    assert channels_from_labels(list(CHANNEL_LABELS[:2])) == (0, 1)
    assert channels_from_labels("cyan/red, pattern") == (1, 3)
    assert channels_from_labels("012") == (0, 1, 2)
    assert channels_from_labels([2, 0]) == (0, 2)
    assert channels_from_labels("") == ()


def test_labels_are_unique_so_the_webui_remembers_each_control_separately():
    # ui-config.json keys script controls by label (A1111 modules/ui_loadsave.py:36-70): a repeated label made
    # the maximize window start up with the soft clamp's window (1000/950) on a real A1111.
    labels = [f.label for f in FIELDS]
    assert len(set(labels)) == len(labels)


def test_adaptive_clamp_ignores_the_unused_fixed_threshold():
    chosen = from_named({"enabled": True, "clamp_adaptive": True, "clamp_threshold": 4.5, "clamp_boundary": 4.0})
    assert chosen.schedule().steps[0].filter.adaptive == 0.998
    with pytest.raises(SettingsError, match="threshold"):
        from_named({"enabled": True, "clamp_adaptive": False, "clamp_threshold": 4.5, "clamp_boundary": 4.0})


def test_section_headers_say_whether_each_filter_is_on_and_how_strong():
    from lib_latentfix.settings import section_header

    on = replace(DEFAULTS, enabled=True)
    assert section_header(on, "clamp") == "Soft clamp \u2014 on, strength 1"
    assert section_header(replace(on, center_strength=0.5, strength=0.8), "center") == \
        "Center (colour balance) \u2014 on, strength 0.5 \u00d7 0.8 overall"
    assert section_header(replace(on, maximize_enabled=False), "maximize") == "Maximize (range) \u2014 off"
    assert section_header(replace(on, maximize_strength=0.0), "maximize").endswith("(changes nothing)")


def test_without_switches_off_exactly_the_parts_that_did_not_run():
    on = replace(DEFAULTS, enabled=True)
    names = lambda s: [name for name, _ in s.parts()]  # noqa: E731
    assert names(on) == ["clamp", "center_early", "center_late", "maximize"]
    assert names(on.without({"center_late", "maximize"})) == ["clamp", "center_early"]
    assert on.without({"center_late", "maximize"}).center_enabled
    both = on.without({"center_early", "center_late"})
    assert not both.center_enabled and names(both) == ["clamp", "maximize"]
    assert both.center_late_channel_shift == on.center_late_channel_shift  # a disabled section keeps its values
    assert on.schedule().steps == tuple(step for _, step in on.parts())


def test_each_window_reads_as_a_range_lower_bound_first():
    """A window is shown the way a range is read, left to right or top to bottom: its lower bound (t_min) first,
    labelled where the range starts ("… t from"), then its upper bound ("… t to") with the same name before it."""
    from lib_latentfix.settings import WINDOWS, section_fields

    for low, high in WINDOWS:
        lower, upper = FIELD_BY_NAME[low], FIELD_BY_NAME[high]
        laid_out = [f.name for f in section_fields(lower.section)]
        assert laid_out.index(low) < laid_out.index(high), low
        assert lower.label.endswith(" t from") and upper.label.endswith(" t to"), (lower.label, upper.label)
        assert lower.label[:-len(" t from")] == upper.label[:-len(" t to")]


def test_labels_in_a_column_fit_on_one_line_of_forges_column():
    """Controls laid out in columns (the early and late center passes side by side) share half the panel's width:
    in Forge "Early center: window start (timestep)" (37 characters) wraps there, "Early center: channel shift"
    (27) does not."""
    for field in FIELDS:
        if field.column is not None:
            assert len(field.label) <= len("Early center: channel shift"), field.label
