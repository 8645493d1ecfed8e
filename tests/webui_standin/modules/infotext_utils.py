"""Stand-in for the WebUI's modules.infotext_utils, written for the tests: quote / unquote, the parameter pattern
re_param, parse_generation_parameters (reduced to prompt / negative prompt / the last line's parameters, "WxH" split
into "<key>-1" / "<key>-2", infotext_skip_pasting), and the paste rule of connect_paste's paste function as
`apply_paste_fields`. Simplified: no styles, no defaults for missing built-in keys except "Clip skip", no gradio
updates (UNCHANGED stands for gr.update())."""
import json
import re

from modules import script_callbacks, shared

# "Key: value" pairs of the parameters line, a value either a JSON string or everything up to the next comma
re_param_code = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
re_param = re.compile(re_param_code)
re_imagesize = re.compile(r"^(\d+)x(\d+)$")
UNCHANGED = "unchanged"
NEGATIVE_PREFIX = "Negative prompt:"
_QUOTE_IF_HOLDING = (",", "\n", ":")  # what would break the parameters line


def quote(text):
    """Imitates quote: a value holding a comma, a newline or a colon is written as a JSON string, others as they are."""
    shown = str(text)
    if any(mark in shown for mark in _QUOTE_IF_HOLDING):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text):
    """Imitates unquote: a value in double quotes read back as JSON (kept as it is when that fails)."""
    if text[:1] == '"' and text[-1:] == '"':
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _joined(lines):
    """The lines as one text, empty lines before the first words dropped (as the WebUI's parser accumulates them)."""
    start = 0
    while start < len(lines) and lines[start] == "":
        start += 1
    return "\n".join(lines[start:])


def parse_generation_parameters(x: str, skip_fields=None):
    """Imitates parse_generation_parameters (reduced, see the module's docstring)."""
    if skip_fields is None:
        skip_fields = shared.opts.infotext_skip_pasting
    lines = x.strip().split("\n")
    # the last line holds the parameters only when it has at least three "key: value" pairs
    params_line = lines.pop() if len(re_param.findall(lines[-1])) >= 3 else ""
    prompt, negative = [], []
    target = prompt
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            target = negative
            line = line[len(NEGATIVE_PREFIX):].strip()
        target.append(line)
    parsed = {}
    for key, value in re_param.findall(params_line):
        if value[:1] == '"' and value[-1:] == '"':
            value = unquote(value)
        size = re_imagesize.match(value)
        if size is None:
            parsed[key] = value
        else:
            parsed[key + "-1"], parsed[key + "-2"] = size.groups()
    parsed["Prompt"] = _joined(prompt)
    parsed["Negative prompt"] = _joined(negative)
    parsed.setdefault("Clip skip", "1")
    for key in skip_fields:
        parsed.pop(key, None)
    return parsed


def _as_component_value(component, value):
    """A pasted value converted to the type of the component's current value: "False" turns a checkbox off, an int
    component gets a float, anything else goes through the type itself; UNCHANGED when that fails."""
    kind = type(component.value)
    try:
        if kind == bool and value == "False":
            return False
        return float(value) if kind == int else kind(value)
    except Exception:
        return UNCHANGED


def apply_paste_fields(fields, params):
    """fields: [(component, "Key" | callable(params))], component has `.value`. Returns one entry per field:
    the new value, or UNCHANGED ("unchanged") where the real UI would return gr.update() (component keeps value)."""
    pasted = []
    for component, key in fields:
        if not callable(key):
            value = params.get(key)
        else:
            try:
                value = key(params)
            except Exception:  # the WebUI reports the error and leaves the field as it is
                value = None
        if value is None:
            pasted.append(UNCHANGED)
        elif isinstance(value, dict) and value.get("__type__") == "update":  # a gr.update(...) from a callable
            pasted.append(value.get("value", UNCHANGED))
        else:
            pasted.append(_as_component_value(component, value))
    return pasted


def paste_infotext(fields, infotext):
    """What pasting does, in connect_paste's order: parse, the on_infotext_pasted callbacks, then apply_paste_fields."""
    params = parse_generation_parameters(infotext)
    script_callbacks.infotext_pasted_callback(infotext, params)
    return apply_paste_fields(fields, params)
