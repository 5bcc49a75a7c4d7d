#!/usr/bin/env bash
# bash benches/compare_builds.sh BEFORE_HELLO [AFTER_HELLO]        (or: make compare-builds BEFORE=...)
#
# The keep-alive hot path of two builds of the hello example, side by side: ROUNDS (default 8)
# alternating rounds (ABAB..., the order flipping each round) of herd-load -c 64 for DURATION
# seconds (default 5) against a fresh 2-worker cluster of each, printing per round the req/s
# and the workers' CPU time per request (utime+stime from /proc, steadier than req/s on a
# shared machine); then the medians and their ratio, and syscalls per request for each
# (strace -c -f on the workers while herd-load sends 100,000 requests). AFTER_HELLO defaults
# to this checkout's release build. Build the "before" from an older commit, e.g.:
#   git worktree add /tmp/herd-before <commit> && (cd /tmp/herd-before &&
#     cargo build --release --example hello)
set -euo pipefail

cd "$(dirname "$0")/.."
BEFORE=${1:?usage: compare_builds.sh BEFORE_HELLO [AFTER_HELLO]}
AFTER=${2:-target/release/examples/hello}
ROUNDS=${ROUNDS:-8}
DURATION=${DURATION:-5}
CLK=$(getconf CLK_TCK)

if [ "$AFTER" = target/release/examples/hello ]; then
    cargo build --release --quiet -p herd-workspace --example hello
fi
cargo build --release --quiet -p herd-load --bin herd-load
LOAD=target/release/herd-load

NAME=compare_builds
# shellcheck source=benches/lib.sh
source benches/lib.sh

ticks() { # pids...: summed utime+stime
    local t=0 pid
    for pid in "$@"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$t"
}

start() { # binary port -> sets PID, WORKERS
    PORT=$2 WORKERS=2 RUST_LOG=warn NO_COLOR=1 "$1" >/dev/null 2>&1 &
    PID=$!
    STARTED+=("$PID")
    local i
    for i in $(seq 1 100); do
        mapfile -t WORKERS < <(pgrep -P "$PID" || true)
        if [ "${#WORKERS[@]}" -eq 2 ] && curl -fs -o /dev/null "http://127.0.0.1:$2/"; then
            return
        fi
        sleep 0.05
    done
    echo "compare_builds: $1 does not answer on port $2" >&2
    exit 1
}

declare -A RPS CPU
echo "| round | build | req/s | worker CPU µs/request |"
echo "|---|---|--:|--:|"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
    for b in $order; do
        bin=$BEFORE
        [ "$b" = after ] && bin=$AFTER
        port=$(free_port)
        start "$bin" "$port"
        "$LOAD" --url "http://127.0.0.1:$port/" -c 64 -t 1 -d 1s >/dev/null
        t0=$(ticks "${WORKERS[@]}")
        out=$("$LOAD" --url "http://127.0.0.1:$port/" -c 64 -t 1 -d "${DURATION}s" --json)
        t1=$(ticks "${WORKERS[@]}")
        read -r rps done_n < <(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["requests_per_sec"], r["completed"])' <<<"$out")
        cpu=$(awk -v t=$((t1 - t0)) -v n="$done_n" -v c="$CLK" 'BEGIN { printf "%.2f", t / c * 1e6 / n }')
        printf '| %s | %s | %.0f | %s |\n' "$r" "$b" "$rps" "$cpu"
        RPS[$b]+="$rps "
        CPU[$b]+="$cpu "
        kill "$PID"
        wait "$PID" 2>/dev/null || true
    done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
rb=$(median <<<"${RPS[before]}"); ra=$(median <<<"${RPS[after]}")
cb=$(median <<<"${CPU[before]}"); ca=$(median <<<"${CPU[after]}")
echo
awk -v rb="$rb" -v ra="$ra" -v cb="$cb" -v ca="$ca" 'BEGIN {
    printf "median req/s: before %.0f, after %.0f, after/before %.3f\n", rb, ra, ra / rb
    printf "median worker CPU per request: before %.2f us, after %.2f us, after/before %.3f\n", cb, ca, ca / cb }'

if command -v strace >/dev/null; then
    for b in before after; do
        bin=$BEFORE
        [ "$b" = after ] && bin=$AFTER
        port=$(free_port)
        start "$bin" "$port"
        trace=$(mktemp)
        strace -c -f -o "$trace" -p "${WORKERS[0]}" -p "${WORKERS[1]}" 2>/dev/null &
        spid=$!
        sleep 1
        "$LOAD" --url "http://127.0.0.1:$port/" -c 64 -t 1 -n 100000 >/dev/null
        sleep 0.2
        kill -INT "$spid"
        wait "$spid" 2>/dev/null || true
        printf '%s: %s syscalls per request\n' "$b" "$(awk '$NF == "total" {printf "%.3f", $4 / 100000}' "$trace")"
        rm -f "$trace"
        kill "$PID"
        wait "$PID" 2>/dev/null || true
    done
fi
