#!/usr/bin/env bash
# The installed package works outside the source tree: install the build tree to a temporary
# prefix, configure and build tests/package/consumer (find_package(integration REQUIRED), the
# examples linked to integration::integration) and the reference host (host/ on its own) against
# it, run the governed run it built, and serve /healthz from the host it built.
# Usage: package_test.sh CMAKE BUILD_DIR SOURCE_DIR CXX LAUNCHER GENERATOR
cmake=$1 build=$2 src=$3 cxx=$4 launcher=$5 generator=$6
source "$(dirname "$0")/common.sh"

install_tree "$cmake" "$build" "$work/prefix"

flags=()
[[ -n "$launcher" ]] && flags+=("-DCMAKE_CXX_COMPILER_LAUNCHER=$launcher")
"$cmake" -S "$src/tests/package/consumer" -B "$work/build" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_COMPILER="$cxx" -DINTEGRATION_EXAMPLES_DIR="$src/examples" \
    "${flags[@]}" >"$work/configure.log" 2>&1 ||
    { cat "$work/configure.log"; echo "FAIL: the consumer does not configure against the installed package"; exit 1; }
"$cmake" --build "$work/build" -j2 >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; echo "FAIL: the examples do not build against the installed package"; exit 1; }

run_examples "$work/build" "$work/data"
# The reference host, configured on its own against the installed package only.
"$cmake" -S "$src/host" -B "$work/host" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_COMPILER="$cxx" "${flags[@]}" >"$work/host-configure.log" 2>&1 ||
    { cat "$work/host-configure.log"; echo "FAIL: host/ does not configure against the installed package"; exit 1; }
"$cmake" --build "$work/host" -j2 >"$work/host-build.log" 2>&1 ||
    { cat "$work/host-build.log"; echo "FAIL: host/ does not build against the installed package"; exit 1; }
"$work/host/integration-host" serve --data "$work/host-data" --listen 127.0.0.1:0 >"$work/host.out" 2>&1 &
host_pid=$!
trap 'kill "$host_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "listening on http://" "$work/host.out" && break; sleep 0.1; done
url=$(grep -o "http://127.0.0.1:[0-9]*" "$work/host.out" | head -1)
[[ -n "$url" ]] || { cat "$work/host.out"; echo "FAIL: the host built from the package did not start"; exit 1; }
health=$(curl -fsS "$url/healthz") || { cat "$work/host.out"; echo "FAIL: GET /healthz"; exit 1; }
echo "integration-host (built against the package): GET /healthz -> $health"
kill -TERM "$host_pid"
wait "$host_pid" || { cat "$work/host.out"; echo "FAIL: the host did not exit 0 on SIGTERM"; exit 1; }
echo "PASS: installed, built the examples and the host outside the tree against integration::integration, ran them"
