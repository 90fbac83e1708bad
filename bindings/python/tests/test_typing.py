"""The shipped stubs (__init__.pyi, py.typed) type-check a typed program with mypy --strict."""

import os
import subprocess
import sys
from pathlib import Path

import integration

HERE = Path(__file__).resolve().parent


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    package_root = Path(integration.__file__).resolve().parent.parent
    env = dict(os.environ, MYPYPATH=str(package_root))
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir=/dev/null", "--no-error-summary",
                           str(path)], capture_output=True, text=True, env=env, cwd=str(HERE))


def test_stubs_ship_with_the_package() -> None:
    package = Path(integration.__file__).resolve().parent
    assert (package / "py.typed").is_file() and (package / "__init__.pyi").is_file()


def test_typed_usage_passes_mypy_strict() -> None:
    result = mypy(HERE / "typed_usage.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_catches_a_misuse(tmp_path: Path) -> None:
    bad = tmp_path / "bad_usage.py"
    bad.write_text("import integration\n"
                   "p = integration.open(data_dir=3)\n"
                   "n: int = p.tenant('t').get_run('r')\n")
    result = mypy(bad)
    assert result.returncode != 0
    assert "data_dir" in result.stdout and "Incompatible types in assignment" in result.stdout
