//! The supervisor's rules as tables: each case feeds a sequence of inputs at given moments
//! and lists every action that comes out (info lines left out), in order.
//!
//! Steps are `"<ms> <input> [args]"`:
//! `start`, `up N` (online + listening), `online N`, `listen N`, `ready N`,
//! `exit N code C` / `exit N sig S`, `spawnfail N`, `listenfail N`,
//! `health N [age=MS] [req=N] [rss=MiB] [doing=GET_/x]`, `timer`, `sigterm`, `stop`,
//! `reload`, `scale N`, `recycle N`, `disconnect N`, `kill N SIG`.
//! A spawn is answered with `Forked` (pid 1000 + id) unless the next step is `spawnfail`.

use std::time::{Duration, Instant};

use super::recycle::Limits;
use super::*;
use crate::primary::handle::Cause;

fn settings() -> Settings {
    Settings {
        workers: 2,
        exec: "/bin/app".into(),
        wait_ready: false,
        ready_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(30),
        shutdown_delay: Duration::ZERO,
        reload_batch: 1,
        backoff: Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(15),
            healthy_after: Duration::from_secs(60),
        },
        boot_timeout: Duration::from_secs(60),
        run_timeout: Duration::from_secs(30),
        recycling: Recycling::default(),
        crash_loop: CrashLoop {
            crashes: 5,
            window: Duration::from_secs(60),
            then: OnCrashLoop::Retry,
        },
    }
}

fn signal_name(s: i32) -> String {
    nix::sys::signal::Signal::try_from(s)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| s.to_string())
}

/// One action, short.
fn show(a: &Action) -> Option<String> {
    Some(match a {
        Action::Spawn { id, slot, restarts } => {
            let mut s = format!("spawn {id} slot {slot}");
            let r = restarts;
            if r.total() > 0 {
                s += &format!(
                    " (crash {} hang {} recycle {} reload {})",
                    r.crash, r.hang, r.recycle, r.reload
                );
            }
            s
        }
        Action::Disconnect { id, cause } => format!("disconnect {id} {cause}"),
        Action::Kill { id, signal, cause } => format!("kill {id} {} {cause}", signal_name(*signal)),
        Action::Notify(Notice::Hung { id, stuck, doing }) => format!(
            "hung {id} {:.1} s {}",
            stuck.as_secs_f64(),
            doing.as_deref().unwrap_or("-")
        ),
        Action::Notify(Notice::Failed {
            slot,
            crashes,
            last,
            ..
        }) => format!("failed slot {slot} {crashes} crashes, last {last}"),
        Action::Notify(Notice::ShutdownDelay(d)) => {
            format!("shutdown delay {:.1} s", d.as_secs_f64())
        }
        Action::Log(Level::Info, _) => return None,
        // What the control plane's board is told: not a supervision decision.
        Action::Notify(
            Notice::ReloadStarted
            | Notice::ReloadFailed(_)
            | Notice::ReloadRefused(_)
            | Notice::Target(_)
            | Notice::SlotDown { .. },
        ) => return None,
        Action::Log(Level::Warn, l) => format!("warn: {l}"),
        Action::Log(Level::Error, l) => format!("error: {l}"),
        Action::Log(Level::Returned, l) => format!("error (returned): {l}"),
        Action::RemoveSlot(n) => format!("remove slot {n}"),
        Action::SlotRemoved(n) => format!("slot {n} removed"),
        Action::StopListening => "stop listening".into(),
        Action::Reloaded => "reloaded".into(),
        Action::Exit(None) => "exit ok".into(),
        Action::Exit(Some(f)) => format!("exit {:?}: {}", f.kind, f.message),
    })
}

fn parse(step: &str) -> (u64, Input) {
    let mut w = step.split_whitespace();
    let ms: u64 = w.next().unwrap().parse().unwrap();
    let kind = w.next().unwrap();
    let mut n = || -> u32 { w.next().unwrap().parse().unwrap() };
    let input = match kind {
        "start" => Input::Start,
        "online" => Input::Online(n()),
        "listen" => Input::Listening(n()),
        "ready" => Input::Ready(n()),
        "timer" => Input::Timer,
        "sigterm" => Input::StopSignal,
        "stop" => Input::Stop,
        "reload" => Input::Reload,
        "scale" => Input::Scale(n() as usize),
        "recycle" => Input::Recycle(n()),
        "disconnect" => Input::Disconnect(n()),
        "listenfail" => Input::ListenFailed(n(), "127.0.0.1:80: address in use".into()),
        "spawnfail" => Input::SpawnFailed {
            id: n(),
            error: "ENOENT".into(),
        },
        _ => {
            let rest: Vec<&str> = step.split_whitespace().skip(2).collect();
            let id: u32 = rest[0].parse().unwrap();
            match kind {
                "kill" => Input::Kill(id, rest[1].parse().unwrap()),
                "exit" => {
                    let v: i32 = rest[2].parse().unwrap();
                    let exit = if rest[1] == "code" {
                        Exit::Code(v)
                    } else {
                        Exit::Signal(v)
                    };
                    Input::Exited(id, exit)
                }
                "health" => {
                    let mut h = Health::default();
                    for kv in &rest[1..] {
                        let (k, v) = kv.split_once('=').unwrap();
                        match k {
                            "age" => h.beat_age = Some(Duration::from_millis(v.parse().unwrap())),
                            "req" => h.requests = v.parse().unwrap(),
                            "rss" => h.rss = Some(v.parse::<u64>().unwrap() << 20),
                            "doing" => h.doing = Some(v.replace('_', " ")),
                            _ => panic!("{kv}"),
                        }
                    }
                    Input::Health(id, h)
                }
                _ => panic!("unknown step {step}"),
            }
        }
    };
    (ms, input)
}

