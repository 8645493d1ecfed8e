"""The extension's settings as plain data: one flat, ordered schema shared by the UI, infotext, API and X/Y/Z.

``FIELDS`` lists every setting in the order the WebUI passes script arguments (the order of ``ui()``).
:class:`Settings` holds one value per field; :func:`Settings.schedule` turns it into a
:class:`~lib_latentfix.schedule.Schedule`. Presets are named ``Settings`` overrides.

The filters follow the source post's callback, one group each:

* soft clamp — early (t > 950), adaptive limits (0.998 of the image's largest value);
* center — an early pass (t > 700, shifts 0.8 / 0.8) and a late pass (1 < t < 100, shifts 0.6 / 1.0);
* maximize — late (1 < t < 100), channels 0–2 to ±4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Mapping, Optional, Sequence

from .filters import check_channels
from .schedule import Center, Maximize, Schedule, SoftClamp, Step

CHANNEL_LABELS: tuple[str, ...] = ("0 luminance", "1 cyan/red", "2 lime/purple", "3 pattern")

AFTER_CFG = "after guidance"
BEFORE_CFG = "before guidance (A1111 only)"
CORRECTION_POINTS: tuple[str, ...] = (AFTER_CFG, BEFORE_CFG)

CUSTOM = "Custom"


@dataclass(frozen=True)
class Settings:
    """Every user-facing setting, with the source post's schedule as the defaults."""

    enabled: bool = False
    preset: str = "Post defaults"
    # soft clamp
    clamp_enabled: bool = True
    clamp_adaptive: bool = True
    clamp_ratio: float = 0.998
    clamp_threshold: float = 3.5
    clamp_boundary: float = 4.0
    clamp_strength: float = 1.0
    clamp_t_min: float = 950.0
    clamp_t_max: float = 1000.0
    # center
    center_enabled: bool = True
    center_channels: tuple[int, ...] = (0, 1, 2, 3)
    center_strength: float = 1.0
    center_early_channel_shift: float = 0.8
    center_early_full_shift: float = 0.8
    center_early_t_min: float = 700.0
    center_early_t_max: float = 1000.0
    center_late_channel_shift: float = 0.6
    center_late_full_shift: float = 1.0
    center_late_t_min: float = 1.0
    center_late_t_max: float = 100.0
    # maximize
    maximize_enabled: bool = True
    maximize_boundary: float = 4.0
    maximize_channels: tuple[int, ...] = (0, 1, 2)
    maximize_strength: float = 1.0
    maximize_t_min: float = 1.0
    maximize_t_max: float = 100.0
    # advanced
    correction_point: str = AFTER_CFG
    apply_in_hires: bool = True
    skip_inner_passes: bool = True
    diagnostics: bool = False

    def schedule(self) -> Schedule:
        """The schedule these settings describe (steps of disabled groups left out)."""
        steps: list[Step] = []
        if self.clamp_enabled:
            clamp = SoftClamp(self.clamp_threshold, self.clamp_boundary, self.clamp_ratio if self.clamp_adaptive else 0.0)
            steps.append(Step(clamp, self.clamp_t_min, self.clamp_t_max, self.clamp_strength))
        if self.center_enabled:
            early = Center(self.center_early_channel_shift, self.center_early_full_shift, self.center_channels)
            late = Center(self.center_late_channel_shift, self.center_late_full_shift, self.center_channels)
            steps.append(Step(early, self.center_early_t_min, self.center_early_t_max, self.center_strength))
            steps.append(Step(late, self.center_late_t_min, self.center_late_t_max, self.center_strength))
        if self.maximize_enabled:
            op = Maximize(self.maximize_boundary, self.maximize_channels)
            steps.append(Step(op, self.maximize_t_min, self.maximize_t_max, self.maximize_strength))
        return Schedule(self.preset, tuple(steps)).effective()

    def does_something(self) -> bool:
        """True when enabled and at least one filter can change the latent."""
        return self.enabled and bool(self.schedule().steps)


