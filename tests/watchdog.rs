//! The watchdog with real processes: a handler that spins forever, a stopped worker and a
//! worker that never becomes ready are found, named and replaced; requests queued on the
//! hung worker's slot are answered by its replacement.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use util::*;

/// The run timeout the tests use, and the detection bound the issue sets (+ 2 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(2);

fn http_cluster(workers: usize, extra: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let n = workers.to_string();
    let mut env = vec![
        ("FIX_WORKERS", n.as_str()),
        ("FIX_MODE", "http"),
        ("FIX_ADDR", "127.0.0.1:0"),
        ("FIX_RUN_TIMEOUT_MS", "2000"),
    ];
    env.extend_from_slice(extra);
    let mut c = Proc::start(FIXTURE, &env, &[]);
    let l = c.expect_n(workers, 10 * SEC, "EV listening");
    let addr = field(&l[0], "addr").unwrap().parse().unwrap();
    (c, addr)
}

/// One GET on a fresh connection: (answering worker id, when the answer came).
fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(String, Instant)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("X-Herd-Worker: "))
        .ok_or_else(|| std::io::Error::other(format!("no worker header in {out:?}")))?;
    Ok((id.trim().to_string(), Instant::now()))
}

#[test]
fn a_handler_spinning_forever_is_found_named_and_replaced_and_its_queue_is_served() {
    let (mut c, addr) = http_cluster(2, &[]);
    // Send /spin on fresh connections until one lands (the kernel picks the slot): the
    // answered ones tell which worker they reached.
    let spun_at = Instant::now();
    // One request that never ends; the kernel picks the worker.
    let mut spinner = TcpStream::connect(addr).unwrap();
    write!(spinner, "GET /spin?id=9 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Requests to other paths, on fresh connections, while the worker spins: those the
    // kernel puts on the hung slot's queue wait there for the replacement.
    let clients: Vec<_> = (0..24)
        .map(|i| std::thread::spawn(move || get(addr, &format!("/other?i={i}"), 20 * SEC)))
        .collect();
    let hung = c.expect(RUN_TIMEOUT + 3 * SEC, |l| l.starts_with("EV hung"));
    let detected = spun_at.elapsed();
    assert!(
        detected <= RUN_TIMEOUT + 2 * SEC,
        "detected after {detected:?}: {hung}"
    );
    assert_eq!(field(&hung, "request"), Some("GET_/spin?id=9"), "{hung}");
    let hung_id = field(&hung, "id").unwrap().to_string();
    let slot = field(&hung, "slot").unwrap().to_string();
    let fork = c.expect(5 * SEC, |l| l.starts_with("EV fork"));
    assert_eq!(
        field(&fork, "slot"),
        Some(slot.as_str()),
        "same slot: {fork}"
    );
    let new_id = field(&fork, "id").unwrap().to_string();
    let forked_at = Instant::now();
    let stderr = c.stderr_contains(2 * SEC, &["stuck", "in GET /spin?id=9"]);
    let warn = stderr
        .lines()
        .find(|l| l.contains("stuck"))
        .unwrap_or_else(|| panic!("no warning line in {stderr}"));
    assert!(
        warn.contains(&format!("worker {hung_id} (pid ")) && warn.contains(" s in GET /spin?id=9"),
        "{warn}"
    );
    let exit = c.expect(5 * SEC, |l| {
        l.starts_with(&format!("EV exit id={hung_id} "))
    });
    assert_eq!(field(&exit, "cause"), Some("hang"), "{exit}");
    let mut by_new = 0;
    let mut answered = 0;
    for t in clients {
        let (id, at) = t.join().unwrap().expect("every queued request is answered");
        answered += 1;
        assert_ne!(id, hung_id, "the hung worker answered nothing");
        if id == new_id {
            by_new += 1;
            assert!(at >= forked_at - Duration::from_millis(500));
        }
    }
    eprintln!(
        "hang detected after {:.2} s (run timeout {:.1} s); {answered} requests sent meanwhile, {by_new} of them queued on the hung slot and answered by its replacement",
        detected.as_secs_f64(),
        RUN_TIMEOUT.as_secs_f64()
    );
    assert_eq!(answered, 24);
    assert!(by_new > 0, "some requests waited on the hung slot's queue");
    // The slot serves again: fresh requests reach the replacement.
    let mut ids = std::collections::HashSet::new();
    for i in 0..60 {
        if let Ok((id, _)) = get(addr, &format!("/after?i={i}"), 5 * SEC) {
            ids.insert(id);
        }
    }
    assert!(ids.contains(&new_id), "{ids:?}");
    drop(spinner);
}

#[test]
fn a_worker_busy_off_its_loop_is_not_hung() {
    let (mut c, addr) = http_cluster(1, &[]);
    let (id, _) = get(addr, "/busy", 5 * SEC).unwrap();
    // Longer than the run timeout: the loop keeps turning and answering meanwhile.
    let until = Instant::now() + RUN_TIMEOUT + 2 * SEC;
    while Instant::now() < until {
        let (by, _) = get(addr, "/", 5 * SEC).expect("answered while the thread is busy");
        assert_eq!(by, id);
        std::thread::sleep(Duration::from_millis(200));
    }
    c.drain_for(Duration::from_millis(200));
    assert!(
        !c.seen
            .iter()
            .any(|l| l.starts_with("EV hung") || l.starts_with("EV exit")),
        "{:?}",
        c.seen
    );
}

#[test]
fn a_stopped_worker_is_found_and_replaced() {
    let (mut c, addr) = http_cluster(2, &[]);
    let fork1 = c
        .seen
        .iter()
        .find(|l| l.starts_with("EV fork id=1"))
        .unwrap()
        .clone();
    let pid: i32 = field(&fork1, "pid").unwrap().parse().unwrap();
    let stopped_at = Instant::now();
    // SAFETY: kill(2) on our cluster's worker.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let hung = c.expect(RUN_TIMEOUT + 3 * SEC, |l| l.starts_with("EV hung"));
    let detected = stopped_at.elapsed();
    assert_eq!(field(&hung, "id"), Some("1"), "{hung}");
    assert!(
        detected <= RUN_TIMEOUT + 2 * SEC,
        "detected after {detected:?}"
    );
    let fork = c.expect(5 * SEC, |l| l.starts_with("EV fork"));
    assert_eq!(field(&fork, "slot"), field(&fork1, "slot"));
    let exit = c.expect(5 * SEC, |l| l.starts_with("EV exit id=1 "));
    assert_eq!(
        field(&exit, "signal"),
        Some("9"),
        "a stopped process only dies of SIGKILL"
    );
    assert_eq!(field(&exit, "cause"), Some("hang"));
    let err = c.stderr_contains(2 * SEC, &["worker 1 (pid"]);
    assert!(
        err.contains(&format!("worker 1 (pid {pid}) stuck")),
        "{err}"
    );
    eprintln!(
        "stopped worker detected after {:.2} s (run timeout {:.1} s)",
        detected.as_secs_f64(),
        RUN_TIMEOUT.as_secs_f64()
    );
    c.expect_all(5 * SEC, &["EV listening id=3 "]);
    assert!(get(addr, "/", 5 * SEC).is_ok());
}

#[test]
fn a_worker_that_never_becomes_ready_is_killed_at_the_boot_timeout() {
    // No FIX_ADDR: the workers connect but never listen.
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_BOOT_TIMEOUT_MS", "1500"),
            ("FIX_BACKOFF_MS", "100"),
        ],
        &[],
    );
    c.expect(5 * SEC, |l| l.starts_with("EV online id=1"));
    let started = Instant::now();
    let exit = c.expect(5 * SEC, |l| l.starts_with("EV exit id=1 "));
    let took = started.elapsed();
    assert_eq!(field(&exit, "signal"), Some("9"), "{exit}");
    assert_eq!(field(&exit, "cause"), Some("hang"), "{exit}");
    assert!(
        took >= Duration::from_millis(1300) && took <= Duration::from_millis(3500),
        "killed after {took:?}"
    );
    let fork = c.expect(5 * SEC, |l| l.starts_with("EV fork id=2"));
    assert_eq!(field(&fork, "slot"), Some("0"));
    let err = c.stderr_contains(SEC, &["was not ready within the boot timeout"]);
    assert!(err.contains("worker 1 (pid"), "{err}");
}

