#!/usr/bin/env bash
# Load test of the reference host against nginx on the same machine, in the same run:
#   GET /healthz                       vs nginx answering 200 from `return`
#   POST /integrations/runs            a governed run against nginx as a keep-alive vendor, at 32
#                                      and 256 connections, vs nginx reverse-proxying the same POST
#                                      (proxy_pass, upstream keep-alive) to the same vendor; every
#                                      answered run is then counted in the store after kill -9
#   POST /webhooks/inbound/{id}        GitHub-signed webhooks, each a new delivery (a unique
#                                      X-GitHub-Delivery), vs nginx answering the same requests 200;
#                                      with the default --workers and with --workers 64
# The host runs with its defaults (what ./scripts/run.sh starts) except that loopback is allowed,
# the per-key rate limit is off and the one tenant may use every execution thread.
# Prints requests/s, p99 latency, the host's context switches and CPU time per run (and per accepted
# webhook) and its peak RSS. Installs wrk and nginx-light if missing.
# Usage: bench/host_load.sh [seconds per test, default 10] [connections, default 32]
# HOST_LOAD_PERF=FILE records a perf profile of the host's runs at 32 connections into FILE.
# HOST_LOAD_RUNS_ONLY=1 stops after the runs at 32 and 256 connections and the kill -9 check.
# HOST_LOAD_INBOUND_ONLY=1 skips everything but the inbound section (a shorter measurement);
# with HOST_LOAD_PERF=FILE the profile is then of the default-workers inbound run.
# HOST_LOAD_BIN=PATH runs another build of the host (an allocator or a branch to compare, in the same session).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-10}
connections=${2:-32}
host_bin=${HOST_LOAD_BIN:-$root/build/host/integration-host}

