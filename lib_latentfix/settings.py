"""The extension's settings, declared once: schema, ranges, labels, hints, layout, infotext items and presets.

``FIELDS`` lists every setting in the order the WebUI passes script arguments (the order of ``ui()``; new
settings are appended, so positional API calls keep working). Each :class:`Field` carries everything the
other layers derive from it: the UI control (kind, range, label, hint, section, row), the infotext item it is
written to, and the one range check every refusal goes through. :class:`Settings` holds one value per field;
:meth:`Settings.schedule` turns it into a :class:`~lib_latentfix.schedule.Schedule`; :meth:`Settings.problems`
lists everything wrong with it, naming each setting by its API name and UI label. Presets are named overrides.

The filters follow the source post's callback, one section each:

* soft clamp — early (t > 950), adaptive limits (0.998 of the image's largest value);
* center — an early pass (t > 700, shifts 0.8 / 0.8) and a late pass (1 < t < 100, shifts 0.6 / 1.0);
* maximize — late (1 < t < 100), channels 0–2 to ±4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Optional

from .schedule import Center, Maximize, Schedule, SoftClamp, Step, window_text

CHANNEL_LABELS: tuple[str, ...] = ("0 luminance", "1 cyan/red", "2 lime/purple", "3 pattern")

# Correction points: stable values (stored, written, sent over the API) and what the UI shows for them.
LATENT = "latent"  # the sampler's latent after each step, as the post (the default)
AFTER_CFG = "after"  # each model call's guided x0 prediction (the default of 0.1.0, as Diffusion CG)
BEFORE_CFG = "before"  # the separate prompt/negative predictions (A1111 only)
POINT_LABELS: dict[str, str] = {LATENT: "sampler latent (as the post)", AFTER_CFG: "after guidance",
                                BEFORE_CFG: "before guidance (A1111 only)"}
LEGACY_POINT = AFTER_CFG  # what an infotext without a correction point ran (versions before the latent point)

CUSTOM = "Custom"
FEW_STEPS = "Few-step models"

# The parts of a schedule, in order: the steps Settings.parts() names, and how a message calls each.
PARTS: dict[str, str] = {"clamp": "soft clamp", "center_early": "early center", "center_late": "late center",
                         "maximize": "maximize"}


class SettingsError(ValueError):
    """A setting's name or value is not acceptable; the message names each setting and says why."""


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
    correction_point: str = LATENT
    apply_in_hires: bool = True
    skip_inner_passes: bool = True
    diagnostics: bool = False
    # appended after the first release (positional API order): the overall strength
    strength: float = 1.0

    def schedule(self) -> Schedule:
        """The schedule these settings describe: disabled sections and steps that change nothing left out.

        The overall ``strength`` scales every filter's strength. Call :func:`check` first: a value outside its
        field's range raises ``ValueError`` here.
        """
        return Schedule(self.preset, tuple(step for _, step in self.parts()))

    def parts(self) -> tuple[tuple[str, Step], ...]:
        """The schedule's steps named by the part of the settings they come from (see :data:`PARTS`), in order;
        disabled sections and steps that can never change anything are left out."""
        found: list[tuple[str, Step]] = []
        if self.clamp_enabled:
            clamp = SoftClamp(self.clamp_threshold, self.clamp_boundary, self.clamp_ratio if self.clamp_adaptive else 0.0)
            found.append(("clamp", Step(clamp, self.clamp_t_min, self.clamp_t_max, self.clamp_strength * self.strength)))
        if self.center_enabled:
            for which in ("early", "late"):
                op = Center(getattr(self, f"center_{which}_channel_shift"), getattr(self, f"center_{which}_full_shift"),
                            self.center_channels)
                found.append((f"center_{which}", Step(op, getattr(self, f"center_{which}_t_min"),
                                                      getattr(self, f"center_{which}_t_max"),
                                                      self.center_strength * self.strength)))
        if self.maximize_enabled:
            op = Maximize(self.maximize_boundary, self.maximize_channels)
            found.append(("maximize", Step(op, self.maximize_t_min, self.maximize_t_max,
                                           self.maximize_strength * self.strength)))
        return tuple((name, step) for name, step in found if step.can_change())

    def without(self, parts: Any) -> "Settings":
        """These settings with the named parts (see :data:`PARTS`) switched off, so that the result describes
        exactly what ran when those parts never did: a section whose parts are all off is disabled, a center pass
        that did not run keeps the other one (its shifts become 0, which changes nothing)."""
        changes: dict[str, Any] = {}
        for part in parts:
            if part in ("center_early", "center_late"):
                changes[f"{part}_channel_shift"] = 0.0
                changes[f"{part}_full_shift"] = 0.0
            else:
                changes[f"{part}_enabled"] = False
        out = replace(self, **changes)
        if out.center_enabled and not any(name.startswith("center_") for name, _ in out.parts()):
            out = replace(out, center_enabled=False, **{k: getattr(self, k) for k in changes if k.startswith("center_")})
        return out

    def does_something(self) -> bool:
        """True when enabled and at least one filter can change the latent."""
        return self.enabled and bool(self.schedule().steps)


