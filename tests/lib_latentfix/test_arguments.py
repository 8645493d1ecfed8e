"""Settings from what the hosts hand over: positional args, named dicts, X/Y/Z overrides, the Settings page."""

from dataclasses import replace

import pytest

from lib_latentfix.arguments import (
    defaults_from_options,
    from_named,
    from_positional,
    from_script_args,
    with_overrides,
    xyz_axes,
)
from lib_latentfix.settings import CUSTOM, DEFAULTS, FIELDS, SettingsError, apply_preset
from support.positional import to_positional


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


FIELD_NAMES = [f.name for f in FIELDS]


@pytest.mark.parametrize("named", [{"n" * 1_000_000: 1}, {f"name{i}": 1 for i in range(50_000)},
                                   {"enabled": True, "x" * 1_000_000: "y" * 1_000_000}])
def test_unknown_names_are_cut_like_values(named):
    with pytest.raises(SettingsError) as caught:
        from_named(named)
    text = str(caught.value)
    assert "unknown setting" in text and len(text) < 1500 and ("..." in text or "49992 more" in text)


def test_coerce_of_an_unknown_huge_name_is_cut():
    from lib_latentfix.settings import coerce

    with pytest.raises(SettingsError) as caught:
        coerce("z" * 1_000_000, 1)
    assert len(str(caught.value)) < 200


def test_args_equal_to_a_stale_padding_take_the_current_defaults():
    """The API pads with the defaults of when it first built them; after a Settings page change (here: strength
    0.5, preset Gentle) a lone dict is still accepted and unsent positional args take the current defaults."""
    padding = to_positional(DEFAULTS)
    current = replace(apply_preset(DEFAULTS, "Gentle"), strength=0.5)
    lone = from_script_args([{"enabled": True}] + padding[1:], current, padding)
    assert lone == replace(current, enabled=True)
    positional = from_script_args([True] + padding[1:], current, padding)
    assert positional == replace(current, enabled=True)
    sent = from_script_args([True, "Range only", *padding[2:]], current, padding)
    assert sent.preset == "Range only" and sent.strength == 0.5
    with pytest.raises(SettingsError, match="only argument"):
        from_script_args([{"enabled": True}, True, "Gentle", False], current, padding)
