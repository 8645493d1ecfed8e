"""`pip install <repository>` installs lib_latentfix alone: torch the one hard dependency, numpy/pillow an extra."""

import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # --no-build-isolation: the setuptools of tests/requirements.txt, no download; a copy keeps build/ and
    # *.egg-info out of the repository
    subprocess.run(["git", "-C", REPO, "archive", "--format=tar", "-o", str(build / "src.tar"), "HEAD"], check=True)
    subprocess.run(["tar", "-xf", str(build / "src.tar"), "-C", str(build)], check=True)
    for name in ("pyproject.toml", "__init__.py"):  # the working tree's packaging, even before it is committed
        with open(os.path.join(REPO, name), "rb") as src, open(build / name, "wb") as dst:
            dst.write(src.read())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(build)], check=True)
    (path,) = out.glob("*.whl")
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


def test_the_core_imports_without_numpy_or_pillow():
    code = ("import sys; sys.modules['numpy'] = None; sys.modules['PIL'] = None\n"
            "import lib_latentfix, lib_latentfix.settings, lib_latentfix.sigmas\n"
            "from lib_latentfix import BLOG, apply\n"
            "import torch; print(apply(BLOG, torch.randn(1, 4, 8, 8) * 5, 990.0).shape)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "torch.Size([1, 4, 8, 8])" in result.stdout
