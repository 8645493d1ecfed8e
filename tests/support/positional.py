"""The settings as the WebUI's positional script args (``ui()`` order, values as the UI controls hold them): how
the tests build ``script_args``. The extension only reads this form (``lib_latentfix.arguments.from_positional``)."""

from lib_latentfix.arguments import ui_value
from lib_latentfix.settings import FIELDS, Settings


def to_positional(settings: Settings) -> list:
    return [ui_value(field.name, getattr(settings, field.name)) for field in FIELDS]
