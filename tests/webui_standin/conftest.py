"""Makes the stand-in's `modules` package importable and offers the `standin_host` fixture here."""
from webui_standin.harness import standin_host  # noqa: F401
