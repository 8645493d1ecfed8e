"""Test-only, gradio-free stand-in for the gradio 3.41 API surface a script's ui() touches: components
record their kwargs and `.value`, layouts are context managers, event methods (change/input/click/...)
record the wiring and return None, `update(**kw)` returns gradio 3's {"__type__": "update", ...} dict.
Not gradio: nothing renders. harness installs it in sys.modules only while loading an extension, and only
when the real gradio is not importable."""
import types

_POSITIONAL = {"Slider": ("minimum", "maximum", "value"), "Checkbox": ("value",), "Dropdown": ("choices", "value"),
               "Radio": ("choices", "value"), "CheckboxGroup": ("choices", "value"), "Number": ("value",),
               "Textbox": ("value",), "HTML": ("value",), "Markdown": ("value",), "Button": ("value",),
               "Accordion": ("label",), "ColorPicker": ("value",)}
_DEFAULTS = {"Checkbox": False, "Number": 0, "Textbox": "", "CheckboxGroup": [], "HTML": "", "Markdown": ""}


class Block:
    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        for key, value in zip(_POSITIONAL.get(name, ()), args):
            kwargs.setdefault(key, value)
        self.kwargs, self.events = kwargs, []
        default = kwargs.get("minimum", 0) if name == "Slider" else _DEFAULTS.get(name)
        self.value = kwargs.get("value", default)
        self.elem_id, self.label = kwargs.get("elem_id"), kwargs.get("label")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __getattr__(self, event):  # change / input / click / release / select / then ...
        if event.startswith("__"):
            raise AttributeError(event)
        return lambda *a, **k: self.events.append((event, a, k))


def update(**kwargs):
    return {"__type__": "update", **kwargs}


_classes = {}


def __getattr__(name):  # any component or layout name -> a Block subclass
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in _classes:
        _classes[name] = type(name, (Block,), {})
    return _classes[name]


components = types.SimpleNamespace(Component=Block, IOComponent=Block)
blocks = types.SimpleNamespace(Block=Block)
__version__ = "3.41.2-standin-stub"