@dataclass(frozen=True)
class Field:
    """How one setting is shown and checked: kind, range, label, hint."""

    name: str
    kind: str  # "bool" | "float" | "choice" | "channels"
    label: str
    hint: str
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.01
    choices: tuple[str, ...] = ()
    group: str = "main"

    @property
    def default(self) -> Any:
        return getattr(DEFAULTS, self.name)


def _window(prefix: str, group: str, what: str, label: str) -> tuple[Field, Field]:
    end, start = f"{label} window end (timestep)", f"{label} window start (timestep)"
    return (
        Field(f"{prefix}_t_min", "float", end, f"{what} stops once the timestep falls to this value "
              "(1000 = pure noise, 0 = finished image; 0 reaches the very last step).", 0, 1000, 1, group=group),
        Field(f"{prefix}_t_max", "float", start, f"{what} starts once the timestep falls below this "
              "value (1000 = from the first step).", 0, 1000, 1, group=group),
    )


DEFAULTS = Settings()

FIELDS: tuple[Field, ...] = (
    Field("enabled", "bool", "Enable", "Turn the latent corrections on for this generation."),
    Field("preset", "choice", "Preset", "Load a set of values for every slider below; moving any slider makes it "
          "'Custom'.", choices=()),  # choices filled from PRESETS below
    # soft clamp
    Field("clamp_enabled", "bool", "Soft clamp", "Remove outliers early on: values beyond the threshold are squeezed "
          "toward the boundary, which tames blown-out detail and high-CFG artefacts.", group="clamp"),
    Field("clamp_adaptive", "bool", "Adaptive limits (post)", "Take the limits from each image (ratio × its largest "
          "value), as the post does; off uses the fixed threshold and boundary.", group="clamp"),
    Field("clamp_ratio", "float", "Adaptive ratio", "With adaptive limits: boundary = ratio × largest value, threshold = "
          "ratio × boundary. Lower squeezes harder.", 0.9, 1.0, 0.001, group="clamp"),
    Field("clamp_threshold", "float", "Clamp threshold", "Values beyond ± this are squeezed (fixed limits).", 0.0, 10.0, 0.05,
          group="clamp"),
    Field("clamp_boundary", "float", "Clamp boundary", "Squeezed values end up within ± this; images whose largest value is "
          "below it are left alone.", 0.5, 10.0, 0.05, group="clamp"),
    Field("clamp_strength", "float", "Clamp strength", "How much of the soft clamp to apply (0 = none, 1 = full).", group="clamp"),
    *_window("clamp", "clamp", "The soft clamp", "Clamp"),
    # center
    Field("center_enabled", "bool", "Center (colour balance)", "Pull each channel's average toward zero: removes colour "
          "casts (SDXL's yellow) and brightness drift.", group="center"),
    Field("center_channels", "channels", "Center channels", "Which latent channels are re-centred: luminance (brightness), "
          "cyan/red, lime/purple (colour), pattern (structure).", group="center"),
    Field("center_strength", "float", "Center strength", "How much of the centering to apply (0 = none, 1 = full).",
          group="center"),
    Field("center_early_channel_shift", "float", "Early center: channel shift", "Early pass: share of each channel's own "
          "average removed (colour cast).", group="center"),
    Field("center_early_full_shift", "float", "Early center: full shift", "Early pass: share of the whole image's average "
          "removed afterwards (overall brightness).", group="center"),
    *_window("center_early", "center", "The early centering", "Early center:"),
    Field("center_late_channel_shift", "float", "Late center: channel shift", "Late pass: share of each channel's own average "
          "removed before maximize.", group="center"),
    Field("center_late_full_shift", "float", "Late center: full shift", "Late pass: share of the whole image's average "
          "removed before maximize.", group="center"),
    *_window("center_late", "center", "The late centering", "Late center:"),
    # maximize
    Field("maximize_enabled", "bool", "Maximize (range)", "Stretch the colour channels near the end so the largest "
          "value reaches the boundary: more contrast and saturation, full use of the VAE's range.", group="maximize"),
    Field("maximize_boundary", "float", "Maximize boundary", "The largest value after stretching (the VAE's useful range is "
          "about ±4; lower is softer).", 0.5, 8.0, 0.05, group="maximize"),
    Field("maximize_channels", "channels", "Maximize channels", "Which channels are stretched; the post stretches luminance and "
          "both colour channels, not pattern.", group="maximize"),
    Field("maximize_strength", "float", "Maximize strength", "How much of the stretch to apply (0 = none, 1 = full).",
          group="maximize"),
    *_window("maximize", "maximize", "Maximize", "Maximize"),
    # advanced
    Field("correction_point", "choice", "Correction point", "After guidance corrects the final (CFG-combined) "
          "prediction of each image, on every WebUI. Before guidance corrects the separate prompt/negative "
          "predictions; only AUTOMATIC1111 calls that hook (Forge and reForge never do).",
          choices=CORRECTION_POINTS, group="advanced"),
    Field("apply_in_hires", "bool", "Apply in hires fix pass", "Also correct during the hires fix second pass.",
          group="advanced"),
    Field("skip_inner_passes", "bool", "Skip inner passes of other extensions (ADetailer…)", "Leave detail passes of "
          "other extensions (ADetailer's face fix and similar) alone, so no mismatched box appears.", group="advanced"),
    Field("diagnostics", "bool", "Show latent diagnostics", "Add a per-step chart of each channel and a four-channel "
          "view of the final latent to the gallery (does not change the image).", group="advanced"),
)

FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
assert tuple(f.name for f in FIELDS) == tuple(f.name for f in fields(Settings)), "FIELDS must follow Settings"
# The WebUI remembers script controls in ui-config.json by label (modules/ui_loadsave.py:36-70, key
# ".../<label>/value"): two controls with one label would share one remembered value.
assert len({f.label for f in FIELDS}) == len(FIELDS), "every label must be unique"

# Fields a preset sets (everything that shapes the correction, not the enable or the advanced options).
PRESET_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.group in ("clamp", "center", "maximize"))


def _preset(**overrides: Any) -> dict[str, Any]:
    values = {name: getattr(DEFAULTS, name) for name in PRESET_FIELDS}
    values.update(overrides)
    return values


PRESETS: dict[str, dict[str, Any]] = {
    "Post defaults": _preset(),
    "Colour balance only": _preset(clamp_enabled=False, maximize_enabled=False),
    "Gentle": _preset(clamp_strength=0.5, center_strength=0.5, maximize_strength=0.5),
    "Range only": _preset(clamp_enabled=False, center_early_channel_shift=0.0, center_early_full_shift=0.0),
}
PRESET_NAMES: tuple[str, ...] = (*PRESETS, CUSTOM)
FIELD_BY_NAME["preset"] = replace(FIELD_BY_NAME["preset"], choices=PRESET_NAMES)
FIELDS = tuple(FIELD_BY_NAME[f.name] for f in FIELDS)


class SettingsError(ValueError):
    """A setting's name or value is not acceptable; the message says which and why."""


# --------------------------------------------------------------------------------------------------------
# coercion of single values


def channels_from_labels(value: Any) -> tuple[int, ...]:
    """Channel indices from UI labels ("1 cyan/red"), names ("cyan/red"), digits ("012", "0,1,2") or ints."""
    if isinstance(value, str):
        items: list[Any] = [item.strip() for item in value.split(",") if item.strip()]
        if len(items) == 1 and items[0].isdigit():
            items = list(items[0])
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise SettingsError(f"channels must be a list of channels, got {value!r}")
    indices = [_channel_index(item) for item in items]
    try:
        return check_channels("channels", sorted(set(indices)), len(CHANNEL_LABELS))
    except ValueError as error:
        raise SettingsError(str(error)) from None


