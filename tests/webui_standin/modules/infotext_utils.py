"""Imitates modules/infotext_utils.py: quote/unquote (56-70), re_param (16), parse_generation_parameters
(234-386, reduced to prompt / negative prompt / last-line params, "WxH" -> k-1/k-2, infotext_skip_pasting),
and the paste rule of connect_paste (476-519) as `apply_paste_fields`. Simplified: no styles, no defaults
for missing built-in keys except "Clip skip", no gradio updates (UNCHANGED stands for gr.update())."""
import json
import re

from modules import script_callbacks, shared

re_param_code = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
re_param = re.compile(re_param_code)
re_imagesize = re.compile(r"^(\d+)x(\d+)$")
UNCHANGED = "unchanged"


def quote(text):
    if ',' not in str(text) and '\n' not in str(text) and ':' not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def parse_generation_parameters(x: str, skip_fields=None):
    skip_fields = shared.opts.infotext_skip_pasting if skip_fields is None else skip_fields
    res, prompt, negative_prompt, done_with_prompt = {}, "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ''
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt, line = True, line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    for k, v in re_param.findall(lastline):
        if v and v[0] == '"' and v[-1] == '"':
            v = unquote(v)
        m = re_imagesize.match(v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    res["Prompt"], res["Negative prompt"] = prompt, negative_prompt
    res.setdefault("Clip skip", "1")
    for key in skip_fields:
        res.pop(key, None)
    return res


def apply_paste_fields(fields, params):
    """fields: [(component, "Key" | callable(params))], component has `.value`. Returns one entry per field:
    the new value, or UNCHANGED ("unchanged") where the real UI would return gr.update() (component keeps value)."""
    res = []
    for output, key in fields:
        if callable(key):
            try:
                v = key(params)
            except Exception:
                v = None
        else:
            v = params.get(key, None)
        if v is None:
            res.append(UNCHANGED)
            continue
        if isinstance(v, dict) and v.get("__type__") == "update":  # a gr.update(...) returned by a callable
            res.append(v.get("value", UNCHANGED))
            continue
        try:
            valtype = type(output.value)
            if valtype == bool and v == "False":
                res.append(False)
            elif valtype == int:
                res.append(float(v))
            else:
                res.append(valtype(v))
        except Exception:
            res.append(UNCHANGED)
    return res


def paste_infotext(fields, infotext):
    """parse -> on_infotext_pasted callbacks -> apply_paste_fields (infotext_utils.py:486-519)."""
    params = parse_generation_parameters(infotext)
    script_callbacks.infotext_pasted_callback(infotext, params)
    return apply_paste_fields(fields, params)
