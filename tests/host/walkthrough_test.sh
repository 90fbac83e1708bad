#!/usr/bin/env bash
# Runs the README's walkthrough block as written, twice on one data directory, against a host
# started on free ports.
# Usage: walkthrough_test.sh SOURCE_DIR HOST_BINARY
set -euo pipefail
src=$1
host_bin=$2
work=$(mktemp -d)
cleanup() {
  [[ -n ${host_pid:-} ]] && kill "$host_pid" 2>/dev/null && wait "$host_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }
port=$(free_port)
export ECHO_PORT=$(free_port) HOOK_PORT=$(free_port) DATA="$work/data" BASE="http://127.0.0.1:$port"

"$host_bin" serve --data "$DATA" --listen "127.0.0.1:$port" --egress-allow 127.0.0.1/32 2>"$work/host.log" &
host_pid=$!
for _ in $(seq 100); do curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# The block between the marker and the closing fence, run from the checkout with the host's binary.
sed -n '/<!-- walkthrough -->/,/^```$/p' "$src/README.md" | sed '1,2d;$d' > "$work/walkthrough.sh"
mkdir -p "$work/build/host" && ln -s "$host_bin" "$work/build/host/integration-host"
# Runs pasted script $1 as $2 in a session of its own (so that a server a paste started is
# stopped too when it fails half way), prints its output, and stops the test when it exits
# non-zero or writes to standard error.
paste_block() {
  local script=$1 name=$2 pid rc=0
  (cd "$work" && exec setsid bash -euo pipefail "$script" >"$work/$name.out" 2>"$work/$name.err") &
  pid=$!
  wait "$pid" || rc=$?
  kill -- -"$pid" 2>/dev/null || true
  cat "$work/$name.out"
  if [[ $rc != 0 ]]; then cat "$work/$name.err"; echo "$name failed (exit $rc)"; exit 1; fi
  if [[ -s "$work/$name.err" ]]; then cat "$work/$name.err"; echo "$name wrote errors"; exit 1; fi
}

# Pasted twice on the same data directory, as people do: each paste must succeed on its own.
runs=()
for paste in 1 2; do
  paste_block walkthrough.sh "paste-$paste"
  out=$(cat "$work/paste-$paste.out")
  last=$(echo "$out" | tail -n 1)
  grep -q '"status":"Completed"' <<<"$last" || { echo "paste $paste: the run did not complete: $last"; exit 1; }
  grep -q '"runAttempts":\[{' <<<"$last" || { echo "paste $paste: the run has no attempts: $last"; exit 1; }
  grep -q '"httpStatus":200' <<<"$last" || { echo "paste $paste: the attempt has no 200: $last"; exit 1; }
  runs+=("$(grep -o '"runId":"[^"]*"' <<<"$last")")
  if grep -q sk_test_walkthrough <<<"$out" || grep -q sk_test_walkthrough "$work/host.log"; then echo "the secret leaked"; exit 1; fi
done
[[ ${runs[0]} != "${runs[1]}" ]] || { echo "the second paste answered the first paste's run: ${runs[1]}"; exit 1; }

# The outbound-webhooks block, pasted twice too: the receiver verifies its delivery each time.
sed -n '/<!-- webhooks -->/,/^```$/p' "$src/README.md" | sed '1,2d;$d' > "$work/webhooks.sh"
mkdir -p "$work/tests" && ln -sfn "$src/tests/peers" "$work/tests/peers"
for paste in 1 2; do
  paste_block webhooks.sh "hooks-$paste"
  out=$(cat "$work/hooks-$paste.out")
  grep -q '^verified ' <<<"$out" || { echo "webhooks paste $paste: the receiver verified nothing"; exit 1; }
  last=$(echo "$out" | tail -n 1)
  grep -q '"status":"Delivered"' <<<"$last" || { echo "webhooks paste $paste: not delivered: $last"; exit 1; }
  grep -q '"httpStatus":204' <<<"$last" || { echo "webhooks paste $paste: the attempt has no 204: $last"; exit 1; }
done
echo "walkthrough ok"
