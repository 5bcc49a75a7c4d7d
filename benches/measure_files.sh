#!/usr/bin/env bash
# bash benches/measure_files.sh        (or: make measure-files)
#
# A large file over loopback: herd's files example (release build, WORKERS=2) against nginx
# (worker_processes 2, `sendfile on`), both serving the same directory on free ports of
# 127.0.0.1. The file (SIZE_MB, default 1024 MiB) lives in a tmpfs (/dev/shm when there is
# one), so both read it from the page cache.
#   1. throughput: curl fetches the file FETCHES times per server per round, the servers
#      alternating (and swapping who goes first) for ROUNDS rounds; MB/s per round, the
#      herd/nginx ratio of the totals and the median of the rounds' ratios (a shared box's
#      slow stretches hit single rounds)
#   2. how each sent it: strace -c -f on each server's workers during one fetch (sendfile
#      calls, those that met a full socket, bytes per call; no read/write of the body)
# Everything started here is killed on exit. Figures move run to run on a shared box: read
# the ratio.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-5}
FETCHES=${FETCHES:-3}

NAME=measure_files
BASE=/dev/shm
[ -d "$BASE" ] && [ -w "$BASE" ] || BASE=/tmp
TMP=$(mktemp -d "$BASE/herd-files.XXXXXX")
# shellcheck source=benches/lib.sh
source benches/lib.sh

need_tools nginx curl strace python3

echo "== building (release)"
cargo build --release --quiet -p herd-workspace --example files
FILES=target/release/examples/files

WWW=$TMP/www
mkdir -p "$WWW"
echo "index" >"$WWW/index.html"
echo "== a ${SIZE_MB} MiB file in $BASE"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom >"$WWW/big.bin"
SIZE=$(stat -c %s "$WWW/big.bin")
# nginx's workers run as nobody when it is started as root: they must reach the files.
chmod -R a+rX "$TMP"

# As lib.sh's wait_http, with more patience (a loaded box starts slowly) and the server's log
# when nothing answers.
wait_up() { # port log
    local i
    for i in $(seq 1 300); do
        if curl -fs -o /dev/null "http://127.0.0.1:$1/"; then return 0; fi
        sleep 0.1
    done
    echo "$NAME: nothing answers on port $1; the end of its log:" >&2
    tail -n 5 "$2" >&2
    exit 1
}

HERD_PORT=$(free_port)
ROOT="$WWW" PORT="$HERD_PORT" WORKERS=2 RUST_LOG=warn "$FILES" >"$TMP/herd.log" 2>&1 &
HERD_PID=$!
STARTED+=("$HERD_PID")
wait_up "$HERD_PORT" "$TMP/herd.log"
sleep 0.3
HERD_WORKERS=$(pgrep -P "$HERD_PID" | tr '\n' ' ')

NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    server {
        listen 127.0.0.1:$NGINX_PORT reuseport;
        root $WWW;
    }
}
CONF
nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' &
STARTED+=("$!")
wait_up "$NGINX_PORT" "$TMP/nginx/logs/error.log"
echo "== herd on $HERD_PORT (workers $HERD_WORKERS), nginx on $NGINX_PORT"

# Both must send the same bytes.
for port in "$HERD_PORT" "$NGINX_PORT"; do
    got=$(curl -fs "http://127.0.0.1:$port/big.bin" | cmp - "$WWW/big.bin" && echo same)
    [ "$got" = same ] || { echo "$NAME: port $port sent other bytes" >&2; exit 1; }
done

# Seconds for FETCHES fetches of the file, one after the other, each on a new connection.
fetch_secs() { # port
    local i total=0 t
    for i in $(seq 1 "$FETCHES"); do
        t=$(curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$1/big.bin")
        total=$(awk -v a="$total" -v b="$t" 'BEGIN {print a + b}')
    done
    echo "$total"
}
mbps() { # seconds
    awk -v s="$1" -v n="$((SIZE * FETCHES))" 'BEGIN {printf "%.0f", n / s / 1e6}'
}

echo "== throughput: $FETCHES fetches of $((SIZE / 1048576)) MiB per server per round, $ROUNDS alternating rounds"
HERD_SECS=0
NGINX_SECS=0
RATIOS=()
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
        h=$(fetch_secs "$HERD_PORT"); n=$(fetch_secs "$NGINX_PORT")
    else
        n=$(fetch_secs "$NGINX_PORT"); h=$(fetch_secs "$HERD_PORT")
    fi
    HERD_SECS=$(awk -v a="$HERD_SECS" -v b="$h" 'BEGIN {print a + b}')
    NGINX_SECS=$(awk -v a="$NGINX_SECS" -v b="$n" 'BEGIN {print a + b}')
    ratio=$(awk -v h="$h" -v n="$n" 'BEGIN {printf "%.2f", n / h}')
    RATIOS+=("$ratio")
    printf 'round %d:  herd %s MB/s  nginx %s MB/s  ratio %s\n' "$r" "$(mbps "$h")" "$(mbps "$n")" "$ratio"
done
TOTAL_H=$(awk -v s="$HERD_SECS" -v r="$ROUNDS" -v n="$((SIZE * FETCHES))" 'BEGIN {printf "%.0f", n * r / s / 1e6}')
TOTAL_N=$(awk -v s="$NGINX_SECS" -v r="$ROUNDS" -v n="$((SIZE * FETCHES))" 'BEGIN {printf "%.0f", n * r / s / 1e6}')
echo "all rounds: herd $TOTAL_H MB/s, nginx $TOTAL_N MB/s, herd/nginx $(awk -v h="$TOTAL_H" -v n="$TOTAL_N" 'BEGIN {printf "%.2f", h / n}')," \
    "median of the rounds' ratios $(printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')"

# strace -c's table: `% time  seconds  usecs/call  calls  [errors]  syscall`.
syscalls() { # name port workers...
    local name=$1 port=$2 args=() pid calls
    shift 2
    for pid in "$@"; do args+=(-p "$pid"); done
    strace -f -c -o "$TMP/strace.$name" "${args[@]}" 2>/dev/null &
    local strace_pid=$!
    STARTED+=("$strace_pid")
    sleep 0.5
    curl -fs -o /dev/null "http://127.0.0.1:$port/big.bin"
    sleep 0.2
    kill -INT "$strace_pid"
    wait "$strace_pid" 2>/dev/null || true
    awk -v name="$name" -v size="$SIZE" '
        $NF ~ /^(sendfile|write|writev|read|pread64|epoll_wait)$/ {
            errors = (NF == 6) ? $5 : 0
            line = line sprintf("  %s %d (%d EAGAIN)", $NF, $4, errors)
            if ($NF == "sendfile") { sent = $4 - errors }
        }
        END {
            printf "%s:%s\n", name, line
            if (sent > 0) printf "  %s: %d KiB per successful sendfile\n", name, size / sent / 1024
        }' "$TMP/strace.$name"
}
echo "== syscalls for one fetch (strace -c -f on the workers; strace slows both)"
# shellcheck disable=SC2086
syscalls herd "$HERD_PORT" $HERD_WORKERS
NGINX_WORKERS=$(pgrep -P "$(cat "$TMP/nginx/nginx.pid")" | tr '\n' ' ')
# shellcheck disable=SC2086
syscalls nginx "$NGINX_PORT" $NGINX_WORKERS
if ! grep -q sendfile "$TMP/strace.herd"; then
    echo "$NAME: herd made no sendfile call" >&2
    exit 1
fi
