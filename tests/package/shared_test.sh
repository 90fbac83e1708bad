#!/usr/bin/env bash
# The shared build (-DBUILD_SHARED_LIBS=ON): build the libraries alone in BUILD_DIR/package-shared
# (kept between runs; ccache), install them, and check
#  - every library has a versioned SONAME (lib<name>.so.MAJOR.MINOR);
#  - nothing of src/detail is exported (`nm -DC --defined-only`), and a program calling such a
#    function does not link: only what include/integration/ marks INTEGRATION_EXPORT is visible;
#  - tests/package/consumer (find_package, examples/) builds against it, without CURL, SQLite3
#    or OpenSSL for CMake to find, and the examples run: a public function or class they use
#    without INTEGRATION_EXPORT fails this link;
#  - pkg-config's flags alone build and run governed_run against it too.
# Usage: shared_test.sh CMAKE BUILD_DIR SOURCE_DIR CXX LAUNCHER GENERATOR BUILD_TYPE WERROR
cmake=$1 build=$2 src=$3 cxx=$4 launcher=$5 generator=$6 build_type=$7 werror=$8
source "$(dirname "$0")/common.sh"

flags=()
[[ -n "$launcher" ]] && flags+=("-DCMAKE_CXX_COMPILER_LAUNCHER=$launcher")
shared_build="$build/package-shared"
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$src} CCACHE_NOHASHDIR=true
quietly "$work/configure.log" "$cmake" -S "$src" -B "$shared_build" -G "$generator" -DCMAKE_BUILD_TYPE="$build_type" \
    -DCMAKE_CXX_COMPILER="$cxx" "${flags[@]}" -DINTEGRATION_WERROR="$werror" -DBUILD_SHARED_LIBS=ON \
    -DINTEGRATION_BUILD_TESTS=OFF -DINTEGRATION_BUILD_BENCH=OFF -DINTEGRATION_BUILD_HOST=OFF \
    -DINTEGRATION_BUILD_EXAMPLES=OFF || fail "the shared build does not configure"
quietly "$work/build.log" "$cmake" --build "$shared_build" -j2 || fail "the shared build does not build"
prefix="$work/prefix"
install_tree "$cmake" "$shared_build" "$prefix"
libdir=$(dirname "$(find "$prefix" -name libintegration_core.so | head -1)")

version=$(sed -n 's/^project(integration VERSION \([0-9]*\.[0-9]*\)\..*/\1/p' "$src/CMakeLists.txt")
for name in core sqlite local_vault filesystem curl platform; do
    lib="$libdir/libintegration_$name.so"
    [[ -e "$lib" ]] || fail "$lib is not installed"
    soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
    [[ "$soname" == "libintegration_$name.so.$version" ]] || fail "$lib: SONAME '$soname', expected libintegration_$name.so.$version"
    exported=$(nm -DC --defined-only "$lib")
    # src/detail's namespaces; integration::detail also holds json.hpp's json_path and
    # json_type_error, which the public from_json templates call: exported on purpose.
    leaked=$(grep -E "^[0-9a-f]* [A-Za-z] ((typeinfo( name)?|vtable|VTT) for )?integration::(crypto|storage::sqlite|blobs::detail|detail)::" <<<"$exported" |
        grep -vE "integration::detail::(json_path|json_type_error)\b" || true)
    [[ -z "$leaked" ]] || { echo "$leaked" | head -20; fail "$lib exports src/detail symbols"; }
    echo "$soname: $(wc -l <<<"$exported") exported symbols, none of src/detail"
done
# The control: the function is in the library, only hidden.
grep -q "integration::crypto::sha256_hex" <<<"$(nm -C --defined-only "$libdir/libintegration_core.so")" ||
    fail "libintegration_core.so has no sha256_hex at all: the hidden-symbol check below proves nothing"
if "$cxx" -std=c++20 "$src/tests/package/hidden_symbol.cpp" -L"$libdir" -lintegration_core \
    -o "$work/hidden_symbol" >"$work/hidden.log" 2>&1; then
    fail "a program linked a src/detail function (integration::crypto::sha256_hex) from the shared library"
fi
grep -q "undefined reference to .integration::crypto::sha256_hex" "$work/hidden.log" ||
    { cat "$work/hidden.log"; fail "the hidden-symbol program failed for another reason"; }
echo "hidden: a program calling integration::crypto::sha256_hex does not link (undefined reference)"

# find_package: the consumer, with the dependencies only a static build needs made unfindable.
quietly "$work/consumer-configure.log" "$cmake" -S "$src/tests/package/consumer" -B "$work/consumer" -G "$generator" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$cxx" "${flags[@]}" \
    -DINTEGRATION_EXAMPLES_DIR="$src/examples" -DCMAKE_DISABLE_FIND_PACKAGE_CURL=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_SQLite3=ON -DCMAKE_DISABLE_FIND_PACKAGE_OpenSSL=ON ||
    fail "the consumer does not configure against the shared package"
(export CCACHE_BASEDIR=$work; quietly "$work/consumer-build.log" "$cmake" --build "$work/consumer" -j2) ||
    fail "the examples do not link against the shared libraries (a public symbol without INTEGRATION_EXPORT?)"
grep -q "$libdir/libintegration_platform.so.$version" <<<"$(ldd "$work/consumer/governed_run")" ||
    { ldd "$work/consumer/governed_run"; fail "governed_run does not load the installed libintegration_platform.so"; }
run_examples "$work/consumer" "$work/data"

# pkg-config on the shared tree.
export PKG_CONFIG_PATH="$libdir/pkgconfig"
(cd "$work" && export CCACHE_BASEDIR=$work &&
    # shellcheck disable=SC2046 # the flags are words
    quietly "$work/pc.log" $launcher "$cxx" -std=c++20 "$src/examples/governed_run.cpp" \
        $(pkg-config --cflags --libs integration) -Wl,-rpath,"$libdir" -o "$work/pc_governed_run") ||
    fail "governed_run does not build with pkg-config's flags against the shared libraries"
out=$("$work/pc_governed_run" "$work/data" 2>&1) || { echo "$out"; fail "governed_run (pkg-config, shared)"; }
[[ "$out" == "run Completed, vendor answered 200" ]] || { echo "$out"; fail "governed_run (pkg-config, shared)"; }
echo "governed_run (pkg-config, shared): $out"
echo "PASS: the shared libraries export the public API only and serve find_package and pkg-config consumers"