/// Runs `steps` (with `up N` expanded) and returns every action shown.
fn run_with(s: Settings, steps: &[&str]) -> Vec<String> {
    drive(s, steps).1
}

/// Runs `steps`; returns the supervisor after them and every action shown.
fn drive(s: Settings, steps: &[&str]) -> (Supervisor, Vec<String>) {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(s);
    let mut shown = Vec::new();
    let mut expanded: Vec<String> = Vec::new();
    for st in steps {
        let parts: Vec<&str> = st.split_whitespace().collect();
        if parts[1] == "up" {
            expanded.push(format!("{} online {}", parts[0], parts[2]));
            expanded.push(format!("{} listen {}", parts[0], parts[2]));
        } else {
            expanded.push(st.to_string());
        }
    }
    let mut i = 0;
    while i < expanded.len() {
        let (ms, input) = parse(&expanded[i]);
        i += 1;
        let now = t0 + Duration::from_millis(ms);
        let mut todo: std::collections::VecDeque<Action> = sup.handle(input, now).into();
        while let Some(a) = todo.pop_front() {
            if let Some(line) = show(&a) {
                shown.push(line);
            }
            if let Action::Spawn { id, .. } = a {
                let fails = expanded
                    .get(i)
                    .is_some_and(|next| next.split_whitespace().nth(1) == Some("spawnfail"));
                if fails {
                    let (_, input) = parse(&expanded[i]);
                    i += 1;
                    todo.extend(sup.handle(input, now));
                } else {
                    todo.extend(sup.handle(Input::Forked { id, pid: 1000 + id }, now));
                }
            }
        }
    }
    (sup, shown)
}

fn run(steps: &[&str]) -> Vec<String> {
    run_with(settings(), steps)
}

/// Asserts each case of a table: (name, settings change, steps, expected actions).
type Case = (
    &'static str,
    fn(&mut Settings),
    &'static [&'static str],
    &'static [&'static str],
);

