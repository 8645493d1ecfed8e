"""Infotext (PNG parameters) codec, driven by the settings table: settings → a few stable keys, and back.

Written only when the extension ran, one key per active filter section plus the version, the preset and options:

    LatentFix: 0.1.0, LatentFix preset: Post defaults,
    LatentFix clamp: adaptive=1;ratio=0.998;threshold=3.5;boundary=4;strength=1;window=950-1000,
    LatentFix center: channels=0123;strength=1;early_shift=0.8/0.8;early_window=700-1000;late_shift=0.6/1;late_window=1-100,
    LatentFix maximize: boundary=4;channels=012;strength=1;window=1-100,
    LatentFix options: point=after;hires=1;skip_inner=1;strength=1

Which key and item a setting is written to is declared on its :class:`~lib_latentfix.settings.Field`
(``section``, ``item``, ``part``); this module only formats. Numbers are written with as many digits as they
need to read back exactly, never with an exponent (whose "-" would split a window). Values hold no comma, colon
or newline, so the WebUI writes them unquoted. The preset is written by name *and* every value is written, so
pasting an old image restores its values even if the preset changed since. A missing ``LatentFix`` key means
the extension was off; a missing item keeps its default (older versions wrote fewer). Parsing never evaluates
anything: it splits on ``;`` and ``=`` and converts numbers.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import replace
from decimal import Decimal
from typing import Any, Callable, Mapping, Optional

from .settings import (
    CUSTOM,
    DEFAULTS,
    FIELDS,
    FILTER_SECTIONS,
    LEGACY_POINT,
    Field,
    PRESETS,
    Settings,
    SettingsError,
    _shown,
    matching_preset,
    problems as settings_problems,
)

VERSION_KEY = "LatentFix"
PRESET_KEY = "LatentFix preset"
GROUP_KEYS = {section: f"LatentFix {section}" for section in FILTER_SECTIONS}
GROUP_KEYS["options"] = "LatentFix options"
ERROR_KEY = "LatentFix error"  # written instead when the settings were refused or a correction failed
ALL_KEYS = (VERSION_KEY, PRESET_KEY, *GROUP_KEYS.values(), ERROR_KEY)


def _key(field: Field) -> str:
    return GROUP_KEYS.get(field.section, GROUP_KEYS["options"])


def _separator(item: str) -> str:
    return "-" if item.endswith("window") else "/"


# Each key: item → its fields in part order. Built from the table once.
_ITEMS: dict[str, dict[str, list[Field]]] = {}
for _field in FIELDS:
    if _field.item is not None:
        _ITEMS.setdefault(_key(_field), {}).setdefault(_field.item, []).append(_field)
for _items in _ITEMS.values():
    for _parts in _items.values():
        _parts.sort(key=lambda f: f.part)


def number(value: float) -> str:
    """The shortest fixed-point text that reads back as exactly ``value`` ("4", "0.998", "0.0000001")."""
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _text(field: Field, value: Any) -> str:
    if field.kind == "bool":
        return "1" if value else "0"
    if field.kind == "float":
        return number(value)
    if field.kind == "channels":
        return "".join(str(c) for c in value) or "none"
    return str(value)


def encode(settings: Settings, version: str) -> dict[str, str]:
    """The infotext entries for ``settings`` (which ran): version, preset, each enabled section, options."""
    s = settings
    out = {VERSION_KEY: version, PRESET_KEY: matching_preset(s) if s.preset != CUSTOM else CUSTOM}
    for key, items in _ITEMS.items():
        section = items[next(iter(items))][0].section
        if section in FILTER_SECTIONS and not getattr(s, f"{section}_enabled"):
            continue
        out[key] = ";".join(
            f"{item}=" + _separator(item).join(_text(f, getattr(s, f.name)) for f in parts)
            for item, parts in items.items())
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
        return {ERROR_KEY: f"{done}, {failure}"}
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


def _parts(text: str, count: int, separator: str) -> list[str]:
    if count == 1:
        return ["" if text == "none" else text]
    a, found, b = text.rpartition(separator) if separator == "-" else text.partition(separator)
    if not found:
        raise SettingsError(f"expected two values separated by {separator!r}, got {_shown(text)}")
    return [a, b]


def decode(params: Mapping[str, Any]) -> tuple[Optional[Settings], list[str]]:
    """Settings from parsed infotext ``params`` and a list of problems found.

    ``None`` when the infotext has no ``LatentFix`` key (the extension was off). A malformed value leaves its
    setting at the default and adds a problem; an unusable combination falls back to the defaults entirely.
    Never raises.
    """
    if not isinstance(params, Mapping) or VERSION_KEY not in params:
        return None, []
    found: list[str] = []
    # an infotext without a correction point was written before the latent point existed: it ran after guidance
    values: dict[str, Any] = {"enabled": True, "correction_point": LEGACY_POINT}
    for key, items in _ITEMS.items():
        section = items[next(iter(items))][0].section
        if key not in params:
            if section in FILTER_SECTIONS:
                values[f"{section}_enabled"] = False
            continue
        for item, text in _pairs(params[key]).items():
            parts = items.get(item)
            if parts is None:
                found.append(f"{key}: unknown item {_shown(item)}")
                continue
            try:
                texts = _parts(text, len(parts), _separator(item))
            except SettingsError as error:
                found.append(f"{key}: {error}")
                continue
            for field, part in zip(parts, texts):
                try:
                    values[field.name] = field.coerce(part)
                except SettingsError as error:
                    found.append(f"{key}: {error}")
    settings = replace(DEFAULTS, **values)
    wrong = settings_problems(settings)
    if wrong:
        found += wrong
        settings = replace(DEFAULTS, enabled=True)
    named = str(params.get(PRESET_KEY, CUSTOM))
    preset = named if named in PRESETS and matching_preset(settings) == named else CUSTOM
    return replace(settings, preset=preset), found


def decode_cached(params: Mapping[str, Any], report: Callable[[str], None]) -> Optional[Settings]:
    """:func:`decode`, done once per ``params`` dict (the WebUI asks once per control), reporting problems once.

    The cache lives here, keyed by the dict's identity, and never in ``params`` itself: a key parsed from an
    infotext can hold any name and any text, so no entry of ``params`` can stand for a decoded result.
    """
    with _CACHE_LOCK:
        for held, settings in _CACHE:
            if held is params:
                return settings
    settings, found = decode(params)
    if found:
        shown = found[:8] + ([f"{len(found) - 8} more"] if len(found) > 8 else [])
        report("infotext has malformed LatentFix values, using defaults for them: " + "; ".join(shown))
    with _CACHE_LOCK:
        # the dicts are held (a few pastes' worth), so an identity here is never a later dict's reused id
        _CACHE.append((params, settings))
    return settings


_CACHE: "collections.deque[tuple[Any, Optional[Settings]]]" = collections.deque(maxlen=8)
_CACHE_LOCK = threading.Lock()
