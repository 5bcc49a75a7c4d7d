#!/usr/bin/env bash
# bash benches/measure_tls.sh        (or: make measure-tls)
#
# HTTPS keep-alive: the hello example's cluster (WORKERS=2, TLS_CERT/TLS_KEY, rustls with
# ring) against nginx (worker_processes 2, reuseport, `ssl`, `return 200 "hello"`), with the
# same self-signed ECDSA P-256 certificate, both on free ports of 127.0.0.1 in the same run:
#   1. what each negotiates with an OpenSSL client (protocol, cipher suite, ALPN)
#   2. req/s: wrk -t2 -c64 -d$DURATION https://..., alternating herd and nginx for $ROUNDS
#      rounds; the herd/nginx ratio per round and its median. Both keep every connection
#      for the whole run (nginx's keepalive_requests raised), so handshakes do not count.
#   3. for reference, herd's and nginx's plain HTTP keep-alive in the same conditions (one
#      run each): what TLS costs each of them
# Everything started here is killed on exit. Figures move +-15% run to run on a shared box:
# read the ratios.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}

NAME=measure_tls
TMP=$(mktemp -d /tmp/herd-tls.XXXXXX)
# shellcheck source=benches/lib.sh
source benches/lib.sh

need_tools wrk nginx openssl curl python3

echo "== building (release)"
cargo build --release --quiet -p herd-workspace --example hello
HELLO=target/release/examples/hello

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null

wait_https() { # port
    local i
    for i in $(seq 1 100); do
        if curl -fs -o /dev/null --cacert "$TMP/cert.pem" \
            --resolve "localhost:$1:127.0.0.1" "https://localhost:$1/"; then
            return 0
        fi
        sleep 0.05
    done
    echo "$NAME: nothing answers HTTPS on port $1" >&2
    exit 1
}

# --- herd (HTTPS, and plain HTTP for reference) -----------------------------------------
HERD_PORT=$(free_port)
PORT=$HERD_PORT WORKERS=2 RUST_LOG=warn HERD_SOCKET="$TMP/herd.sock" \
    TLS_CERT="$TMP/cert.pem" TLS_KEY="$TMP/key.pem" "$HELLO" >"$TMP/herd.log" 2>&1 &
STARTED+=("$!")
wait_https "$HERD_PORT"

# --- nginx with ssl ---------------------------------------------------------------------
NGINX_PORT=$(free_port)
NGINX_PLAIN=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl reuseport;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { return 200 "hello"; }
    }
    server {
        listen 127.0.0.1:$NGINX_PLAIN reuseport;
        location / { return 200 "hello"; }
    }
}
CONF
nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' &
STARTED+=("$!")
wait_https "$NGINX_PORT"

echo "== herd: port $HERD_PORT; nginx: port $NGINX_PORT"

# --- 1. what is negotiated --------------------------------------------------------------
negotiated() { # port
    openssl s_client -connect "127.0.0.1:$1" -servername localhost -alpn http/1.1 \
        </dev/null 2>/dev/null |
        awk '/^New, / { v = $2; c = $NF } /^ALPN protocol:/ { a = $3 }
             END { printf "%s %s ALPN=%s", v, c, (a == "" ? "none" : a) }'
}
echo "== negotiated with openssl s_client (OpenSSL's defaults, as wrk's)"
echo "herd:  $(negotiated "$HERD_PORT")"
echo "nginx: $(negotiated "$NGINX_PORT")"

# --- 2. keep-alive req/s, alternating ---------------------------------------------------
wrk_rps() { # url
    local out
    out=$(wrk -t2 -c64 -d"$DURATION" "$1")
    if grep -qE 'Socket errors|Non-2xx' <<<"$out"; then
        echo "$NAME: wrk reported errors for $1:" >&2
        grep -E 'Socket errors|Non-2xx' <<<"$out" >&2
    fi
    awk '/^Requests\/sec:/ {print $2}' <<<"$out"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo "== HTTPS keep-alive: wrk -t2 -c64 -d$DURATION, $ROUNDS rounds"
printf '%-6s %12s %12s %8s\n' round herd nginx ratio
RATIOS=()
for r in $(seq 1 "$ROUNDS"); do
    H=$(wrk_rps "https://127.0.0.1:$HERD_PORT/")
    N=$(wrk_rps "https://127.0.0.1:$NGINX_PORT/")
    R=$(ratio "$H" "$N")
    RATIOS+=("$R")
    printf '%-6s %12s %12s %8s\n' "$r" "$H" "$N" "$R"
done
MEDIAN=$(printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "median herd/nginx (HTTPS keep-alive): $MEDIAN"

# --- 3. reference: plain keep-alive -----------------------------------------------------
PLAIN_PORT=$(free_port)
PORT=$PLAIN_PORT WORKERS=2 RUST_LOG=warn HERD_SOCKET="$TMP/plain.sock" "$HELLO" \
    >"$TMP/plain.log" 2>&1 &
STARTED+=("$!")
wait_http "$PLAIN_PORT"
P=$(wrk_rps "http://127.0.0.1:$PLAIN_PORT/")
PN=$(wrk_rps "http://127.0.0.1:$NGINX_PLAIN/")
echo "plain HTTP keep-alive (same wrk, one run each): herd $P req/s, nginx $PN req/s"
