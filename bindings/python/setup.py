"""Builds and installs the `integration` Python package without downloading anything:

    /usr/bin/python3 -m pip install --no-build-isolation --break-system-packages ./bindings/python

CMake builds the `_native` module against this source tree (through ccache when it is installed),
in Release, with the options of the environment variable CMAKE_ARGS appended. With
INTEGRATION_BUILD_DIR set to a CMake build directory configured with -DINTEGRATION_BUILD_PYTHON=ON
where the module is already built (scripts/test.sh's build/), that module is packaged instead and
nothing is compiled.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

here = Path(__file__).resolve().parent
root = Path(os.environ.get("INTEGRATION_SOURCE_DIR", here.parent.parent)).resolve()


def project_version() -> str:
    text = (root / "CMakeLists.txt").read_text()
    match = re.search(r"project\(integration VERSION ([0-9.]+)", text)
    if not match:
        sys.exit(f"setup.py: no project version in {root / 'CMakeLists.txt'}")
    return match.group(1)


class cmake_build_ext(build_ext):
    def build_extension(self, ext: Extension) -> None:
        target = Path(self.get_ext_fullpath(ext.name))
        prebuilt = os.environ.get("INTEGRATION_BUILD_DIR")
        if prebuilt:
            package = Path(prebuilt) / "python" / "integration"
        else:
            build = Path(self.build_temp).resolve() / "cmake"
            env = dict(os.environ)
            # Paths under the checkout hash as relative ones, so every build of it shares one ccache.
            env.setdefault("CCACHE_BASEDIR", str(root))
            env.setdefault("CCACHE_NOHASHDIR", "true")
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            subprocess.run(["cmake", "-S", str(root), "-B", str(build), *generator, "-DCMAKE_BUILD_TYPE=Release",
                            "-DINTEGRATION_BUILD_PYTHON=ON", "-DINTEGRATION_BUILD_TESTS=OFF",
                            "-DINTEGRATION_BUILD_BENCH=OFF", "-DINTEGRATION_BUILD_EXAMPLES=OFF",
                            "-DINTEGRATION_BUILD_HOST=OFF", f"-DINTEGRATION_PYTHON={sys.executable}",
                            *shlex.split(env.get("CMAKE_ARGS", ""))], check=True, env=env)
            subprocess.run(["cmake", "--build", str(build), "--target", "integration_python",
                            "-j", str(os.cpu_count() or 2)], check=True, env=env)
            package = build / "python" / "integration"
        built = sorted(package.glob("_native*.so"))
        if not built:
            sys.exit(f"setup.py: no _native module in {package}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[0], target)


setup(
    name="integration",
    version=project_version(),
    description="The integration platform (governed vendor runs, credentials, webhooks) from Python",
    license="See LICENSE at the root of the source tree",
    python_requires=">=3.9",
    packages=["integration"],
    package_data={"integration": ["py.typed", "__init__.pyi"]},
    ext_modules=[Extension("integration._native", sources=[])],
    cmdclass={"build_ext": cmake_build_ext},
    zip_safe=False,
)