fn check(table: &[Case]) {
    let mut failed = Vec::new();
    for (name, tweak, steps, want) in table {
        let mut s = settings();
        tweak(&mut s);
        let got = run_with(s, steps);
        if got != *want {
            failed.push(format!("case: {name}\n got: {got:#?}\n want: {want:#?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn same(_: &mut Settings) {}

#[test]
fn starting_and_crashing() {
    check(&[
        (
            "start fills every slot",
            same,
            &["0 start"],
            &["spawn 1 slot 0", "spawn 2 slot 1"],
        ),
        (
            "a crash restarts the slot after the backoff, counting it",
            same,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "50 exit 1 sig 9",
                "149 timer",
                "150 timer",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "warn: restarting slot 0 in 100 ms",
                "spawn 3 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
            ],
        ),
        (
            "crashes in a row double the delay",
            |s| s.workers = 1,
            &[
                "0 start",
                "0 up 1",
                "10 exit 1 code 1",
                "110 timer",
                "110 up 2",
                "120 exit 2 code 1",
                "320 timer",
                "320 up 3",
                "330 exit 3 code 1",
            ],
            &[
                "spawn 1 slot 0",
                "warn: restarting slot 0 in 100 ms",
                "spawn 2 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
                "warn: restarting slot 0 in 200 ms",
                "spawn 3 slot 0 (crash 2 hang 0 recycle 0 reload 0)",
                "warn: restarting slot 0 in 400 ms",
            ],
        ),
        (
            "a disconnected worker is replaced at once when it leaves",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "5 disconnect 1", "6 exit 1 code 0"],
            &["spawn 1 slot 0", "disconnect 1 user", "spawn 2 slot 0"],
        ),
        (
            "a worker killed by the application is replaced at once, not after a backoff",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "5 kill 1 15", "6 exit 1 sig 15"],
            &["spawn 1 slot 0", "kill 1 SIGTERM user", "spawn 2 slot 0"],
        ),
        (
            "a worker that cannot start at first stops the cluster",
            |s| s.workers = 1,
            &["0 start", "0 spawnfail 1"],
            &[
                "spawn 1 slot 0",
                "error (returned): cannot start a worker from /bin/app for slot 0: ENOENT; stopping",
                "stop listening",
                "exit Start: cannot start a worker from /bin/app for slot 0: ENOENT",
            ],
        ),
        (
            "later, a worker that cannot start is retried with backoff",
            |s| s.workers = 1,
            &[
                "0 start",
                "0 up 1",
                "5 exit 1 sig 9",
                "105 timer",
                "105 spawnfail 2",
                "305 timer",
            ],
            &[
                "spawn 1 slot 0",
                "warn: restarting slot 0 in 100 ms",
                "spawn 2 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
                "error: cannot start a worker from /bin/app for slot 0: ENOENT; retrying in 200 ms",
                "spawn 3 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
            ],
        ),
        (
            "a worker that exits without listening after a listen error stops the cluster",
            |s| s.workers = 1,
            &["0 start", "0 online 1", "1 listenfail 1", "2 exit 1 code 1"],
            &[
                "spawn 1 slot 0",
                "error (returned): worker 1 could not start: 127.0.0.1:80: address in use; stopping",
                "stop listening",
                "exit Start: worker 1 could not start: 127.0.0.1:80: address in use",
            ],
        ),
    ]);
}

#[test]
fn booting() {
    check(&[
        (
            "a program that never connects stops the cluster at the ready timeout",
            same,
            &["0 start", "10000 timer", "10001 exit 1 sig 9", "10001 exit 2 sig 9"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "kill 1 SIGKILL stop",
                "kill 2 SIGKILL stop",
                "error (returned): worker 1 did not connect to the primary within 10000 ms: /bin/app is not a herd program, or failed before Cluster::run; set Cluster::exec to a program whose main calls Cluster::run; stopping",
                "stop listening",
                "exit Config: worker 1 did not connect to the primary within 10000 ms: /bin/app is not a herd program, or failed before Cluster::run; set Cluster::exec to a program whose main calls Cluster::run",
            ],
        ),
        (
            "a program that exits without connecting stops the cluster",
            |s| s.workers = 1,
            &["0 start", "5 exit 1 code 2"],
            &[
                "spawn 1 slot 0",
                "error (returned): worker 1 exited (code 2) without connecting to the primary: /bin/app is not a herd program, or failed before Cluster::run; set Cluster::exec to a program whose main calls Cluster::run; stopping",
                "stop listening",
                "exit Config: worker 1 exited (code 2) without connecting to the primary: /bin/app is not a herd program, or failed before Cluster::run; set Cluster::exec to a program whose main calls Cluster::run",
            ],
        ),
        (
            "a worker not ready within the boot timeout is killed and its slot restarts",
            |s| s.boot_timeout = Duration::from_secs(5),
            &["0 start", "0 up 1", "0 online 2", "4999 timer", "5000 timer", "5100 timer", "5100 exit 2 sig 9"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "warn: worker 2 (pid 1002) was not ready within the boot timeout of 5.0 s: killing it",
                "kill 2 SIGKILL hang",
                "warn: restarting slot 1 in 100 ms",
                "spawn 3 slot 1 (crash 0 hang 1 recycle 0 reload 0)",
            ],
        ),
        (
            "under wait_ready, listening is not enough",
            |s| {
                s.boot_timeout = Duration::from_secs(5);
                s.wait_ready = true;
                s.workers = 1;
            },
            &["0 start", "0 up 1", "5000 timer"],
            &[
                "spawn 1 slot 0",
                "warn: worker 1 (pid 1001) was not ready within the boot timeout of 5.0 s: killing it",
                "kill 1 SIGKILL hang",
                "warn: restarting slot 0 in 100 ms",
            ],
        ),
        (
            "a boot timeout of zero is off",
            |s| {
                s.boot_timeout = Duration::ZERO;
                s.workers = 1;
            },
            &["0 start", "0 online 1", "999999 timer"],
            &["spawn 1 slot 0"],
        ),
    ]);
}

#[test]
fn reloading() {
    check(&[
        (
            "slot by slot, new before old",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 reload", "20 up 3", "30 up 4", "40 exit 1 code 0", "40 exit 2 code 0"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "disconnect 1 reload",
                "spawn 4 slot 1",
                "disconnect 2 reload",
                "reloaded",
            ],
        ),
        (
            "under wait_ready the old worker leaves when the new one calls ready(), not at listening",
            |s| {
                s.workers = 1;
                s.wait_ready = true;
            },
            &["0 start", "0 up 1", "0 ready 1", "10 reload", "20 up 2", "30 ready 2"],
            &["spawn 1 slot 0", "spawn 2 slot 0", "disconnect 1 reload", "reloaded"],
        ),
        (
            "reload_batch 2 replaces two slots at once",
            |s| {
                s.workers = 3;
                s.reload_batch = 2;
            },
            &["0 start", "0 up 1", "0 up 2", "0 up 3", "10 reload", "20 up 5", "30 up 4", "40 up 6"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 2",
                "spawn 4 slot 0",
                "spawn 5 slot 1",
                "disconnect 2 reload",
                "spawn 6 slot 2",
                "disconnect 1 reload",
                "disconnect 3 reload",
                "reloaded",
            ],
        ),
        (
            "a replacement that dies before ready stops the reload, the old ones stay",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 reload", "20 online 3", "30 exit 3 code 3", "99999 timer"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "error: reload stopped, the old workers keep serving: new worker 3 for slot 0 exited (code 3) before it was ready",
            ],
        ),
        (
            "a replacement not ready in time is killed and stops the reload",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 reload", "20 online 3", "10010 timer"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "error: reload stopped, the old workers keep serving: new worker 3 for slot 0 was not ready within 10000 ms",
                "kill 3 SIGKILL reload",
            ],
        ),
        (
            "a crash of the old worker during its slot's reload waits for the new one",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 reload", "15 exit 1 sig 11", "20 up 3", "30 up 4"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "spawn 4 slot 1",
                "disconnect 2 reload",
                "reloaded",
            ],
        ),
        (
            "a crash during the reload, then its replacement dies too: the slot restarts at once",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 reload", "15 exit 1 sig 11", "20 exit 3 code 3"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "error: reload stopped, the old workers keep serving: new worker 3 for slot 0 exited (code 3) before it was ready",
                "spawn 4 slot 0",
            ],
        ),
        (
            "scale-down during a reload: the removed slot leaves the reload",
            |s| s.workers = 3,
            &["0 start", "0 up 1", "0 up 2", "0 up 3", "10 reload", "11 scale 2", "20 up 4", "25 exit 3 code 0", "30 up 5", "40 health 5"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 2",
                "spawn 4 slot 0",
                "remove slot 2",
                "disconnect 3 scale",
                "disconnect 1 reload",
                "spawn 5 slot 1",
                "slot 2 removed",
                "disconnect 2 reload",
                "reloaded",
            ],
        ),
        (
            "scale-down of the slot being reloaded: both of its workers go, the reload ends",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 reload", "20 up 3", "30 scale 1", "40 exit 2 code 0", "41 exit 4 code 0", "50 reload"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "disconnect 1 reload",
                "spawn 4 slot 1",
                "remove slot 1",
                "disconnect 2 scale",
                "disconnect 4 scale",
                "reloaded",
                "slot 1 removed",
                "spawn 5 slot 0 (crash 0 hang 0 recycle 0 reload 1)",
            ],
        ),
        (
            "a reload asked for during one follows it",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "10 reload", "11 reload", "20 up 2", "30 up 3"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 0",
                "disconnect 1 reload",
                "reloaded",
                "spawn 3 slot 0 (crash 0 hang 0 recycle 0 reload 1)",
                "disconnect 2 reload",
                "reloaded",
            ],
        ),
        (
            "no reload while stopping",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "10 sigterm", "11 reload"],
            &["spawn 1 slot 0", "disconnect 1 stop", "stop listening"],
        ),
        (
            "a reload whose new worker cannot spawn stops",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "10 reload", "10 spawnfail 2"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 0",
                "error: reload stopped, the old workers keep serving: cannot start a worker from /bin/app for slot 0: ENOENT",
            ],
        ),
    ]);
}

