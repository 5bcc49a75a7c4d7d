//! herd-rr's strategies over real processes and sockets: round-robin spreads new connections
//! evenly; least-connections steers new connections away from a worker holding many.

mod rr_common;
mod util;

use std::collections::BTreeMap;

use rr_common::{connect, get, get_on, start};
use util::{field, SEC};

#[test]
fn round_robin_spreads_new_connections_evenly() {
    let (_c, addr) = start("rr", 4, &[]);
    let mut per: BTreeMap<u32, usize> = BTreeMap::new();
    for i in 0..1000 {
        let a = get(addr, "/").unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(a.status, 200);
        *per.entry(a.worker).or_default() += 1;
    }
    assert_eq!(per.len(), 4, "{per:?}");
    for (w, n) in &per {
        assert!((249..=251).contains(n), "worker {w} got {n}: {per:?}");
    }
}

#[test]
fn least_connections_avoids_a_worker_holding_many() {
    let (mut c, addr) = start("rr-least", 1, &[]);
    // 50 idle keep-alive connections, all on the only worker (A).
    let mut idle = Vec::new();
    for _ in 0..50 {
        let mut s = connect(addr, None, 5 * SEC).unwrap();
        let a = get_on(&mut s, "/").unwrap();
        assert_eq!(a.status, 200);
        idle.push((s, a.worker));
    }
    let a_id = idle[0].1;
    assert!(idle.iter().all(|(_, w)| *w == a_id));
    // A second worker (B) joins.
    c.signal(libc::SIGTTIN);
    let line = c.expect(10 * SEC, |l| l.starts_with("EV listening"));
    let b_id: u32 = field(&line, "id").unwrap().parse().unwrap();
    assert_ne!(a_id, b_id);
    // New short requests go to B while A holds its 50.
    let mut to_a = 0;
    for _ in 0..200 {
        let a = get(addr, "/").unwrap();
        assert_eq!(a.status, 200);
        if a.worker == a_id {
            to_a += 1;
        }
    }
    assert_eq!(
        to_a, 0,
        "least-connections sent {to_a} of 200 to the loaded worker"
    );
    // The idle connections are still served by A.
    for (s, _) in idle.iter_mut().take(5) {
        assert_eq!(get_on(s, "/").unwrap().worker, a_id);
    }
}

#[test]
fn round_robin_control_splits_between_old_and_new_worker() {
    // The same scene under plain round-robin: new connections alternate, loaded or not.
    let (mut c, addr) = start("rr", 1, &[]);
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut s = connect(addr, None, 5 * SEC).unwrap();
        idle.push((get_on(&mut s, "/").unwrap().worker, s));
    }
    let a_id = idle[0].0;
    c.signal(libc::SIGTTIN);
    c.expect(10 * SEC, |l| l.starts_with("EV listening"));
    let to_a = (0..100)
        .filter(|_| get(addr, "/").unwrap().worker == a_id)
        .count();
    assert!(
        (49..=51).contains(&to_a),
        "{to_a} of 100 to the first worker"
    );
}
