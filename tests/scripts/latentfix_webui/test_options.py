"""The Settings page defaults and the command-line switch."""



from webui_standin import harness
from support.glue import args


def test_settings_page_defaults_reach_the_ui_and_the_api(a1111):
    from modules import shared

    assert "latentfix_default_preset" in shared.opts.data_labels
    shared.opts.data["latentfix_default_enabled"] = True
    shared.opts.data["latentfix_default_preset"] = "Gentle"
    host = harness.make_host("a1111", "sdxl")
    shared.opts.data.update(latentfix_default_enabled=True, latentfix_default_preset="Gentle")
    ext = host.load_extension()
    defaults = ext.defaults["txt2img"]
    assert defaults[0] is True and defaults[1] == "Gentle"
    _, processed = host.txt2img(steps=12, seed=1, is_api=True)  # no args: the defaults apply
    assert "LatentFix preset: Gentle" in processed.infotexts[0]


def test_disable_flag_turns_the_extension_off_for_the_launch(a1111, monkeypatch, corrections):
    from modules import shared

    monkeypatch.setattr(shared.cmd_opts, "latentfix_disable", True, raising=False)
    a1111.txt2img(args(), steps=4, seed=1)
    assert corrections == []
