#!/usr/bin/env bash
# The installed package works outside the source tree: install the build tree to a temporary
# prefix, configure and build tests/package/consumer (find_package(integration REQUIRED), the
# examples linked to integration::integration) against it, and run the governed run it built.
# Usage: package_test.sh CMAKE BUILD_DIR SOURCE_DIR CXX LAUNCHER GENERATOR
set -euo pipefail
cmake=$1 build=$2 src=$3 cxx=$4 launcher=$5 generator=$6

work=$(mktemp -d "${TMPDIR:-/tmp}/integration-package.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$cmake" --install "$build" --prefix "$work/prefix" >"$work/install.log" ||
    { cat "$work/install.log"; echo "FAIL: cmake --install"; exit 1; }

flags=()
[[ -n "$launcher" ]] && flags+=("-DCMAKE_CXX_COMPILER_LAUNCHER=$launcher")
"$cmake" -S "$src/tests/package/consumer" -B "$work/build" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_COMPILER="$cxx" -DINTEGRATION_EXAMPLES_DIR="$src/examples" \
    "${flags[@]}" >"$work/configure.log" 2>&1 ||
    { cat "$work/configure.log"; echo "FAIL: the consumer does not configure against the installed package"; exit 1; }
"$cmake" --build "$work/build" -j2 >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; echo "FAIL: the examples do not build against the installed package"; exit 1; }

# Twice on the same data directory, as people paste things twice.
for pass in 1 2; do
    out=$("$work/build/governed_run" "$work/data" 2>&1) || { echo "$out"; echo "FAIL: governed_run, pass $pass"; exit 1; }
    echo "governed_run (pass $pass): $out"
    [[ "$out" == "run Completed, vendor answered 200" ]] ||
        { echo "FAIL: expected 'run Completed, vendor answered 200'"; exit 1; }
done
out=$("$work/build/domain_tour" "$work/data" 2>&1) || { echo "$out"; echo "FAIL: domain_tour"; exit 1; }
grep -q "event IntegrationRunCompleted" <<<"$out" || { echo "$out"; echo "FAIL: domain_tour relayed no run event"; exit 1; }
echo "PASS: installed, built the examples outside the tree against integration::integration, ran them"
