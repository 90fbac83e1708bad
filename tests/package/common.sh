# Shared by the package tests (sourced): a work directory removed on exit, installing a build
# tree, and running the examples a consumer built.
set -euo pipefail

work=$(mktemp -d "${TMPDIR:-/tmp}/integration-package.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*"; exit 1; }

# install_tree CMAKE BUILD_DIR PREFIX
install_tree() {
    "$1" --install "$2" --prefix "$3" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "cmake --install $2"; }
}

# quietly LOG COMMAND...: runs COMMAND with its output in LOG, shown only when it fails.
quietly() {
    local log=$1; shift
    "$@" >"$log" 2>&1 || { cat "$log"; return 1; }
}

# run_examples BIN_DIR DATA_DIR: governed_run twice on the same data directory (as people paste
# things twice), then domain_tour, each checked by what it prints.
run_examples() {
    local bin=$1 data=$2 out pass
    for pass in 1 2; do
        out=$("$bin/governed_run" "$data" 2>&1) || { echo "$out"; fail "governed_run, pass $pass"; }
        echo "governed_run (pass $pass): $out"
        [[ "$out" == "run Completed, vendor answered 200" ]] || fail "expected 'run Completed, vendor answered 200'"
    done
    out=$("$bin/domain_tour" "$data" 2>&1) || { echo "$out"; fail "domain_tour"; }
    grep -q "event IntegrationRunCompleted" <<<"$out" || { echo "$out"; fail "domain_tour relayed no run event"; }
    echo "domain_tour: relayed IntegrationRunCompleted"
}