need=()
command -v wrk >/dev/null || need+=(wrk)
[[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
if ((${#need[@]})); then
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[[ -x $host_bin ]] || { echo "build the host first: ./scripts/run.sh builds build/host/integration-host"; exit 1; }

work=$(mktemp -d)
cleanup() {
  [[ -n ${host_pid:-} ]] && kill "$host_pid" 2>/dev/null || true
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }

nginx_port=$(free_port)
proxy_port=$(free_port)
cat > "$work/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 200 'ok'; }
    location /webhooks/ { return 200 'ok'; }
    location /v1/ { default_type application/json; return 200 '{"id":"msg-1"}'; }
  }
  # The baseline for runs: a reverse proxy to the same vendor, keeping upstream connections alive.
  upstream vendor { server 127.0.0.1:$nginx_port; keepalive 64; }
  server {
    listen 127.0.0.1:$proxy_port;
    location / { proxy_pass http://vendor; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
/usr/sbin/nginx -c "$work/nginx.conf" -p "$work"

host_port=$(free_port)
"$host_bin" serve --data "$work/data" --listen "127.0.0.1:$host_port" --egress-allow 127.0.0.1/32 --key-rate-limit 0 --tenant-executions 1024 \
  2>"$work/host.log" &
host_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$host_port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

key=$("$host_bin" keys create --data "$work/data" --tenant bench | tail -n 1)
api() { path=$1; shift; curl -sS --fail-with-body -H "Authorization: Bearer $key" -H "Content-Type: application/json" "http://127.0.0.1:$host_port$path" "$@"; }
field() { node -p "JSON.parse(require('fs').readFileSync(0, 'utf8')).$1"; }
provider=$(api /integrations/providers -d '{"key": "vendor", "displayName": "Vendor", "category": "BusinessSystem",
  "authModel": "ApiKey", "baseUrl": "http://127.0.0.1:'"$nginx_port"'", "capabilities": ["sms.send"],
  "rateLimitProfile": {"requestsPerSecond": 100000, "burst": 100000}, "healthCheck": {"method": "GET", "path": "/"}}' | field providerId)
api "/integrations/providers/$provider/clients" -d '{"assemblyName": "Bench.Vendor", "version": "1.0.0", "capabilities": ["sms.send"],
  "authMode": "ApiKey", "operations": [{"operation": "sms.send", "method": "POST", "path": "/v1/messages"}]}' >/dev/null
api "/integrations/providers/$provider/activate" -d '{}' >/dev/null
credential=$(api /integrations/credentials -d '{"providerId": "'"$provider"'", "authMode": "ApiKey", "secret": "bench-secret",
  "apiKey": {"in": "header", "name": "X-Api-Key"}}' | field credentialId)
connection=$(api /integrations/connections -d '{"projectId": "bench", "providerId": "'"$provider"'", "displayName": "Vendor",
  "credentialId": "'"$credential"'"}' | field connectionId)

cat > "$work/run.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"connectionId": "$connection", "operation": "sms.send", "input": {"body": {"to": "+15550100"}}}'
LUA

measure() {  # name url [wrk args...]; $c connections (default $connections); sets $rps and $answered
  local name=$1 url=$2
  shift 2
  local out
  out=$(wrk -t 2 -c "${c:-$connections}" -d "${seconds}s" --latency "$@" "$url")
  local p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  # An answer that is not 2xx (a refused run, a 429) must not pass for throughput.
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  answered=$(( $(awk '/requests in/ {print $1}' <<<"$out") - ${non2xx:-0} ))
  printf '| %s | %s | %s | %s |\n' "$name" "$rps" "$p99" "${non2xx:-0}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# The host's context switches (every thread's, voluntary and not) and CPU time (user + system, in
# clock ticks), read before and after a measurement: what a thread hop costs shows per run.
host_counters() {
  echo "$(cat /proc/"$host_pid"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}') $(awk '{print $14 + $15}' /proc/"$host_pid"/stat)"
}
per_run() {  # before after runs
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    split(a, x, " "); split(b, y, " ");
    printf "  (host per run: %.2f context switches, %.0f us CPU)\n", (y[1] - x[1]) / n, (y[2] - x[2]) / hz / n * 1e6 }'
}

rss=
if [[ ${HOST_LOAD_INBOUND_ONLY:-0} != 1 ]]; then
echo "| test ($connections connections, ${seconds}s each, wrk -t 2) | requests/s | p99 | non-2xx answers |"
echo "|---|---:|---:|---:|"
measure "nginx: GET / (return 200)" "http://127.0.0.1:$nginx_port/"
measure "host: GET /healthz" "http://127.0.0.1:$host_port/healthz"
measure "nginx: POST /v1/messages (the vendor alone)" "http://127.0.0.1:$nginx_port/v1/messages" -s "$work/run.lua"
declare -A proxy_rps run_rps
runs_answered=0
for c in 32 256; do
  measure "nginx reverse proxy: POST /v1/messages to the vendor ($c connections)" "http://127.0.0.1:$proxy_port/v1/messages" -s "$work/run.lua"
  proxy_rps[$c]=$rps
  # HOST_LOAD_PERF=FILE records a perf profile of the host during the runs at 32 connections.
  if [[ -n ${HOST_LOAD_PERF:-} && $c == 32 ]]; then
    (sleep 1; perf record -g -p "$host_pid" -o "$HOST_LOAD_PERF" -- sleep 3 >/dev/null 2>&1) &
  fi
  before=$(host_counters)
  measure "host: POST /integrations/runs against the vendor ($c connections)" "http://127.0.0.1:$host_port/integrations/runs" -s "$work/run.lua"
  per_run "$before" "$(host_counters)" "$answered"
  run_rps[$c]=$rps
  runs_answered=$((runs_answered + answered))
done
unset c
rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$host_pid/status")
echo
echo "runs vs the nginx reverse proxy: $(ratio "${run_rps[32]}" "${proxy_rps[32]}") at 32 connections, $(ratio "${run_rps[256]}" "${proxy_rps[256]}") at 256 (target 0.3)"
# Every 201 is durable: kill the host without a drain; the store holds at least every answered run.
kill -9 "$host_pid"
wait "$host_pid" 2>/dev/null || true
stored=$(sqlite3 "$work/data/integration.db" "SELECT count(*) FROM runs WHERE status = 'Completed'")
echo "runs answered 2xx: $runs_answered; Completed runs in the store after kill -9: $stored"
((stored >= runs_answered)) || { echo "answered runs are missing from the store"; exit 1; }
if [[ ${HOST_LOAD_RUNS_ONLY:-0} == 1 ]]; then  # the runs section alone (a shorter measurement)
  host_pid=
  echo "host peak RSS: $rss"
  exit 0
fi
# The same runs with --recording deferred: committed before each answer, fsynced within 10 ms.
"$host_bin" serve --data "$work/data" --listen "127.0.0.1:$host_port" --egress-allow 127.0.0.1/32 --key-rate-limit 0 --tenant-executions 1024 \
  --recording deferred 2>>"$work/host.log" &
host_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$host_port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo
measure "host --recording deferred: POST /integrations/runs ($connections connections)" "http://127.0.0.1:$host_port/integrations/runs" -s "$work/run.lua"
fi

# Inbound webhooks: GitHub-signed requests, pre-generated with unique X-GitHub-Delivery ids, so
# every one is a new delivery the gateway commits (durability::immediate) before answering 202.
inbound_secret=bench-inbound-secret
api "/integrations/connections/$connection/inbound-webhook" -d '{"scheme": "github", "secret": "'"$inbound_secret"'"}' >/dev/null
inbound_count=$((seconds * 30000))  # more than the host answers in a run: none is a duplicate
node - "$work/inbound.tsv" "$inbound_secret" "$inbound_count" <<'JS'
// What @octokit/webhooks-methods' sign() computes: sha256= + hex HMAC-SHA256(secret, body).
const { createHmac } = require('node:crypto');
const fs = require('node:fs');
const [file, secret, count] = process.argv.slice(2);
const lines = [];
for (let i = 0; i < Number(count); i++) {
  const body = JSON.stringify({ action: 'opened', number: i, pull_request: { id: 1000000 + i, title: `bench ${i}` } });
  lines.push(`bench-${i}\tsha256=${createHmac('sha256', secret).update(body).digest('hex')}\t${body}`);
}
fs.writeFileSync(file, lines.join('\n') + '\n');
JS
cat > "$work/inbound.lua" <<'LUA'
-- Each wrk thread takes every Nth line of INBOUND_FILE (N = INBOUND_THREADS) and sends each request
-- once, in order; answers are counted by status.
local threads, created = {}, 0
function setup(thread)
  thread:set("index", created)
  created = created + 1
  table.insert(threads, thread)
end
function init(args)
  local every, path = tonumber(os.getenv("INBOUND_THREADS")), os.getenv("INBOUND_PATH")
  requests, n, sent, statuses = {}, 0, 0, {}
  local line_no = 0
  for line in io.lines(os.getenv("INBOUND_FILE")) do
    if line_no % every == index then
      local delivery, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      n = n + 1
      requests[n] = wrk.format("POST", path, {["Content-Type"] = "application/json", ["X-GitHub-Event"] = "pull_request",
        ["X-GitHub-Delivery"] = delivery, ["X-Hub-Signature-256"] = signature}, body)
    end
    line_no = line_no + 1
  end
end
function request()
  sent = sent + 1
  return requests[(sent - 1) % n + 1]  -- wraps (and repeats ids) only if the file ran out
end
function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end
function done()
  local total, wrapped = {}, false
  for _, t in ipairs(threads) do
    for status, count in pairs(t:get("statuses")) do total[status] = (total[status] or 0) + count end
    wrapped = wrapped or t:get("sent") > t:get("n")
  end
  local parts = {}
  for status, count in pairs(total) do table.insert(parts, status .. "=" .. count) end
  table.sort(parts)
  io.write("answers: " .. table.concat(parts, " ") .. (wrapped and " (ran out of unique requests)" or "") .. "\n")
end
LUA
export INBOUND_FILE=$work/inbound.tsv INBOUND_THREADS=2
inbound() {  # name url path: like measure, plus the answers by status
  local name=$1 url=$2
  local out rps p99 before accepted
  [[ $name == host* ]] && before=$(host_counters)
  out=$(INBOUND_PATH=$3 wrk -t 2 -c "$connections" -d "${seconds}s" --latency -s "$work/inbound.lua" "$url")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  answers=$(sed -n 's/^answers: //p' <<<"$out")
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p99" "${non2xx:-0}" "$answers"
  inbound_rps=$rps
  accepted=$(tr ' ' '\n' <<<"$answers" | awk -F= '$1 == "202" {n += $2} END {print n + 0}')
  answered_202=$((answered_202 + accepted))
  # The host's CPU and context switches per accepted webhook (its 202s).
  [[ -n ${before:-} ]] && ((accepted > 0)) && per_run "$before" "$(host_counters)" "$accepted" | sed 's/per run/per 202/'
  return 0
}
answered_202=0
accepted_in_db() {  # Accepted inbound deliveries on disk, read after the host was killed
  sqlite3 "$work/data/integration.db" "SELECT count(*) FROM deliveries WHERE direction = 'Inbound' AND status = 'Accepted'"
}
restart_host() {
  kill "$host_pid"
  wait "$host_pid" 2>/dev/null || true
  "$host_bin" serve --data "$work/data" --listen "127.0.0.1:$host_port" --key-rate-limit 0 "$@" 2>>"$work/host.log" &
  host_pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$host_port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
}
echo
echo "| inbound ($connections connections, ${seconds}s each, wrk -t 2) | requests/s | p99 | non-2xx answers | answers by status |"
echo "|---|---:|---:|---:|---|"
inbound "nginx: POST /webhooks/inbound/{id} (return 200)" "http://127.0.0.1:$nginx_port" "/webhooks/inbound/$connection"
nginx_inbound_rps=$inbound_rps
answered_202=0
restart_host
if [[ -n ${HOST_LOAD_PERF:-} && ${HOST_LOAD_INBOUND_ONLY:-0} == 1 ]]; then
  (sleep 1; perf record -g -p "$host_pid" -o "$HOST_LOAD_PERF" -- sleep "$((seconds > 3 ? 3 : seconds - 1))" >/dev/null 2>&1) &
fi
inbound "host: POST /webhooks/inbound/{id} (--workers 16, the default)" "http://127.0.0.1:$host_port" "/webhooks/inbound/$connection"
host_inbound_rps=$inbound_rps
# Unique ids again for the second run: the first run's would now be duplicates (200).
sed -i 's/^bench-/bench2-/' "$work/inbound.tsv"
restart_host --workers 64
inbound "host: POST /webhooks/inbound/{id} (--workers 64)" "http://127.0.0.1:$host_port" "/webhooks/inbound/$connection"
# Every 202 is on disk: kill the host without a drain and count what the store holds.
kill -9 "$host_pid"
wait "$host_pid" 2>/dev/null || true
host_pid=
stored=$(accepted_in_db)
echo
echo "inbound vs nginx: $(ratio "$host_inbound_rps" "$nginx_inbound_rps") with the default --workers, $(ratio "$inbound_rps" "$nginx_inbound_rps") with --workers 64 (target 0.3)"
echo "inbound answered 202: $answered_202; Accepted inbound deliveries in the store after kill -9: $stored"
((stored >= answered_202)) || { echo "answered inbound deliveries are missing from the store"; exit 1; }
echo
[[ -n $rss ]] && echo "host peak RSS: $rss"
grep -q -e bench-secret -e "$inbound_secret" "$work/host.log" && { echo "a secret appeared in the host log"; exit 1; }
exit 0
