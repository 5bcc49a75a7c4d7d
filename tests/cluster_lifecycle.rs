//! Node's cluster tests, ported: event order, states, ids, exit codes and signals, disconnect,
//! settings, and what happens when the primary dies.

mod util;

use std::time::{Duration, Instant};
use util::*;

fn id_of(line: &str) -> u32 {
    field(line, "id").unwrap().parse().unwrap()
}

#[test]
fn basic_event_order_states_and_ids() {
    let mut c = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "3"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    let start = Instant::now();
    for _ in 0..3 {
        c.expect(5 * SEC, |l| l.starts_with("EV listening"));
    }
    let took = start.elapsed();
    let events: Vec<&String> = c.seen.iter().filter(|l| l.starts_with("EV ")).collect();
    for id in 1..=3 {
        let kinds: Vec<&str> = events
            .iter()
            .filter(|l| id_of(l) == id)
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["fork", "online", "listening"],
            "worker {id}: {events:?}"
        );
    }
    assert!(c
        .seen
        .iter()
        .any(|l| l.contains("EV online id=1 state=Online")));
    assert!(c
        .seen
        .iter()
        .any(|l| l.starts_with("EV listening id=1") && l.contains("state=Listening")));
    let slots: Vec<&str> = c.seen.iter().filter_map(|l| field(l, "slot")).collect();
    assert_eq!(slots, ["0", "1", "2"]);
    eprintln!("3 workers from start to all listening: {took:?}");
}

#[test]
fn worker_exit_code_is_reported_and_not_after_disconnect() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "exit42"),
            ("FIX_BACKOFF_MS", "5000"),
        ],
        &[],
    );
    let exit = c.expect(5 * SEC, |l| l.starts_with("EV exit"));
    assert_eq!(field(&exit, "code"), Some("42"), "{exit}");
    assert_eq!(field(&exit, "ead"), Some("false"));
    assert_eq!(field(&exit, "dead"), Some("true"));
    let disconnect_at = c
        .seen
        .iter()
        .position(|l| l.starts_with("EV disconnect id=1"))
        .unwrap();
    let exit_at = c
        .seen
        .iter()
        .position(|l| l.starts_with("EV exit id=1"))
        .unwrap();
    assert!(
        disconnect_at < exit_at,
        "disconnect comes before exit: {:?}",
        c.seen
    );
}

#[test]
fn worker_kill_reports_the_signal() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_PRIMARY", "kill-first"),
        ],
        &[],
    );
    let exit = c.expect(5 * SEC, |l| l.starts_with("EV exit id=1"));
    assert_eq!(field(&exit, "signal"), Some("15"), "{exit}");
    assert_eq!(field(&exit, "ead"), Some("true"));
    // The slot is refilled by a new worker with a new id.
    c.expect(5 * SEC, |l| l.starts_with("EV listening id=2"));
}

#[test]
fn worker_disconnect_exits_cleanly_after_disconnect() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_PRIMARY", "disconnect-first"),
        ],
        &[],
    );
    let d = c.expect(5 * SEC, |l| l.starts_with("EV disconnect id=1"));
    assert_eq!(field(&d, "ead"), Some("true"));
    assert_eq!(field(&d, "connected"), Some("false"));
    let exit = c.expect(5 * SEC, |l| l.starts_with("EV exit id=1"));
    assert_eq!(field(&exit, "code"), Some("0"), "{exit}");
    assert_eq!(field(&exit, "ead"), Some("true"));
}

#[test]
fn settings_reach_the_workers() {
    let dir = std::env::temp_dir();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_CWD", dir.to_str().unwrap()),
            ("FIX_ENV", "FIX_CHILD_ENV=from-settings"),
        ],
        &["alpha", "beta"],
    );
    let l = c.expect(5 * SEC, |l| l.starts_with("EV listening"));
    let line = fetch_line(field(&l, "addr").unwrap().parse().unwrap()).unwrap();
    assert!(line.contains(&format!("cwd={}", dir.display())), "{line}");
    assert!(line.contains("env=from-settings"), "{line}");
    assert!(line.contains("args=alpha,beta"), "{line}");
}

