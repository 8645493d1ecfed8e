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


def test_api_calls_after_a_settings_page_change_take_the_current_defaults(a1111):
    """A1111 builds the API's default script args once (api/api.py init_default_script_args), so after a Settings
    page change the padding holds the old defaults: omitted settings must still take the current ones."""
    from modules import shared

    host = harness.current()
    shared.opts.set("latentfix_default_strength", 0.5, is_api=True)  # POST /sdapi/v1/options
    text = host.txt2img([{"enabled": True}], steps=20, seed=1, is_api=True).processed.infotexts[0]
    assert "LatentFix error" not in text and "strength=0.5" in text.split("LatentFix options: ")[1]
    shared.opts.set("latentfix_default_preset", "Gentle", is_api=True)
    text = host.txt2img([True], steps=20, seed=1, is_api=True).processed.infotexts[0]
    assert "LatentFix preset: Gentle" in text and "strength=0.5" in text.split("LatentFix options: ")[1]
    text = host.txt2img([True, "Range only"], steps=20, seed=1, is_api=True).processed.infotexts[0]
    assert "LatentFix preset: Range only" in text and "strength=0.5" in text.split("LatentFix options: ")[1]
    text = host.txt2img([{"enabled": True, "preset": "Post defaults"}], steps=20, seed=1,
                        is_api=True).processed.infotexts[0]
    assert "LatentFix preset: Post defaults" in text
    text = host.txt2img([{"enabled": True, "preset": "Range only", "strength": 1}], steps=20, seed=1,
                        is_api=True).processed.infotexts[0]
    assert "LatentFix preset: Range only" in text and "strength=1" in text.split("LatentFix options: ")[1]
