//! systemd's service notifications: the test binds the datagram socket systemd would
//! (NOTIFY_SOCKET) and reads what the primary says through a start, a reload and a stop.

mod util;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use util::{Proc, FIXTURE, SEC};

/// The next notification, or `None` after `timeout`.
fn next(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn monotonic_usec() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
}

#[test]
fn the_primary_tells_systemd_ready_reloading_and_stopping() {
    let dir = std::env::temp_dir().join(format!("herd-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ],
        &[],
    );
    let ready = next(&socket, 10 * SEC).expect("READY=1 at start");
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(ready.contains("STATUS=2 workers ready"), "{ready:?}");
    // Both workers listen by then.
    c.expect_n(2, 5 * SEC, "EV listening");
    // Workers do not inherit the variable: they cannot notify in the cluster's name.
    for pid in c.worker_pids() {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            !String::from_utf8_lossy(&env).contains("NOTIFY_SOCKET"),
            "worker {pid} sees NOTIFY_SOCKET"
        );
    }

    let before = monotonic_usec();
    c.signal(libc::SIGHUP);
    let reloading = next(&socket, 10 * SEC).expect("RELOADING=1 at a reload");
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading:?}");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC, without which systemctl reload hangs")
        .parse()
        .unwrap();
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "{usec} not in [{before}, now]"
    );
    let done = next(&socket, 10 * SEC).expect("READY=1 at the reload's end");
    assert!(done.starts_with("READY=1\n"), "{done:?}");
    assert!(done.contains("reload complete"), "{done:?}");

    c.signal(libc::SIGTERM);
    let stopping = next(&socket, 10 * SEC).expect("STOPPING=1 at a stop");
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    assert!(c.wait(10 * SEC).is_some_and(|s| s.success()));
    assert_eq!(
        next(&socket, Duration::from_millis(200)),
        None,
        "nothing after"
    );
    drop(socket);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A notification socket in a fresh directory, removed on drop.
struct NotifySocket {
    dir: std::path::PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new(name: &str) -> NotifySocket {
        let dir = std::env::temp_dir().join(format!("herd-notify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = UnixDatagram::bind(dir.join("notify.sock")).unwrap();
        NotifySocket { dir, socket }
    }

    fn path(&self) -> String {
        self.dir.join("notify.sock").to_str().unwrap().to_string()
    }

    /// Every notification that arrives within `d`.
    fn collect(&self, d: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + d;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return got;
            }
            if let Some(m) = next(&self.socket, left) {
                got.push(m);
            }
        }
    }

    /// The next notification that is not a watchdog ping.
    fn next_state(&self, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let m = next(&self.socket, left.max(Duration::from_millis(1)))?;
            if m != "WATCHDOG=1" {
                return Some(m);
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pings(msgs: &[String]) -> usize {
    msgs.iter().filter(|m| *m == "WATCHDOG=1").count()
}

#[test]
fn a_healthy_cluster_feeds_the_watchdog_every_half_period() {
    let n = NotifySocket::new("watchdog");
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_SHUTDOWN_DELAY_MS", "300"),
            ("NOTIFY_SOCKET", &n.path()),
            // 400 ms: a ping every 200 ms.
            ("WATCHDOG_USEC", "400000"),
        ],
        &[],
    );
    let ready = n.next_state(10 * SEC).expect("READY=1 at start");
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    c.expect_n(2, 5 * SEC, "EV listening");
    let got = n.collect(Duration::from_millis(2000));
    // 10 due in 2 s; loaded machines are slow, never that slow.
    assert!(pings(&got) >= 6, "{} pings in 2 s: {got:?}", pings(&got));
    assert!(pings(&got) <= 12, "{} pings in 2 s: {got:?}", pings(&got));
    for pid in c.worker_pids() {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let env = String::from_utf8_lossy(&env);
        assert!(
            !env.contains("WATCHDOG_USEC"),
            "worker {pid} sees WATCHDOG_USEC"
        );
        assert!(
            !env.contains("WATCHDOG_PID"),
            "worker {pid} sees WATCHDOG_PID"
        );
    }

    // The shutdown delay says so in STATUS, then the stop.
    c.signal(libc::SIGTERM);
    let delay = n.next_state(5 * SEC).expect("STATUS at the shutdown delay");
    assert!(
        delay.starts_with("STATUS=shutting down: not ready, serving for 0.3 s"),
        "{delay:?}"
    );
    let stopping = n.next_state(5 * SEC).expect("STOPPING=1 after the delay");
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    assert!(c.wait(10 * SEC).is_some_and(|s| s.success()));
}

#[test]
fn no_watchdog_pings_unless_asked_for_this_process() {
    // WATCHDOG_PID names another process (the test's own): not ours to feed.
    let n = NotifySocket::new("watchdog-pid");
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("NOTIFY_SOCKET", &n.path()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", &std::process::id().to_string()),
        ],
        &[],
    );
    c.expect(10 * SEC, |l| l.starts_with("EV listening"));
    let got = n.collect(Duration::from_millis(1200));
    assert_eq!(pings(&got), 0, "{got:?}");
    c.signal(libc::SIGTERM);
    assert!(c.wait(10 * SEC).is_some_and(|s| s.success()));
}

#[test]
fn a_cluster_without_a_ready_worker_stops_feeding_the_watchdog() {
    let n = NotifySocket::new("watchdog-crash");
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "crash"),
            ("FIX_CRASH_LOOP", "2,60000,retry"),
            ("NOTIFY_SOCKET", &n.path()),
            ("WATCHDOG_USEC", "400000"),
        ],
        &[],
    );
    // Pings while starting, then none: the slot crash-loops and never has a ready worker.
    c.expect(10 * SEC, |l| l.starts_with("EV failed slot=0"));
    let first = n.collect(Duration::from_millis(600));
    let after = n.collect(Duration::from_millis(1500));
    assert_eq!(
        pings(&after),
        0,
        "fed while failing: {first:?} then {after:?}"
    );
    c.signal(libc::SIGTERM);
    assert!(c.wait(10 * SEC).is_some());
}
