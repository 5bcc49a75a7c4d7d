//! Supervision: respawn after kill -9, backoff for crash loops, SIGHUP rolling reload,
//! SIGTTIN/SIGTTOU scaling.

mod util;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use util::*;

#[test]
fn kill_9_respawns_into_the_same_slot_with_a_new_id() {
    let mut c = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "2"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    c.expect_n(2, 5 * SEC, "EV listening");
    let fork1 = c
        .seen
        .iter()
        .find(|l| l.starts_with("EV fork id=1"))
        .unwrap()
        .clone();
    let pid: i32 = field(&fork1, "pid").unwrap().parse().unwrap();
    // SAFETY: kill(2) on our cluster's worker.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let exit = c.expect(5 * SEC, |l| l.starts_with("EV exit id=1"));
    assert_eq!(field(&exit, "signal"), Some("9"));
    assert_eq!(field(&exit, "ead"), Some("false"));
    let fork = c.expect(5 * SEC, |l| l.starts_with("EV fork"));
    assert_eq!(field(&fork, "id"), Some("3"));
    assert_eq!(field(&fork, "slot"), field(&fork1, "slot"));
    c.expect(5 * SEC, |l| l.starts_with("EV listening id=3"));
}

#[test]
fn a_crash_loop_backs_off_exponentially() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "crash"),
            ("FIX_BACKOFF_MS", "50"),
        ],
        &[],
    );
    let mut forks = Vec::new();
    for _ in 0..5 {
        c.expect(10 * SEC, |l| l.starts_with("EV fork"));
        forks.push(Instant::now());
    }
    let gaps: Vec<u128> = forks
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    // Delays 50, 100, 200, 400 ms, each plus the worker's start and ~20 ms life: gap i is
    // at least its delay, so the primary waits longer after every crash in a row.
    for (i, gap) in gaps.iter().enumerate() {
        assert!(*gap >= 50 << i, "gap {i} of {gaps:?}");
    }
}

#[test]
fn sighup_reload_replaces_every_pid_slot_by_slot() {
    let mut c = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "3"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    c.expect_n(3, 5 * SEC, "EV listening");
    let old: HashSet<i32> = c.worker_pids().into_iter().collect();
    c.signal(libc::SIGHUP);
    c.expect_all(
        10 * SEC,
        &[
            "EV exit id=1 ",
            "EV exit id=2 ",
            "EV exit id=3 ",
            "EV listening id=6 ",
        ],
    );
    let at = |prefix: &str| {
        c.seen
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {:?}", c.seen))
    };
    for (old_id, new_id) in [(1, 4), (2, 5), (3, 6)] {
        // The old worker of a slot is asked to leave only after its replacement listens...
        assert!(
            at(&format!("EV listening id={new_id} ")) < at(&format!("EV disconnect id={old_id} "))
        );
        // ...and the next slot starts only after this one's replacement listens.
        if new_id < 6 {
            assert!(
                at(&format!("EV listening id={new_id} "))
                    < at(&format!("EV fork id={} ", new_id + 1))
            );
        }
    }
    let new_pids: HashSet<i32> = c
        .seen
        .iter()
        .filter(|l| l.starts_with("EV fork") && field(l, "id").unwrap().parse::<u32>().unwrap() > 3)
        .map(|l| field(l, "pid").unwrap().parse().unwrap())
        .collect();
    assert_eq!(new_pids.len(), 3);
    assert!(old.is_disjoint(&new_pids));
    let deadline = Instant::now() + 2 * SEC;
    while old.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(old.iter().all(|p| !alive(*p)), "every old pid is gone");
    let slots: Vec<&str> = c
        .seen
        .iter()
        .filter(|l| l.starts_with("EV fork"))
        .filter_map(|l| field(l, "slot"))
        .collect();
    assert_eq!(slots, ["0", "1", "2", "0", "1", "2"]);
}