#[test]
fn stopping() {
    check(&[
        (
            "a clean stop exits ok",
            same,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "10 sigterm",
                "20 exit 1 code 0",
                "21 exit 2 code 0",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "disconnect 1 stop",
                "disconnect 2 stop",
                "stop listening",
                "exit ok",
            ],
        ),
        (
            "a second SIGTERM kills every worker at once",
            same,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "10 sigterm",
                "20 sigterm",
                "21 exit 1 sig 9",
                "22 exit 2 sig 9",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "disconnect 1 stop",
                "disconnect 2 stop",
                "stop listening",
                "warn: second stop signal: killing every worker now",
                "kill 1 SIGKILL stop",
                "kill 2 SIGKILL stop",
                "exit Shutdown: stopped after a second signal: 2 worker(s) had to be killed",
            ],
        ),
        (
            "a stop through the handle is never forced",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "10 stop", "20 stop"],
            &["spawn 1 slot 0", "disconnect 1 stop", "stop listening"],
        ),
        (
            "at the shutdown timeout the rest is killed",
            same,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "10 sigterm",
                "20 exit 1 code 0",
                "30010 timer",
                "30011 exit 2 sig 9",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "disconnect 1 stop",
                "disconnect 2 stop",
                "stop listening",
                "warn: worker 2 did not exit in time: SIGKILL",
                "kill 2 SIGKILL stop",
                "exit Shutdown: stopped after the shutdown timeout: 1 worker(s) had to be killed",
            ],
        ),
        (
            "a crash while stopping is not restarted",
            same,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "10 sigterm",
                "20 exit 1 sig 11",
                "200 timer",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "disconnect 1 stop",
                "disconnect 2 stop",
                "stop listening",
            ],
        ),
        (
            "a slot waiting out its backoff is not restarted once stopping",
            same,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "10 exit 1 sig 11",
                "20 sigterm",
                "200 timer",
                "201 exit 2 code 0",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "warn: restarting slot 0 in 100 ms",
                "disconnect 2 stop",
                "stop listening",
                "exit ok",
            ],
        ),
    ]);
}

