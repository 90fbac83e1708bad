#!/usr/bin/env bash
# Inbound verification against `openssl speed -hmac sha256` in the same session: runs openssl
# speed at 1 KiB and 16 KiB, then inbound_verify_bench, and prints each benchmark's throughput
# and its ratio to openssl's. Usage: bench/inbound_verify.sh [build dir] (default: build).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
seconds=${SPEED_SECONDS:-3}

declare -A openssl_bps
for bytes in 1024 16384; do
  # The last line is the table: "hmac(sha256)  <n>k" in thousands of bytes per second.
  k=$(openssl speed -seconds "$seconds" -hmac sha256 -bytes "$bytes" 2>/dev/null | tail -n 1 | awk '{print $NF}')
  openssl_bps[$bytes]=$(awk -v k="${k%k}" 'BEGIN { printf "%.0f", k * 1000 }')
  echo "openssl speed -hmac sha256 -bytes $bytes: $(awk -v b="${openssl_bps[$bytes]}" 'BEGIN { printf "%.0f MB/s", b / 1e6 }')"
done

"$build/bench/inbound_verify_bench" --benchmark_min_time=1 --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=csv 2>/dev/null |
  awk -F, -v b1="${openssl_bps[1024]}" -v b16="${openssl_bps[16384]}" '
    $1 ~ /_median"?$/ {
      name = $1; gsub(/"/, "", name); sub(/_median$/, "", name)
      n = split(name, parts, "/"); bytes = parts[n]
      base = bytes == 1024 ? b1 : b16
      printf "%-34s %9.0f MB/s  %5.2f of openssl speed\n", name, $6 / 1e6, $6 / base
    }'
