"""`pip install <repository>` installs lib_latentfix alone: torch the one hard dependency, numpy/pillow an extra."""

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# what the build reads, copied from the working tree (even before it is committed) so that build/ and *.egg-info
# stay out of the repository
BUILD_INPUTS = ("pyproject.toml", "MANIFEST.in", "LICENSE", "docs/pypi.md", "lib_latentfix")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    build = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        src = os.path.join(REPO, name)
        if os.path.isdir(src):
            shutil.copytree(src, build / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            os.makedirs((build / name).parent, exist_ok=True)
            shutil.copyfile(src, build / name)
    return build


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the setuptools of tests/requirements.txt, no download
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(source)], check=True)
    (path,) = out.glob("*.whl")
    return path


@pytest.fixture(scope="module")
def sdist(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("sdist")
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    subprocess.run([sys.executable, "-c", code], cwd=source, check=True, capture_output=True)
    (path,) = out.glob("*.tar.gz")
    return path


def test_wheel_holds_only_lib_latentfix(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"lib_latentfix"}
    sources = sorted(n for n in names if n.startswith("lib_latentfix/"))
    expected = sorted(f"lib_latentfix/{f}" for f in os.listdir(os.path.join(REPO, "lib_latentfix")) if f.endswith(".py"))
    assert sources == expected


def test_torch_is_the_only_hard_dependency_and_previews_are_an_extra(wheel):
    import lib_latentfix

    archive = zipfile.ZipFile(wheel)
    (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    lines = archive.read(metadata).decode().splitlines()
    requires = sorted(line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:"))
    assert requires == ['numpy; extra == "preview"', 'pillow; extra == "preview"', "torch"]
    assert f"Version: {lib_latentfix.__version__}" in lines


def test_the_wheel_carries_the_licence_and_the_index_readme(wheel):
    archive = zipfile.ZipFile(wheel)
    (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    text = archive.read(metadata).decode()
    assert "License-Expression: MIT" in text.splitlines()
    (licence,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert archive.read(licence).decode().startswith("MIT License")
    with open(os.path.join(REPO, "docs", "pypi.md"), encoding="utf-8") as file:
        readme = file.read()
    assert "Description-Content-Type: text/markdown" in text
    assert text.split("\n\n", 1)[1].strip() == readme.strip()  # the long description is docs/pypi.md


def test_the_sdist_holds_the_package_licence_and_readme_but_no_tests(sdist):
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    assert {"LICENSE", "docs/pypi.md", "pyproject.toml", "lib_latentfix/filters.py"} <= names
    assert not [n for n in names if n.startswith("tests")]


def test_the_core_imports_without_numpy_or_pillow():
    code = ("import sys; sys.modules['numpy'] = None; sys.modules['PIL'] = None\n"
            "import lib_latentfix, lib_latentfix.settings, lib_latentfix.sigmas\n"
            "from lib_latentfix import BLOG, apply\n"
            "import torch; print(apply(BLOG, torch.randn(1, 4, 8, 8) * 5, 990.0).shape)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "torch.Size([1, 4, 8, 8])" in result.stdout
