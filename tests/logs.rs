//! Logs a person can read: crashes reach stderr without a tracing subscriber, one clean line
//! per failure, repeated warnings rate-limited, no colour codes in pipes.

mod util;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use util::*;

#[test]
fn without_a_subscriber_a_worker_crash_is_one_line_on_stderr() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_NO_LOG", "1"),
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_BACKOFF_MS", "300"),
        ],
        &[],
    );
    let l = c.expect(10 * SEC, |l| l.starts_with("EV listening"));
    let pid: i32 = c.worker_pids()[0];
    assert!(l.contains("id=1"));
    // SAFETY: kill(2) on this test's worker.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    c.expect(10 * SEC, |l| {
        l.starts_with("EV listening") && l.contains("id=2")
    });
    let want = format!("worker 1 (pid {pid}, slot 0) died: signal SIGKILL");
    let err = c.stderr_contains(5 * SEC, &[&want]);
    let line = err
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.starts_with(&format!("herd primary (pid {}): warning: ", c.pid())),
        "{line}"
    );
}

#[test]
fn a_port_conflict_is_told_once_in_one_clean_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_NO_LOG", "1"),
            ("FIX_WORKERS", "4"),
            ("FIX_MODE", "http"),
            ("FIX_ADDR", &addr),
        ],
        &[],
    );
    let status = c.wait(10 * SEC).expect("stops");
    assert_eq!(status.code(), Some(1));
    std::thread::sleep(Duration::from_millis(100));
    let err = c.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("in use")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("herd-fixture: worker")
            && lines[0]
                .ends_with("already in use (EADDRINUSE): another process listens on this port"),
        "{err}"
    );
}

#[test]
fn repeated_accept_failures_are_rate_limited_with_a_count() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "http"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_NOFILE", "24"),
            ("RUST_LOG", "warn"),
        ],
        &[],
    );
    let l = c.expect(10 * SEC, |l| l.starts_with("EV listening"));
    let addr: SocketAddr = field(&l, "addr").unwrap().parse().unwrap();
    // More connections than the worker has descriptors: accept fails with EMFILE and
    // backs off every 100 ms for as long as they stay open.
    let conns: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let err = c.stderr();
    let n = err.matches("Too many open files").count();
    assert!(n >= 1, "no EMFILE warning: {err}");
    assert!(n <= 2, "{n} EMFILE warnings in 1.5 s:\n{err}");
    drop(conns);
}