#[test]
fn scaling() {
    check(&[
        (
            "up adds slots, down removes the highest, never below one",
            same,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "10 scale 3",
                "20 scale 0",
                "30 exit 2 code 0",
                "31 exit 3 code 0",
                "40 scale 0",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 2",
                "remove slot 2",
                "disconnect 3 scale",
                "remove slot 1",
                "disconnect 2 scale",
                "slot 1 removed",
                "slot 2 removed",
            ],
        ),
        (
            "a removed slot waiting out a backoff goes at once",
            same,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "10 exit 2 sig 9",
                "11 scale 1",
                "500 timer",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "warn: restarting slot 1 in 100 ms",
                "remove slot 1",
                "slot 1 removed",
            ],
        ),
    ]);
}

#[test]
fn watchdog() {
    check(&[
        (
            "a hung worker: one line, an event, a replacement in its slot, SIGABRT then SIGKILL",
            same,
            &["0 start", "0 up 1", "0 up 2", "31200 health 1 age=31200 doing=GET_/report?id=9", "33199 timer", "33200 timer", "33300 exit 1 sig 9"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "warn: worker 1 (pid 1001) stuck 31.2 s in GET /report?id=9",
                "hung 1 31.2 s GET /report?id=9",
                "spawn 3 slot 0 (crash 0 hang 1 recycle 0 reload 0)",
                "kill 1 SIGABRT hang",
                "kill 1 SIGKILL hang",
            ],
        ),
        (
            "a stuck loop between requests is said so",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "40000 health 1 age=30000"],
            &[
                "spawn 1 slot 0",
                "warn: worker 1 (pid 1001) stuck 30.0 s between requests",
                "hung 1 30.0 s -",
                "spawn 2 slot 0 (crash 0 hang 1 recycle 0 reload 0)",
                "kill 1 SIGABRT hang",
            ],
        ),
        (
            "a fresh beat, no beat at all, or a run timeout of zero: not hung",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "40000 health 1 age=29999", "40000 health 1"],
            &["spawn 1 slot 0"],
        ),
        (
            "run timeout zero is off",
            |s| {
                s.workers = 1;
                s.run_timeout = Duration::ZERO;
            },
            &["0 start", "0 up 1", "99000 health 1 age=99000"],
            &["spawn 1 slot 0"],
        ),
        (
            "a worker asked to leave is left to its shutdown timeout",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "10 reload", "10 up 2", "40000 health 1 age=39000"],
            &["spawn 1 slot 0", "spawn 2 slot 0", "disconnect 1 reload", "reloaded"],
        ),
        (
            "a hang while stopping kills without a replacement",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "10 sigterm", "40000 health 1 age=39000"],
            &["spawn 1 slot 0", "disconnect 1 stop", "stop listening"],
        ),
        (
            "a hang while the slot's reload replacement boots: no second replacement",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "10 reload", "30000 health 1 age=30000", "30001 up 2"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 0",
                "warn: worker 1 (pid 1001) stuck 30.0 s between requests",
                "hung 1 30.0 s -",
                "kill 1 SIGABRT hang",
                "reloaded",
            ],
        ),
        (
            "hangs count toward a crash loop",
            |s| {
                s.workers = 1;
                s.crash_loop.crashes = 2;
            },
            &["0 start", "0 up 1", "30000 health 1 age=30000", "30001 up 2", "60002 health 2 age=30000"],
            &[
                "spawn 1 slot 0",
                "warn: worker 1 (pid 1001) stuck 30.0 s between requests",
                "hung 1 30.0 s -",
                "spawn 2 slot 0 (crash 0 hang 1 recycle 0 reload 0)",
                "kill 1 SIGABRT hang",
                "warn: worker 2 (pid 1002) stuck 30.0 s between requests",
                "hung 2 30.0 s -",
                "error: slot 0 failed: 2 crashes in 30.0 s, the last one signal SIGABRT; retrying with backoff",
                "failed slot 0 2 crashes, last signal SIGABRT",
                "spawn 3 slot 0 (crash 0 hang 2 recycle 0 reload 0)",
                "kill 2 SIGABRT hang",
            ],
        ),
    ]);
}

