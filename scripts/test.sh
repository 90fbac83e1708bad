#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: a warnings-as-errors build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build, each through ctest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

jobs=$(nproc)
# The peers' own packages need Node 20.19 or later (svix ships only an ES module, which require()
# loads from 20.19 on); Debian 12's nodejs is 18. Say so now rather than as a peer test's failure.
node_version=$(node -p 'process.versions.node' 2>/dev/null || echo 0)
IFS=. read -r node_major node_minor _ <<<"$node_version"
if ((node_major < 20 || (node_major == 20 && node_minor < 19))); then
  echo "Node.js 20.19 or later is needed for the test peers (found $node_version): install it, e.g. from" \
       "https://github.com/nodesource/distributions, and run again" >&2
  exit 1
fi
echo "== test peers (npm registry)"
npm ci --prefix "$root/tests/peers" --no-audit --no-fund --loglevel=error >/dev/null

echo "== build (warnings as errors)"
# Every part is switched on explicitly: run.sh shares build/ and turns the tests off there.
configure_and_build "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINTEGRATION_WERROR=ON \
  -DINTEGRATION_BUILD_TESTS=ON -DINTEGRATION_BUILD_HOST=ON -DINTEGRATION_BUILD_BENCH=ON -DINTEGRATION_BUILD_EXAMPLES=ON \
  -DINTEGRATION_BUILD_PYTHON=ON
echo "== tests"
ctest --test-dir "$root/build" --output-on-failure -j "$jobs"

echo "== build (address + undefined sanitizers)"
configure_and_build "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DINTEGRATION_WERROR=ON -DINTEGRATION_SANITIZE=ON \
  -DINTEGRATION_BUILD_TESTS=ON -DINTEGRATION_BUILD_HOST=ON -DINTEGRATION_BUILD_BENCH=OFF -DINTEGRATION_BUILD_EXAMPLES=OFF \
  -DINTEGRATION_BUILD_PYTHON=OFF
echo "== tests under sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$root/build-asan" --output-on-failure -j "$jobs"

echo "== fuzz (libFuzzer, clang-16, about 60 s)"
"$root/tests/fuzz/run.sh"
