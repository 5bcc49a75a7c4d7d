#!/usr/bin/env bash
# bash benches/measure_stream.sh        (SIZE=bytes, default 1 GiB)
#
# Streamed bodies and the worker's memory: one worker of the stream example (release build,
# WORKERS=1) on a free port of 127.0.0.1; its RSS is sampled every 10 ms from /proc while curl
# runs each case one after the other:
#   bytes     GET /bytes?n=SIZE     made in memory on the loop, Content-Length
#   reader    GET /reader?n=SIZE    a Read pulled on the blocking pool, chunked
#   slow      GET /reader?n=SLOW    the same, curl --limit-rate RATE (a slow client)
#   upload    POST /upload          SIZE bytes (a sparse file, Content-Length) streamed to the handler
#   upload-ch POST /upload          SIZE bytes from a pipe, chunked
#   buffered  GET /buffered?n=BUF   the old way: the body built whole first (for comparison)
# and prints per case bytes, seconds, MB/s, time to first byte and the worker's RSS idle,
# peak and peak - idle. Everything started here is killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE=${SIZE:-1073741824}
SLOW=${SLOW:-268435456}
RATE=${RATE:-100M}
BUF=${BUF:-209715200}

NAME=measure_stream
TMP=$(mktemp -d /tmp/herd-stream.XXXXXX)
# shellcheck source=benches/lib.sh
source benches/lib.sh

need_tools curl python3 truncate

echo "== building (release)"
cargo build --release --quiet -p herd-workspace --example stream
BIN=target/release/examples/stream

PORT=$(free_port)
PORT=$PORT WORKERS=1 RUST_LOG=warn HERD_SOCKET="$TMP/herd.sock" "$BIN" >"$TMP/stream.log" 2>&1 &
PID=$!
STARTED+=("$PID")
wait_http "$PORT"
sleep 0.5
WORKER=$(pgrep -P "$PID" | head -n 1)
[ -n "$WORKER" ] || { echo "$NAME: no worker process" >&2; exit 1; }

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$WORKER/status"; } # KiB

# Samples the worker's RSS into FILE until killed.
sample() { # file
    while true; do rss >>"$1"; sleep 0.01; done
}

truncate -s "$SIZE" "$TMP/zeros"
URL="http://127.0.0.1:$PORT"
ROWS=()
run() { # name curl-args...
    local name=$1 idle out spid peak
    shift
    idle=$(rss)
    : >"$TMP/rss-$name"
    sample "$TMP/rss-$name" &
    spid=$!
    STARTED+=("$spid")
    out=$(curl -sS -o "$TMP/body-$name" -w '%{size_download} %{size_upload} %{time_total} %{time_starttransfer}' "$@")
    kill "$spid"
    wait "$spid" 2>/dev/null || true
    peak=$(sort -n "$TMP/rss-$name" | tail -n 1)
    ROWS+=("$name $out $idle ${peak:-$idle}")
    echo "-- $name: $(head -c 80 "$TMP/body-$name" | tr -d '\n') (curl: $out)"
}

echo "== worker $WORKER, idle RSS $(rss) KiB; SIZE=$SIZE"
run bytes "$URL/bytes?n=$SIZE"
run reader "$URL/reader?n=$SIZE"
run slow --limit-rate "$RATE" "$URL/reader?n=$SLOW"
run upload -X POST -H 'Content-Type: application/octet-stream' -T "$TMP/zeros" "$URL/upload"
run upload-ch -X POST -H 'Content-Type: application/octet-stream' -T - "$URL/upload" < <(head -c "$SIZE" /dev/zero)
run buffered "$URL/buffered?n=$BUF"

echo
echo "== results (stream example, 1 worker, release; load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf '  %-9s %12s %8s %9s %9s %10s %10s %10s\n' case bytes s MB/s ttfb_s idle_KiB peak_KiB delta_MiB
for row in "${ROWS[@]}"; do
    read -r name down up total ttfb idle peak <<<"$row"
    bytes=$(awk -v d="$down" -v u="$up" 'BEGIN { printf "%d", (d > u ? d : u) }')
    awk -v n="$name" -v b="$bytes" -v t="$total" -v f="$ttfb" -v i="$idle" -v p="$peak" \
        'BEGIN { printf "  %-9s %12d %8.2f %9.0f %9.3f %10d %10d %10.1f\n", n, b, t, b / t / 1e6, f, i, p, (p - i) / 1024 }'
done
