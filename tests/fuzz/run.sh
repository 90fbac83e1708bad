#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-16 (ASan + UBSan) in build-fuzz/ and runs each from its
# seed corpus (tests/fuzz/seeds, made from the reference vectors) for an equal share of about 60 s
# in all. A crash, a leak, undefined behaviour or a timeout fails the script and leaves the input in
# build-fuzz/crashes/. FUZZ_SECONDS changes the total; FUZZ_BUILD_DIR the build directory.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
total=${FUZZ_SECONDS:-60}
targets=(standard_header_fuzz stripe_header_fuzz hmac_header_fuzz twilio_form_fuzz receive_fuzz)

# The same ccache settings as scripts/setup.sh, so that a rebuild only compiles what changed.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-16 \
  -DINTEGRATION_BUILD_FUZZ=ON -DINTEGRATION_BUILD_TESTS=OFF -DINTEGRATION_BUILD_HOST=OFF \
  -DINTEGRATION_BUILD_BENCH=OFF -DINTEGRATION_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

share=$((total / ${#targets[@]}))
((share > 0)) || share=1
mkdir -p "$build/crashes"
for target in "${targets[@]}"; do
  corpus="$build/corpus/$target"  # new inputs go here; the committed seeds stay as they are
  mkdir -p "$corpus"
  log="$build/crashes/$target.log"
  echo "== fuzz $target (${share} s)"
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$build/tests/fuzz/$target" -max_total_time="$share" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
      -print_final_stats=1 -artifact_prefix="$build/crashes/$target-" "$corpus" "$root/tests/fuzz/seeds/$target" \
      >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target failed; the input is in $build/crashes/" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$log" | tr '\n' ' '
  echo
done
