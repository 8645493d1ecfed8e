"""Imitates modules/options.py: the classes live in modules/shared.py of the stand-in."""
from modules.shared import OptionHTML, OptionInfo, Options, options_section  # noqa: F401