#[test]
fn a_crash_loop_can_stop_the_cluster_with_an_error() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "crash"),
            ("FIX_BACKOFF_MS", "20"),
            ("FIX_CRASH_LOOP", "3,10000,stop"),
        ],
        &[],
    );
    let failed = c.expect(10 * SEC, |l| l.starts_with("EV failed"));
    assert_eq!(field(&failed, "slot"), Some("0"));
    assert_eq!(field(&failed, "crashes"), Some("3"));
    let status = c.wait(10 * SEC).expect("the primary exits");
    assert_eq!(status.code(), Some(1), "a non-zero exit");
    let err = c.stderr();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("slot 0 failed"))
        .collect();
    assert!(
        lines.len() == 2
            && lines[0].contains("3 crashes in")
            && lines[0].contains("signal SIGABRT"),
        "one error line from the primary, then the fixture's own report of the error: {err}"
    );
    assert!(!c.seen.iter().any(|l| l.starts_with("EV fork id=4")));
}

#[test]
fn by_default_a_crash_loop_is_reported_and_retried() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "crash"),
            ("FIX_BACKOFF_MS", "20"),
            ("FIX_CRASH_LOOP", "3,10000,retry"),
        ],
        &[],
    );
    c.expect(10 * SEC, |l| l.starts_with("EV failed slot=0 crashes=3"));
    c.expect(10 * SEC, |l| l.starts_with("EV fork id=5"));
    assert!(
        c.wait(Duration::from_millis(200)).is_none(),
        "still running"
    );
}
