#!/usr/bin/env bash
# bash benches/measure_http.sh        (or: make measure)
#
# The hello example's cluster (WORKERS=2) against nginx (worker_processes 2, reuseport,
# `return 200 "hello"`), both on free ports of 127.0.0.1 in the same run, measured one after
# the other with the same load:
#   1. keep-alive: wrk -t2 -c64 -d10s --latency        req/s, p99, herd/nginx ratio
#   2. new connection per request: wrk -t2 -c32 -d10s -H 'Connection: close'   req/s, ratio
#   3. syscalls per keep-alive request in herd's workers: strace -c -f on the workers while
#      herd-load sends a fixed number of requests over 64 connections
#   4. memory: idle worker RSS, and the RSS the cluster adds for 10,000 idle keep-alive
#      connections (opened by a small python client)
# Everything started here is killed on exit. Figures move +-15% run to run on a shared box:
# compare within one run. Override DURATION (default 10s), REQUESTS (default 200000), and HELLO
# (default: this checkout's release build) to measure another build.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
REQUESTS=${REQUESTS:-200000}
IDLE_CONNS=${IDLE_CONNS:-10000}

TMP=$(mktemp -d /tmp/herd-measure.XXXXXX)
NAME=measure_http
# shellcheck source=benches/lib.sh
source benches/lib.sh

# 10,000 client sockets plus as many server sockets, plus some slack.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 1000)) ]; then
    echo "measure_http: ulimit -n is $(ulimit -n); need $((IDLE_CONNS + 1000))" >&2
    exit 1
fi

need_tools wrk nginx strace python3 curl

echo "== building (release)"
# HELLO=path measures another build of the hello example (an older commit's, say).
if [ -z "${HELLO:-}" ]; then
    cargo build --release --quiet -p herd-workspace --example hello
    HELLO=target/release/examples/hello
fi
cargo build --release --quiet -p herd-load --bin herd-load
LOAD=target/release/herd-load

rss_kib() { # pid...: summed VmRSS
    local total=0 pid kib
    for pid in "$@"; do
        kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        total=$((total + kib))
    done
    echo "$total"
}

to_us() { # a wrk latency like 812.00us, 1.52ms, 1.01s -> microseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /m$/) print n * 60000000; else print n * 1000000 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# wrk's req/s and p99 (raw text) for one run.
wrk_run() { # port label extra-args...
    local port=$1 label=$2 out
    shift 2
    out=$(wrk -t2 "$@" -d"$DURATION" --latency "http://127.0.0.1:$port/")
    echo "$out" > "$TMP/wrk-$label.txt"
    local rps p99 errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | tr '\n' ';' || true)
    echo "$rps $p99 ${errors:-none}"
}

# --- herd -------------------------------------------------------------------------------
HERD_PORT=$(free_port)
PORT=$HERD_PORT WORKERS=2 RUST_LOG=warn "$HELLO" >"$TMP/herd.log" 2>&1 &
HERD_PID=$!
STARTED+=("$HERD_PID")
wait_http "$HERD_PORT"
sleep 0.2
mapfile -t WORKER_PIDS < <(pgrep -P "$HERD_PID")
[ "${#WORKER_PIDS[@]}" -eq 2 ] || { echo "measure_http: expected 2 workers, got ${WORKER_PIDS[*]}" >&2; exit 1; }
IDLE_WORKER_RSS=$(rss_kib "${WORKER_PIDS[0]}")
IDLE_WORKER_RSS2=$(rss_kib "${WORKER_PIDS[1]}")

# --- nginx ------------------------------------------------------------------------------
NGINX_PORT=$(free_port)
start_nginx "$NGINX_PORT" "$TMP/nginx"

echo "== herd: pid $HERD_PID, workers ${WORKER_PIDS[*]}, port $HERD_PORT; nginx: pid $NGINX_PID, port $NGINX_PORT"

# --- 1. keep-alive ----------------------------------------------------------------------
echo "== keep-alive: wrk -t2 -c64 -d$DURATION --latency"
read -r H_KA H_KA_P99 H_KA_ERR < <(wrk_run "$HERD_PORT" herd-ka -c64)
read -r N_KA N_KA_P99 N_KA_ERR < <(wrk_run "$NGINX_PORT" nginx-ka -c64)

# --- 2. new connection per request ------------------------------------------------------
echo "== new connection per request: wrk -t2 -c32 -d$DURATION --latency -H 'Connection: close'"
read -r H_CL H_CL_P99 H_CL_ERR < <(wrk_run "$HERD_PORT" herd-close -c32 -H 'Connection: close')
read -r N_CL N_CL_P99 N_CL_ERR < <(wrk_run "$NGINX_PORT" nginx-close -c32 -H 'Connection: close')

