#!/usr/bin/env bash
# bash benches/measure_metrics.sh        (or: make measure-metrics)
#
# What the workers' metric counting costs on the keep-alive hot path. Two hello clusters
# (WORKERS=2) on free ports of 127.0.0.1, from the same release build:
#   on:  counting on (the default), /metrics served on METRICS_ADDR and scraped every second
#   off: WORKER_METRICS=0 (workers do not count), no /metrics
# and, with BASE_HELLO=/path/to/an/older/hello, a third cluster from that binary (e.g. the
# commit before the control plane) as "base".
#   1. req/s: wrk -t2 -c64 -d$DURATION, alternating the clusters for $ROUNDS rounds; the
#      on/off ratio per round and its median
#   2. syscalls per keep-alive request: strace -c -f on each cluster's workers while herd-load
#      sends $REQUESTS requests over 64 connections
# Everything started here is killed on exit. Figures move +-15% run to run on a shared box:
# read the ratios.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-200000}

NAME=measure_metrics
TMP=$(mktemp -d /tmp/herd-metrics.XXXXXX)
# shellcheck source=benches/lib.sh
source benches/lib.sh

need_tools wrk strace python3 curl

echo "== building (release)"
cargo build --release --quiet -p herd-workspace --example hello
cargo build --release --quiet -p herd-load --bin herd-load
HELLO=target/release/examples/hello
LOAD=target/release/herd-load

declare -A PORT PIDS
start() { # name binary env...
    local name=$1 bin=$2 port pid
    shift 2
    port=$(free_port)
    env "$@" PORT="$port" WORKERS=2 RUST_LOG=warn HERD_SOCKET="$TMP/$name.sock" "$bin" \
        >"$TMP/$name.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    wait_http "$port"
    sleep 0.3
    PORT[$name]=$port
    PIDS[$name]=$(pgrep -P "$pid" | tr '\n' ' ')
}

MPORT=$(free_port)
start on "$HELLO" METRICS_ADDR="127.0.0.1:$MPORT"
start off "$HELLO" WORKER_METRICS=0
NAMES=(on off)
if [ -n "${BASE_HELLO:-}" ]; then
    start base "$BASE_HELLO"
    NAMES+=(base)
fi
for n in "${NAMES[@]}"; do echo "== $n: port ${PORT[$n]}, workers ${PIDS[$n]}"; done

# A scraper, as Prometheus would be.
( while true; do curl -fs -o /dev/null "http://127.0.0.1:$MPORT/metrics"; sleep 1; done ) &
STARTED+=("$!")

rps() { # port
    wrk -t2 -c64 -d"$DURATION" "http://127.0.0.1:$1/" | awk '/^Requests\/sec:/ {print $2}'
}

echo "== req/s: wrk -t2 -c64 -d$DURATION, $ROUNDS alternating rounds"
declare -A SUM
RATIOS=()
for r in $(seq 1 "$ROUNDS"); do
    line="round $r:"
    # Alternate the order so that neither side always runs first.
    if [ $((r % 2)) -eq 1 ]; then order=("${NAMES[@]}"); else order=($(printf '%s\n' "${NAMES[@]}" | tac)); fi
    declare -A R
    for n in "${order[@]}"; do R[$n]=$(rps "${PORT[$n]}"); done
    for n in "${NAMES[@]}"; do
        line+="  $n ${R[$n]}"
        SUM[$n]=$(awk -v a="${SUM[$n]:-0}" -v b="${R[$n]}" 'BEGIN {print a + b}')
    done
    ratio=$(awk -v a="${R[on]}" -v b="${R[off]}" 'BEGIN { printf "%.3f", a / b }')
    RATIOS+=("$ratio")
    echo "$line   on/off $ratio"
done
MEDIAN=$(printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

echo "== syscalls: strace -c -f on each cluster's workers; herd-load -n $REQUESTS -c 64 --mode keepalive"
declare -A PER
for n in "${NAMES[@]}"; do
    args=()
    for pid in ${PIDS[$n]}; do args+=(-p "$pid"); done
    strace -c -f -o "$TMP/strace-$n.txt" "${args[@]}" 2>"$TMP/strace-$n.err" &
    spid=$!
    STARTED+=("$spid")
    sleep 1
    "$LOAD" --url "http://127.0.0.1:${PORT[$n]}/" -c 64 -t 2 -n "$REQUESTS" --mode keepalive >/dev/null
    sleep 0.2
    kill -INT "$spid"
    wait "$spid" 2>/dev/null || true
    total=$(awk '$NF == "total" {print $4}' "$TMP/strace-$n.txt")
    PER[$n]=$(awk -v s="$total" -v r="$REQUESTS" 'BEGIN { printf "%.3f", s / r }')
    echo "-- $n: $total syscalls; top:"
    head -n 7 "$TMP/strace-$n.txt" | tail -n 4
done

echo
echo "== results (hello, WORKERS=2, same run; load average $(cut -d' ' -f1-3 /proc/loadavg))"
for n in "${NAMES[@]}"; do
    printf '  %-4s mean %8.0f req/s   %s syscalls per request\n' "$n" \
        "$(awk -v s="${SUM[$n]}" -v r="$ROUNDS" 'BEGIN {print s / r}')" "${PER[$n]}"
done
echo "  req/s on/off per round: ${RATIOS[*]}   median $MEDIAN"