#[test]
fn crash_loops() {
    check(&[
        (
            "the Nth crash within the window fails the slot once; it keeps retrying",
            |s| {
                s.workers = 1;
                s.crash_loop.crashes = 3;
            },
            &[
                "0 start", "0 up 1", "10 exit 1 code 1", "110 timer", "110 up 2",
                "120 exit 2 code 1", "320 timer", "320 up 3", "330 exit 3 code 7",
                "730 timer", "730 up 4", "740 exit 4 code 1",
            ],
            &[
                "spawn 1 slot 0",
                "warn: restarting slot 0 in 100 ms",
                "spawn 2 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
                "warn: restarting slot 0 in 200 ms",
                "spawn 3 slot 0 (crash 2 hang 0 recycle 0 reload 0)",
                "error: slot 0 failed: 3 crashes in 0.3 s, the last one code 7; retrying with backoff",
                "failed slot 0 3 crashes, last code 7",
                "warn: restarting slot 0 in 400 ms",
                "spawn 4 slot 0 (crash 3 hang 0 recycle 0 reload 0)",
                "warn: restarting slot 0 in 800 ms",
            ],
        ),
        (
            "crashes spread wider than the window are no loop",
            |s| {
                s.workers = 1;
                s.crash_loop.crashes = 2;
                s.crash_loop.window = Duration::from_secs(1);
            },
            &["0 start", "0 up 1", "10 exit 1 code 1", "110 timer", "110 up 2", "1200 exit 2 code 1"],
            &[
                "spawn 1 slot 0",
                "warn: restarting slot 0 in 100 ms",
                "spawn 2 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
                "warn: restarting slot 0 in 200 ms",
            ],
        ),
        (
            "OnCrashLoop::Stop stops the cluster with one error line and an error exit",
            |s| {
                s.crash_loop.crashes = 2;
                s.crash_loop.then = OnCrashLoop::Stop;
            },
            &["0 start", "0 up 1", "0 up 2", "10 exit 1 code 1", "110 timer", "110 up 3", "120 exit 3 sig 11", "130 exit 2 code 0"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "warn: restarting slot 0 in 100 ms",
                "spawn 3 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
                "error (returned): slot 0 failed: 2 crashes in 0.1 s, the last one signal SIGSEGV; stopping the cluster",
                "failed slot 0 2 crashes, last signal SIGSEGV",
                "disconnect 2 stop",
                "stop listening",
                "exit CrashLoop: slot 0 failed: 2 crashes in 0.1 s, the last one signal SIGSEGV; stopping the cluster",
            ],
        ),
    ]);
}

fn requests_100(s: &mut Settings) {
    s.recycling.max_requests = Some((100, 0));
}

#[test]
fn recycling() {
    check(&[
        (
            "a worker at its request limit is replaced new before old, one slot at a time",
            requests_100,
            &[
                "0 start", "0 up 1", "0 up 2", "1000 health 1 req=100", "1000 health 2 req=120",
                "1500 up 3", "2000 health 2 req=150", "2100 up 4", "3000 health 3 req=5",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "disconnect 1 recycle",
                "spawn 4 slot 1",
                "disconnect 2 recycle",
            ],
        ),
        (
            "below the limit nothing happens",
            requests_100,
            &["0 start", "0 up 1", "0 up 2", "1000 health 1 req=99"],
            &["spawn 1 slot 0", "spawn 2 slot 1"],
        ),
        (
            "never during a reload; a reload waits for a recycle in flight",
            requests_100,
            &[
                "0 start", "0 up 1", "0 up 2", "10 reload", "1000 health 2 req=100",
                "1001 up 3", "1002 up 4", "2000 health 2 req=100",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "disconnect 1 reload",
                "spawn 4 slot 1",
                "disconnect 2 reload",
                "reloaded",
            ],
        ),
        (
            "a reload asked for during a recycle starts after it",
            requests_100,
            &["0 start", "0 up 1", "0 up 2", "1000 health 1 req=100", "1001 reload", "1500 up 3", "1600 up 4", "1700 up 5"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "disconnect 1 recycle",
                "spawn 4 slot 0 (crash 0 hang 0 recycle 1 reload 0)",
                "disconnect 3 reload",
                "spawn 5 slot 1",
                "disconnect 2 reload",
                "reloaded",
            ],
        ),
        (
            "a replacement that dies keeps the old worker, which is tried again later",
            requests_100,
            &[
                "0 start", "0 up 1", "0 up 2", "1000 health 1 req=100", "1100 exit 3 code 1",
                "2000 health 1 req=150", "11100 health 1 req=200",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "warn: recycle stopped, the old worker keeps serving: new worker 3 for slot 0 exited (code 1) before it was ready",
                "spawn 4 slot 0",
            ],
        ),
        (
            "max_rss recycles the worker over it and no other",
            |s| s.recycling.max_rss = Some(64 << 20),
            &["0 start", "0 up 1", "0 up 2", "1000 health 1 rss=40", "1000 health 2 rss=65", "1200 up 3"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 1",
                "disconnect 2 recycle",
            ],
        ),
        (
            "max_lifetime",
            |s| s.recycling.max_lifetime = Some((Duration::from_secs(60), Duration::ZERO)),
            &["0 start", "0 up 1", "0 up 2", "59999 health 1", "60000 health 1"],
            &["spawn 1 slot 0", "spawn 2 slot 1", "spawn 3 slot 0"],
        ),
        (
            "the application's recycle is the same path",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 recycle 2", "20 up 3"],
            &["spawn 1 slot 0", "spawn 2 slot 1", "spawn 3 slot 1", "disconnect 2 recycle"],
        ),
        (
            "no recycle while stopping",
            requests_100,
            &["0 start", "0 up 1", "0 up 2", "10 sigterm", "1000 health 1 req=500"],
            &["spawn 1 slot 0", "spawn 2 slot 1", "disconnect 1 stop", "disconnect 2 stop", "stop listening"],
        ),
    ]);
}

