"""The documented install (pip, no download) yields a package importable from any directory,
stubs included. Here it packages the module this build made (INTEGRATION_BUILD_DIR, see
setup.py) into a --target directory instead of compiling the library again."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import integration
from conftest import ROOT


def test_pip_install_then_import_from_root(tmp_path: Path) -> None:
    build = os.environ.get("INTEGRATION_BUILD_DIR")
    if not build:
        pytest.skip("needs INTEGRATION_BUILD_DIR: a build with -DINTEGRATION_BUILD_PYTHON=ON")
    # A copy of bindings/python, so that pip's in-tree build leaves the checkout clean.
    source = tmp_path / "src"
    shutil.copytree(ROOT / "bindings" / "python", source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info"))
    site = tmp_path / "site"
    env = dict(os.environ, INTEGRATION_SOURCE_DIR=str(ROOT), INTEGRATION_BUILD_DIR=build)
    env.pop("PYTHONPATH", None)
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                              "--no-index", "--quiet", "--target", str(site), str(source)],
                             capture_output=True, text=True, env=env, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (site / "integration" / "py.typed").is_file() and (site / "integration" / "__init__.pyi").is_file()

    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", "import integration; print(integration.__version__, integration.__file__)"],
                         capture_output=True, text=True, env=env, cwd="/", timeout=60)
    assert out.returncode == 0, out.stderr
    version, location = out.stdout.split()
    assert version == integration.__version__ and location.startswith(str(site))
