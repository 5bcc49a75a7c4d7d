#!/usr/bin/env python3
# python3 benches/measure_attacks.py        (or: make measure-attacks)
"""Hostile clients against herd's hello example, side by side with nginx where it compares.

Prints, for one run:
  1. chunked bodies of 1-byte chunks (256 KiB / 512 KiB / 1 MiB of data, i.e. 1.6 / 3.1 /
     6.3 MB encoded): the worker's CPU seconds per body (herd, 1 worker);
  2. 64 MB of chunk extensions carrying 16 KiB of data: the status, the time to the answer,
     the worker's CPU seconds and peak RSS (herd 1 worker; nginx 1 worker process);
  3. starvation: one client floods pipelined requests for FLOOD seconds while 4 other
     clients of the same worker (1 worker) send one request at a time: their longest wait
     for an answer and the seconds in which none of them got one;
  4. slowloris: keep-alive req/s (wrk -t2 -c64) with and without SLOW connections sending
     one byte a second, herd (2 workers) and nginx (2 worker processes), the loss in each
     round, and the workers' CPU the attack alone costs.

Environment: HELLO (default target/release/examples/hello, built here unless set), FLOOD
(default 10 s), SLOW (default 2000), DURATION (wrk, default 5s), ROUNDS (slowloris, default 3), SKIP (comma list of
sections to skip: chunked,extensions,starvation,slowloris). Everything started is killed on
exit. Figures move +-15% run to run on a shared box: compare within one run.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK = os.sysconf("SC_CLK_TCK")
STARTED = []
SKIP = set(filter(None, os.environ.get("SKIP", "").split(",")))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port):
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"measure_attacks: nothing answers on port {port}")


def start(cmd, env=None):
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    STARTED.append(p)
    return p


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def cpu_seconds(pid):
    """utime + stime of `pid`; NaN once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK


def status_kib(pid, key):
    """A /proc/<pid>/status figure in KiB; NaN once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return float("nan")
    return 0


def herd(workers):
    port = free_port()
    env = dict(os.environ, PORT=str(port), WORKERS=str(workers), RUST_LOG="error")
    p = start([HELLO], env)
    wait_port(port)
    time.sleep(0.2)
    pids = children(p.pid)
    return p, port, pids


def nginx(workers, tmp):
    port = free_port()
    os.makedirs(f"{tmp}/logs", exist_ok=True)
    with open(f"{tmp}/nginx.conf", "w") as f:
        f.write(f"""worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log crit;
worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_max_body_size 1m;
    client_header_timeout 10s;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{ return 200 "hello"; }}
    }}
}}
""")
    p = start(["nginx", "-p", tmp, "-e", f"{tmp}/logs/error.log", "-c", f"{tmp}/nginx.conf",
               "-g", "daemon off;"])
    wait_port(port)
    time.sleep(0.2)
    return p, port, children(p.pid)


def read_status(s, timeout):
    """The status code of the first answer on `s`, or None."""
    s.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None


def read_answer(s):
    """Read one whole answer (head and Content-Length body) from `s`; False on EOF."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            length = 0
            for line in data[:end].split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(data) >= end + 4 + length:
                return True
        chunk = s.recv(4096)
        if not chunk:
            return False
        data += chunk


