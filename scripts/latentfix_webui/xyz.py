"""X/Y/Z plot axes: one per numeric setting, filter switch, the enable, the preset and the correction point.

Each cell runs ``process_images(copy(p))`` with a shallow copy (scripts/xyz_grid.py:707-728), so an axis writes its
value into a new overrides dict on the cell's own ``p``. The grid is checked as a whole before it starts: each
axis's values on their own (``confirm`` refuses a bad one), and every combination of the LatentFix axes with the
rest of the settings, so a cell that would be refused is named on the console before the first image.
"""

from __future__ import annotations

from typing import Any, Callable

from modules import scripts

from lib_latentfix import arguments as lf_arguments
from lib_latentfix import settings as lf_settings

from . import host

OVERRIDES_ATTR = "latentfix_overrides"
AXES_ATTR = "latentfix_xyz_axes"  # on the grid's own p (shared by every cell's shallow copy): field → values
XYZ_MODULES = ("xyz_grid.py", "scripts.xyz_grid")  # A1111 loads it by file name; some hosts import it as a module


def overrides_of(p: Any) -> Any:
    return getattr(p, OVERRIDES_ATTR, None)


def _apply(name: str):
    def apply_value(p: Any, value: Any, _values: Any) -> None:
        overrides = dict(getattr(p, OVERRIDES_ATTR, None) or {})
        overrides[name] = value
        setattr(p, OVERRIDES_ATTR, overrides)  # a new dict on this cell's p: cells never share it

    return apply_value


def _confirm(name: str):
    """Refuse values that are bad on their own; remember the axis so the grid's combinations can be checked."""

    def confirm(p: Any, values: Any) -> None:
        lf_arguments.check_axis_values(name, values)
        axes = getattr(p, AXES_ATTR, None)
        if axes is None:
            axes = {}
            setattr(p, AXES_ATTR, axes)
        axes[name] = list(values)
        axes.pop("__reported__", None)

    return confirm


def report_refused_cells(p: Any, base: lf_settings.Settings) -> None:
    """Once per grid, before its first cell runs: name every cell whose combination will be refused."""
    axes = getattr(p, AXES_ATTR, None)
    if not axes or axes.get("__reported__"):
        return
    axes["__reported__"] = True
    refused = lf_arguments.refused_cells(base, {k: v for k, v in axes.items() if k != "__reported__"})
    if refused:
        host.log(f"X/Y/Z plot: {len(refused)} cell(s) will be generated without correction, their settings are "
                 "refused: " + "; ".join(refused))


def register(title: str) -> None:
    """``on_before_ui``: add the axes to the loaded xyz_grid script, once (its module is not importable by name)."""
    module = next((d.module for d in scripts.scripts_data
                   if getattr(d.script_class, "__module__", "") in XYZ_MODULES), None)
    if module is None:
        return
    if any(getattr(opt, "label", "").startswith(f"[{title}]") for opt in module.axis_options):
        return
    for axis in lf_arguments.xyz_axes():
        kind: Callable = {"bool": str, "choice": str, "float": float}[axis.kind]
        choices = (lambda values=axis.choices: list(values)) if axis.choices else None
        module.axis_options.append(module.AxisOption(axis.label, kind, _apply(axis.field), choices=choices,
                                                     confirm=_confirm(axis.field)))
