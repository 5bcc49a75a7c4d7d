//! Sticky dispatch over real processes: clients from different loopback addresses each reach
//! one worker; when that worker is SIGKILLed only its clients move, and they come back to the
//! slot's replacement.

mod rr_common;
mod util;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use rr_common::{get_from, sigkill, start};
use util::{field, SEC};

/// Which worker (id, pid) each client reaches, asking `rounds` times on new connections;
/// panics if a client reaches two workers.
fn map(
    addr: std::net::SocketAddr,
    clients: &[IpAddr],
    rounds: usize,
) -> BTreeMap<IpAddr, (u32, i32)> {
    let mut seen = BTreeMap::new();
    for _ in 0..rounds {
        for &ip in clients {
            let a = get_from(addr, Some(ip), "/", 5 * SEC).unwrap_or_else(|e| panic!("{ip}: {e}"));
            assert_eq!(a.status, 200);
            let prev = seen.insert(ip, (a.worker, a.pid));
            if let Some(p) = prev {
                assert_eq!(p.0, a.worker, "{ip} reached two workers");
            }
        }
    }
    seen
}

#[test]
fn sticky_keeps_clients_and_moves_only_a_dead_workers() {
    let (mut c, addr) = start("rr-sticky", 4, &[("FIX_BACKOFF_MS", "1500")]);
    let clients: Vec<IpAddr> = (2..42)
        .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, k)))
        .collect();
    let before = map(addr, &clients, 3);
    let workers: std::collections::BTreeSet<u32> = before.values().map(|v| v.0).collect();
    assert!(
        workers.len() >= 3,
        "40 clients over 4 workers reached only {workers:?}"
    );

    // Kill the worker of the first client.
    let (victim, victim_pid) = before[&clients[0]];
    sigkill(victim_pid);
    c.expect(10 * SEC, |l| {
        l.starts_with("EV exit") && field(l, "id") == Some(&victim.to_string())
    });
    let during = map(addr, &clients, 2);
    for ip in &clients {
        let (was, now) = (before[ip].0, during[ip].0);
        if was == victim {
            assert_ne!(now, victim, "{ip} still reached the dead worker");
        } else {
            assert_eq!(
                was, now,
                "{ip} moved from worker {was} to {now} though {was} lives"
            );
        }
    }

    // The slot's replacement comes up: the victim's clients go to it, nobody else moves.
    let line = c.expect(10 * SEC, |l| l.starts_with("EV listening"));
    let replacement: u32 = field(&line, "id").unwrap().parse().unwrap();
    let after = map(addr, &clients, 2);
    for ip in &clients {
        let (was, now) = (before[ip].0, after[ip].0);
        if was == victim {
            assert_eq!(
                now, replacement,
                "{ip} did not return to its slot's replacement"
            );
        } else {
            assert_eq!(
                was, now,
                "{ip} moved from worker {was} to {now} after the replacement"
            );
        }
    }
}