#[test]
fn jitter_gives_workers_different_limits() {
    let r = Recycling {
        max_requests: Some((1000, 500)),
        max_lifetime: Some((Duration::from_secs(3600), Duration::from_secs(600))),
        max_rss: None,
    };
    let limits: Vec<Limits> = (1..=8).map(|id| r.limits_for(id)).collect();
    let reqs: std::collections::BTreeSet<u64> =
        limits.iter().map(|l| l.requests().unwrap()).collect();
    assert_eq!(reqs.len(), 8, "eight workers, eight limits: {reqs:?}");
    assert!(reqs.iter().all(|n| (1000..=1500).contains(n)));
    let lives: std::collections::BTreeSet<Duration> =
        limits.iter().map(|l| l.lifetime().unwrap()).collect();
    assert_eq!(lives.len(), 8);
    assert_eq!(spread(7, 0), 0);
    // Two workers with the same settings reach their limits at different counts, so a
    // sample never finds both due when only one count has passed.
    let (a, b) = (limits[0].requests().unwrap(), limits[1].requests().unwrap());
    let mut s = settings();
    s.recycling = r;
    let low = a.min(b);
    let (first, second) = if a < b { (1, 2) } else { (2, 1) };
    let steps = [
        "0 start".to_string(),
        "0 up 1".into(),
        "0 up 2".into(),
        format!("1000 health {first} req={low}"),
        format!("1000 health {second} req={low}"),
    ];
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let got = run_with(s, &steps);
    assert_eq!(
        got,
        [
            "spawn 1 slot 0".to_string(),
            "spawn 2 slot 1".into(),
            format!("spawn 3 slot {}", first - 1)
        ]
    );
}

#[test]
fn causes_reach_the_actions() {
    // Every cause the supervisor gives is one the handle can report.
    let got = run(&["0 start", "0 up 1", "0 up 2", "5 kill 1 15"]);
    assert_eq!(got[2], "kill 1 SIGTERM user");
    assert_eq!(Cause::Hang.to_string(), "hang");
}

/// (name, settings change, steps, what `unready` says after them).
type ReadyCase = (
    &'static str,
    fn(&mut Settings),
    &'static [&'static str],
    Option<&'static str>,
);

