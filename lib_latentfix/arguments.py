"""Settings from what the hosts hand over: positional script args, a dict of named settings, X/Y/Z overrides,
the Settings page. Plain functions over :mod:`lib_latentfix.settings`; every refusal names each offending setting.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from .settings import (
    CHANNEL_LABELS,
    DEFAULTS,
    FIELD_BY_NAME,
    FIELDS,
    PRESET_FIELDS,
    PRESET_NAMES,
    PRESETS,
    Settings,
    SettingsError,
    _shown_all,
    apply_preset,
    check,
    coerce,
    matching_preset,
    same,
)

# --------------------------------------------------------------------------------------------------------
# script arguments (UI, API)


def from_positional(args: Sequence[Any], defaults: Settings = DEFAULTS) -> Settings:
    """Settings from the WebUI's positional script args (``ui()`` order); missing trailing args keep defaults.

    The filter values are the truth here and the preset name is recomputed from them (the UI keeps the two in
    step), except when every filter value is still the default: then a preset named in the args is applied, so an
    API call ``[true, "Gentle"]`` (padded by the WebUI with the default values) gets Gentle. ``None`` keeps a default.
    """
    if len(args) > len(FIELDS):
        raise SettingsError(f"expected at most {len(FIELDS)} arguments, got {len(args)}")
    values, found = {}, []
    for field, value in zip(FIELDS, args):
        if value is None:
            continue
        try:
            values[field.name] = field.coerce(value)
        except SettingsError as error:
            found.append(str(error))
    if found:
        raise SettingsError("; ".join(found))
    settings = replace(defaults, **values)
    untouched = all(same(getattr(settings, name), getattr(defaults, name)) for name in PRESET_FIELDS)
    named = values.get("preset", defaults.preset)
    if untouched and named in PRESETS:
        settings = apply_preset(settings, named)
    return check(replace(settings, preset=matching_preset(settings)))


def from_named(named: Mapping[str, Any], defaults: Settings = DEFAULTS) -> Settings:
    """Settings from a dict of named values (API). A "preset" is applied first, then the other keys override it.

    Unknown keys and bad values raise SettingsError naming every offending key.
    """
    unknown = [k for k in named if k not in FIELD_BY_NAME]
    if unknown:
        raise SettingsError(f"unknown setting(s) {_shown_all(unknown)}; known: {', '.join(FIELD_BY_NAME)}")
    found, values = [], {}
    for key, value in named.items():
        try:
            values[key] = coerce(key, value)
        except SettingsError as error:
            found.append(str(error))
    if found:
        raise SettingsError("; ".join(found))
    settings = defaults
    if "preset" in values:
        settings = apply_preset(settings, values.pop("preset"))
    settings = replace(settings, **values)
    if any(k in PRESET_FIELDS for k in values):
        settings = replace(settings, preset=matching_preset(settings))
    return check(settings)


def from_script_args(args: Sequence[Any], defaults: Settings = DEFAULTS,
                     padding: Optional[Sequence[Any]] = None) -> Settings:
    """Settings from whatever the WebUI passed: positional args, or one dict of named settings.

    ``padding``: what the host fills unsent args with, when it may be stale (the API builds it once, from ``ui()``,
    and keeps it after a Settings page change). An arg equal to its padding counts as not sent, so it takes the
    current ``defaults``; a value sent that happens to equal the padding counts the same (the host gives no way to
    tell them apart; a dict of named settings is never ambiguous).
    """
    args = list(args)
    if padding is not None:
        args = [None if i < len(padding) and _same_arg(field, value, padding[i]) else value
                for i, (field, value) in enumerate(zip(FIELDS, args))] + args[len(FIELDS):]
    if len(args) >= 1 and isinstance(args[0], Mapping):
        if len(args) > 1 and any(a is not None for a in args[1:]) and not _looks_like_ui_defaults(args[1:], defaults):
            raise SettingsError("a dict of named settings must be the only argument")
        return from_named(args[0], defaults)
    return from_positional(args, defaults)


def _same_arg(field: Any, value: Any, padded: Any) -> bool:
    """Whether a script arg is the value the host padded with (compared as settings values)."""
    if value is None or isinstance(value, Mapping):
        return False
    try:
        return same(field.coerce(value), field.coerce(padded))
    except SettingsError:
        return False


def _looks_like_ui_defaults(rest: Sequence[Any], defaults: Settings) -> bool:
    """The API pads missing args with the ui() defaults; a dict followed by exactly those is a lone dict."""
    for field, value in zip(FIELDS[1:], rest):
        if value is None:
            continue
        try:
            if not same(field.coerce(value), getattr(defaults, field.name)):
                return False
        except SettingsError:
            return False
    return True


def ui_value(field_name: str, value: Any) -> Any:
    """A setting's value as its UI control holds it (channels as labels, choices as their labels)."""
    field = FIELD_BY_NAME[field_name]
    if field.kind == "channels":
        return [CHANNEL_LABELS[c] for c in value]
    if field.kind == "choice":
        return field.choice_label(value)
    return value