def send_body(port, head, parts, timeout=60.0):
    """Send `head` then every part of `parts` (stops once the server answered or closed);
    returns (status, seconds to the answer)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    t0 = time.monotonic()
    result = {}

    def reader():
        result["status"] = read_status(s, timeout)
        result["at"] = time.monotonic() - t0

    r = threading.Thread(target=reader)
    r.start()
    try:
        s.sendall(head)
        for part in parts:
            if "status" in result:
                break
            s.sendall(part)
    except OSError:
        pass
    r.join()
    s.close()
    return result.get("status"), result.get("at")


def one_byte_chunks(n):
    """n bytes of data as 1-byte chunks, in 64 KiB pieces, then the last chunk."""
    piece = b"1\r\nx\r\n" * (64 * 1024 // 6)
    per = 64 * 1024 // 6
    sent = 0
    while sent + per <= n:
        yield piece
        sent += per
    yield b"1\r\nx\r\n" * (n - sent)
    yield b"0\r\n\r\n"


def extension_chunks(data, total):
    """`data` bytes as 1-byte chunks each carrying an extension (under 4 KiB a line), about
    `total` bytes in all."""
    per_chunk = min(total // data, 4000)
    ext = b";" + b"e" * (per_chunk - 10) + b"=1"
    chunk = b"1" + ext + b"\r\nx\r\n"
    batch = chunk * max(1, (256 * 1024) // len(chunk))
    n_batch = len(batch) // len(chunk)
    sent = 0
    while sent + n_batch <= data:
        yield batch
        sent += n_batch
    yield chunk * (data - sent)
    yield b"0\r\n\r\n"


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n"


def measure_chunked():
    print("== 1. chunked bodies of 1-byte chunks (herd, 1 worker)")
    p, port, (worker,) = herd(1)
    for data in (256 * 1024, 512 * 1024, 1024 * 1024):
        cpu0 = cpu_seconds(worker)
        status, at = send_body(port, CHUNKED_HEAD, one_byte_chunks(data))
        cpu = cpu_seconds(worker) - cpu0
        print(f"  {data // 1024:5} KiB data, {data * 6 / 1e6:.1f} MB encoded: status {status}, "
              f"{at:.2f} s to answer, worker CPU {cpu:.2f} s, "
              f"worker peak RSS {status_kib(worker, 'VmHWM') / 1024:.1f} MiB")
    stop(p)


def measure_extensions(tmp):
    print("== 2. 64 MB of chunk extensions carrying 16 KiB of data (1 worker)")
    for name in ("herd", "nginx"):
        p, port, pids = herd(1) if name == "herd" else nginx(1, f"{tmp}/nginx-ext")
        worker = pids[0]
        cpu0 = cpu_seconds(worker)
        rss = []
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                rss.append(status_kib(worker, "VmRSS"))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        status, at = send_body(port, CHUNKED_HEAD, extension_chunks(16 * 1024, 64 << 20),
                               timeout=30)
        cpu = cpu_seconds(worker) - cpu0
        sampling.set()
        sampler.join()
        alive = "" if os.path.exists(f"/proc/{worker}") else " (the worker is gone)"
        print(f"  {name:5}: status {status}, {at:.2f} s to answer, worker CPU {cpu:.2f} s, "
              f"worker RSS at most {max(rss, default=0) / 1024:.1f} MiB while it ran{alive}")
        stop(p)


FLOODER = r"""
import os, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
end = time.monotonic() + seconds
if os.fork() == 0:
    batch = b"GET / HTTP/1.1\r\nHost: m\r\n\r\n" * 40000
    try:
        while time.monotonic() < end:
            s.sendall(batch)
    except OSError:
        pass
    s.shutdown(socket.SHUT_WR)
    os._exit(0)
buf = bytearray(1 << 20)
try:
    while s.recv_into(buf):
        pass
except OSError:
    pass
os.wait()
"""


def measure_starvation(tmp):
    flood = float(os.environ.get("FLOOD", "10"))
    print(f"== 3. starvation: one client floods pipelined requests for {flood:.0f} s; "
          "4 clients of the same worker (herd, 1 worker) send one request at a time")
    p, port, _ = herd(1)
    stop_at = time.monotonic() + flood
    done = []  # completion times of the polite clients' requests
    waits = []
    lock = threading.Lock()

    def flooder():
        # One connection: a process writes pipelined requests as fast as the socket takes
        # them, another reads the answers (two processes: no GIL between them).
        subprocess.run([sys.executable, "-c", FLOODER, str(port), str(flood)])

    def polite():
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(30)
        req = b"GET / HTTP/1.1\r\nHost: m\r\n\r\n"
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            s.sendall(req)
            if not read_answer(s):
                return
            t1 = time.monotonic()
            with lock:
                waits.append(t1 - t0)
                done.append(t1)
            time.sleep(0.01)

    f = threading.Thread(target=flooder)
    f.start()
    time.sleep(0.5)
    start_t = time.monotonic()
    stop_at = start_t + flood - 1
    ps = [threading.Thread(target=polite) for _ in range(4)]
    for t in ps:
        t.start()
    for t in ps + [f]:
        t.join()
    stop(p)
    done.sort()
    end_t = max(done[-1:] + [stop_at])
    stalls = 0.0
    prev = start_t
    for t in done + [end_t]:
        if t - prev > 0.2:
            stalls += t - prev
        prev = t
    print(f"  polite requests answered: {len(waits)}; longest wait {max(waits, default=0):.3f} s; "
          f"time with no answer for > 0.2 s: {stalls:.1f} s of {end_t - start_t:.1f} s")


SLOW_CLIENT = r"""
import socket, sys, time, selectors
port, n = int(sys.argv[1]), int(sys.argv[2])
head = b"GET / HTTP/1.1\r\nHost: m\r\nX-Slow: " + b"a" * 100000
conns = {}
def connect(i):
    try:
        s = socket.socket(); s.setblocking(False)
        s.connect_ex(("127.0.0.1", port)); conns[i] = [s, 0]
    except OSError:
        conns.pop(i, None)
