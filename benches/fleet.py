#!/usr/bin/env python3
# sudo python3 benches/fleet.py        (or: make fleet; root is needed for `ip netns`)
"""A fleet of three herd hosts behind HAProxy, on one machine, in network namespaces.

Four namespaces, all named `hfl<pid>-*` after this script's pid: `lb` holds a bridge and the
balancer, `h1`..`h3` are the hosts, each joined to the bridge by a veth pair (10.77.0.1-3,
the balancer 10.77.0.254). Every host runs the hello example (herd primary + WORKERS workers,
port 8000, admin port 9100 with /metrics, /readyz, /livez). HAProxy in `lb` listens on
127.0.0.1:8080 of its own namespace, round-robins over the hosts and health-checks each host's
admin port (`/readyz`; `/metrics` with a build that has no /readyz). herd-load runs in `lb`
too, a new connection per request, and counts every failed request (connect error, reset,
timeout, non-2xx). Nothing leaves the namespaces; nothing is left behind: on exit, on a
signal or on the time budget running out, every process in the namespaces is killed and the
namespaces are deleted (and so are leftovers of earlier runs whose script is dead).

Scenarios (each under its own load run; the table gives requests, failed, p99):
  steady     no event: the reference p99.
  rolling    host by host: SIGTERM with SHUTDOWN_DELAY, so /readyz answers 503 while the host
             still serves; HAProxy takes it out after `fall` failed checks; herd drains and
             exits; the host is started again and the next one goes when HAProxy sees it UP.
             Through a backend with no retries, so that only readiness can keep requests off
             the stopping host. Must lose nothing. Needs /readyz.
  naive      the same with the delay skipped (a second SIGTERM): what readiness is for. Not
             bounded.
  drain      host by host through HAProxy's runtime API: `set server ... state drain`, wait
             until no session is open there, restart, `state ready`. Must lose nothing.
  reload     host by host: `herd reload --wait` (workers replaced in place, listeners kept).
             Must lose nothing.
  kill       every process of h2 killed with SIGKILL; failures are bounded by what was in
             flight there (HAProxy retries failed connects elsewhere); HAProxy marks it DOWN;
             it is started again and must get traffic again.

Options: --quick (short runs, what tests/fleet.rs uses), --scenarios a,b,..,
--hello/--herd/--load PATH (binaries; default: built here with --release), --workers N,
--connections N, --shutdown-delay S (default 1), --json FILE (the results, for tests). Exit status 0 when every scenario met
its bound, 1 otherwise, 2 on a setup error.
"""
import argparse
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBNET = "10.77.0"
LB_IP = f"{SUBNET}.254"
PORT = 8000
ADMIN = 9100
FRONT = 8080
FRONT_RETRY = 8081
FRONT_STRICT = 8082
HOSTS = ["h1", "h2", "h3"]
PREFIX_RE = re.compile(r"^hfl(\d+)-\w+$")
# HAProxy's health check: every INTER_MS, FALL failures take a server out, RISE successes
# bring it back. The hosts' SHUTDOWN_DELAY (--shutdown-delay, default 1 s) must outlast FALL
# checks (plus one in flight).
INTER_MS = 200
FALL = 2
RISE = 2


class Failure(Exception):
    """A scenario or the setup went wrong; the message says what."""


def log(msg):
    print(f"fleet: {msg}", file=sys.stderr, flush=True)


