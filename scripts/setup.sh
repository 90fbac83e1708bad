#!/usr/bin/env bash
# Installs the build dependencies that are missing (Debian packages; needs root or sudo) and
# configures + builds the project. Sourced by run.sh and test.sh.
set -euo pipefail

packages=(cmake ninja-build g++ ccache pkg-config libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
          libssl-dev libsqlite3-dev sqlite3 libcurl4-openssl-dev zlib1g-dev libjemalloc-dev libgtest-dev libgmock-dev libbenchmark-dev
          curl openssl
          python3 python3-dev pybind11-dev python3-pybind11 python3-pytest python3-setuptools python3-wheel python3-pip
          mypy
          clang-16 libclang-rt-16-dev)  # libFuzzer (tests/fuzz/run.sh): g++ has none, clang 14 cannot build std::views

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the vendors' own libraries and mock servers the tests talk to.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  # `env` past sudo: sudo resets the environment, and a debconf prompt would wait forever.
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# configure_and_build BUILD_DIR [cmake args...]
configure_and_build() {
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Paths under the checkout hash as relative ones, and the build directory is left out of the hash
# (ccache adds it for -g builds), so every clone of the project shares one ccache.
export CCACHE_BASEDIR="$root"
export CCACHE_NOHASHDIR=true
