//! Hand-offs in flight survive their worker (nodejs/node #3551, #21746): while workers are
//! blocked in a slow handler, new connections handed to them wait unacknowledged in their IPC
//! sockets; SIGKILL one, and every one of those connections is still answered, by another worker
//! or by the slot's replacement.

mod rr_common;
mod util;

use std::net::SocketAddr;
use std::thread::{sleep, JoinHandle};
use std::time::Duration;

use rr_common::{get_from, sigkill, start, Answer};
use util::{field, SEC};

fn spawn_get(addr: SocketAddr, path: &'static str) -> JoinHandle<std::io::Result<Answer>> {
    std::thread::spawn(move || get_from(addr, None, path, 20 * SEC))
}

/// Blocks every one of `workers` workers in `/sleep`, hands `n` new connections out while they
/// sleep, SIGKILLs one, and asserts all `n` are answered 200. Returns the killed worker's id.
fn kill_with_handoffs_in_flight(
    c: &mut util::Proc,
    addr: SocketAddr,
    workers: usize,
    n: usize,
) -> u32 {
    // Round-robin: one sleeper per worker, each answering with its id and pid afterwards.
    let sleepers: Vec<_> = (0..workers)
        .map(|_| spawn_get(addr, "/sleep?ms=1500"))
        .collect();
    sleep(Duration::from_millis(300));
    let fast: Vec<_> = (0..n).map(|_| spawn_get(addr, "/")).collect();
    sleep(Duration::from_millis(300));
    // The victim: the newest live worker (its pid from the fork lines).
    let fork = c
        .seen
        .iter()
        .rev()
        .find(|l| l.starts_with("EV fork"))
        .cloned()
        .unwrap();
    let victim: u32 = field(&fork, "id").unwrap().parse().unwrap();
    sigkill(field(&fork, "pid").unwrap().parse().unwrap());
    let mut failures = Vec::new();
    for (i, h) in fast.into_iter().enumerate() {
        match h.join().unwrap() {
            Ok(a) if a.status == 200 && a.worker != victim => {}
            other => failures.push(format!("request {i}: {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} lost: {failures:#?}\nstderr:\n{}",
        failures.len(),
        c.stderr()
    );
    for s in sleepers {
        let _ = s.join();
    }
    victim
}

#[test]
fn a_killed_worker_loses_no_unacknowledged_handoff() {
    let (mut c, addr) = start("rr", 2, &[("FIX_BACKOFF_MS", "200")]);
    for round in 0..3 {
        let victim = kill_with_handoffs_in_flight(&mut c, addr, 2, 40);
        c.expect(10 * SEC, |l| {
            l.starts_with("EV exit") && field(l, "id") == Some(&victim.to_string())
        });
        c.expect(10 * SEC, |l| l.starts_with("EV listening"));
        assert!(
            c.stderr().contains("handing its connections to another"),
            "round {round}: the kill did not catch hand-offs in flight"
        );
    }
}

#[test]
fn with_no_worker_alive_connections_wait_for_the_replacement() {
    let (mut c, addr) = start("rr", 1, &[("FIX_BACKOFF_MS", "500")]);
    let victim = kill_with_handoffs_in_flight(&mut c, addr, 1, 20);
    c.expect(10 * SEC, |l| {
        l.starts_with("EV exit") && field(l, "id") == Some(&victim.to_string())
    });
    assert!(c.stderr().contains("handing its connections to another"));
    // And new connections made while no worker lives wait in the backlog too.
    let (mut c, addr) = start("rr", 1, &[("FIX_BACKOFF_MS", "800")]);
    let pid: i32 = c.worker_pids()[0];
    sigkill(pid);
    c.expect(10 * SEC, |l| l.starts_with("EV exit"));
    let waiting: Vec<_> = (0..10).map(|_| spawn_get(addr, "/")).collect();
    for h in waiting {
        let a = h
            .join()
            .unwrap()
            .expect("answered once the replacement is up");
        assert_eq!(a.status, 200);
        assert_ne!(a.pid, pid);
    }
}
