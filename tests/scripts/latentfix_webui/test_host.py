"""What the shell knows of its host: model families and other extensions' inner passes."""

from types import SimpleNamespace

import pytest
from webui_standin import harness  # noqa: F401  (puts the stand-in's modules on the path)

from latentfix_webui.host import SD, SDXL, UNSUPPORTED, is_inner_pass, model_family


@pytest.mark.parametrize(
    "flags,family",
    [
        ({"is_sdxl": True}, SDXL),
        ({"is_sdxl": True, "latent_channels": 4}, SDXL),
        ({"is_sd1": True}, SD),
        ({"is_sd2": True}, SD),
        ({"is_sd3": True, "latent_channels": 16}, UNSUPPORTED),
        ({"latent_channels": 16}, UNSUPPORTED),
        ({}, UNSUPPORTED),
    ],
)
def test_model_family(flags, family):
    assert model_family(SimpleNamespace(**flags)) == family




def test_adetailer_inner_pass_is_detected():
    assert is_inner_pass(SimpleNamespace(_ad_inner=True))
    assert not is_inner_pass(SimpleNamespace())




def _terminal(text):
    """What a terminal shows for ``text``: a carriage return moves back to the start of the line, later characters
    overwrite earlier ones."""
    shown = []
    for line in text.split("\n"):
        cells = []
        column = 0
        for char in line:
            if char == "\r":
                column = 0
                continue
            if column < len(cells):
                cells[column] = char
            else:
                cells.append(char)
            column += 1
        shown.append("".join(cells).rstrip())
    return shown


def test_a_message_during_sampling_starts_on_its_own_line_not_after_the_progress_bar(monkeypatch):
    """The WebUI's console shows tqdm progress bars while sampling (stdout and stderr on one terminal): a LatentFix
    line printed then starts at the left edge instead of being glued to the bar, and the bar goes on below it."""
    import io
    import sys

    from latentfix_webui import host
    from tqdm import tqdm

    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    bar = tqdm(total=10, file=terminal, mininterval=0, ascii=True, ncols=60)
    bar.update(3)
    host.log("skipped for this generation: a test")
    bar.update(7)
    bar.close()
    lines = _terminal(terminal.getvalue())
    assert "[LatentFix] skipped for this generation: a test" in lines, lines
    assert lines[-2].startswith("100%"), lines  # the bar is drawn again after it


def test_a_message_without_a_progress_bar_is_one_plain_line(capsys):
    from latentfix_webui import host

    host.log("note: a test")
    assert capsys.readouterr().out == "[LatentFix] note: a test\n"