@dataclass(frozen=True)
class Field:
    """One setting: how it is checked, shown, laid out and written to the infotext.

    ``section``/``row``/``column`` place the control in the UI (``column`` splits a row into columns);
    ``item``/``part`` name its infotext item inside its section's key (a two-part item such as a window or a
    pair of shifts is written ``a-b`` or ``a/b``).
    """

    name: str
    kind: str  # "bool" | "float" | "choice" | "channels"
    label: str
    hint: str
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.01
    choices: tuple[str, ...] = ()  # "choice": the accepted values
    section: str = "main"  # "main" | "clamp" | "center" | "maximize" | "advanced"
    row: int = 0
    column: Optional[str] = None
    item: Optional[str] = None  # infotext item name inside the section's key (None: not written there)
    part: int = 0

    @property
    def group(self) -> str:
        return self.section

    @property
    def default(self) -> Any:
        return getattr(DEFAULTS, self.name)

    @property
    def title(self) -> str:
        """How a message names it: the API name and the UI label."""
        return f"{self.name} ({self.label})"

    def choice_label(self, value: Any) -> str:
        """What the UI shows for a choice value."""
        return POINT_LABELS.get(value, value) if self.name == "correction_point" else value

    def coerce(self, value: Any) -> Any:
        """``value`` converted to this field's type and checked against its range; raises SettingsError."""
        if self.kind == "bool":
            return self._bool(value)
        if self.kind == "float":
            return self._float(value)
        if self.kind == "choice":
            return self._choice(value)
        return self._channels(value)

    def _bool(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise SettingsError(f"{self.title} must be true or false, got {_shown(value)}")

    def _float(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise SettingsError(f"{self.title} must be a number, got {_shown(value)}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range, e.g. 10**400
            number = math.inf
        except ValueError:
            raise SettingsError(f"{self.title} must be a number, got {_shown(value)}") from None
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            raise SettingsError(f"{self.title} must be between {self.minimum:g} and {self.maximum:g}, got {_shown(value)}")
        return number

    def _choice(self, value: Any) -> str:
        if isinstance(value, str):
            for choice in self.choices:
                if value.strip() in (choice, self.choice_label(choice)):
                    return choice
        shown = ", ".join(repr(c) for c in self.choices)
        raise SettingsError(f"{self.title} must be one of {shown}, got {_shown(value)}")

    def _channels(self, value: Any) -> tuple[int, ...]:
        if isinstance(value, str):
            items: list[Any] = [item.strip() for item in value.split(",") if item.strip()]
            if len(items) == 1 and items[0].isdigit():
                items = list(items[0])
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise SettingsError(f"{self.title} must be a list of channels, got {_shown(value)}")
        indices = [self._channel_index(item) for item in items]
        if len(set(indices)) != len(indices) and not isinstance(value, str):
            raise SettingsError(f"{self.title} repeats a channel: {_shown(value)}")
        return tuple(sorted(set(indices)))

    def _channel_index(self, item: Any) -> int:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(CHANNEL_LABELS):
            return item
        if isinstance(item, str):
            text = item.strip()
            for index, label in enumerate(CHANNEL_LABELS):
                if text in (label, label.split(" ", 1)[1], str(index)):
                    return index
        raise SettingsError(f"{self.title} holds unknown channel {_shown(item)}; use 0-3 or one of "
                            f"{', '.join(CHANNEL_LABELS)}")


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _shown(value: Any) -> str:
    """A value for a message, never longer than a line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _shown_all(values: Any, limit: int = 8) -> str:
    """Several values (names) for a message: each cut by :func:`_shown`, at most ``limit`` of them."""
    items = list(values)
    text = ", ".join(_shown(v) for v in items[:limit])
    return text if len(items) <= limit else f"{text} and {len(items) - limit} more"


def _window(prefix: str, section: str, what: str, label: str, row: int, column: Optional[str] = None,
            item: str = "window") -> tuple[Field, Field]:
    """The two ends of a timestep window, shown as a range is read, lower bound first: t_min ("<label> t from",
    where it ends: the timestep falls during sampling) and t_max ("<label> t to", where it starts)."""
    return (
        Field(f"{prefix}_t_min", "float", f"{label} t from", f"{what} stops once the timestep falls to "
              "this value (1000 = pure noise, 0 = finished image; 0 reaches the very last step).", 0, 1000, 1,
              section=section, row=row, column=column, item=item, part=0),
        Field(f"{prefix}_t_max", "float", f"{label} t to", f"{what} starts once the timestep falls "
              "below this value (1000 = from the first step).", 0, 1000, 1, section=section, row=row, column=column,
              item=item, part=1),
    )


def _shift(which: str, row: int, channel_hint: str, full_hint: str) -> tuple[Field, Field]:
    cap = which.capitalize()
    return (
        Field(f"center_{which}_channel_shift", "float", f"{cap} center: channel shift", f"{cap} pass: {channel_hint}",
              section="center", row=row, column=which, item=f"{which}_shift", part=0),
        Field(f"center_{which}_full_shift", "float", f"{cap} center: full shift", f"{cap} pass: {full_hint}",
              section="center", row=row, column=which, item=f"{which}_shift", part=1),
    )


_FIELDS: tuple[Field, ...] = (
    Field("enabled", "bool", "Enable", "Turn the latent corrections on for this generation."),
    Field("preset", "choice", "Preset", "Load a set of values for every filter below; changing any of them makes it "
          "'Custom'.", row=1),  # choices: PRESET_NAMES, set below from PRESETS
    # soft clamp
    Field("clamp_enabled", "bool", "Soft clamp", "Remove outliers early on: values beyond the threshold are squeezed "
          "toward the boundary, which tames blown-out detail and high-CFG artefacts.", section="clamp"),
    Field("clamp_adaptive", "bool", "Adaptive limits (post)", "Take the limits from each image (ratio × its largest "
          "value), as the post does; off uses the fixed threshold and boundary.", section="clamp", item="adaptive"),
    Field("clamp_ratio", "float", "Adaptive ratio", "With adaptive limits: boundary = ratio × largest value, threshold = "
          "ratio × boundary. Lower squeezes harder.", 0.9, 1.0, 0.001, section="clamp", row=1, item="ratio"),
    Field("clamp_threshold", "float", "Clamp threshold", "Values beyond ± this are squeezed (fixed limits).", 0.0, 10.0,
          0.05, section="clamp", row=2, item="threshold"),
    Field("clamp_boundary", "float", "Clamp boundary", "Squeezed values end up within ± this; images whose largest value "
          "is below it are left alone.", 0.5, 10.0, 0.05, section="clamp", row=2, item="boundary"),
    Field("clamp_strength", "float", "Clamp strength", "How much of the soft clamp to apply (0 = none, 1 = full).",
          section="clamp", row=1, item="strength"),
    *_window("clamp", "clamp", "The soft clamp", "Clamp:", row=3),
    # center
    Field("center_enabled", "bool", "Center (colour balance)", "Pull each channel's average toward zero: removes colour "
          "casts (SDXL's yellow) and brightness drift.", section="center"),
    Field("center_channels", "channels", "Center channels", "Which latent channels are re-centred: luminance "
          "(brightness), cyan/red, lime/purple (colour), pattern (structure).", section="center", row=1, item="channels"),
    Field("center_strength", "float", "Center strength", "How much of the centering to apply (0 = none, 1 = full).",
          section="center", row=2, item="strength"),
    *_shift("early", 3, "share of each channel's own average removed (colour cast).",
            "share of the whole image's average removed afterwards (overall brightness)."),
    *_window("center_early", "center", "The early centering", "Early center:", row=3, column="early", item="early_window"),
    *_shift("late", 3, "share of each channel's own average removed before maximize.",
            "share of the whole image's average removed before maximize."),
    *_window("center_late", "center", "The late centering", "Late center:", row=3, column="late", item="late_window"),
    # maximize
    Field("maximize_enabled", "bool", "Maximize (range)", "Stretch the colour channels near the end so the largest "
          "value reaches the boundary: more contrast and saturation, full use of the VAE's range.", section="maximize"),
    Field("maximize_boundary", "float", "Maximize boundary", "The largest value after stretching (the VAE's useful range "
          "is about ±4; lower is softer).", 0.5, 8.0, 0.05, section="maximize", row=2, item="boundary"),
    Field("maximize_channels", "channels", "Maximize channels", "Which channels are stretched; the post stretches "
          "luminance and both colour channels, not pattern.", section="maximize", row=1, item="channels"),
    Field("maximize_strength", "float", "Maximize strength", "How much of the stretch to apply (0 = none, 1 = full).",
          section="maximize", row=2, item="strength"),
    *_window("maximize", "maximize", "Maximize", "Maximize:", row=3),
    # advanced
    Field("correction_point", "choice", "Correction point", "Sampler latent (as the post): the filters act on the "
          "latent each sampler step produces, at that step's timestep, as the post's callback does (exact for Euler, "
          "Heun, DPM++ 2M and DDIM; Euler a before its added noise; other samplers fall back to after guidance). "
          "After guidance corrects each model call's final (CFG-combined) prediction instead, on every WebUI. "
          "Before guidance corrects the separate prompt/negative predictions; only AUTOMATIC1111 calls that hook.",
          choices=tuple(POINT_LABELS), section="advanced", item="point"),
    Field("apply_in_hires", "bool", "Apply in hires fix pass", "Also correct during the hires fix second pass.",
          section="advanced", row=1, item="hires"),
    Field("skip_inner_passes", "bool", "Skip inner passes of other extensions (ADetailer…)", "Leave detail passes of "
          "other extensions (ADetailer's face fix and similar) alone, so no mismatched box appears.", section="advanced",
          row=2, item="skip_inner"),
    Field("diagnostics", "bool", "Show latent diagnostics", "Add a per-step chart of each channel and a four-channel "
          "view of the final latent to the gallery (does not change the image).", section="advanced", row=3),
    Field("strength", "float", "Strength", "How strongly the preset is applied: scales every filter's strength "
          "(0 = nothing changes, 1 = the preset as it is).", row=1, item="strength"),
)

DEFAULTS = Settings()

# Fields a preset sets (everything that shapes a filter; not the enable, the overall strength or the options).
FILTER_SECTIONS: tuple[str, ...] = ("clamp", "center", "maximize")
PRESET_FIELDS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.section in FILTER_SECTIONS)


def _preset(**overrides: Any) -> dict[str, Any]:
    values = {name: getattr(DEFAULTS, name) for name in PRESET_FIELDS}
    values.update(overrides)
    return values


PRESETS: dict[str, dict[str, Any]] = {
    "Post defaults": _preset(),
    "Colour balance only": _preset(clamp_enabled=False, maximize_enabled=False),
    "Gentle": _preset(clamp_strength=0.5, center_strength=0.5, maximize_strength=0.5),
    "Range only": _preset(clamp_enabled=False, center_early_channel_shift=0.0, center_early_full_shift=0.0),
    # A departure from the post (README "Presets"): few-step models (Lightning, Turbo, Hyper, DMD2 at 4-8 steps)
    # call the model at t = 999, 749, 499, 249 (trailing 4 steps) or 999, 666, 333, 0 (uniform), never inside the
    # post's 1 < t < 100; their late window is t < 300, which holds the last model call of every such schedule.
    FEW_STEPS: _preset(center_late_t_min=0.0, center_late_t_max=300.0, maximize_t_min=0.0, maximize_t_max=300.0),
}
PRESET_NAMES: tuple[str, ...] = (*PRESETS, CUSTOM)

FIELDS: tuple[Field, ...] = tuple(replace(f, choices=PRESET_NAMES) if f.name == "preset" else f for f in _FIELDS)
FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
assert tuple(FIELD_BY_NAME) == tuple(f.name for f in fields(Settings)), "FIELDS must follow Settings"
# The WebUI remembers script controls in ui-config.json by label (A1111 v1.10.1 modules/ui_loadsave.py:36-70, key
# ".../<label>/value"): two controls with one label would share one remembered value.
assert len({f.label for f in FIELDS}) == len(FIELDS), "every label must be unique"

# The pairs of fields whose order matters: (field that must be lower, field that must be higher).
WINDOWS: tuple[tuple[str, str], ...] = tuple(
    (f.name, f.name[:-len("_t_min")] + "_t_max") for f in FIELDS if f.name.endswith("_t_min"))


def section_fields(section: str) -> tuple[Field, ...]:
    """The fields of one UI section, in the order they are laid out (row by row, columns left to right)."""
    columns = [f.column for f in FIELDS if f.section == section]
    order = {c: i for i, c in enumerate(dict.fromkeys(columns))}
    return tuple(sorted((f for f in FIELDS if f.section == section), key=lambda f: (f.row, order[f.column])))


# --------------------------------------------------------------------------------------------------------
# checking


def coerce(name: str, value: Any) -> Any:
    """``value`` converted to field ``name``'s type and checked against its range; raises SettingsError."""
    field = FIELD_BY_NAME.get(name)
    if field is None:
        raise SettingsError(f"unknown setting {_shown(name)}")
    return field.coerce(value)


def problems(settings: Settings) -> list[str]:
    """Everything wrong with ``settings``: each bad value and each bad relation, naming every setting involved."""
    found = []
    for field in FIELDS:
        try:
            field.coerce(getattr(settings, field.name))
        except SettingsError as error:
            found.append(str(error))
    if found:
        return found
    s = settings
    for low, high in WINDOWS:
        if getattr(s, low) >= getattr(s, high) and _section_on(s, FIELD_BY_NAME[low].section):
            a, b = FIELD_BY_NAME[low], FIELD_BY_NAME[high]
            found.append(f"{a.title} must be below {b.title}, got {getattr(s, low):g} and {getattr(s, high):g}")
    if s.clamp_enabled and not s.clamp_adaptive and s.clamp_threshold > s.clamp_boundary:
        a, b = FIELD_BY_NAME["clamp_threshold"], FIELD_BY_NAME["clamp_boundary"]
        found.append(f"{a.title} must not exceed {b.title} with fixed limits, got {s.clamp_threshold:g} and "
                     f"{s.clamp_boundary:g}")
    return found


def _section_on(settings: Settings, section: str) -> bool:
    return getattr(settings, f"{section}_enabled", True)


def check(settings: Settings) -> Settings:
    """``settings`` if every value and relation is acceptable, else SettingsError naming each problem."""
    found = problems(settings)
    if found:
        raise SettingsError("; ".join(found))
    return settings


# --------------------------------------------------------------------------------------------------------
# presets


def apply_preset(settings: Settings, name: str) -> Settings:
    """``settings`` with every filter value taken from preset ``name`` ("Custom" changes nothing)."""
    if name == CUSTOM:
        return replace(settings, preset=CUSTOM)
    if name not in PRESETS:
        raise SettingsError(f"preset (Preset) must be one of {', '.join(map(repr, PRESET_NAMES))}, got {_shown(name)}")
    return replace(settings, preset=name, **PRESETS[name])


def matching_preset(settings: Settings) -> str:
    """The name of the preset whose values ``settings`` has exactly, else "Custom"."""
    values = {name: getattr(settings, name) for name in PRESET_FIELDS}
    for name, preset in PRESETS.items():
        if all(same(values[k], v) for k, v in preset.items()):
            return name
    return CUSTOM


def same(a: Any, b: Any) -> bool:
    """Equal as settings values (numbers compared as numbers)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)
    return a == b


def describe(settings: Settings) -> str:
    """One plain line saying what the settings' filters do and when (the line under the preset in the UI)."""
    parts = []
    s = settings
    if s.clamp_enabled and s.clamp_strength > 0:
        parts.append(f"clamps outliers {_when(s.clamp_t_min, s.clamp_t_max)}")
    if s.center_enabled and s.center_strength > 0:
        passes = [_when(lo, hi) for lo, hi, a, b in (
            (s.center_early_t_min, s.center_early_t_max, s.center_early_channel_shift, s.center_early_full_shift),
            (s.center_late_t_min, s.center_late_t_max, s.center_late_channel_shift, s.center_late_full_shift))
            if a > 0 or b > 0]
        if passes:
            parts.append("balances colour " + " and ".join(passes))
    if s.maximize_enabled and s.maximize_strength > 0 and s.maximize_channels:
        parts.append(f"stretches the range to ±{s.maximize_boundary:g} {_when(s.maximize_t_min, s.maximize_t_max)}")
    if not parts:
        return "Changes nothing."
    text = ", ".join(parts)
    if s.strength != 1:
        text += f", at {s.strength:.0%} strength"
    return text[0].upper() + text[1:] + "."


def _when(t_min: float, t_max: float) -> str:
    """A window as the summary says it (worded as the console does)."""
    text = window_text(t_min, t_max)
    return "at every step" if text == "every t" else f"at {text}"


def section_header(settings: Settings, section: str) -> str:
    """The header of a filter section's folded panel: its name, whether it is on, and its strength."""
    title = FIELD_BY_NAME[f"{section}_enabled"].label
    if not getattr(settings, f"{section}_enabled"):
        return f"{title} \u2014 off"
    own = getattr(settings, f"{section}_strength")
    text = f"{title} \u2014 on, strength {own:g}"
    if settings.strength != 1:
        text += f" \u00d7 {settings.strength:g} overall"
    if not any(name.split("_")[0] == section for name, _ in settings.parts()):
        text += " (changes nothing)"
    return text
