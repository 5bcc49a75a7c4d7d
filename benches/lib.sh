# Shared by the measurement scripts in benches/ (sourced, not run): the processes a script
# starts are killed on exit, free ports, waiting for a server, an nginx to compare with.
# A script sets NAME (for its messages) before sourcing this, and may set TMP (removed on
# exit) and append pids to STARTED.

STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "${TMP:-}" ]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_tools() { # tool...
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$NAME: $tool is not installed" >&2; exit 1; }
    done
}

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
    echo "$NAME: nothing answers on port $1" >&2
    exit 1
}

# nginx with worker_processes 2, reuseport, `return 200 "hello"` on 127.0.0.1:PORT, its files
# under DIR; sets NGINX_PID (already in STARTED) once it answers.
start_nginx() { # port dir
    local port=$1 dir=$2
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<CONF
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$port reuseport;
        location / { return 200 "hello"; }
    }
}
CONF
    nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
    NGINX_PID=$!
    STARTED+=("$NGINX_PID")
    wait_http "$port"
}