def with_overrides(settings: Settings, overrides: Optional[Mapping[str, Any]]) -> Settings:
    """``settings`` with per-generation overrides (X/Y/Z axes) applied; a preset override comes first."""
    if not overrides:
        return settings
    return from_named(overrides, settings)


# --------------------------------------------------------------------------------------------------------
# the WebUI's Settings page: defaults of the enable, the preset, the strength and the advanced options

OPTION_PREFIX = "latentfix_default_"
OPTION_FIELDS: tuple[str, ...] = ("enabled", "preset", "strength", "correction_point", "apply_in_hires",
                                  "skip_inner_passes", "diagnostics")


def option_key(name: str) -> str:
    return OPTION_PREFIX + name


def defaults_from_options(read: Callable[[str, Any], Any], report: Callable[[str], None] = lambda _: None) -> Settings:
    """The defaults after the Settings page: ``read(key, fallback)`` returns a stored option or the fallback.

    A bad stored value is reported through ``report`` (one line naming the option and the value used) and the
    built-in default is kept.
    """
    settings = DEFAULTS
    for name in OPTION_FIELDS:
        key, fallback = option_key(name), getattr(DEFAULTS, name)
        raw = read(key, fallback)
        try:
            value = coerce(name, raw)
        except SettingsError as error:
            report(f"Settings page option {key} = {raw!r} is not usable ({error}); using {fallback!r}")
            continue
        settings = apply_preset(settings, value) if name == "preset" else replace(settings, **{name: value})
    return settings


# --------------------------------------------------------------------------------------------------------
# X/Y/Z plot


@dataclass(frozen=True)
class Axis:
    """An X/Y/Z plot axis: its label, the setting it drives, the value type and (for choices) the values."""

    label: str
    field: str
    kind: str  # "bool" | "float" | "choice"
    choices: tuple[str, ...] = ()


def xyz_axes() -> tuple[Axis, ...]:
    """Axes for the enable, the preset, the correction point, each filter's on/off and every numeric setting."""
    point = FIELD_BY_NAME["correction_point"]
    axes = [
        Axis("[LatentFix] Enable", "enabled", "bool", ("True", "False")),
        Axis("[LatentFix] Preset", "preset", "choice", PRESET_NAMES),
        Axis("[LatentFix] Correction point", "correction_point", "choice", point.choices),
    ]
    for f in FIELDS:
        if f.kind == "float":
            axes.append(Axis(f"[LatentFix] {f.label}", f.name, "float"))
        elif f.kind == "bool" and f.name.endswith("_enabled") and f.name != "enabled":
            axes.append(Axis(f"[LatentFix] {f.label} on/off", f.name, "bool", ("True", "False")))
    return tuple(axes)


def check_axis_values(field: str, values: Iterable[Any]) -> None:
    """Refuse an axis whose values are not acceptable on their own (before the grid starts)."""
    found = []
    for value in values:
        try:
            coerce(field, value)
        except SettingsError as error:
            found.append(str(error))
    if found:
        raise SettingsError("; ".join(dict.fromkeys(found)))


def refused_cells(base: Settings, axes: Mapping[str, Sequence[Any]]) -> list[str]:
    """Every combination of the grid's axes that the base settings would refuse, with why (empty: all fine).

    ``axes`` maps a field name to its axis values, one entry per LatentFix axis of the grid.
    """
    names = list(axes)
    out = []
    for combination in itertools.product(*(axes[name] for name in names)):
        cell = dict(zip(names, combination))
        try:
            with_overrides(base, cell)
        except SettingsError as error:
            shown = ", ".join(f"{FIELD_BY_NAME[k].label}={v}" for k, v in cell.items())
            out.append(f"cell ({shown}): {error}")
    return out
