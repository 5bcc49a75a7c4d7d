//! herd-tokio: an axum server (examples/axum.rs) and a bare hyper one (examples/hyper.rs)
//! under herd. Two rolling reloads and a scale-down under load (keep-alive clients and
//! new-connection clients at once) fail no request and kill no worker; the same axum app without
//! herd-tokio's shutdown has every old worker SIGKILLed at the shutdown timeout; a runtime
//! whose threads all block is seen by the watchdog.
//! `cargo test --test tokio_adapter -- --nocapture` prints the figures.

mod lost;
mod util;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use herd_load::{Config, Errors, Mode, Report, Stop};
use lost::{example, serial, Hello};
use util::SEC;

/// A leaving worker's time before SIGKILL: short, so that a kill shows within the test.
const SHUTDOWN_MS: &str = "4000";

/// Load in the background, in bounded chunks each run to its end (no request abandoned),
/// until finished.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Report>>>,
}

impl Load {
    fn start(addr: SocketAddr, mode: Mode, connections: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut cfg = Config::new(addr);
        cfg.connections = connections;
        cfg.threads = 1;
        cfg.mode = mode;
        cfg.stop = Stop::Requests(1000);
        cfg.timeout = Duration::from_secs(5);
        let thread = std::thread::spawn(move || {
            let mut reports = Vec::new();
            // Bounded: at most a minute of chunks whatever the test does.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                reports.push(herd_load::run(&cfg).expect("load runs"));
            }
            reports
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    /// (sent, completed, abandoned, errors) over every chunk.
    fn finish(mut self) -> (u64, u64, u64, Errors) {
        self.stop.store(true, Ordering::Release);
        let reports = self.thread.take().unwrap().join().expect("load thread");
        let mut errors = Errors::default();
        let (mut sent, mut completed, mut abandoned) = (0, 0, 0);
        for r in &reports {
            sent += r.sent;
            completed += r.completed;
            abandoned += r.abandoned;
            errors.connect += r.errors.connect;
            errors.reset += r.errors.reset;
            errors.timeout += r.errors.timeout;
            errors.bad_status += r.errors.bad_status;
            errors.parse += r.errors.parse;
        }
        (sent, completed, abandoned, errors)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends SIGHUP and waits until `exited` old workers in all have exited for a reload.
fn reload(app: &mut Hello, exited: usize) {
    app.proc.signal(libc::SIGHUP);
    app.wait_count("cause=reload", exited, 30 * SEC);
}

#[test]
fn axum_reloads_and_a_scale_down_fail_no_request_and_kill_no_worker() {
    reloads_under_load("axum");
}

#[test]
fn hyper_reloads_and_a_scale_down_fail_no_request_and_kill_no_worker() {
    reloads_under_load("hyper");
}

/// Two rolling reloads and a scale-down of example `name` under keep-alive and
/// new-connection load, then a stop.
fn reloads_under_load(name: &str) {
    let _serial = serial();
    let exe = example(name);
    let mut app = Hello::start_with(&exe, 2, &[("SHUTDOWN_TIMEOUT_MS", SHUTDOWN_MS)]);
    let keepalive = Load::start(app.addr, Mode::KeepAlive, 16);
    let close = Load::start(app.addr, Mode::Close, 16);
    std::thread::sleep(SEC / 2);
    reload(&mut app, 2);
    std::thread::sleep(SEC / 2);
    reload(&mut app, 4);
    std::thread::sleep(SEC / 2);
    // A scale-down disconnects a worker too.
    app.proc.signal(libc::SIGTTOU);
    app.wait_count("cause=scale", 1, 30 * SEC);
    std::thread::sleep(SEC / 2);
    let ka = keepalive.finish();
    let cl = close.finish();
    eprintln!(
        "[{name}, 2 reloads, 1 scale-down] keep-alive: {} sent, {} ok, {:?}; new connection: {} sent, {} ok, {:?}",
        ka.0, ka.1, ka.3, cl.0, cl.1, cl.3
    );
    for (what, (sent, completed, abandoned, errors)) in [("keep-alive", ka), ("close", cl)] {
        assert_eq!(errors.total(), 0, "{what}: failed requests {errors:?}");
        assert_eq!(sent, completed, "{what}: every request answered");
        assert_eq!(abandoned, 0, "{what}");
        assert!(sent > 0, "{what}: the load ran");
    }
    let mut exits = app.lines("cause=reload");
    assert_eq!(exits.len(), 4, "{exits:#?}");
    exits.extend(app.lines("cause=scale"));
    for line in &exits {
        assert!(
            line.contains("exit=code 0"),
            "an old worker did not exit by itself: {line}"
        );
    }
    assert_eq!(app.count("SIGKILL"), 0, "{:#?}", app.lines("SIGKILL"));
    // A stop, too: every worker leaves by itself, so the primary exits 0.
    app.proc.signal(libc::SIGTERM);
    let status = app.proc.wait(20 * SEC).expect("the cluster stops");
    assert!(status.success(), "{status}: {}", app.proc.stderr());
    assert_eq!(app.count("SIGKILL"), 0, "{:#?}", app.lines("SIGKILL"));
}

#[test]
fn without_the_shutdown_future_every_old_worker_is_killed() {
    let _serial = serial();
    let exe = example("axum");
    let mut app = Hello::start_with(
        &exe,
        2,
        &[("SHUTDOWN_TIMEOUT_MS", "1000"), ("IGNORE_SHUTDOWN", "1")],
    );
    reload(&mut app, 2);
    let exits = app.lines("cause=reload");
    for line in &exits {
        assert!(line.contains("exit=signal SIGKILL"), "{line}");
    }
    assert_eq!(app.count("did not exit in time: SIGKILL"), 2);
}

#[test]
fn a_runtime_that_stops_is_seen_hung_and_replaced() {
    let _serial = serial();
    let exe = example("axum");
    let mut app = Hello::start_with(
        &exe,
        1,
        &[("RUN_TIMEOUT_MS", "1500"), ("SHUTDOWN_TIMEOUT_MS", "1000")],
    );
    // Idle for longer than the run timeout: the heartbeat task keeps the worker alive.
    std::thread::sleep(3 * SEC);
    assert_eq!(app.count("stuck"), 0, "an idle tokio worker is not hung");
    // Block both runtime threads (each request blocks the thread that polls it).
    let addr = app.addr;
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let _ = util::http_get(addr, "/block");
            })
        })
        .collect();
    app.wait_count("stuck", 1, 20 * SEC);
    app.wait_count("worker listening", 2, 20 * SEC);
    // The replacement serves.
    let reply = util::http_get(addr, "/").expect("the replacement answers");
    assert!(reply.contains("Hello from worker 2"), "{reply}");
    drop(app);
    for b in blockers {
        let _ = b.join();
    }
}
