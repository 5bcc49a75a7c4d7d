//! What the dispatcher knows about each serving worker: the connections handed to it and not
//! yet acknowledged (the dispatcher's copies), its last reported load, and whether it may take
//! more.

use std::collections::VecDeque;
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

/// A report older than this may hide connections that closed since (workers throttle their
/// reports); a worker held back only by such a report is sent one connection to refresh it.
pub(crate) const STALE_LOAD: Duration = Duration::from_millis(50);

/// A connection the dispatcher holds: its copy of the socket and the client's address.
pub(crate) struct Conn {
    pub stream: TcpStream,
    pub ip: IpAddr,
}

/// One serving worker.
pub(crate) struct Peer {
    pub id: u32,
    pub slot: usize,
    /// Asked to leave, or its channel failed: hand it nothing more.
    pub closed: bool,
    /// Handed over, not yet acknowledged, oldest first.
    pub unacked: VecDeque<Conn>,
    /// Chosen in the current pass, not yet handed over (one frame per pass).
    pub batch: Vec<TcpStream>,
    /// The clients of `batch`, in the same order.
    pub batch_ips: Vec<IpAddr>,
    /// Open connections at its last report.
    pub open: usize,
    /// Acknowledged since its last report (not in `open` yet).
    pub acked_since_report: usize,
    /// When its last report arrived (or when it came up).
    pub reported_at: Instant,
}

impl Peer {
    /// Connections in flight to it: unacknowledged plus chosen in this pass.
    pub fn in_flight(&self) -> usize {
        self.unacked.len() + self.batch.len()
    }

    /// Its connections as far as the dispatcher knows: open at the last report, acknowledged
    /// since, and in flight. An upper bound (some may have closed since the report).
    pub fn load(&self) -> usize {
        self.open + self.acked_since_report + self.in_flight()
    }
}

/// The serving workers, in the order they came up.
pub(crate) struct Peers {
    list: Vec<Peer>,
    pub max_in_flight: usize,
    /// `None`: no connection cap (and no load reports needed for one).
    pub max_connections: Option<usize>,
}

impl Peers {
    pub fn new(max_in_flight: usize, max_connections: Option<usize>) -> Peers {
        Peers {
            list: Vec::new(),
            max_in_flight,
            max_connections,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn get(&self, i: usize) -> &Peer {
        &self.list[i]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Peer {
        &mut self.list[i]
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Peer> {
        self.list.iter_mut()
    }

    pub fn position(&self, id: u32) -> Option<usize> {
        self.list.iter().position(|p| p.id == id)
    }

    pub fn find_mut(&mut self, id: u32) -> Option<&mut Peer> {
        self.list.iter_mut().find(|p| p.id == id)
    }

    pub fn add(&mut self, id: u32, slot: usize, now: Instant) {
        if self.position(id).is_some() {
            return;
        }
        self.list.push(Peer {
            id,
            slot,
            closed: false,
            unacked: VecDeque::new(),
            batch: Vec::new(),
            batch_ips: Vec::new(),
            open: 0,
            acked_since_report: 0,
            reported_at: now,
        });
    }

    pub fn remove(&mut self, i: usize) -> Peer {
        self.list.remove(i)
    }

    /// Whether worker `i` may take one more connection now.
    pub fn has_room(&self, i: usize) -> bool {
        let p = &self.list[i];
        if p.closed || p.in_flight() >= self.max_in_flight {
            return false;
        }
        let Some(cap) = self.max_connections else {
            return true;
        };
        if p.load() < cap {
            return true;
        }
        // Held back by a report that may be stale: one connection refreshes it (its count
        // changes, so the worker reports), at most one over the cap.
        p.in_flight() == 0
            && p.open + p.acked_since_report <= cap
            && p.reported_at.elapsed() >= STALE_LOAD
    }

    /// Whether any worker may take a connection now.
    pub fn any_room(&self) -> bool {
        (0..self.list.len()).any(|i| self.has_room(i))
    }

    /// Whether some worker is held back only by a report that will go stale.
    pub fn waiting_on_reports(&self) -> bool {
        self.max_connections.is_some()
            && self
                .list
                .iter()
                .any(|p| !p.closed && p.in_flight() == 0 && p.load() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn conn(l: &TcpListener) -> Conn {
        Conn {
            stream: TcpStream::connect(l.local_addr().unwrap()).unwrap(),
            ip: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn in_flight_limit_and_cap() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peers = Peers::new(2, Some(3));
        peers.add(1, 0, Instant::now());
        assert!(peers.has_room(0));
        peers.get_mut(0).unacked.push_back(conn(&l));
        peers.get_mut(0).unacked.push_back(conn(&l));
        assert!(!peers.has_room(0), "two in flight of two");
        // Acknowledged: out of flight, counted as open until a report.
        peers.get_mut(0).unacked.clear();
        peers.get_mut(0).acked_since_report = 2;
        assert!(peers.has_room(0), "2 of 3");
        peers.get_mut(0).acked_since_report = 3;
        assert!(!peers.has_room(0), "at the cap, fresh report");
        // The report goes stale: one probe allowed, never beyond cap + 1.
        peers.get_mut(0).reported_at = Instant::now() - STALE_LOAD;
        assert!(peers.has_room(0));
        peers.get_mut(0).acked_since_report = 4;
        assert!(!peers.has_room(0), "already one over");
        // A report of fewer open connections frees it.
        let p = peers.get_mut(0);
        p.open = 1;
        p.acked_since_report = 0;
        p.reported_at = Instant::now();
        assert!(peers.has_room(0));
        peers.get_mut(0).closed = true;
        assert!(!peers.any_room(), "a leaving worker takes nothing");
    }

    #[test]
    fn no_cap_needs_no_reports() {
        let mut peers = Peers::new(64, None);
        peers.add(7, 0, Instant::now());
        peers.get_mut(0).acked_since_report = 1_000_000;
        assert!(peers.has_room(0));
        assert!(!peers.waiting_on_reports());
    }
}
