"""Stand-in for A1111's built-in scripts/xyz_grid.py (v1.10.1), only what axis-registering extensions touch.

Loaded with ``modules.scripts.load_script_file`` so its module name is "xyz_grid.py" and it sits in
``scripts.scripts_data`` like the real one (script_loading.py:10-16; scripts.py:503). Simplified: no UI, no
grid drawing; ``run_cells`` replays one axis of the real cell loop (xyz_grid.py:609-613 value typing and
confirm, 707-728 ``process_images(copy(p))`` per cell).
"""

import itertools
from copy import copy

from modules import processing, scripts


def apply_field(field):  # xyz_grid.py:30-34
    def fun(p, x, xs):
        setattr(p, field, x)

    return fun


class AxisOption:  # xyz_grid.py:214-223
    def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label, self.type, self.apply, self.format_value = label, type, apply, format_value
        self.confirm, self.cost, self.prepare, self.choices = confirm, cost, prepare, choices


class AxisOptionTxt2Img(AxisOption):  # xyz_grid.py:226-229
    is_img2img = False


class AxisOptionImg2Img(AxisOption):  # xyz_grid.py:232-235
    is_img2img = True


axis_options = [
    AxisOption("Nothing", str, lambda p, x, xs: None),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Steps", int, apply_field("steps")),
]


def run_cells(p, label, values):
    """Run one cell per value of the axis called ``label``, as the real grid does; returns the Processed list."""
    opt = next(o for o in axis_options if o.label == label)
    typed = [opt.type(v) for v in values]  # xyz_grid.py:609
    if opt.confirm:
        opt.confirm(p, typed)  # xyz_grid.py:612-613
    results = []
    for value in typed:
        pc = copy(p)  # xyz_grid.py:716: a shallow copy, script_args and extra_generation_params are shared
        opt.apply(pc, value, typed)
        results.append(processing.process_images(pc))
    return results


def run_grid(p, axes):
    """Run a whole grid: ``axes`` is [(label, values), ...] for X, Y, Z. Every axis is typed and confirmed first, in
    order (xyz_grid.py:609-613, one axis at a time, each knowing only its own values), then one cell per
    combination, Z outermost and X innermost (xyz_grid.py:707-728, draw_xyz_grid's loops)."""
    opts, typed = [], []
    for label, values in axes:
        opt = next(o for o in axis_options if o.label == label)
        vals = [opt.type(v) for v in values]
        if opt.confirm:
            opt.confirm(p, vals)
        opts.append(opt)
        typed.append(vals)
    results = []
    for combination in itertools.product(*reversed(typed)):
        pc = copy(p)
        for opt, value, vals in zip(reversed(opts), combination, reversed(typed)):
            opt.apply(pc, value, vals)
        results.append((dict(zip(reversed([a[0] for a in axes]), combination)), processing.process_images(pc)))
    return results


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"
