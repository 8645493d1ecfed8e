"""pyproject.toml as PyPI and the Comfy Registry read it: a static version equal to the package's, the MIT licence,
a readme that renders without the repository, and the [tool.comfy] fields `comfy node publish` sends."""

import os
import re

import pytest

import lib_latentfix

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

with open(os.path.join(REPO, "pyproject.toml"), "rb") as _file:
    PYPROJECT = tomllib.load(_file)
PROJECT = PYPROJECT["project"]
COMFY = PYPROJECT["tool"]["comfy"]


def test_the_version_is_static_semantic_and_the_packages_own():
    # the Registry reads [project] version as text: a dynamic version would reach it empty
    assert "version" not in PROJECT.get("dynamic", [])
    assert re.fullmatch(r"\d+\.\d+\.\d+", PROJECT["version"])
    assert PROJECT["version"] == lib_latentfix.__version__


def test_the_changelog_has_a_section_for_this_version():
    with open(os.path.join(REPO, "CHANGELOG.md"), encoding="utf-8") as file:
        headings = re.findall(r"^## \[([^\]]+)\]", file.read(), re.MULTILINE)
    assert PROJECT["version"] in headings


def test_the_name_is_a_valid_registry_node_id_and_pypi_name():
    name = PROJECT["name"]
    # the Registry: under 100 characters, letters/digits/-/_/., no two special characters in a row, starts with a
    # letter, no "ComfyUI"; PyPI: the normalised form is the name itself
    assert len(name) < 100
    assert re.fullmatch(r"[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*", name)
    assert "comfy" not in name.lower()
    assert re.sub(r"[-_.]+", "-", name).lower() == name


def test_the_licence_is_mit_and_the_file_is_there():
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as file:
        text = file.read()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 sd-webui-latentfix contributors" in text
    # licence classifiers are superseded by the expression (setuptools refuses both)
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]


def test_the_readme_renders_without_the_repository():
    readme = PROJECT["readme"]
    path = os.path.join(REPO, readme["file"])
    assert readme["content-type"] == "text/markdown"
    with open(path, encoding="utf-8") as file:
        text = file.read()
    assert text.strip()
    targets = re.findall(r"\]\(\s*<?([^)\s>]+)", text)  # [text](target), ![alt](target)
    targets += re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", text, re.MULTILINE)  # [label]: target
    targets += re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", text)  # <img src=...>, <a href=...>
    assert targets, "the readme should at least link the source post"
    relative = [t for t in targets if not t.startswith("https://")]
    assert relative == []


def test_the_registry_fields():
    assert isinstance(COMFY["PublisherId"], str) and COMFY["PublisherId"].strip()
    assert re.fullmatch(r"[a-z][a-z0-9-]*", COMFY["PublisherId"])
    assert isinstance(COMFY["DisplayName"], str) and COMFY["DisplayName"].strip()
    assert PROJECT["description"].strip()
    # what comfy-cli accepts as operating systems (anything else drops the OS information with a warning)
    systems = [c.split(" :: ", 1)[1] for c in PROJECT["classifiers"] if c.startswith("Operating System :: ")]
    assert systems and all(s.startswith(("Microsoft", "POSIX", "MacOS", "OS Independent")) for s in systems)
    # every URL is a real https address (no placeholders); Repository and Icon come with the public repository
    urls = dict(PROJECT.get("urls", {}))
    assert all(u.startswith("https://") and "<" not in u and "example" not in u for u in urls.values())
    if "Icon" in COMFY:
        assert COMFY["Icon"].startswith("https://") and COMFY["Icon"].endswith("/docs/icon.png")
        assert "Repository" in urls


def test_the_icon_fits_the_registry():
    from PIL import Image

    with Image.open(os.path.join(REPO, "docs", "icon.png")) as icon:
        assert icon.format == "PNG"
        assert icon.width == icon.height <= 400  # square, at most 400 × 400

