#!/usr/bin/env bash
# bash benches/measure_reload_keepalive.sh        (or: make measure-reload)
#
# Keep-alive clients across reloads, herd against nginx in the same run: wrk -t2 -c64 for
# DURATION (default 12s) against the hello cluster (WORKERS=2) while the primary gets RELOADS
# (default 3) SIGHUPs spread over the run, then the same against nginx (worker_processes 2,
# reuseport) with as many `nginx -s reload`. Prints requests and wrk's socket errors (a
# keep-alive connection closed under a client shows as a read error) for each, ROUNDS times
# (default 2), alternating. Everything started here is killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-12}
RELOADS=${RELOADS:-3}
ROUNDS=${ROUNDS:-2}

NAME=measure_reload_keepalive
TMP=$(mktemp -d /tmp/herd-reload.XXXXXX)
# shellcheck source=benches/lib.sh
source benches/lib.sh

need_tools wrk nginx python3 curl

echo "== building (release)"
cargo build --release --quiet -p herd-workspace --example hello
HELLO=target/release/examples/hello

HERD_PORT=$(free_port)
PORT=$HERD_PORT WORKERS=2 RUST_LOG=warn NO_COLOR=1 "$HELLO" >"$TMP/herd.log" 2>&1 &
HERD_PID=$!
STARTED+=("$HERD_PID")
wait_http "$HERD_PORT"

NGINX_PORT=$(free_port)
start_nginx "$NGINX_PORT" "$TMP/nginx"

# One wrk run with RELOADS reloads (the command in "$@") spread over it; prints
# "requests errors detail".
run() { # port command...
    local port=$1
    shift
    wrk -t2 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/" >"$TMP/wrk.txt" 2>&1 &
    local wrk_pid=$! i
    local gap
    gap=$(awk -v d="$DURATION" -v n="$RELOADS" 'BEGIN { printf "%.2f", d / (n + 1) }')
    for i in $(seq 1 "$RELOADS"); do
        sleep "$gap"
        "$@"
    done
    wait "$wrk_pid"
    local requests errors detail
    requests=$(awk '/requests in/ {print $1}' "$TMP/wrk.txt")
    detail=$(grep -E 'Socket errors|Non-2xx' "$TMP/wrk.txt" | tr -s ' ' | tr '\n' ';' || true)
    # wrk prints these lines only when there is something to count.
    errors=$(awk -F'[ ,]+' '/Socket errors/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' "$TMP/wrk.txt")
    local non2xx
    non2xx=$(awk '/Non-2xx/ {n = $NF} END { print n + 0 }' "$TMP/wrk.txt")
    echo "$requests $(( ${errors:-0} + ${non2xx:-0} )) ${detail:-none}"
}

herd_reload() { kill -HUP "$HERD_PID"; }
nginx_reload() { nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -s reload 2>/dev/null; }

echo "== wrk -t2 -c64 -d${DURATION}s, $RELOADS reloads per run, $ROUNDS rounds (herd, then nginx)"
printf '| round | server | requests | errors | wrk says |\n|---|---|--:|--:|---|\n'
for r in $(seq 1 "$ROUNDS"); do
    read -r req err detail < <(run "$HERD_PORT" herd_reload)
    printf '| %s | herd | %s | %s | %s |\n' "$r" "$req" "$err" "$detail"
    read -r req err detail < <(run "$NGINX_PORT" nginx_reload)
    printf '| %s | nginx | %s | %s | %s |\n' "$r" "$req" "$err" "$detail"
done
if grep -qiE 'died|panicked' "$TMP/herd.log"; then
    echo "herd's log:"
    cat "$TMP/herd.log"
fi