#[test]
fn no_orphans_when_the_primary_is_killed() {
    let mut c = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "2"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    c.expect_n(2, 5 * SEC, "EV listening");
    let pids = c.worker_pids();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)));
    c.signal(libc::SIGKILL);
    let deadline = Instant::now() + SEC;
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "workers outlived their primary by over 1 s"
    );
}

#[test]
fn workers_zero_means_one_per_cpu() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let mut c = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "0"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    c.expect_n(cpus, 10 * SEC, "EV listening");
    c.drain_for(Duration::from_millis(100));
    let forks = c.seen.iter().filter(|l| l.starts_with("EV fork")).count();
    assert_eq!(forks, cpus, "{:?}", c.seen);
    assert!(
        c.wait(Duration::ZERO).is_none(),
        "the cluster keeps running"
    );
}

#[test]
fn sigterm_stops_every_worker_and_exits_zero() {
    let mut c = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "2"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    c.expect_n(2, 5 * SEC, "EV listening");
    let pids = c.worker_pids();
    let start = Instant::now();
    c.signal(libc::SIGTERM);
    let status = c.wait(10 * SEC).expect("exits");
    let took = start.elapsed();
    assert!(status.success(), "{status:?} {}", c.stderr());
    assert!(pids.iter().all(|p| !alive(*p)));
    eprintln!("2 workers from SIGTERM to primary exit: {took:?}");
}

#[test]
fn a_second_sigint_stops_at_once_with_an_error() {
    // Workers that ignore the disconnect request (they never read their IPC): FIX_MODE=hang.
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_MODE", "hang"),
            ("FIX_SHUTDOWN_MS", "60000"),
        ],
        &[],
    );
    c.expect(5 * SEC, |l| l.starts_with("EV listening"));
    c.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        c.wait(Duration::ZERO).is_none(),
        "the first SIGINT waits for the worker"
    );
    c.signal(libc::SIGINT);
    let status = c.wait(5 * SEC).expect("the second SIGINT stops at once");
    assert_eq!(status.code(), Some(1));
    assert!(
        c.stderr_contains(5 * SEC, &["second signal"])
            .contains("second signal"),
        "{}",
        c.stderr()
    );
}

#[test]
fn the_shutdown_timeout_kills_a_stuck_worker() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_MODE", "hang"),
            ("FIX_SHUTDOWN_MS", "300"),
        ],
        &[],
    );
    c.expect(5 * SEC, |l| l.starts_with("EV listening"));
    c.signal(libc::SIGTERM);
    let exit = c.expect(5 * SEC, |l| l.starts_with("EV exit"));
    assert_eq!(field(&exit, "signal"), Some("9"), "{exit}");
    let status = c.wait(5 * SEC).expect("exits");
    assert_eq!(status.code(), Some(1), "not a clean stop");
    assert!(
        c.stderr_contains(5 * SEC, &["shutdown timeout"])
            .contains("shutdown timeout"),
        "{}",
        c.stderr()
    );
}

#[test]
fn silent_hides_worker_output_and_keeps_the_primarys() {
    let mut loud = Proc::start(FIXTURE, &[("FIX_WORKERS", "1"), ("FIX_MODE", "talk")], &[]);
    loud.expect_all(5 * SEC, &["EV message id=1 data=talked", "WORKER-STDOUT 1"]);
    let err = loud.stderr_contains(5 * SEC, &["WORKER-STDERR 1"]);
    assert!(err.contains("WORKER-STDERR 1"), "{err}");

    let mut quiet = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "talk"),
            ("FIX_SILENT", "1"),
        ],
        &[],
    );
    quiet.expect(5 * SEC, |l| {
        l.starts_with("EV message") && l.contains("talked")
    });
    quiet.drain_for(Duration::from_millis(300));
    assert!(
        !quiet.seen.iter().any(|l| l.contains("WORKER-STDOUT")),
        "{:?}",
        quiet.seen
    );
    assert!(
        !quiet.stderr().contains("WORKER-STDERR"),
        "{}",
        quiet.stderr()
    );
}

