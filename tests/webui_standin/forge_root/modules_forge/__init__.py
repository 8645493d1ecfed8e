"""Stub of Forge's top-level `modules_forge` package (F modules_forge/, at the WebUI root next to `modules/`).
harness puts tests/webui_standin/forge_root on sys.path only for flavour="forge" hosts, so
`importlib.util.find_spec("modules_forge")` tells the hosts apart as it does for real."""