#[test]
fn a_reload_whose_new_worker_fails_keeps_the_old_ones() {
    let marker = std::env::temp_dir().join(format!("herd-gen-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_MODE", "crash-new"),
            ("FIX_GENERATION_FILE", marker.to_str().unwrap()),
        ],
        &[],
    );
    let l = c.expect_n(2, 5 * SEC, "EV listening");
    let addr = field(&l[0], "addr").unwrap().parse().unwrap();
    std::fs::write(&marker, b"new").unwrap();
    c.signal(libc::SIGHUP);
    let exit = c.expect(5 * SEC, |l| l.starts_with("EV exit id=3"));
    assert_eq!(field(&exit, "code"), Some("3"));
    c.drain_for(Duration::from_millis(300));
    let _ = std::fs::remove_file(&marker);
    assert!(
        c.stderr_contains(5 * SEC, &["reload stopped, the old workers keep serving"])
            .contains("reload stopped, the old workers keep serving"),
        "{}",
        c.stderr()
    );
    assert!(
        !c.seen.iter().any(|l| l.starts_with("EV fork id=4")),
        "no further slot was reloaded"
    );
    assert!(!c
        .seen
        .iter()
        .any(|l| l.starts_with("EV disconnect id=1") || l.starts_with("EV disconnect id=2")));
    let ids: HashSet<String> = (0..40)
        .map(|_| field(&fetch_line(addr).unwrap(), "id").unwrap().to_string())
        .collect();
    assert_eq!(ids, HashSet::from(["1".to_string(), "2".to_string()]));
}

#[test]
fn sigttin_adds_and_sigttou_removes_a_worker() {
    let mut c = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "2"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    c.expect_n(2, 5 * SEC, "EV listening");
    c.signal(libc::SIGTTIN);
    let f = c.expect(5 * SEC, |l| l.starts_with("EV fork"));
    assert_eq!(field(&f, "slot"), Some("2"));
    c.expect(5 * SEC, |l| l.starts_with("EV listening id=3"));
    c.signal(libc::SIGTTOU);
    let exit = c.expect(5 * SEC, |l| l.starts_with("EV exit"));
    assert_eq!(field(&exit, "id"), Some("3"), "the last slot goes first");
    assert_eq!(field(&exit, "ead"), Some("true"));
    c.signal(libc::SIGTTOU);
    c.expect(5 * SEC, |l| l.starts_with("EV exit id=2"));
    // Never below one worker.
    c.signal(libc::SIGTTOU);
    c.drain_for(Duration::from_millis(300));
    assert!(
        !c.seen.iter().any(|l| l.starts_with("EV exit id=1")),
        "{:?}",
        c.seen
    );
    assert!(
        !c.seen.iter().any(|l| l.starts_with("EV fork id=4")),
        "removed slots are not refilled"
    );
}

#[test]
fn a_reload_that_cannot_even_spawn_keeps_the_cluster_serving() {
    // The executable vanishes (a deploy mid-copy): the reload stops, the cluster does not.
    let dir = std::env::temp_dir().join(format!("herd-vanish-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("herd-fixture");
    std::fs::copy(FIXTURE, &exe).unwrap();
    let mut c = Proc::start(
        exe.to_str().unwrap(),
        &[("FIX_WORKERS", "2"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    let l = c.expect_n(2, 5 * SEC, "EV listening");
    let addr = field(&l[0], "addr").unwrap().parse().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    c.signal(libc::SIGHUP);
    let err = c.stderr_contains(5 * SEC, &["reload stopped"]);
    assert!(
        err.contains("reload stopped, the old workers keep serving"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(c.wait(Duration::ZERO).is_none(), "the primary kept running");
    let ids: HashSet<String> = (0..20)
        .map(|_| field(&fetch_line(addr).unwrap(), "id").unwrap().to_string())
        .collect();
    assert_eq!(ids, HashSet::from(["1".to_string(), "2".to_string()]));
}

#[test]
fn programs_a_worker_starts_get_default_signal_dispositions() {
    let mut c = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "1"), ("FIX_MODE", "spawn-sleep")],
        &[],
    );
    let l = c.expect(10 * SEC, |l| {
        l.starts_with("EV message") && l.contains("child pid=")
    });
    let pid: i32 = l.rsplit('=').next().unwrap().trim().parse().unwrap();
    c.adopt(&[pid]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGTTIN, libc::SIGTTOU] {
        assert_eq!(
            ignored & (1 << (sig - 1)),
            0,
            "signal {sig} ignored in the worker's child (SigIgn {ignored:x})"
        );
    }
    // Ctrl-C reaches it: SIGINT ends the program.
    // SAFETY: kill(2) on the sleep this test's worker started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = std::time::Instant::now() + 5 * SEC;
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!alive(pid), "SIGINT did not stop the worker's child");
}
