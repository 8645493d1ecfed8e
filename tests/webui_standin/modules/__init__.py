"""Stand-in for the WebUI's `modules` package (see tests/webui_standin/__init__.py)."""
