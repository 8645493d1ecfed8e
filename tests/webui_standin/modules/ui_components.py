"""Imitates modules/ui_components.py:88-144 InputAccordion. With gradio importable it is built the real way
(hidden gr.Checkbox `<id>-checkbox` + gr.Accordion `<id>`); otherwise a pure-python object with .value,
.elem_id, .accordion_id, .extra() and context-manager support (no JS wiring in either case)."""
import contextlib
from types import SimpleNamespace

try:
    import gradio as gr
except ImportError:
    gr = None


class _Component(SimpleNamespace):
    """Minimal gradio-less component: value/label/elem_id attributes, usable as a context manager."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@contextlib.contextmanager
def _no_pyi_files():
    """gradio 4 writes a .pyi next to the source of every Component subclass (gradio/component_meta.py); Forge
    turns that off for its own classes (F modules/gradio_extensions.py). Do the same, so tests never write here."""
    meta = getattr(gr, "component_meta", None) if gr is not None else None
    original = getattr(meta, "create_or_modify_pyi", None)
    if original is not None:
        meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        if original is not None:
            meta.create_or_modify_pyi = original


if gr is not None:
    with _no_pyi_files():  # gradio 4 would write ui_components.pyi into the repository
        class InputAccordion(gr.Checkbox):
            global_index = 0

            def __init__(self, value, **kwargs):
                self.accordion_id = kwargs.get("elem_id")
                if self.accordion_id is None:
                    self.accordion_id = f"input-accordion-{InputAccordion.global_index}"
                    InputAccordion.global_index += 1
                super().__init__(value, **{**kwargs, "elem_id": f"{self.accordion_id}-checkbox", "visible": False})
                self.accordion = gr.Accordion(**{**kwargs, "elem_id": self.accordion_id, "label": kwargs.get("label", "Accordion"),
                                                 "elem_classes": ["input-accordion"], "open": value})

            def extra(self):
                return gr.Column(elem_id=self.accordion_id + "-extra", elem_classes="input-accordion-extra", min_width=0)

            def __enter__(self):
                self.accordion.__enter__()
                return self

            def __exit__(self, exc_type, exc_val, exc_tb):
                self.accordion.__exit__(exc_type, exc_val, exc_tb)

            def get_block_name(self):
                return "checkbox"

        class InputAccordionImpl(gr.Checkbox):
            """Forge's InputAccordion (F modules/ui_components.py:102-170): the class is InputAccordionImpl and
            InputAccordion is a function that builds one with setup=True (so isinstance on it fails there)."""
            webui_do_not_create_gradio_pyi_thank_you = True
            global_index = 0

            def __init__(self, value=None, setup=False, **kwargs):
                if not setup:
                    super().__init__(value=value, **kwargs)
                    return
                self.accordion_id = kwargs.get("elem_id")
                if self.accordion_id is None:
                    self.accordion_id = f"input-accordion-{InputAccordionImpl.global_index}"
                    InputAccordionImpl.global_index += 1
                super().__init__(value=value, **{**kwargs, "elem_id": f"{self.accordion_id}-checkbox", "visible": False})
                self.accordion = gr.Accordion(**{**kwargs, "elem_id": self.accordion_id, "label": kwargs.get("label", "Accordion"),
                                                 "elem_classes": ["input-accordion"], "open": value})

            def extra(self):
                return gr.Column(elem_id=self.accordion_id + "-extra", elem_classes="input-accordion-extra", min_width=0)

            def __enter__(self):
                self.accordion.__enter__()
                return self

            def __exit__(self, exc_type, exc_val, exc_tb):
                self.accordion.__exit__(exc_type, exc_val, exc_tb)

            def get_block_name(self):
                return "checkbox"

    def forge_input_accordion(value=None, **kwargs):
        """Forge's modules.ui_components.InputAccordion (F modules/ui_components.py:169-170)."""
        return InputAccordionImpl(value=value, setup=True, **kwargs)
else:
    class InputAccordion(_Component):
        global_index = 0

        def __init__(self, value, **kwargs):
            accordion_id = kwargs.get("elem_id")
            if accordion_id is None:
                accordion_id = f"input-accordion-{InputAccordion.global_index}"
                InputAccordion.global_index += 1
            super().__init__(**{**kwargs, "value": value, "accordion_id": accordion_id, "elem_id": f"{accordion_id}-checkbox", "visible": False})
            self.accordion = _Component(elem_id=accordion_id, label=kwargs.get("label", "Accordion"), open=value)

        def extra(self):
            return contextlib.nullcontext(_Component(elem_id=self.accordion_id + "-extra"))

        def get_block_name(self):
            return "checkbox"
