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


