#!/usr/bin/env bash
# pkg-config users: install the (static) build tree to a temporary prefix, compile each example
# with one compiler line and nothing else, `CXX -std=c++20 EXAMPLE.cpp $(pkg-config --cflags --libs
# integration)`, and run them.
# Usage: pkgconfig_test.sh CMAKE BUILD_DIR SOURCE_DIR CXX LAUNCHER
cmake=$1 build=$2 src=$3 cxx=$4 launcher=$5
source "$(dirname "$0")/common.sh"

install_tree "$cmake" "$build" "$work/prefix"
pc=$(find "$work/prefix" -name integration.pc -path "*/pkgconfig/*")
[[ -n "$pc" ]] || fail "no integration.pc installed under lib*/pkgconfig"
export PKG_CONFIG_PATH=$(dirname "$pc")
pkg-config --print-errors --exists integration || fail "pkg-config does not accept integration.pc"
echo "pkg-config: integration $(pkg-config --modversion integration): $(pkg-config --cflags --libs integration)"

# Relative paths under the work directory keep ccache hits across runs of this test.
cd "$work"
export CCACHE_BASEDIR=$work CCACHE_NOHASHDIR=true
for example in governed_run domain_tour; do
    # shellcheck disable=SC2046 # the flags are words
    quietly "$work/$example.log" $launcher "$cxx" -std=c++20 -Wall -Wextra -Wpedantic -Wno-missing-field-initializers -Werror "$src/examples/$example.cpp" \
        $(pkg-config --cflags --libs integration) -o "$work/$example" ||
        fail "$example does not compile and link with pkg-config's flags alone"
done
run_examples "$work" "$work/data"
echo "PASS: built the examples with \$(pkg-config --cflags --libs integration) alone and ran them"
