#!/usr/bin/env bash
# Sets up a fresh machine, builds, and runs the reference host on the embedded default: SQLite,
# the local secret store and the blob folder under ./data (or the directory given as $1).
# Extra serve settings come from INTEGRATION_* variables, e.g. INTEGRATION_LISTEN=0.0.0.0:8080.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
configure_and_build "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINTEGRATION_BUILD_TESTS=OFF -DINTEGRATION_BUILD_BENCH=OFF \
  -DINTEGRATION_BUILD_HOST=ON
exec "$root/build/host/integration-host" serve --data "${1:-$root/data}"
