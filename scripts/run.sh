#!/usr/bin/env bash
# Sets up a fresh machine, builds, and runs the reference host on the embedded default: SQLite,
# the local secret store and the blob folder under ./data (or the directory given as $1).
# Extra serve settings come from INTEGRATION_* variables, e.g. INTEGRATION_LISTEN=0.0.0.0:8080.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
configure_and_build "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINTEGRATION_BUILD_TESTS=OFF -DINTEGRATION_BUILD_BENCH=OFF \
  -DINTEGRATION_BUILD_HOST=ON
# The data directory: $1, else INTEGRATION_DATA or a config file's `data` (INTEGRATION_CONFIG),
# else ./data beside this script's checkout. A --data flag would override the last two.
data=()
if [[ -n ${1:-} ]]; then data=(--data "$1")
elif [[ -z ${INTEGRATION_DATA:-} && -z ${INTEGRATION_CONFIG:-} ]]; then data=(--data "$root/data"); fi
exec "$root/build/host/integration-host" serve "${data[@]}"
