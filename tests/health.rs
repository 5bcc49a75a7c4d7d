//! The admin address's health endpoints: `/readyz` follows the cluster (every slot ready,
//! no crash loop, not stopping), `/livez` follows the primary's loop, seen from the control
//! thread while the loop is really blocked.

mod util;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use util::{free_port, http_get, Proc, FIXTURE, SEC};

/// GETs (or HEADs) `path` on `addr`: the status and the body (everything after the head,
/// up to the close: a HEAD answer must have none).
fn probe(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, 2 * SEC).expect("admin connect");
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).expect("an admin answer");
    let (head, body) = all.split_once("\r\n\r\n").expect("a whole head");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {all:?}"));
    (status, body.to_string())
}

/// Polls `path` until `pred` holds on (status, body); panics with the last answer after
/// `timeout`.
fn until(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    pred: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = probe(addr, "GET", path);
        if pred(got.0, &got.1) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {got:?} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn admin() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

#[test]
fn readyz_says_whether_every_slot_has_a_ready_worker() {
    let maddr = admin();
    let port = free_port();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_MODE", "http"),
            ("FIX_ADDR", &format!("127.0.0.1:{port}")),
            ("FIX_METRICS_ADDR", &maddr.to_string()),
            // A crashed worker's slot stays empty for 3 s: long enough to see.
            ("FIX_BACKOFF_MS", "3000"),
        ],
        &[],
    );
    c.expect_n(2, 20 * SEC, "EV listening");
    let (_, body) = until(maddr, "/readyz", 10 * SEC, |s, _| s == 200);
    assert_eq!(body, "ready\n");
    assert_eq!(probe(maddr, "GET", "/livez"), (200, "alive\n".into()));
    // HEAD: the status, no body.
    assert_eq!(probe(maddr, "HEAD", "/readyz"), (200, String::new()));
    assert_eq!(probe(maddr, "HEAD", "/livez"), (200, String::new()));
    // /metrics is served as before.
    let m = http_get(maddr, "/metrics").unwrap();
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(m.contains("herd_workers"), "{m}");
    assert_eq!(probe(maddr, "GET", "/nope").0, 404);

    // A worker dies: its slot waits out the backoff, the cluster is not ready meanwhile.
    let pid = util::field(
        &c.seen
            .iter()
            .find(|l| l.starts_with("EV fork id=1"))
            .unwrap()
            .clone(),
        "pid",
    )
    .unwrap()
    .parse::<i32>()
    .unwrap();
    // SAFETY: kill(2) on a worker of this test's cluster.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (_, why) = until(maddr, "/readyz", 5 * SEC, |s, _| s == 503);
    assert_eq!(why, "not ready: 1 of 2 workers ready\n");
    assert_eq!(probe(maddr, "HEAD", "/readyz"), (503, String::new()));
    // Still alive: the loop turns, it only waits.
    assert_eq!(probe(maddr, "GET", "/livez").0, 200);
    c.expect(10 * SEC, |l| l.starts_with("EV listening id=3"));
    until(maddr, "/readyz", 5 * SEC, |s, _| s == 200);

    c.signal(libc::SIGTERM);
    assert!(
        c.wait(20 * SEC).is_some_and(|s| s.success()),
        "{}",
        c.stderr()
    );
}

#[test]
fn livez_fails_while_the_primary_loop_is_blocked() {
    let maddr = admin();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_METRICS_ADDR", &maddr.to_string()),
            ("FIX_PRIMARY", "stall-on-reload"),
            ("FIX_STALL_MS", "7000"),
            // Nothing else wakes the primary's loop: no counters, no health sampling.
            ("FIX_STATS_MS", "0"),
            ("FIX_RUN_TIMEOUT_MS", "0"),
        ],
        &[],
    );
    c.expect(20 * SEC, |l| l.starts_with("EV listening id=1"));
    until(maddr, "/livez", 10 * SEC, |s, _| s == 200);
    // An idle cluster stays alive: the loop turns without any event.
    std::thread::sleep(6 * SEC);
    assert_eq!(probe(maddr, "GET", "/livez"), (200, "alive\n".into()));

    // The reload's first fork blocks the primary's loop in the event callback for 7 s.
    c.signal(libc::SIGHUP);
    c.expect(10 * SEC, |l| l.starts_with("EV fork id=2"));
    let (_, why) = until(maddr, "/livez", 10 * SEC, |s, _| s == 503);
    assert!(
        why.starts_with("not alive: the primary's loop has not turned for "),
        "{why:?}"
    );
    // The admin thread answers /readyz and /metrics all the same.
    assert_eq!(probe(maddr, "GET", "/metrics").0, 200);
    // Unblocked, the loop turns again.
    until(maddr, "/livez", 10 * SEC, |s, _| s == 200);
    c.signal(libc::SIGTERM);
    assert!(c.wait(20 * SEC).is_some(), "{}", c.stderr());
}