for i in range(n):
    connect(i)
print("ready", flush=True)
while True:
    t = time.monotonic()
    for i in range(n):
        c = conns.get(i)
        if c is None:
            connect(i); continue
        s, off = c
        try:
            s.send(head[off:off + 1]); c[1] += 1
        except BlockingIOError:
            pass
        except OSError:
            s.close(); connect(i)
    time.sleep(max(0, 1 - (time.monotonic() - t)))
"""


def wrk(port, duration):
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{duration}", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return 0.0


def measure_slowloris(tmp):
    slow = int(os.environ.get("SLOW", "2000"))
    duration = os.environ.get("DURATION", "5s")
    rounds = int(os.environ.get("ROUNDS", "3"))
    print(f"== 4. slowloris: wrk -t2 -c64 -d{duration} alone, then with {slow} connections "
          f"sending one header byte a second, {rounds} rounds (herd 2 workers, nginx 2 worker "
          "processes with client_header_timeout 10s, herd's header_read_timeout)")
    for name in ("herd", "nginx"):
        p, port, pids = herd(2) if name == "herd" else nginx(2, f"{tmp}/nginx-slow")
        alone, attacked, attack_cpu = [], [], []
        for _ in range(rounds):
            alone.append(wrk(port, duration))
            client = subprocess.Popen([sys.executable, "-c", SLOW_CLIENT, str(port), str(slow)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
            STARTED.append(client)
            client.stdout.readline()
            time.sleep(1)
            # What the attack alone costs the workers: CPU seconds per second.
            cpu0 = sum(cpu_seconds(w) for w in pids)
            time.sleep(3)
            attack_cpu.append((sum(cpu_seconds(w) for w in pids) - cpu0) / 3)
            attacked.append(wrk(port, duration))
            stop(client)
        stop(p)
        losses = [100 * (1 - b / a) for a, b in zip(alone, attacked) if a]
        med = sorted(losses)[len(losses) // 2] if losses else 0
        print(f"  {name:5}: req/s alone {[round(x) for x in alone]}, under slowloris "
              f"{[round(x) for x in attacked]}: loss per round "
              f"{[round(x, 1) for x in losses]} %, median {med:.1f}%; the attack alone costs "
              f"the workers {100 * max(attack_cpu):.1f}% of a CPU at most")


def main():
    global HELLO
    HELLO = os.environ.get("HELLO")
    if not HELLO:
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "herd-workspace",
                        "--example", "hello"], cwd=ROOT, check=True)
        HELLO = os.path.join(ROOT, "target/release/examples/hello")
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"measure_attacks: {tool} is not installed")
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="herd-attacks.")
    try:
        if "chunked" not in SKIP:
            measure_chunked()
        if "extensions" not in SKIP:
            measure_extensions(tmp)
        if "starvation" not in SKIP:
            measure_starvation(tmp)
        if "slowloris" not in SKIP:
            measure_slowloris(tmp)
        print(f"load average at the end: {open('/proc/loadavg').read().split()[:3]}")
    finally:
        for p in STARTED:
            if p.poll() is None:
                stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