def _channel_index(item: Any) -> int:
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    if isinstance(item, str):
        text = item.strip()
        for index, label in enumerate(CHANNEL_LABELS):
            if text in (label, label.split(" ", 1)[1], str(index)):
                return index
    raise SettingsError(f"unknown channel {item!r}; use 0-3 or one of {', '.join(CHANNEL_LABELS)}")


def coerce(name: str, value: Any) -> Any:
    """``value`` converted to the field's type and checked against its range; raises SettingsError."""
    field = FIELD_BY_NAME.get(name)
    if field is None:
        raise SettingsError(f"unknown setting {name!r}")
    if field.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.strip().lower() in ("true", "1", "yes", "on")
        raise SettingsError(f"{name} must be true or false, got {value!r}")
    if field.kind == "float":
        if isinstance(value, bool):
            raise SettingsError(f"{name} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(number) or not field.minimum <= number <= field.maximum:
            raise SettingsError(f"{name} must be between {field.minimum:g} and {field.maximum:g}, got {value!r}")
        return number
    if field.kind == "choice":
        if value not in field.choices:
            raise SettingsError(f"{name} must be one of {', '.join(map(repr, field.choices))}, got {value!r}")
        return value
    return channels_from_labels(value)


def check(settings: Settings) -> Settings:
    """Check every value and the relations between them (windows, clamp limits); return ``settings``."""
    for field in FIELDS:
        coerce(field.name, getattr(settings, field.name))
    try:
        settings.schedule()
    except ValueError as error:
        raise SettingsError(str(error)) from None
    return settings


# --------------------------------------------------------------------------------------------------------
# presets


def apply_preset(settings: Settings, name: str) -> Settings:
    """``settings`` with every filter value taken from preset ``name`` ("Custom" changes nothing)."""
    if name == CUSTOM:
        return replace(settings, preset=CUSTOM)
    if name not in PRESETS:
        raise SettingsError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return replace(settings, preset=name, **PRESETS[name])


def matching_preset(settings: Settings) -> str:
    """The name of the preset whose values ``settings`` has exactly, else "Custom"."""
    values = {name: getattr(settings, name) for name in PRESET_FIELDS}
    for name, preset in PRESETS.items():
        if all(_same(values[k], v) for k, v in preset.items()):
            return name
    return CUSTOM


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(float(a) - float(b)) < 1e-9
    return a == b


# --------------------------------------------------------------------------------------------------------
# script arguments (UI, API)


def from_positional(args: Sequence[Any], defaults: Settings = DEFAULTS) -> Settings:
    """Settings from the WebUI's positional script args (``ui()`` order); missing trailing args keep defaults.

    The sliders are the truth here and the preset name is recomputed from them (the UI keeps the two in step),
    except when every filter value is still the default: then a preset named in the args is applied, so an API
    call ``[true, "Gentle"]`` (padded by the WebUI with the default sliders) gets Gentle. ``None`` keeps a default.
    """
    if len(args) > len(FIELDS):
        raise SettingsError(f"expected at most {len(FIELDS)} arguments, got {len(args)}")
    values = {field.name: coerce(field.name, value) for field, value in zip(FIELDS, args) if value is not None}
    settings = replace(defaults, **values)
    untouched = all(_same(getattr(settings, name), getattr(defaults, name)) for name in PRESET_FIELDS)
    named = values.get("preset", defaults.preset)
    if untouched and named in PRESETS:
        settings = apply_preset(settings, named)
    return check(replace(settings, preset=matching_preset(settings)))


def from_named(named: Mapping[str, Any], defaults: Settings = DEFAULTS) -> Settings:
    """Settings from a dict of named values (API). A "preset" is applied first, then the other keys override it.

    Unknown keys and bad values raise SettingsError naming every offending key.
    """
    unknown = sorted(k for k in named if k not in FIELD_BY_NAME)
    if unknown:
        raise SettingsError(f"unknown setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(FIELD_BY_NAME)}")
    problems, values = [], {}
    for key, value in named.items():
        try:
            values[key] = coerce(key, value)
        except SettingsError as error:
            problems.append(str(error))
    if problems:
        raise SettingsError("; ".join(problems))
    settings = defaults
    if "preset" in values:
        settings = apply_preset(settings, values.pop("preset"))
    settings = replace(settings, **values)
    if any(k in PRESET_FIELDS for k in values):
        settings = replace(settings, preset=matching_preset(settings))
    return check(settings)


def from_script_args(args: Sequence[Any], defaults: Settings = DEFAULTS) -> Settings:
    """Settings from whatever the WebUI passed: positional args, or one dict of named settings."""
    if len(args) >= 1 and isinstance(args[0], Mapping):
        if len(args) > 1 and any(a is not None for a in args[1:]) and not _looks_like_ui_defaults(args[1:], defaults):
            raise SettingsError("a dict of named settings must be the only argument")
        return from_named(args[0], defaults)
    return from_positional(args, defaults)


def _looks_like_ui_defaults(rest: Sequence[Any], defaults: Settings) -> bool:
    """The API pads missing args with the ui() defaults; a dict followed by exactly those is a lone dict."""
    for field, value in zip(FIELDS[1:], rest):
        try:
            if not _same(coerce(field.name, value), getattr(defaults, field.name)):
                return False
        except SettingsError:
            return False
    return True


def to_positional(settings: Settings) -> list[Any]:
    """The positional args (``ui()`` order) for ``settings``, channels as UI labels."""
    out = []
    for field in FIELDS:
        value = getattr(settings, field.name)
        out.append([CHANNEL_LABELS[c] for c in value] if field.kind == "channels" else value)
    return out


def with_overrides(settings: Settings, overrides: Optional[Mapping[str, Any]]) -> Settings:
    """``settings`` with per-generation overrides (X/Y/Z axes) applied; a preset override comes first."""
    if not overrides:
        return settings
    return from_named(overrides, settings)


# --------------------------------------------------------------------------------------------------------
# WebUI settings page defaults and X/Y/Z axes (plain data; the glue registers them)

OPTION_PREFIX = "latentfix_default_"
# Settings-page options: the defaults of these fields for the UI and for API calls that omit them.
OPTION_FIELDS: tuple[str, ...] = ("enabled", "preset", "correction_point", "apply_in_hires", "skip_inner_passes",
                                  "diagnostics")


def option_key(name: str) -> str:
    return OPTION_PREFIX + name


def defaults_from_options(read: Any) -> Settings:
    """The defaults after the Settings page: ``read(key, fallback)`` returns a stored option or the fallback.

    A bad stored value is ignored (the built-in default is kept).
    """
    settings = DEFAULTS
    for name in OPTION_FIELDS:
        try:
            value = coerce(name, read(option_key(name), getattr(DEFAULTS, name)))
        except SettingsError:
            continue
        settings = apply_preset(settings, value) if name == "preset" else replace(settings, **{name: value})
    return settings


@dataclass(frozen=True)
class Axis:
    """An X/Y/Z plot axis: its label, the setting it drives, the value type and (for choices) the values."""

    label: str
    field: str
    kind: str  # "bool" | "float" | "choice"
    choices: tuple[str, ...] = ()


def xyz_axes() -> tuple[Axis, ...]:
    """Axes for the enable, the preset, the correction point, each filter's on/off and every numeric setting."""
    axes = [
        Axis("[LatentFix] Enable", "enabled", "bool", ("True", "False")),
        Axis("[LatentFix] Preset", "preset", "choice", PRESET_NAMES),
        Axis("[LatentFix] Correction point", "correction_point", "choice", CORRECTION_POINTS),
    ]
    for f in FIELDS:
        if f.kind == "float":
            axes.append(Axis(f"[LatentFix] {f.label}", f.name, "float"))
        elif f.kind == "bool" and f.name.endswith("_enabled") and f.name != "enabled":
            axes.append(Axis(f"[LatentFix] {f.label} on/off", f.name, "bool", ("True", "False")))
    return tuple(axes)
