#!/usr/bin/env bash
# Sets up a fresh machine and runs the project's main job on the embedded default (SQLite file,
# local storage under ./data). Until the reference host lands this is the domain tour example.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
configure_and_build "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINTEGRATION_BUILD_TESTS=OFF -DINTEGRATION_BUILD_BENCH=OFF
exec "$root/build/examples/domain_tour" "${1:-$root/data}"