# --- 3. syscalls per keep-alive request -------------------------------------------------
echo "== syscalls: strace -c -f on the herd workers; herd-load -n $REQUESTS -c 64 --mode keepalive"
STRACE_ARGS=()
for pid in "${WORKER_PIDS[@]}"; do STRACE_ARGS+=(-p "$pid"); done
strace -c -f -o "$TMP/strace.txt" "${STRACE_ARGS[@]}" 2>"$TMP/strace.err" &
STRACE_PID=$!
STARTED+=("$STRACE_PID")
sleep 1 # attach
"$LOAD" --url "http://127.0.0.1:$HERD_PORT/" -c 64 -t 2 -n "$REQUESTS" --mode keepalive \
    >"$TMP/load-strace.txt"
sleep 0.2
kill -INT "$STRACE_PID"
wait "$STRACE_PID" 2>/dev/null || true
SYSCALLS=$(awk '$NF == "total" {print $4}' "$TMP/strace.txt")
PER_REQ=$(awk -v s="$SYSCALLS" -v r="$REQUESTS" 'BEGIN { printf "%.3f", s / r }')

# --- 4. memory --------------------------------------------------------------------------
echo "== memory: $IDLE_CONNS idle keep-alive connections from python"
CLUSTER=("$HERD_PID" "${WORKER_PIDS[@]}")
BEFORE=$(rss_kib "${CLUSTER[@]}")
python3 - "$HERD_PORT" "$IDLE_CONNS" >"$TMP/idle.out" 2>&1 <<'EOF' &
# Opens N keep-alive connections, sends one request on each, reads every answer, then holds
# them idle until killed.
import selectors, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
req = b"GET / HTTP/1.1\r\nHost: m\r\n\r\n"
sel = selectors.DefaultSelector()
socks, pending = [], 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
    pending += 1
    while pending > 256 or (i == n - 1 and pending):
        for key, _ in sel.select(timeout=5):
            data = key.fileobj.recv(4096)
            if data.endswith(b"\n"):
                sel.unregister(key.fileobj)
                pending -= 1
print("ready", len(socks), flush=True)
time.sleep(600)
EOF
IDLE_PID=$!
STARTED+=("$IDLE_PID")
for _ in $(seq 1 600); do
    grep -q ready "$TMP/idle.out" 2>/dev/null && break
    kill -0 "$IDLE_PID" 2>/dev/null || { cat "$TMP/idle.out" >&2; exit 1; }
    sleep 0.05
done
grep -q ready "$TMP/idle.out" || { echo "measure_http: idle client never got ready" >&2; exit 1; }
AFTER=$(rss_kib "${CLUSTER[@]}")
OPEN=$(( $(ls "/proc/${WORKER_PIDS[0]}/fd" | wc -l) + $(ls "/proc/${WORKER_PIDS[1]}/fd" | wc -l) ))
kill "$IDLE_PID"

# --- report -----------------------------------------------------------------------------
H_KA_US=$(to_us "$H_KA_P99")
N_KA_US=$(to_us "$N_KA_P99")
cat <<EOF

== results (herd = hello example, WORKERS=2; nginx worker_processes 2; same run)
load average at the end (other work on this box skews every figure): $(cut -d' ' -f1-3 /proc/loadavg)
keep-alive (wrk -t2 -c64 -d$DURATION --latency)
  herd   $H_KA req/s   p99 $H_KA_P99   errors: $H_KA_ERR
  nginx  $N_KA req/s   p99 $N_KA_P99   errors: $N_KA_ERR
  req/s herd/nginx $(ratio "$H_KA" "$N_KA")   p99 herd/nginx $(ratio "$H_KA_US" "$N_KA_US")
new connection per request (wrk -t2 -c32 -d$DURATION --latency -H 'Connection: close')
  herd   $H_CL req/s   p99 $H_CL_P99   errors: $H_CL_ERR
  nginx  $N_CL req/s   p99 $N_CL_P99   errors: $N_CL_ERR
  req/s herd/nginx $(ratio "$H_CL" "$N_CL")
syscalls per keep-alive request (strace -c -f -p <workers>; herd-load -n $REQUESTS -c 64 -t 2 --mode keepalive)
  $SYSCALLS syscalls / $REQUESTS requests = $PER_REQ   (target <= 2.1)
memory
  idle worker RSS: ${IDLE_WORKER_RSS} KiB and ${IDLE_WORKER_RSS2} KiB   (target < 4096 KiB)
  cluster RSS (primary + workers): ${BEFORE} KiB -> ${AFTER} KiB with $IDLE_CONNS idle keep-alive
  connections (worker fds open: $OPEN): +$(( (AFTER - BEFORE) / 1024 )) MiB   (target < 100 MiB)
EOF
echo
echo "strace -c summary (top 8):"
head -n 10 "$TMP/strace.txt" | tail -n 8
