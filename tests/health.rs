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