/// A temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("herd-health-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// hello with `WORKERS` and `SHUTDOWN_DELAY`, once `/readyz` says every slot is ready; its
/// workers are adopted by the guard. Returns the guard, the admin and the service addresses.
fn hello_with_delay(dir: &TempDir, workers: &str, delay: &str) -> (Proc, SocketAddr, SocketAddr) {
    let maddr = admin();
    let port = free_port();
    let service: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = Proc::start(
        util::example("hello").to_str().unwrap(),
        &[
            ("PORT", &port.to_string()),
            ("WORKERS", workers),
            ("METRICS_ADDR", &maddr.to_string()),
            ("HERD_SOCKET", dir.0.join("h.sock").to_str().unwrap()),
            ("SHUTDOWN_DELAY", delay),
        ],
        &[],
    );
    let deadline = Instant::now() + 20 * SEC;
    while std::net::TcpStream::connect_timeout(&maddr, SEC).is_err() {
        assert!(
            Instant::now() < deadline,
            "no admin address: {}",
            c.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    until(maddr, "/readyz", 20 * SEC, |s, _| s == 200);
    c.adopt(&util::children_of(c.pid()));
    (c, maddr, service)
}

/// hello with `SHUTDOWN_DELAY`: after SIGTERM, `/readyz` fails at once while the service
/// still answers for the delay; then the cluster drains and exits.
#[test]
fn hello_serves_out_its_shutdown_delay_not_ready() {
    let dir = TempDir::new("delay");
    let (mut c, maddr, service) = hello_with_delay(&dir, "2", "2.5");
    assert!(http_get(service, "/").unwrap().starts_with("HTTP/1.1 200"));

    let term = Instant::now();
    c.signal(libc::SIGTERM);
    let (_, why) = until(maddr, "/readyz", 2 * SEC, |s, _| s == 503);
    assert_eq!(
        why,
        "not ready: shutting down: serving out the shutdown delay, then draining\n"
    );
    // Alive, and serving: new connections get answers through the delay.
    assert_eq!(probe(maddr, "GET", "/livez").0, 200);
    let mut served = 0;
    while term.elapsed() < Duration::from_millis(2000) {
        let r = http_get(service, "/").expect("served during the delay");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        served += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served >= 5, "only {served} requests in the delay");
    let status = c.wait(20 * SEC).expect("the cluster stops after the delay");
    assert!(status.success(), "{status}: {}", c.stderr());
    assert!(
        term.elapsed() >= Duration::from_millis(2500),
        "stopped after {:?}, before the delay ended",
        term.elapsed()
    );
    assert!(
        std::net::TcpStream::connect_timeout(&service, SEC).is_err(),
        "the service port is closed after the stop"
    );
}

/// A second SIGTERM during the delay skips the rest of it.
#[test]
fn a_second_sigterm_skips_the_shutdown_delay() {
    let dir = TempDir::new("skip");
    let (mut c, maddr, _) = hello_with_delay(&dir, "1", "60");
    c.signal(libc::SIGTERM);
    until(maddr, "/readyz", 2 * SEC, |s, _| s == 503);
    let second = Instant::now();
    c.signal(libc::SIGTERM);
    let status = c.wait(20 * SEC).expect("the second SIGTERM ends the delay");
    assert!(status.success(), "{status}: {}", c.stderr());
    assert!(second.elapsed() < 15 * SEC);
}
