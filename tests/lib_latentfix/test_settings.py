"""Settings schema, presets, API arguments: what the UI, the API and X/Y/Z hand the extension."""

from dataclasses import replace

import pytest

from lib_latentfix import BLOG
from lib_latentfix.settings import (
    CHANNEL_LABELS,
    CUSTOM,
    DEFAULTS,
    FIELDS,
    PRESET_NAMES,
    PRESETS,
    Settings,
    SettingsError,
    apply_preset,
    channels_from_labels,
    defaults_from_options,
    from_named,
    from_positional,
    from_script_args,
    matching_preset,
    to_positional,
    with_overrides,
    xyz_axes,
)


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


def test_positional_round_trip_in_ui_order():
    chosen = replace(apply_preset(DEFAULTS, "Gentle"), enabled=True, maximize_channels=(0, 2))
    back = from_positional(to_positional(chosen))
    assert back == replace(chosen, preset=CUSTOM)
    assert len(to_positional(chosen)) == len(FIELDS)


def test_positional_preset_follows_the_sliders():
    args = to_positional(apply_preset(DEFAULTS, "Gentle"))
    args[1] = "Post defaults"  # a stale dropdown value does not override the sliders
    assert from_positional(args).preset == "Gentle"


def test_fewer_positional_args_keep_defaults():
    chosen = from_positional([True])
    assert chosen.enabled and chosen.schedule() == DEFAULTS.schedule()


def test_named_dict_from_the_issue():
    chosen = from_script_args([{"enabled": True, "preset": "Post defaults", "maximize_boundary": 3.5}])
    assert chosen.enabled and chosen.maximize_boundary == 3.5
    assert chosen.preset == CUSTOM
    assert chosen.center_early_channel_shift == 0.8


def test_named_dict_with_api_padding_is_accepted():
    # the API pads the args after the dict with the ui() defaults
    padded = [{"enabled": True, "preset": "Gentle"}] + to_positional(DEFAULTS)[1:]
    chosen = from_script_args(padded)
    assert chosen.preset == "Gentle" and chosen.clamp_strength == 0.5


def test_named_dict_followed_by_other_values_is_refused():
    args = [{"enabled": True}] + to_positional(replace(DEFAULTS, clamp_threshold=1.0))[1:]
    with pytest.raises(SettingsError, match="only argument"):
        from_script_args(args)


@pytest.mark.parametrize(
    "named,message",
    [
        ({"enabeld": True}, "enabeld"),
        ({"maximize_boundary": "big"}, "maximize_boundary"),
        ({"maximize_boundary": 100}, "maximize_boundary"),
        ({"preset": "Vivid"}, "preset"),
        ({"center_channels": ["magenta"]}, "channel"),
        ({"clamp_t_min": 990, "clamp_t_max": 950}, "t_min"),
        ({"clamp_adaptive": False, "clamp_threshold": 6.0}, "threshold"),
        ({"correction_point": "sometimes"}, "correction_point"),
        ({"enabled": "perhaps"}, "enabled"),
    ],
)
def test_bad_named_settings_are_answered_with_a_clear_error(named, message):
    with pytest.raises(SettingsError, match=message):
        from_named(named)


def test_channels_accept_labels_names_and_digits():
    assert channels_from_labels(list(CHANNEL_LABELS[:2])) == (0, 1)
    assert channels_from_labels("cyan/red, pattern") == (1, 3)
    assert channels_from_labels("012") == (0, 1, 2)
    assert channels_from_labels([2, 0]) == (0, 2)
    assert channels_from_labels("") == ()


def test_overrides_apply_preset_first():
    base = replace(DEFAULTS, enabled=False)
    chosen = with_overrides(base, {"enabled": "True", "preset": "Gentle", "maximize_boundary": 3.0})
    assert chosen.enabled and chosen.clamp_strength == 0.5 and chosen.maximize_boundary == 3.0
    assert with_overrides(base, None) is base


def test_settings_page_defaults():
    stored = {"latentfix_default_enabled": True, "latentfix_default_preset": "Colour balance only",
              "latentfix_default_apply_in_hires": False, "latentfix_default_correction_point": "nonsense"}
    chosen = defaults_from_options(lambda key, fallback: stored.get(key, fallback))
    assert chosen.enabled and not chosen.apply_in_hires and not chosen.maximize_enabled
    assert chosen.correction_point == DEFAULTS.correction_point  # a bad stored value is ignored


def test_xyz_axes_cover_enable_preset_and_every_number():
    axes = xyz_axes()
    fields = {a.field for a in axes}
    assert {"enabled", "preset"} <= fields
    assert all(f.name in fields for f in FIELDS if f.kind == "float")
    assert len({a.label for a in axes}) == len(axes)


def test_labels_are_unique_so_the_webui_remembers_each_control_separately():
    # ui-config.json keys script controls by label (A1111 modules/ui_loadsave.py:36-70): a repeated label made
    # the maximize window start up with the soft clamp's window (1000/950) on a real A1111.
    labels = [f.label for f in FIELDS]
    assert len(set(labels)) == len(labels)


def test_api_preset_by_position_is_applied_over_default_sliders():
    # the WebUI pads [true, "Gentle"] with the ui() defaults: the sliders are untouched, so the preset counts
    padded = [True, "Gentle"] + to_positional(DEFAULTS)[2:]
    for args in ([True, "Gentle"], padded):
        chosen = from_script_args(args)
        assert chosen.preset == "Gentle" and chosen.clamp_strength == 0.5
    moved = list(padded)
    moved[FIELD_NAMES.index("maximize_boundary")] = 3.0  # a moved slider wins over the dropdown
    assert from_script_args(moved).preset == CUSTOM and from_script_args(moved).clamp_strength == 1.0


def test_positional_none_keeps_the_default():
    args = to_positional(replace(DEFAULTS, enabled=True))
    args[FIELD_NAMES.index("clamp_enabled")] = None
    assert from_positional(args).clamp_enabled is True


def test_adaptive_clamp_ignores_the_unused_fixed_threshold():
    chosen = from_named({"enabled": True, "clamp_adaptive": True, "clamp_threshold": 4.5, "clamp_boundary": 4.0})
    assert chosen.schedule().steps[0].filter.adaptive == 0.998
    with pytest.raises(SettingsError, match="threshold"):
        from_named({"enabled": True, "clamp_adaptive": False, "clamp_threshold": 4.5, "clamp_boundary": 4.0})


FIELD_NAMES = [f.name for f in FIELDS]