#[test]
fn readiness() {
    let table: &[ReadyCase] = &[
        (
            "booting",
            same,
            &["0 start", "0 up 1"],
            Some("1 of 2 workers ready"),
        ),
        (
            "every slot ready",
            same,
            &["0 start", "0 up 1", "0 up 2"],
            None,
        ),
        (
            "a slot restarting after a crash",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 exit 1 code 1"],
            Some("1 of 2 workers ready"),
        ),
        (
            "a reload in progress: the old workers serve",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 reload"],
            None,
        ),
        (
            "a failed reload: the old workers serve on",
            same,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "10 reload",
                "20 exit 3 code 1",
            ],
            None,
        ),
        (
            "a crash-looping slot, even with a worker up",
            |s| {
                s.workers = 1;
                s.crash_loop.crashes = 2;
            },
            &[
                "0 start",
                "0 up 1",
                "10 exit 1 code 1",
                "110 timer",
                "110 up 2",
                "120 exit 2 code 1",
                "320 timer",
                "320 up 3",
            ],
            Some("slot 0 crash-loops"),
        ),
        (
            "stopping",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 sigterm"],
            Some("stopping: the workers are draining"),
        ),
    ];
    let mut failed = Vec::new();
    for (name, tweak, steps, want) in table {
        let mut s = settings();
        tweak(&mut s);
        let got = drive(s, steps).0.unready();
        if got.as_deref() != *want {
            failed.push(format!("case: {name}\n got: {got:?}\n want: {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn delay_1s(s: &mut Settings) {
    s.shutdown_delay = Duration::from_secs(1);
}

#[test]
fn shutdown_delay() {
    check(&[
        (
            "a stop signal waits out the delay, serving, then drains",
            delay_1s,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "100 sigterm",
                "600 timer",
                "1100 timer",
                "1200 exit 1 code 0",
                "1200 exit 2 code 0",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "shutdown delay 1.0 s",
                "disconnect 1 stop",
                "disconnect 2 stop",
                "stop listening",
                "exit ok",
            ],
        ),
        (
            "a second stop signal skips the rest of the delay; a third kills",
            delay_1s,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "100 sigterm",
                "200 sigterm",
                "300 sigterm",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "shutdown delay 1.0 s",
                "disconnect 1 stop",
                "disconnect 2 stop",
                "stop listening",
                "warn: second stop signal: killing every worker now",
                "kill 1 SIGKILL stop",
                "kill 2 SIGKILL stop",
            ],
        ),
        (
            "a crashed worker restarts during the delay: the cluster still serves",
            delay_1s,
            &[
                "0 start",
                "0 up 1",
                "0 up 2",
                "100 sigterm",
                "200 exit 1 code 1",
                "300 timer",
            ],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "shutdown delay 1.0 s",
                "warn: restarting slot 0 in 100 ms",
                "spawn 3 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
            ],
        ),
        (
            "Stop (the handle, herd stop) does not wait for the delay",
            delay_1s,
            &["0 start", "0 up 1", "0 up 2", "100 stop"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "disconnect 1 stop",
                "disconnect 2 stop",
                "stop listening",
            ],
        ),
    ]);
    let (sup, _) = drive(
        {
            let mut s = settings();
            delay_1s(&mut s);
            s
        },
        &["0 start", "0 up 1", "0 up 2", "100 sigterm"],
    );
    assert_eq!(
        sup.unready().as_deref(),
        Some("shutting down: serving out the shutdown delay, then draining")
    );
    assert!(!sup.stopping(), "serving during the delay");
}

#[test]
fn failing_to_boot() {
    check(&[
        (
            "a configuration error before ready at the start stops the cluster, no restart",
            same,
            &["0 start", "0 online 1", "0 online 2", "10 exit 1 code 78", "20 exit 2 code 0", "99999 timer"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "error (returned): worker 1 (slot 0) failed to boot (configuration error, exit 78): see its message above; not restarting",
                "disconnect 2 stop",
                "stop listening",
                "exit Config: worker 1 (slot 0) failed to boot (configuration error, exit 78): see its message above; not restarting",
            ],
        ),
        (
            "the same exit after ready is a crash",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 exit 1 code 78", "110 timer"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "warn: restarting slot 0 in 100 ms",
                "spawn 3 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
            ],
        ),
        (
            "another exit before ready at the start is a crash",
            same,
            &["0 start", "0 online 1", "0 online 2", "10 exit 1 code 1", "110 timer"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "warn: restarting slot 0 in 100 ms",
                "spawn 3 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
            ],
        ),
        (
            "while another worker serves, a restart's configuration error is a crash",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 exit 1 sig 9", "110 timer", "110 online 3", "120 exit 3 code 78", "320 timer"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "warn: restarting slot 0 in 100 ms",
                "spawn 3 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
                "warn: restarting slot 0 in 200 ms",
                "spawn 4 slot 0 (crash 2 hang 0 recycle 0 reload 0)",
            ],
        ),
        (
            "with no worker serving, a restart's configuration error stops the cluster",
            |s| s.workers = 1,
            &["0 start", "0 up 1", "10 exit 1 sig 9", "110 timer", "110 online 2", "120 exit 2 code 78"],
            &[
                "spawn 1 slot 0",
                "warn: restarting slot 0 in 100 ms",
                "spawn 2 slot 0 (crash 1 hang 0 recycle 0 reload 0)",
                "error (returned): worker 2 (slot 0) failed to boot (configuration error, exit 78): see its message above; not restarting",
                "stop listening",
                "exit Config: worker 2 (slot 0) failed to boot (configuration error, exit 78): see its message above; not restarting",
            ],
        ),
        (
            "a reload's new worker with a configuration error stops the reload, the old ones serve",
            same,
            &["0 start", "0 up 1", "0 up 2", "10 reload", "20 online 3", "30 exit 3 code 78", "99999 timer"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "spawn 3 slot 0",
                "error: reload stopped, the old workers keep serving: new worker 3 for slot 0 exited (code 78) before it was ready: a configuration error, see its message above",
            ],
        ),
        (
            "a worker told to leave may exit 78: the stop goes on",
            same,
            &["0 start", "0 online 1", "0 online 2", "5 stop", "10 exit 1 code 78", "10 exit 2 code 0"],
            &[
                "spawn 1 slot 0",
                "spawn 2 slot 1",
                "disconnect 1 stop",
                "disconnect 2 stop",
                "stop listening",
                "exit ok",
            ],
        ),
    ]);
}