#[test]
fn uid_and_gid_run_workers_as_another_user() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can start workers as another user");
        return;
    }
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "talk"),
            ("FIX_UID", "65534"),
        ],
        &[],
    );
    let m = c.expect(5 * SEC, |l| {
        l.starts_with("EV message") && l.contains("talked")
    });
    // /proc/self/status: "Uid: real effective saved fs".
    let uids: Vec<&str> = m.split("Uid:").nth(1).unwrap().split_whitespace().collect();
    assert_eq!(uids, ["65534"; 4], "{m}");
}

#[test]
fn a_stop_while_workers_are_still_starting_is_clean_and_quick() {
    // A disconnect can reach a worker while it still waits for its listener; it must be
    // acted on once the worker serves, not left buffered until the shutdown timeout kills it.
    for delay_ms in [0, 1, 2, 3, 5, 8] {
        let mut c = Proc::start(
            FIXTURE,
            &[
                ("FIX_WORKERS", "2"),
                ("FIX_MODE", "http"),
                ("FIX_ADDR", "127.0.0.1:0"),
                ("FIX_SHUTDOWN_MS", "5000"),
            ],
            &[],
        );
        // From the moment both workers exist (the primary handles signals by then).
        c.expect(5 * SEC, |l| l.starts_with("EV fork id=2"));
        std::thread::sleep(Duration::from_millis(delay_ms));
        let start = Instant::now();
        c.signal(libc::SIGTERM);
        let status = c.wait(10 * SEC).expect("the primary exits");
        assert!(
            status.success(),
            "after {delay_ms} ms: {status:?} {}",
            c.stderr()
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "after {delay_ms} ms the stop took {:?} (a worker waited for SIGKILL)",
            start.elapsed()
        );
    }
}

/// Runs the fixture with `env` and `args`, expects it to stop by itself with status 1, and
/// returns its last stderr line (the error it stopped with) and how many workers it forked.
fn stops_with(env: &[(&str, &str)], args: &[&str]) -> (String, usize) {
    let start = Instant::now();
    let mut c = Proc::start(FIXTURE, env, args);
    let status = c
        .wait(10 * SEC)
        .expect("a misconfigured cluster stops instead of restarting workers forever");
    assert_eq!(status.code(), Some(1), "{}", c.stderr());
    assert!(start.elapsed() < 8 * SEC);
    c.drain_for(Duration::from_millis(50));
    let err = c.stderr_contains(2 * SEC, &["herd-fixture: "]);
    let last = err.lines().last().unwrap_or("").to_string();
    let forks = c.seen.iter().filter(|l| l.starts_with("EV fork")).count();
    (last, forks)
}

#[test]
fn a_listen_address_that_is_not_one_stops_the_cluster_with_one_line() {
    let (line, forks) = stops_with(
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_MODE", "http"),
            ("FIX_ADDR", "not-an-address"),
        ],
        &[],
    );
    assert!(
        line.starts_with("herd-fixture: worker")
            && line.contains(
                "cannot listen on \"not-an-address\" (invalid socket address): give an IP address and port, like 0.0.0.0:8000"
            ),
        "{line}"
    );
    assert!(forks <= 2, "restarted: {forks} forks");
}

#[test]
fn an_exec_that_is_not_a_herd_program_stops_the_cluster_with_one_line() {
    // Exits at once without connecting.
    let (line, forks) = stops_with(&[("FIX_WORKERS", "2"), ("FIX_EXEC", "/bin/true")], &[]);
    assert!(
        line.contains(
            "exited (code 0) without connecting to the primary: /bin/true is not a herd program"
        ) && line.contains("set Cluster::exec"),
        "{line}"
    );
    assert!(forks <= 2, "restarted: {forks} forks");
    // Runs on without ever connecting: stopped at the ready timeout, and killed.
    let (line, forks) = stops_with(
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_EXEC", "/bin/sleep"),
            ("FIX_READY_TIMEOUT_MS", "500"),
        ],
        &["30"],
    );
    assert!(
        line.contains(
            "did not connect to the primary within 500 ms: /bin/sleep is not a herd program"
        ),
        "{line}"
    );
    assert!(forks <= 2, "restarted: {forks} forks");
}
