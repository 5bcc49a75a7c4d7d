//! Shared by tests/nothing_lost.rs and tests/nothing_lost_scale_down.rs: a real hello cluster
//! (the example binaries, built on demand), its log read from stdout, and load from herd-load
//! in a background thread, in `Stop::Requests` chunks so that no request is ever abandoned:
//! every request sent is either answered or counted as a failure.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herd_load::{Config, Errors, Mode, Report, Stop};

pub use crate::util::example;
use crate::util::{alive, Proc};

/// Concurrent clients, each opening a new connection per request.
pub const CLIENTS: usize = 32;

/// One load test at a time: on 2 cores, parallel clusters under load would measure each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hello cluster started from `exe`, with `PORT=0` (the primary resolves a free port).
/// Dropping it kills the primary and every worker it forked, even a stopped one.
pub struct Hello {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Hello {
    pub fn start(exe: &Path, workers: usize) -> Hello {
        Hello::start_with(exe, workers, &[])
    }

    /// [`Hello::start`] with more environment variables (e.g. `POLICY`).
    pub fn start_with(exe: &Path, workers: usize, env: &[(&str, &str)]) -> Hello {
        let mut cmd = Command::new(exe);
        cmd.envs(env.iter().copied());
        cmd.env("PORT", "0")
            .env("WORKERS", workers.to_string())
            .env("NO_COLOR", "1");
        let proc = Proc::spawn(&mut cmd);
        let mut hello = Hello {
            proc,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        hello.wait_count("worker listening", workers, Duration::from_secs(10));
        let line = hello.lines("worker listening").remove(0);
        let port: u16 = field(&line, "addr")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        hello.addr = SocketAddr::from(([127, 0, 0, 1], port));
        hello
    }

    /// The cluster's log lines (hello logs on stdout) containing `needle`.
    pub fn lines(&mut self, needle: &str) -> Vec<String> {
        self.proc.drain_for(Duration::ZERO);
        self.proc
            .seen
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    pub fn count(&mut self, needle: &str) -> usize {
        self.lines(needle).len()
    }

    /// Waits until `n` log lines contain `needle`; panics with the log after `timeout`.
    /// Returns how long it waited.
    pub fn wait_count(&mut self, needle: &str, n: usize, timeout: Duration) -> Duration {
        let start = Instant::now();
        while self.count(needle) < n {
            assert!(
                start.elapsed() < timeout,
                "fewer than {n} lines with {needle:?} within {timeout:?}; log:\n{}\n{}",
                self.proc.seen.join("\n"),
                self.proc.stderr()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        start.elapsed()
    }

    /// (worker id, pid, slot) of every worker forked so far, in order.
    pub fn forked(&mut self) -> Vec<(u32, i32, usize)> {
        self.lines("worker forked")
            .iter()
            .map(|l| {
                let num = |k| field(l, k).and_then(|v| v.parse::<i64>().ok()).unwrap();
                (
                    num("worker") as u32,
                    num("pid") as i32,
                    num("slot") as usize,
                )
            })
            .collect()
    }

    /// The pid of the live worker serving `slot` (the latest forked there).
    pub fn pid_of_slot(&mut self, slot: usize) -> i32 {
        self.forked()
            .iter()
            .rev()
            .find(|w| w.2 == slot && alive(w.1))
            .map(|w| w.1)
            .unwrap_or_else(|| panic!("no live worker in slot {slot}"))
    }
}

impl Drop for Hello {
    fn drop(&mut self) {
        for (_, pid, _) in self.forked() {
            // SAFETY: kill(2) on a pid this cluster reported forking; harmless if it is gone.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Proc's own Drop then kills and reaps the primary.
    }
}

/// `key=value` in a tracing line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn config(addr: SocketAddr, stop: Stop) -> Config {
    let mut c = Config::new(addr);
    c.connections = CLIENTS;
    c.threads = 1;
    c.mode = Mode::Close;
    c.stop = stop;
    c.timeout = Duration::from_secs(5);
    c
}

/// Steady state: `CLIENTS` clients for `d`, before anything happens.
pub fn steady(addr: SocketAddr, d: Duration) -> Report {
    herd_load::run(&config(addr, Stop::Duration(d))).expect("steady load runs")
}

/// Load in the background until [`Load::finish`]: chunks of `chunk` requests, each run to
/// its end, so no request is abandoned.
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Report>>>,
    started: Instant,
}

impl Load {
    pub fn start(addr: SocketAddr, chunk: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let cfg = config(addr, Stop::Requests(chunk.max(CLIENTS as u64)));
        let thread = std::thread::spawn(move || {
            let mut reports = Vec::new();
            loop {
                reports.push(herd_load::run(&cfg).expect("load runs"));
                if flag.load(Ordering::Acquire) {
                    return reports;
                }
            }
        });
        Load {
            stop,
            thread: Some(thread),
            started: Instant::now(),
        }
    }

    /// Stops after the chunk in flight and sums every chunk.
    pub fn finish(mut self) -> Totals {
        self.stop.store(true, Ordering::Release);
        let reports = self.thread.take().unwrap().join().expect("load thread");
        Totals::of(&reports, self.started.elapsed())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // On a failed assertion: let the thread end (its runs are bounded) before the cluster
        // goes away under it.
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every chunk of a background load, summed.
pub struct Totals {
    pub sent: u64,
    pub completed: u64,
    pub abandoned: u64,
    pub errors: Errors,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub elapsed: Duration,
    /// Responses per worker id (the X-Herd-Worker header).
    pub workers: std::collections::BTreeMap<String, u64>,
}

impl Totals {
    fn of(reports: &[Report], elapsed: Duration) -> Totals {
        let mut t = Totals {
            sent: 0,
            completed: 0,
            abandoned: 0,
            errors: Errors::default(),
            p50_us: 0,
            p99_us: 0,
            max_us: 0,
            elapsed,
            workers: Default::default(),
        };
        let mut hist = reports[0].histogram().clone();
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                hist.add(r.histogram()).expect("same bounds");
            }
            t.sent += r.sent;
            t.completed += r.completed;
            t.abandoned += r.abandoned;
            let e = &r.errors;
            t.errors.connect += e.connect;
            t.errors.reset += e.reset;
            t.errors.timeout += e.timeout;
            t.errors.bad_status += e.bad_status;
            t.errors.parse += e.parse;
            for (w, n) in &r.workers.counts {
                *t.workers.entry(w.clone()).or_default() += n;
            }
        }
        if !hist.is_empty() {
            t.p50_us = hist.value_at_quantile(0.5);
            t.p99_us = hist.value_at_quantile(0.99);
            t.max_us = hist.max();
        }
        t
    }

    /// Nothing lost: no failure of any kind, and every request sent was answered.
    pub fn assert_nothing_lost(&self, what: &str) {
        assert_eq!(
            self.errors.total(),
            0,
            "{what}: failed requests {:?}",
            self.errors
        );
        assert_eq!(self.sent, self.completed, "{what}: every request answered");
        assert_eq!(self.abandoned, 0, "{what}: no request abandoned");
        assert!(self.sent > 0, "{what}: the load ran");
    }
}

/// One line of figures per scenario, for `cargo test --test nothing_lost -- --nocapture`.
pub fn print(what: &str, steady: &Report, during: &Totals) {
    let e = &during.errors;
    eprintln!(
        "[{what}] during the event: {} sent, {} completed, {} failed (connect {}, reset {}, \
         timeout {}, bad_status {}, parse {}) in {:.2}s; p50 {} µs, p99 {} µs, max {} µs | \
         steady state before: {} sent, {} failed, p50 {} µs, p99 {} µs, {:.0} req/s | \
         responses by worker: {:?}",
        during.sent,
        during.completed,
        e.total(),
        e.connect,
        e.reset,
        e.timeout,
        e.bad_status,
        e.parse,
        during.elapsed.as_secs_f64(),
        during.p50_us,
        during.p99_us,
        during.max_us,
        steady.sent,
        steady.errors.total(),
        steady.latency.p50_us,
        steady.latency.p99_us,
        steady.requests_per_sec,
        during.workers,
    );
}

/// A chunk of about a quarter second of the steady rate.
pub fn chunk_for(steady: &Report) -> u64 {
    ((steady.requests_per_sec / 4.0) as u64).clamp(200, 5000)
}

/// Replaces the file at `path` atomically with a copy of `with` (copy beside it, rename over).
pub fn replace_file(path: &Path, with: &Path) {
    let tmp = path.with_extension("next");
    std::fs::copy(with, &tmp).expect("copy the new binary beside the old");
    std::fs::rename(&tmp, path).expect("rename the new binary over the old");
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("herd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
