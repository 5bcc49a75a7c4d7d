#!/usr/bin/env bash
# bash benches/measure_pinned.sh        (or: make measure-pinned)
#
# Pinned-CPU mode against ReusePort, 2 workers of the hello example, with herd-load's two
# threads pinned to CPUs 0 and 1 (--cpus 0,1), in one run: keep-alive (64 connections) and a
# new connection per request (32 connections). For each: req/s, p99, and the CPU migrations
# of the workers during the run (se.nr_migrations in /proc/PID/sched, after minus before).
# Policies: reuseport, pinned-incoming-cpu, pinned-cbpf. Everything started here is killed
# on exit. Override DURATION (default 10s).
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(nproc)" -lt 2 ]; then
    echo "measure_pinned: needs 2 CPUs, this machine has $(nproc)" >&2
    exit 1
fi
echo "== building (release)"
cargo build --release --quiet -p herd-workspace --example hello
cargo build --release --quiet -p herd-load --bin herd-load
HELLO=target/release/examples/hello
LOAD=target/release/herd-load

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

migrations() { # pids...: sum of se.nr_migrations
    local pid total=0 n
    for pid in "$@"; do
        n=$(awk '/^se.nr_migrations/ {print $3}' "/proc/$pid/sched" 2>/dev/null || echo 0)
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

echo "kernel $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), ${DURATION} per cell"
printf '| policy | mode | req/s | p99 (µs) | worker CPU migrations | errors |\n|---|---|--:|--:|--:|--:|\n'
for policy in reuseport pinned-incoming-cpu pinned-cbpf; do
    port=$(free_port)
    PORT=$port WORKERS=2 POLICY=$policy RUST_LOG=warn "$HELLO" >/dev/null 2>&1 &
    primary=$!
    STARTED+=("$primary")
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.05
    done
    sleep 0.3
    mapfile -t workers < <(pgrep -P "$primary")
    for mode in keepalive close; do
        conns=64
        [ "$mode" = close ] && conns=32
        before=$(migrations "${workers[@]}")
        json=$("$LOAD" --url "http://127.0.0.1:$port/" -c "$conns" -t 2 --cpus 0,1 -d "$DURATION" --mode "$mode" --json)
        after=$(migrations "${workers[@]}")
        python3 - "$policy" "$mode" "$((after - before))" "$json" <<'PY'
import json, sys
policy, mode, migr, report = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
errors = sum(v for k, v in report["errors"].items() if isinstance(v, int))
print(f"| {policy} | {mode} | {report['requests_per_sec']:.0f} | {report['latency']['p99_us']} | {migr} | {errors} |")
PY
    done
    kill "$primary"
    wait "$primary" 2>/dev/null || true
done
