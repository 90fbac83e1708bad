#!/usr/bin/env bash
# find_package's contract: the version rule (before 1.0 only the same MAJOR.MINOR is compatible:
# SameMinorVersion) on the installed build tree, and components: the static tree looks up libcurl
# because it has the curl component; a second, shared build (BUILD_DIR/package-core, kept between
# runs, sharing ccache with package_shared's) leaves the sqlite, local_vault and curl backends
# out: asking for a component it lacks, or one that does not exist, fails with a message saying
# so, and a consumer of what was built finds neither CURL nor SQLite3.
# Usage: find_test.sh CMAKE BUILD_DIR SOURCE_DIR CXX LAUNCHER GENERATOR BUILD_TYPE WERROR
cmake=$1 build=$2 src=$3 cxx=$4 launcher=$5 generator=$6 build_type=$7 werror=$8
source "$(dirname "$0")/common.sh"

# expect ok|fail PREFIX NAME [cmake -D args...]: configures tests/package/find against PREFIX.
n=0
expect() {
    local want=$1 prefix=$2 name=$3; shift 3
    n=$((n + 1))
    local log="$work/find-$n.log"
    if "$cmake" -S "$src/tests/package/find" -B "$work/find-$n" -G "$generator" -DCMAKE_CXX_COMPILER="$cxx" \
        -DCMAKE_PREFIX_PATH="$prefix" "$@" >"$log" 2>&1; then got=ok; else got=fail; fi
    if [[ "$got" != "$want" ]]; then cat "$log"; fail "$name: expected configuring to $want, it did $got"; fi
    echo "ok: $name ($got)"
}
# said TEXT: the last configure's output says TEXT.
said() { grep -q -- "$1" "$work/find-$n.log" || { cat "$work/find-$n.log"; fail "expected the message '$1'"; }; }

install_tree "$cmake" "$build" "$work/full"
expect ok   "$work/full" "0.1 is this package's version" -DINTEGRATION_VERSION=0.1
expect ok   "$work/full" "0.1.0 exactly" -DINTEGRATION_VERSION=0.1.0
expect fail "$work/full" "0.2 (a later minor release may break 0.1's API)" -DINTEGRATION_VERSION=0.2
said 'compatible with requested version "0.2"'
expect fail "$work/full" "1.0" -DINTEGRATION_VERSION=1.0
said 'compatible with requested version "1.0"'
expect fail "$work/full" "0.0" -DINTEGRATION_VERSION=0.0
expect ok   "$work/full" "every component" "-DINTEGRATION_COMPONENTS=core;sqlite;local_vault;filesystem;curl"
expect fail "$work/full" "a component that does not exist" "-DINTEGRATION_COMPONENTS=core;postgres"
said "there is no component 'postgres'"
expect fail "$work/full" "the static tree, libcurl unfindable" -DCMAKE_DISABLE_FIND_PACKAGE_CURL=ON
said "CURL"

core_build="$build/package-core"
flags=()
[[ -n "$launcher" ]] && flags+=("-DCMAKE_CXX_COMPILER_LAUNCHER=$launcher")
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$src} CCACHE_NOHASHDIR=true
quietly "$work/core-configure.log" "$cmake" -S "$src" -B "$core_build" -G "$generator" -DCMAKE_BUILD_TYPE="$build_type" \
    -DCMAKE_CXX_COMPILER="$cxx" "${flags[@]}" -DINTEGRATION_WERROR="$werror" -DBUILD_SHARED_LIBS=ON -DINTEGRATION_WITH_SQLITE=OFF \
    -DINTEGRATION_WITH_LOCAL_VAULT=OFF -DINTEGRATION_WITH_CURL=OFF -DINTEGRATION_WITH_FILESYSTEM=ON ||
    fail "a build without sqlite, local_vault and curl does not configure"
quietly "$work/core-build.log" "$cmake" --build "$core_build" -j2 || fail "a build without sqlite, local_vault and curl"
install_tree "$cmake" "$core_build" "$work/core"
# A backend that was not built installs no header: one would compile, then fail to link.
for backend in curl sqlite local_vault; do
  [[ ! -e "$work/core/include/integration/backends/$backend" ]] || fail "the headers of $backend, which was not built, were installed"
done
[[ -e "$work/core/include/integration/backends/filesystem" ]] || fail "the filesystem backend's headers were not installed"
nodeps=(-DCMAKE_DISABLE_FIND_PACKAGE_CURL=ON -DCMAKE_DISABLE_FIND_PACKAGE_SQLite3=ON)
expect ok   "$work/core" "what was built, without CURL or SQLite3 on the machine" \
    "-DINTEGRATION_COMPONENTS=core;filesystem" "${nodeps[@]}"
expect ok   "$work/core" "no components named" "${nodeps[@]}"
expect fail "$work/core" "curl, which was not built" "-DINTEGRATION_COMPONENTS=filesystem;curl" "${nodeps[@]}"
said "the component 'curl' was not built into this package"
said "rebuild integration with -DINTEGRATION_WITH_CURL=ON"
expect ok   "$work/core" "curl as an optional component" -DINTEGRATION_OPTIONAL_COMPONENTS=curl "${nodeps[@]}"
said "component curl found: FALSE"
echo "PASS: the version rule and the components hold for find_package"