def run(*args, check=True, timeout=15):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise Failure(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def netns_names():
    out = run("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def kill_netns(name):
    """SIGKILL every process in namespace `name`, then delete it."""
    for _ in range(50):
        pids = run("ip", "netns", "pids", name, check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        time.sleep(0.05)
    run("ip", "netns", "del", name, check=False)


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_leftovers():
    """Namespaces of earlier runs whose script is gone (killed before it could clean up)."""
    for name in netns_names():
        m = PREFIX_RE.match(name)
        # Ours by pid can only be a dead run's whose pid came round again: none made yet.
        if m and (int(m.group(1)) == os.getpid() or not alive(int(m.group(1)))):
            log(f"removing leftover namespace {name}")
            kill_netns(name)
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = re.match(r"^herd-fleet-(\d+)-", name)
        if m and not alive(int(m.group(1))):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


class Fleet:
    def __init__(self, opts):
        self.opts = opts
        self.prefix = f"hfl{os.getpid()}-"
        self.tmp = tempfile.mkdtemp(prefix=f"herd-fleet-{os.getpid()}-")
        self.made = []  # namespaces created, to delete
        self.hosts = {}  # host -> Popen of its primary
        self.starts = {h: 0 for h in HOSTS}
        self.haproxy = None
        self.health = "/readyz"

    def ns(self, role):
        return self.prefix + role

    # ---- setup and teardown -------------------------------------------------------------

    def setup(self):
        lb = self.ns("lb")
        for role in ["lb"] + HOSTS:
            run("ip", "netns", "add", self.ns(role))
            self.made.append(self.ns(role))
            run("ip", "-n", self.ns(role), "link", "set", "lo", "up")
        run("ip", "-n", lb, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", lb, "addr", "add", f"{LB_IP}/24", "dev", "br0")
        run("ip", "-n", lb, "link", "set", "br0", "up")
        for i, h in enumerate(HOSTS, 1):
            # Both ends are created inside the namespaces: no interface ever exists outside.
            run("ip", "-n", lb, "link", "add", f"v{i}", "type", "veth",
                "peer", "name", "eth0", "netns", self.ns(h))
            run("ip", "-n", lb, "link", "set", f"v{i}", "master", "br0", "up")
            run("ip", "-n", self.ns(h), "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0")
            run("ip", "-n", self.ns(h), "link", "set", "eth0", "up")
        for h in HOSTS:
            self.start_host(h)
        for h in HOSTS:
            self.wait_listening(h, 20)
        # Which health URL: /readyz when this build serves it, else /metrics as a stand-in.
        if self.http_status(f"http://{SUBNET}.1:{ADMIN}/readyz") != 200:
            self.health = "/metrics"
            log("this hello has no /readyz: health check on /metrics, no readiness scenario")
        self.start_haproxy()
        for h in HOSTS:
            self.wait_state(h, lambda s: s["status"] == "UP", 10, "UP")

    def teardown(self):
        # A second Ctrl-C or SIGTERM must not cut the teardown short.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for name in self.made:
            kill_netns(name)
        for p in list(self.hosts.values()) + [self.haproxy]:
            if p is not None:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
        if self.opts.keep:
            log(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- hosts ---------------------------------------------------------------------------

    def host_log(self, h):
        return os.path.join(self.tmp, f"{h}.{self.starts[h]}.log")

    def start_host(self, h):
        self.starts[h] += 1
        env = dict(os.environ,
                   PORT=str(PORT), WORKERS=str(self.opts.workers),
                   METRICS_ADDR=f"0.0.0.0:{ADMIN}",
                   HERD_SOCKET=os.path.join(self.tmp, f"{h}.sock"),
                   SHUTDOWN_DELAY=str(self.opts.shutdown_delay), RUST_LOG="info")
        with open(self.host_log(h), "w") as out:
            self.hosts[h] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(h), self.opts.hello],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_listening(self, h, timeout):
        """Until every worker of `h`'s latest start logged `worker listening`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.host_log(h)) as f:
                if f.read().count("worker listening") >= self.opts.workers:
                    return
            if self.hosts[h].poll() is not None:
                raise Failure(f"{h} exited ({self.hosts[h].returncode}):\n{self.tail(h)}")
            time.sleep(0.05)
        raise Failure(f"{h}: workers not listening within {timeout}s:\n{self.tail(h)}")

    def tail(self, h):
        with open(self.host_log(h)) as f:
            return "".join(f.readlines()[-15:])

    def stop_host(self, h, timeout):
        """Waits for `h`'s primary to exit (after a signal sent by the caller)."""
        try:
            rc = self.hosts[h].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{h} did not exit within {timeout}s:\n{self.tail(h)}")
        if rc not in (0, -signal.SIGKILL):
            raise Failure(f"{h} exited with {rc}:\n{self.tail(h)}")

    def http_status(self, url):
        """GET `url` from the balancer's namespace; the status code, or 0."""
        code = ("import sys, urllib.request\n"
                "try:\n"
                f"    print(urllib.request.urlopen({url!r}, timeout=2).status)\n"
                "except urllib.error.HTTPError as e:\n"
                "    print(e.code)\n"
                "except Exception:\n"
                "    print(0)\n")
        out = run("ip", "netns", "exec", self.ns("lb"), sys.executable, "-c", code).stdout
        return int(out.strip() or 0)

    # ---- the balancer --------------------------------------------------------------------

    def start_haproxy(self):
        self.stats = os.path.join(self.tmp, "haproxy.sock")
        servers = "\n".join(f"    server {h} {SUBNET}.{i}:{PORT}"
                            for i, h in enumerate(HOSTS, 1))
        tracked = "\n".join(f"    server {h} {SUBNET}.{i}:{PORT} track herd/{h}"
                             for i, h in enumerate(HOSTS, 1))
        cfg = f"""global
    maxconn 4096
    nbthread 1
    stats socket {self.stats} mode 600 level admin
    log stderr format raw local0 notice

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    option log-separate-errors
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout check 1s
    # A refused or failed connect is retried, the last time on another server.
    retries 3
    option redispatch

frontend fe
    bind 127.0.0.1:{FRONT}
    default_backend herd

backend herd
    balance roundrobin
    option httpchk
    http-check send meth GET uri {self.health} ver HTTP/1.1 hdr Host fleet
    http-check expect status 200
    default-server check port {ADMIN} inter {INTER_MS}ms fall {FALL} rise {RISE}
{servers}

# The same hosts, states tracked from `herd`, plus HAProxy's layer-7 retries: a GET that got
# no response (its host died under it) is sent again, to another host.
frontend fe_retry
    bind 127.0.0.1:{FRONT_RETRY}
    default_backend herd_retry

backend herd_retry
    balance roundrobin
    retry-on conn-failure empty-response response-timeout
    option redispatch 1
{tracked}

# The same hosts with no retry at all: a request HAProxy sends to a host that is no longer
# listening fails. Only the health check (/readyz) can keep traffic off a stopping host.
frontend fe_strict
    bind 127.0.0.1:{FRONT_STRICT}
    default_backend herd_strict

backend herd_strict
    balance roundrobin
    retries 0
    option redispatch 0
{tracked}
"""
        path = os.path.join(self.tmp, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        self.haproxy_log = open(os.path.join(self.tmp, "haproxy.log"), "w")
        self.haproxy = subprocess.Popen(
            ["ip", "netns", "exec", self.ns("lb"), self.opts.haproxy, "-db", "-f", path],
            stdout=self.haproxy_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.haproxy.poll() is not None:
                raise Failure(f"haproxy exited: {self.read_haproxy_log()}")
            try:
                self.servers()
                return
            except OSError:
                time.sleep(0.05)
        raise Failure("haproxy's stats socket did not answer within 10s")

    def read_haproxy_log(self):
        with open(os.path.join(self.tmp, "haproxy.log")) as f:
            return f.read()[-2000:]

    def admin(self, command):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(self.stats)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode()
        finally:
            s.close()

    def servers(self, backend="herd"):
        """HAProxy's view of each host in `backend`: status (UP, DOWN, DRAIN, ...), stot
        (sessions so far), scur (sessions open)."""
        text = self.admin("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: {"status": r["status"], "stot": int(r["stot"] or 0),
                              "scur": int(r["scur"] or 0)}
                for r in rows if r["pxname"] == backend and r["svname"] in HOSTS}

    def wait_state(self, h, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.servers()[h]
            if pred(s):
                return s
            time.sleep(0.02)
        raise Failure(f"HAProxy did not see {h} {what} within {timeout}s "
                      f"(last: {self.servers()[h]})")

    # ---- load ----------------------------------------------------------------------------

    def load(self, seconds, port=FRONT):
        return Load(self, seconds, port)


class Load:
    """herd-load in the balancer's namespace, a new connection per request, for `seconds`."""

    def __init__(self, fleet, seconds, port):
        self.seconds = seconds
        self.t0 = time.monotonic()
        self.out = tempfile.TemporaryFile(mode="w+", dir=fleet.tmp)
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", fleet.ns("lb"), fleet.opts.load,
             "--url", f"http://127.0.0.1:{port}/", "--mode", "close",
             "-c", str(fleet.opts.connections), "-t", "1", "-d", f"{seconds}s",
             "--timeout", "5s", "--json"],
            stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        time.sleep(0.5)  # under way before the event

    def finish(self):
        """Waits for the end of the run; fails if the event outlasted it."""
        event_s = time.monotonic() - self.t0
        if self.p.poll() is not None:
            raise Failure(f"the scenario outlasted its {self.seconds}s of load: "
                          "give the load more time")
        try:
            self.p.wait(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise Failure("herd-load did not finish")
        self.out.seek(0)
        text = self.out.read()
        try:
            report = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise Failure(f"herd-load printed no report: {text[-500:]}")
        report["event_s"] = event_s
        return report


# ---- scenarios ---------------------------------------------------------------------------

def steady(fleet, q):
    load = fleet.load(3 if q else 8)
    time.sleep(load.seconds - 1.5)  # the event: none; finish() checks the load still runs
    return load.finish(), {"bound": 0, "note": "no event"}


def rolling(fleet, q):
    if fleet.health != "/readyz":
        return None, {"note": "skipped: this build has no /readyz"}
    load = fleet.load(9 if q else 20, FRONT_STRICT)
    for h in HOSTS:
        t = time.monotonic()
        fleet.hosts[h].send_signal(signal.SIGTERM)
        fleet.wait_state(h, lambda s: s["status"].startswith("DOWN"), 10,
                         "DOWN after SIGTERM")
        out = time.monotonic() - t
        fleet.stop_host(h, 20)
        fleet.start_host(h)
        fleet.wait_state(h, lambda s: s["status"] == "UP", 15, "UP after restart")
        log(f"rolling: {h} out of the balancer {out:.2f}s after SIGTERM, back after "
            f"{time.monotonic() - t:.2f}s")
    return load.finish(), {"bound": 0,
                           "note": f"SIGTERM, /readyz 503 for {fleet.opts.shutdown_delay}s, restart"}


def naive(fleet, q):
    """The rolling restart without readiness, as a contrast: the second SIGTERM skips the
    shutdown delay, so the host stops listening before HAProxy's checks notice."""
    load = fleet.load(9 if q else 20, FRONT_STRICT)
    for h in HOSTS:
        fleet.hosts[h].send_signal(signal.SIGTERM)
        time.sleep(0.05)
        fleet.hosts[h].send_signal(signal.SIGTERM)
        fleet.stop_host(h, 20)
        fleet.start_host(h)
        fleet.wait_state(h, lambda s: s["status"] == "UP", 15, "UP after restart")
    return load.finish(), {"bound": None,
                           "note": "as rolling, the delay skipped (2nd SIGTERM): contrast"}


def drain(fleet, q):
    load = fleet.load(8 if q else 15)
    for h in HOSTS:
        fleet.admin(f"set server herd/{h} state drain")
        fleet.wait_state(h, lambda s: s["scur"] == 0 and s["status"].startswith("DRAIN"), 10,
                         "drained")
        fleet.hosts[h].send_signal(signal.SIGTERM)
        fleet.stop_host(h, 20)
        fleet.start_host(h)
        # The balancer's check may not have failed yet while the host was gone: wait for the
        # host itself, then for the balancer.
        fleet.wait_listening(h, 15)
        fleet.wait_state(h, lambda s: s["status"] == "DRAIN", 15, "checked up (DRAIN)")
        fleet.admin(f"set server herd/{h} state ready")
        fleet.wait_state(h, lambda s: s["status"] == "UP", 5, "UP after `state ready`")
    return load.finish(), {"bound": 0, "note": "runtime API drain, SIGTERM, restart"}


def reload(fleet, q):
    load = fleet.load(5 if q else 12)
    for h in HOSTS:
        env = dict(os.environ, HERD_SOCKET=os.path.join(fleet.tmp, f"{h}.sock"))
        r = subprocess.run([fleet.opts.herd, "reload", "--wait"], env=env,
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise Failure(f"herd reload --wait on {h} failed: {r.stdout}{r.stderr}")
    return load.finish(), {"bound": 0, "note": "`herd reload --wait` host by host"}


def kill_at_once(ns):
    """Kills every process in `ns` as one event, like a machine that dies: all are stopped
    first (SIGSTOP; again for any forked meanwhile), then all are killed. Killed one by one,
    a primary that outlives its workers would keep their listeners' queues open a moment
    longer and catch more connections to reset."""
    stopped = set()
    while True:
        pids = set(run("ip", "netns", "pids", ns).stdout.split()) - stopped
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped |= pids
    for pid in stopped:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return stopped


def kill(fleet, q, port=FRONT):
    load = fleet.load(6 if q else 10, port)
    backend = "herd" if port == FRONT else "herd_retry"
    h = "h2"
    time.sleep(0.5)
    in_flight = fleet.servers(backend)[h]["scur"]
    t = time.monotonic()
    kill_pids = kill_at_once(fleet.ns(h))
    fleet.stop_host(h, 10)
    fleet.wait_state(h, lambda s: s["status"].startswith("DOWN"), 10, "DOWN after the kill")
    down = time.monotonic() - t
    time.sleep(0.5)  # the balancer routes around it
    fleet.start_host(h)
    fleet.wait_state(h, lambda s: s["status"] == "UP", 15, "UP after restart")
    back = time.monotonic() - t
    before = fleet.servers(backend)[h]["stot"]
    time.sleep(1)
    gained = fleet.servers(backend)[h]["stot"] - before
    report = load.finish()
    if gained <= 0:
        raise Failure(f"{h} is UP again but got no traffic in 1s")
    return report, {
        # A client connection carries one request at a time, and each of the host's processes,
        # as it exits, closes its sockets (listeners, accepted connections) at once: every
        # exit can fail at most one request per client connection. In between, new
        # connections still land on the listeners that remain (the balancer has not seen the
        # host go yet); once the last one is closed, connects are refused and retried.
        "bound": fleet.opts.connections * len(kill_pids),
        "note": f"{len(kill_pids)} processes killed ({in_flight} sessions open there), "
                f"DOWN after {down:.2f}s, UP after {back:.2f}s, +{gained} req in 1s",
        "in_flight": in_flight, "rejoined": gained}


def kill_retry(fleet, q):
    report, extra = kill(fleet, q, FRONT_RETRY)
    extra["note"] += "; retry-on empty-response"
    return report, extra


SCENARIOS = {"steady": steady, "rolling": rolling, "naive": naive, "drain": drain,
             "reload": reload,
             "kill": kill, "kill-retry": kill_retry}


def build_release():
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "herd-workspace",
                    "--example", "hello", "-p", "herd-ctl", "--bin", "herd",
                    "-p", "herd-load", "--bin", "herd-load"], cwd=ROOT, check=True)
    rel = os.path.join(ROOT, "target", "release")
    return (os.path.join(rel, "examples", "hello"), os.path.join(rel, "herd"),
            os.path.join(rel, "herd-load"))


def on_signal(signum, _frame):
    raise Failure(f"stopped by signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scenarios", default="steady,rolling,naive,drain,reload,kill,kill-retry")
    ap.add_argument("--hello")
    ap.add_argument("--herd")
    ap.add_argument("--load")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "haproxy")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--shutdown-delay", type=float, default=1.0,
                    help="the hosts' SHUTDOWN_DELAY in seconds (0 shows what it is for)")
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true", help="keep the logs' directory")
    opts = ap.parse_args()
    names = [s for s in opts.scenarios.split(",") if s]
    for s in names:
        if s not in SCENARIOS:
            sys.exit(f"fleet: unknown scenario {s!r} (one of {', '.join(SCENARIOS)})")
    if os.geteuid() != 0:
        sys.exit("fleet: needs root (ip netns)")
    for tool in ("ip", opts.haproxy):
        if shutil.which(tool) is None:
            sys.exit(f"fleet: {tool} is not installed (apt-get install iproute2 haproxy)")
    if not (opts.hello and opts.herd and opts.load):
        opts.hello, opts.herd, opts.load = build_release()

    # A bounded run: the budget's alarm, like a signal, ends it through the teardown.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, on_signal)
    signal.alarm(40 + 25 * len(names) if opts.quick else 60 + 40 * len(names))

    remove_leftovers()
    fleet = Fleet(opts)
    results, status = [], 0
    try:
        fleet.setup()
        for name in names:
            try:
                report, extra = SCENARIOS[name](fleet, opts.quick)
            except Failure as e:
                results.append({"scenario": name, "error": str(e)})
                log(f"{name}: {e}")
                status = 1
                break  # the fleet's state is unknown now
            if report is None:
                results.append({"scenario": name, "skipped": extra["note"]})
                continue
            failed = report["errors"]
            total = sum(failed.values())
            ok = extra["bound"] is None or total <= extra["bound"]
            status |= 0 if ok else 1
            results.append(dict(extra, scenario=name, requests=report["sent"], failed=total,
                                errors=failed, p99_ms=report["latency"]["p99_us"] / 1000,
                                seconds=report["elapsed_secs"], event_s=report["event_s"],
                                ok=ok))
    except Failure as e:
        log(f"setup: {e}")
        results.append({"scenario": "setup", "error": str(e)})
        status = 2
    finally:
        signal.alarm(0)
        fleet.teardown()
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"health": fleet.health, "workers": opts.workers,
                       "connections": opts.connections, "results": results}, f)
    print_table(fleet, results)
    return status


def print_table(fleet, results):
    print(f"3 hosts x {fleet.opts.workers} workers behind HAProxy (check {fleet.health} every "
          f"{INTER_MS}ms, fall {FALL}, rise {RISE}); {fleet.opts.connections} connections, "
          "a new connection per request")
    print(f"{'scenario':<9} {'requests':>9} {'failed':>7} {'p99 ms':>8}  notes")
    for r in results:
        if "error" in r:
            print(f"{r['scenario']:<9} {'-':>9} {'-':>7} {'-':>8}  ERROR: {r['error']}")
        elif "skipped" in r:
            print(f"{r['scenario']:<9} {'-':>9} {'-':>7} {'-':>8}  {r['skipped']}")
        else:
            mark = "" if r["ok"] else f"  OVER THE BOUND ({r['bound']})"
            print(f"{r['scenario']:<9} {r['requests']:>9} {r['failed']:>7} "
                  f"{r['p99_ms']:>8.2f}  {r['note']}{mark}")


if __name__ == "__main__":
    sys.exit(main())
