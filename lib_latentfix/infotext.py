"""Infotext (PNG parameters) codec: settings → a few stable keys, and back, tolerant of anything.

Written only when the extension ran, one key per active filter group plus the version and the preset:

    LatentFix: 0.1.0, LatentFix preset: Post defaults,
    LatentFix clamp: adaptive=1;ratio=0.998;threshold=3.5;boundary=4;strength=1;window=950-1000,
    LatentFix center: channels=0123;strength=1;early_shift=0.8/0.8;early_window=700-1000;late_shift=0.6/1;late_window=1-100,
    LatentFix maximize: boundary=4;channels=012;strength=1;window=1-100,
    LatentFix options: point=after;hires=1;skip_inner=1

Values hold no comma, colon or newline, so the WebUI writes them unquoted. The preset is written by name
*and* every value is written, so pasting an old image restores its values even if the preset changed since;
the preset dropdown then shows the name only if the values still match it. A missing ``LatentFix`` key means
the extension was off. Parsing never evaluates anything: it splits on ``;`` and ``=`` and converts numbers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping, MutableMapping, Optional

from .settings import (
    AFTER_CFG,
    BEFORE_CFG,
    CUSTOM,
    DEFAULTS,
    PRESETS,
    Settings,
    SettingsError,
    check,
    coerce,
    matching_preset,
)

VERSION_KEY = "LatentFix"
PRESET_KEY = "LatentFix preset"
GROUP_KEYS = {
    "clamp": "LatentFix clamp",
    "center": "LatentFix center",
    "maximize": "LatentFix maximize",
    "options": "LatentFix options",
}
ERROR_KEY = "LatentFix error"  # written instead when the settings were refused (e.g. a bad API argument)
ALL_KEYS = (VERSION_KEY, PRESET_KEY, *GROUP_KEYS.values(), ERROR_KEY)

_POINTS = {AFTER_CFG: "after", BEFORE_CFG: "before"}
_CACHE_KEY = "__latentfix_decoded__"


def _num(value: float) -> str:
    """Fixed-point, shortest form ("4", "0.998", "0.00001"): never an exponent, whose "-" would split a window."""
    text = format(float(value), ".6f").rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _channels(channels: tuple[int, ...]) -> str:
    return "".join(str(c) for c in channels) or "none"


def _window(lo: float, hi: float) -> str:
    return f"{_num(lo)}-{_num(hi)}"


def encode(settings: Settings, version: str) -> dict[str, str]:
    """The infotext entries for ``settings`` (which ran): version, preset, each enabled group, options."""
    s = settings
    out = {VERSION_KEY: version, PRESET_KEY: matching_preset(s) if s.preset != CUSTOM else CUSTOM}
    if s.clamp_enabled:
        out[GROUP_KEYS["clamp"]] = ";".join([
            f"adaptive={_flag(s.clamp_adaptive)}", f"ratio={_num(s.clamp_ratio)}",
            f"threshold={_num(s.clamp_threshold)}", f"boundary={_num(s.clamp_boundary)}",
            f"strength={_num(s.clamp_strength)}", f"window={_window(s.clamp_t_min, s.clamp_t_max)}",
        ])
    if s.center_enabled:
        out[GROUP_KEYS["center"]] = ";".join([
            f"channels={_channels(s.center_channels)}", f"strength={_num(s.center_strength)}",
            f"early_shift={_num(s.center_early_channel_shift)}/{_num(s.center_early_full_shift)}",
            f"early_window={_window(s.center_early_t_min, s.center_early_t_max)}",
            f"late_shift={_num(s.center_late_channel_shift)}/{_num(s.center_late_full_shift)}",
            f"late_window={_window(s.center_late_t_min, s.center_late_t_max)}",
        ])
    if s.maximize_enabled:
        out[GROUP_KEYS["maximize"]] = ";".join([
            f"boundary={_num(s.maximize_boundary)}", f"channels={_channels(s.maximize_channels)}",
            f"strength={_num(s.maximize_strength)}", f"window={_window(s.maximize_t_min, s.maximize_t_max)}",
        ])
    out[GROUP_KEYS["options"]] = ";".join([
        f"point={_POINTS[s.correction_point]}", f"hires={_flag(s.apply_in_hires)}",
        f"skip_inner={_flag(s.skip_inner_passes)}",
    ])
    return out


def report(
    settings: Settings, version: str, *, started: bool, corrected: bool, failure: Optional[str]
) -> dict[str, str]:
    """What the infotext says about a generation, at any moment it is written.

    Before sampling starts (A1111 writes params.txt then): the settings that will run. Afterwards: the settings if
    a correction ran, nothing if none did. After a failure: only ``LatentFix error`` with the cause, since the
    image was corrected partly (or not at all) and pasting the settings would not reproduce it.
    """
    if failure is not None:
        done = "partly applied" if corrected else "not applied"
        return {ERROR_KEY: f"{done}, turned off after an error: {failure}"}
    if started and not corrected:
        return {}
    return encode(settings, version)


# --------------------------------------------------------------------------------------------------------
# decoding


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for item in str(text).split(";"):
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _split2(text: str, sep: str) -> tuple[str, str]:
    a, found, b = text.rpartition(sep) if sep == "-" else text.partition(sep)
    if not found:
        raise SettingsError(f"expected two values separated by {sep!r}, got {text!r}")
    return a, b


def _channels_value(text: str) -> Any:
    return "" if text == "none" else text


# Each group: infotext item → list of (field name, function turning the item text into the field's raw value).
_Reader = Callable[[str], Any]
_GROUP_ITEMS: dict[str, dict[str, tuple[tuple[str, _Reader], ...]]] = {
    "clamp": {
        "adaptive": (("clamp_adaptive", str),),
        "ratio": (("clamp_ratio", str),),
        "threshold": (("clamp_threshold", str),),
        "boundary": (("clamp_boundary", str),),
        "strength": (("clamp_strength", str),),
        "window": (("clamp_t_min", lambda v: _split2(v, "-")[0]), ("clamp_t_max", lambda v: _split2(v, "-")[1])),
    },
    "center": {
        "channels": (("center_channels", _channels_value),),
        "strength": (("center_strength", str),),
        "early_shift": (("center_early_channel_shift", lambda v: _split2(v, "/")[0]),
                        ("center_early_full_shift", lambda v: _split2(v, "/")[1])),
        "early_window": (("center_early_t_min", lambda v: _split2(v, "-")[0]),
                         ("center_early_t_max", lambda v: _split2(v, "-")[1])),
        "late_shift": (("center_late_channel_shift", lambda v: _split2(v, "/")[0]),
                       ("center_late_full_shift", lambda v: _split2(v, "/")[1])),
        "late_window": (("center_late_t_min", lambda v: _split2(v, "-")[0]),
                        ("center_late_t_max", lambda v: _split2(v, "-")[1])),
    },
    "maximize": {
        "boundary": (("maximize_boundary", str),),
        "channels": (("maximize_channels", _channels_value),),
        "strength": (("maximize_strength", str),),
        "window": (("maximize_t_min", lambda v: _split2(v, "-")[0]), ("maximize_t_max", lambda v: _split2(v, "-")[1])),
    },
    "options": {
        "point": (("correction_point", lambda v: {"after": AFTER_CFG, "before": BEFORE_CFG}.get(v, v)),),
        "hires": (("apply_in_hires", str),),
        "skip_inner": (("skip_inner_passes", str),),
    },
}


def decode(params: Mapping[str, Any]) -> tuple[Optional[Settings], list[str]]:
    """Settings from parsed infotext ``params`` and a list of problems found.

    ``None`` when the infotext has no ``LatentFix`` key (the extension was off). A malformed value leaves its
    setting at the default and adds a problem; an unusable combination falls back to the defaults entirely.
    Never raises.
    """
    if not isinstance(params, Mapping) or VERSION_KEY not in params:
        return None, []
    problems: list[str] = []
    values: dict[str, Any] = {"enabled": True}
    for group, items in _GROUP_ITEMS.items():
        key = GROUP_KEYS[group]
        if key not in params:
            if group != "options":
                values[f"{group}_enabled"] = False
            continue
        pairs = _pairs(params[key])
        for item, text in pairs.items():
            readers = items.get(item)
            if readers is None:
                problems.append(f"{key}: unknown item {item!r}")
                continue
            for field, read in readers:
                try:
                    values[field] = coerce(field, read(text))
                except (SettingsError, ValueError, TypeError) as error:
                    problems.append(f"{key}: {error}")
    settings = replace(DEFAULTS, **values)
    try:
        check(settings)
    except SettingsError as error:
        problems.append(str(error))
        settings = replace(DEFAULTS, enabled=True)
    named = str(params.get(PRESET_KEY, CUSTOM))
    preset = named if named in PRESETS and matching_preset(settings) == named else CUSTOM
    return replace(settings, preset=preset), problems


def decode_cached(params: MutableMapping[str, Any], report: Callable[[str], None]) -> Optional[Settings]:
    """:func:`decode`, done once per ``params`` dict (the WebUI asks once per control), reporting problems once."""
    cached = params.get(_CACHE_KEY) if isinstance(params, MutableMapping) else None
    if cached is not None:
        return cached[0]
    settings, problems = decode(params)
    if problems:
        report("infotext has malformed LatentFix values, using defaults for them: " + "; ".join(problems))
    if isinstance(params, MutableMapping):
        params[_CACHE_KEY] = (settings,)
    return settings
