//! How a worker is chosen for a new connection: round-robin, least-connections, or sticky by
//! client IP (rendezvous hashing over worker slots).

use std::net::IpAddr;

use crate::peers::Peers;

/// How the dispatcher picks a worker for each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// Each connection to the next worker in turn (Node's SCHED_RR), skipping saturated ones.
    RoundRobin,
    /// Each connection to the worker with the fewest open plus unacknowledged connections
    /// (workers report their open counts); ties go round-robin.
    LeastConnections,
    /// Each client IP to one worker slot, by rendezvous (highest-random-weight) hashing over the
    /// slots that have a live worker: a client keeps reaching the same worker while it lives,
    /// and when a worker goes only its clients move (back to its replacement once that is up).
    /// A client whose worker is saturated goes to its next-ranked slot.
    Sticky,
}

/// The worker (an index into `peers`) for a connection from `ip`, or `None` when every worker
/// is saturated or none is serving. `cursor` is the round-robin position, advanced on success.
pub(crate) fn pick(
    strategy: Strategy,
    peers: &Peers,
    cursor: &mut usize,
    ip: IpAddr,
) -> Option<usize> {
    let n = peers.len();
    if n == 0 {
        return None;
    }
    let start = *cursor % n;
    let order = (0..n).map(|k| (start + k) % n);
    let chosen = match strategy {
        Strategy::RoundRobin => order.clone().find(|&i| peers.has_room(i)),
        Strategy::LeastConnections => order
            .clone()
            .filter(|&i| peers.has_room(i))
            .min_by_key(|&i| peers.get(i).load()),
        Strategy::Sticky => (0..n)
            .filter(|&i| peers.has_room(i))
            .max_by_key(|&i| (weight(ip, peers.get(i).slot), peers.get(i).id)),
    };
    if let Some(i) = chosen {
        *cursor = i + 1;
    }
    chosen
}

/// The rendezvous weight of `slot` for client `ip`: a 64-bit mix of both, the same in every
/// process and run.
pub(crate) fn weight(ip: IpAddr, slot: usize) -> u64 {
    let key = match ip {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_bits()),
            None => a.to_bits(),
        },
    };
    let folded = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
    mix(mix(folded) ^ (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// splitmix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn best(ip: IpAddr, slots: &[usize]) -> usize {
        *slots.iter().max_by_key(|&&s| weight(ip, s)).unwrap()
    }

    #[test]
    fn removing_a_slot_moves_only_its_clients() {
        let all = [0, 1, 2, 3];
        let fewer = [0, 1, 3];
        let mut moved = 0;
        for k in 0..4096u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + k));
            let before = best(ip, &all);
            let after = best(ip, &fewer);
            if before != 2 {
                assert_eq!(before, after, "{ip} moved though its slot stayed");
            } else {
                moved += 1;
            }
        }
        // Spread: each of 4 slots gets roughly a quarter.
        assert!((800..1250).contains(&moved), "slot 2 had {moved} of 4096");
    }

    #[test]
    fn ipv4_mapped_addresses_hash_like_ipv4() {
        let v4: IpAddr = "127.0.0.7".parse().unwrap();
        let v6: IpAddr = "::ffff:127.0.0.7".parse().unwrap();
        assert_eq!(weight(v4, 3), weight(v6, 3));
    }
}
