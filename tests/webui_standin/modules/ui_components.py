"""Stand-in for the WebUI's InputAccordion (modules.ui_components), written for the tests.

With gradio importable it is built as the WebUIs build it: a hidden gr.Checkbox `<id>-checkbox` holding the value and
a visible gr.Accordion `<id>` (class `input-accordion`, open when the value is true) that children enter. A1111's is
the class InputAccordion; Forge's is the class InputAccordionImpl behind a function InputAccordion. Without gradio, a
pure-python object with .value, .elem_id, .accordion_id, .extra() and context-manager support. Neither does the
page-script wiring (the checkbox following the accordion's open state)."""
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


def _claim_accordion_id(owner, kwargs):
    """The accordion's elem_id: the caller's ``elem_id``, else the next ``input-accordion-<n>`` counted on ``owner``."""
    chosen = kwargs.get("elem_id")
    if chosen is None:
        chosen = f"input-accordion-{owner.global_index}"
        owner.global_index += 1
    return chosen


@contextlib.contextmanager
def _no_pyi_files():
    """gradio 4 writes a .pyi next to the source of every Component subclass it creates; Forge switches that off for
    its own classes. Do the same while the classes below are made, so tests never write into the repository."""
    meta = getattr(gr, "component_meta", None) if gr is not None else None
    writer = getattr(meta, "create_or_modify_pyi", None)
    if writer is not None:
        meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        if writer is not None:
            meta.create_or_modify_pyi = writer


if gr is not None:

    class _AccordionParts:
        """What both WebUIs' InputAccordion add to their hidden checkbox (placed first among the bases)."""

        def _split(self, value, kwargs, owner):
            """Claim the id; the keyword arguments of the hidden checkbox and of the accordion (made in that order)."""
            self.accordion_id = _claim_accordion_id(owner, kwargs)
            checkbox_kwargs = dict(kwargs)
            checkbox_kwargs.update(elem_id=self.accordion_id + "-checkbox", visible=False)
            accordion_kwargs = dict(kwargs)
            accordion_kwargs.update(elem_id=self.accordion_id, label=kwargs.get("label", "Accordion"),
                                    elem_classes=["input-accordion"], open=value)
            return checkbox_kwargs, accordion_kwargs

        def get_block_name(self):  # rendered by the frontend as the checkbox it is
            return "checkbox"

        def extra(self):
            """A column shown in the accordion's header line."""
            return gr.Column(elem_classes="input-accordion-extra", elem_id=f"{self.accordion_id}-extra", min_width=0)

        def __enter__(self):  # `with accordion:` places the children inside the visible accordion
            self.accordion.__enter__()
            return self

        def __exit__(self, *exc_info):
            self.accordion.__exit__(*exc_info)

    with _no_pyi_files():  # gradio 4 would write ui_components.pyi into the repository

        class InputAccordion(_AccordionParts, gr.Checkbox):
            """A1111's InputAccordion."""

            global_index = 0

            def __init__(self, value, **kwargs):
                checkbox_kwargs, accordion_kwargs = self._split(value, kwargs, InputAccordion)
                super().__init__(value, **checkbox_kwargs)
                self.accordion = gr.Accordion(**accordion_kwargs)

        class InputAccordionImpl(_AccordionParts, gr.Checkbox):
            """Forge's InputAccordion class: built for real only with setup=True (what Forge's InputAccordion function
            passes); without it, a plain checkbox (gradio 4 re-creates components that way). isinstance checks
            against Forge's InputAccordion fail, since that one is a function."""

            webui_do_not_create_gradio_pyi_thank_you = True
            global_index = 0

            def __init__(self, value=None, setup=False, **kwargs):
                if setup:
                    checkbox_kwargs, accordion_kwargs = self._split(value, kwargs, InputAccordionImpl)
                    super().__init__(value=value, **checkbox_kwargs)
                    self.accordion = gr.Accordion(**accordion_kwargs)
                else:
                    super().__init__(value=value, **kwargs)

    def forge_input_accordion(value=None, **kwargs):
        """Imitates Forge's modules.ui_components.InputAccordion: a function building an InputAccordionImpl."""
        return InputAccordionImpl(value=value, setup=True, **kwargs)
else:

    class InputAccordion(_Component):
        global_index = 0

        def __init__(self, value, **kwargs):
            accordion_id = _claim_accordion_id(InputAccordion, kwargs)
            fields = dict(kwargs, value=value, accordion_id=accordion_id, visible=False)
            fields["elem_id"] = accordion_id + "-checkbox"
            super().__init__(**fields)
            self.accordion = _Component(elem_id=accordion_id, label=kwargs.get("label", "Accordion"), open=value)

        def extra(self):
            return contextlib.nullcontext(_Component(elem_id=self.accordion_id + "-extra"))

        def get_block_name(self):
            return "checkbox"
