#!/usr/bin/env python3
# python3 benches/measure_lifecycle.py        (or: make measure-lifecycle)
#
# How long a 2-worker cluster takes from exec to every worker listening, and from SIGTERM to
# the primary's exit, over 20 runs of the test fixture (release build): median, min, max.
# The fixture prints one `EV listening` line per worker; the clock stops at the second.
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "herd-fixture"], cwd=ROOT, check=True)
exe = os.path.join(ROOT, "target", "release", "herd-fixture")
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
start_ms, stop_ms = [], []
for _ in range(runs):
    env = dict(os.environ, FIX_WORKERS="2", FIX_ADDR="127.0.0.1:0", RUST_LOG="warn")
    t0 = time.perf_counter()
    p = subprocess.Popen([exe], stdout=subprocess.PIPE, env=env, text=True)
    try:
        listening = 0
        for line in p.stdout:
            if line.startswith("EV listening"):
                listening += 1
                if listening == 2:
                    break
        t1 = time.perf_counter()
        # A blocking wait (wait(timeout=...) polls with sleeps and would round the figure up);
        # the watchdog kills a primary that does not stop.
        watchdog = threading.Timer(30, p.kill)
        watchdog.start()
        p.send_signal(signal.SIGTERM)
        code = p.wait()
        t2 = time.perf_counter()
        watchdog.cancel()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if code != 0:
        sys.exit(f"measure_lifecycle: the primary exited {code} after SIGTERM")
    start_ms.append((t1 - t0) * 1000)
    stop_ms.append((t2 - t1) * 1000)


def line(name, xs):
    return f"{name}: median {statistics.median(xs):.1f} ms (min {min(xs):.1f}, max {max(xs):.1f}, {len(xs)} runs)"


print(line("start -> both workers listening", start_ms))
print(line("SIGTERM -> primary exited      ", stop_ms))
