"""X/Y/Z plot axes through the stand-in xyz_grid."""


import pytest

from lib_latentfix.infotext import VERSION_KEY
from lib_latentfix.settings import DEFAULTS
from support.positional import to_positional
from support.glue import args


def test_xyz_shared_extra_params_never_leak_between_cells(a1111):
    """X/Y/Z copies p shallowly: a cell with the extension off must not inherit a previous cell's keys."""
    from copy import copy

    from modules import processing

    run = a1111.txt2img(args(), steps=4, seed=1)
    cell = copy(run.p)
    cell.script_args = [None] + to_positional(DEFAULTS)
    cell.scripts.setup_scrips(cell, is_ui=True)
    processed = processing.process_images(cell)
    assert VERSION_KEY not in processed.infotexts[0]


def test_xyz_axes_are_registered_once(with_xyz):
    import modules.script_callbacks as sc

    host, xyz = with_xyz
    ours = [o.label for o in xyz.axis_options if o.label.startswith("[LatentFix]")]
    assert "[LatentFix] Enable" in ours and "[LatentFix] Preset" in ours and "[LatentFix] Maximize boundary" in ours
    sc.before_ui_callback()  # a second before_ui (e.g. --api building the UI again) adds nothing
    assert [o.label for o in xyz.axis_options if o.label.startswith("[LatentFix]")] == ours


def test_xyz_cells_get_their_own_values_and_infotext(with_xyz):
    host, xyz = with_xyz
    base = host.txt2img(steps=12, seed=1)  # extension off in the UI
    cells = xyz.run_cells(base.p, "[LatentFix] Enable", ["True", "False"])
    assert "LatentFix: " in cells[0].infotexts[0]
    assert "LatentFix" not in cells[1].infotexts[0]
    boundary = xyz.run_cells(base.p, "[LatentFix] Maximize boundary", [2.0, 3.5])
    assert all("LatentFix" not in r.infotexts[0] for r in boundary)  # a parameter axis alone does not enable
    on = host.txt2img(args(), steps=12, seed=1)
    two = xyz.run_cells(on.p, "[LatentFix] Maximize boundary", [2.0, 3.5])
    assert "boundary=2;" in two[0].infotexts[0] and "boundary=3.5;" in two[1].infotexts[0]
    assert not hasattr(on.p, "latentfix_overrides")  # the original p is untouched


def test_xyz_rejects_bad_values_before_running(with_xyz):
    host, xyz = with_xyz
    base = host.txt2img(args(), steps=12, seed=1)
    with pytest.raises(ValueError, match="maximize_boundary"):
        xyz.run_cells(base.p, "[LatentFix] Maximize boundary", [2.0, 99.0])


def test_xyz_grid_is_checked_as_a_whole_not_axis_by_axis(with_xyz, capsys):
    """Axes are confirmed one at a time (xyz_grid.py:612-613); a valid grid whose values only fit together passes,
    and an invalid one names exactly the cells that will be refused before the first image."""
    host, xyz = with_xyz
    base = host.txt2img(args(), steps=12, seed=1)  # maximize window: start 100, end 1
    start, end = "[LatentFix] Maximize: t to", "[LatentFix] Maximize: t from"
    cells = xyz.run_grid(base.p, [(start, [300, 400]), (end, [150, 200])])
    assert all("LatentFix maximize: " in r.infotexts[0] for _, r in cells)
    assert "refused" not in capsys.readouterr().out
    cells = xyz.run_grid(base.p, [(start, [50, 300]), (end, [80])])
    out = capsys.readouterr().out
    assert out.count("1 cell(s) will be generated without correction") == 1
    assert "Maximize: t to=50.0, Maximize: t from=80.0" in out
    refused = [r for cell, r in cells if cell[start] == 50][0]
    assert "LatentFix error" in refused.infotexts[0] and "maximize_t_min" in refused.infotexts[0]
    fine = [r for cell, r in cells if cell[start] == 300][0]
    assert "LatentFix maximize: " in fine.infotexts[0]
