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

TMP=$(mktemp -d /tmp/herd-reload.XXXXXX)
STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in wrk nginx python3 curl; do
    command -v "$tool" >/dev/null || { echo "measure_reload_keepalive: $tool is not installed" >&2; exit 1; }
done

echo "== building (release)"
cargo build --release --quiet -p herd-workspace --example hello
HELLO=target/release/examples/hello

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # port
    local i
    for i in $(seq 1 100); do
        if curl -fs -o /dev/null "http://127.0.0.1:$1/"; then
            return 0
        fi
        sleep 0.05
    done
    echo "measure_reload_keepalive: nothing answers on port $1" >&2
    exit 1
}

HERD_PORT=$(free_port)
PORT=$HERD_PORT WORKERS=2 RUST_LOG=warn NO_COLOR=1 "$HELLO" >"$TMP/herd.log" 2>&1 &
HERD_PID=$!
STARTED+=("$HERD_PID")
wait_http "$HERD_PORT"

NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGINX_PORT reuseport;
        location / { return 200 "hello"; }
    }
}
EOF
nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
STARTED+=("$NGINX_PID")
wait_http "$NGINX_PORT"

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
