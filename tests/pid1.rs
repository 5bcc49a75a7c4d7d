//! The primary as PID 1 of a PID namespace (a container's init, `unshare --pid --fork`):
//! it reaps the processes orphaned inside (they are reparented to it) without taking its
//! workers' exit statuses, and SIGTERM still stops it (PID 1 gets no default action).
//! Needs root (CAP_SYS_ADMIN for the namespace): skipped, saying so, without it.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use util::{free_port, FIXTURE, SEC};

/// `unshare` and the namespace under it: SIGKILL to the namespace's init ends every
/// process inside, whatever the test did.
struct Namespace {
    unshare: Child,
    /// The primary's pid as the host sees it (1 inside).
    init: Option<i32>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(pid) = self.init {
            // SAFETY: kill(2) on the namespace init this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

impl Namespace {
    /// The next stdout line starting with `prefix`.
    fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                Err(_) => panic!("no {prefix:?} line; seen:\n{}", self.seen.join("\n")),
            }
        }
    }
}

/// `(pid, state, command)` of every process whose parent is `parent`, zombies included.
fn children(parent: i32) -> Vec<(i32, char, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let comm = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_string();
        let mut rest = stat[stat.rfind(')').unwrap() + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if rest.next().and_then(|p| p.parse().ok()) == Some(parent) {
            out.push((pid, state, comm));
        }
    }
    out
}

fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn as_pid_1_the_primary_reaps_orphans_and_stops_on_sigterm() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: a PID namespace needs root");
        return;
    }
    let port = free_port();
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", FIXTURE])
        .envs([
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", &format!("127.0.0.1:{port}")),
            ("FIX_ORPHANS", "1"),
            ("FIX_BACKOFF_MS", "50"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run unshare (util-linux)");
    let (tx, lines) = channel();
    let out = unshare.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut ns = Namespace {
        unshare,
        init: None,
        lines,
        seen: Vec::new(),
    };
    let uid = ns.unshare.id() as i32;
    let init = eventually(5 * SEC, "unshare's child", || {
        children(uid).first().map(|c| c.0)
    });
    ns.init = Some(init);
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.ends_with("\t1"),
        "the primary is PID 1 inside: {nspid}"
    );

    // The worker orphans three `sleep 1`: the primary, their new parent, sees them run...
    ns.expect("EV listening id=1", 20 * SEC);
    eventually(5 * SEC, "three orphans reparented to the primary", || {
        let n = children(init).iter().filter(|c| c.2 == "sleep").count();
        (n == 3).then_some(())
    });
    // ...then exit, and reaps them: no zombie stays.
    eventually(5 * SEC, "the orphans reaped", || {
        let left: Vec<_> = children(init)
            .into_iter()
            .filter(|c| c.2 == "sleep" || c.1 == 'Z')
            .collect();
        left.is_empty().then_some(())
    });

    // A worker's exit status is still the primary's to see (not taken by the reaping).
    let worker = children(init)
        .into_iter()
        .find(|c| c.2.starts_with("herd-fixture"))
        .expect("the worker")
        .0;
    // SAFETY: kill(2) on the worker of this test's namespace.
    unsafe { libc::kill(worker, libc::SIGKILL) };
    let exit = ns.expect("EV exit id=1", 10 * SEC);
    assert!(exit.contains("signal=9"), "{exit}");
    ns.expect("EV listening id=2", 10 * SEC);

    // SIGTERM stops PID 1 (a handler is installed: the kernel drops it otherwise).
    // SAFETY: kill(2) on the namespace init this test started.
    unsafe { libc::kill(init, libc::SIGTERM) };
    let deadline = Instant::now() + 20 * SEC;
    let status = loop {
        if let Some(s) = ns.unshare.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "PID 1 did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    ns.init = None;
    assert!(status.success(), "{status}; seen:\n{}", ns.seen.join("\n"));
}
