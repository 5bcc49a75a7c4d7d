//! Counters a worker keeps on its hot path: a thread-local of `Cell`s, so a request costs a
//! few adds in memory the thread owns (no syscall, no atomic, no lock). The loop thread that
//! counts is the one that ships a [`Snapshot`] to the primary, so nothing is shared.

use std::cell::Cell;
use std::time::Instant;

/// Upper bounds (seconds) of the request-duration histogram's buckets; a last bucket takes
/// the rest (+Inf). Prometheus' defaults, extended down to 100 µs.
pub(crate) const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// [`BUCKETS`] in nanoseconds, for the hot path.
const BUCKETS_NS: [u64; 14] = {
    let mut ns = [0u64; 14];
    let mut i = 0;
    while i < 14 {
        ns[i] = (BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    ns
};

/// The status classes counted: 1xx to 5xx.
pub(crate) const CLASSES: usize = 5;

/// A worker's totals since it started (cumulative, so a lost snapshot loses nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Requests answered, by status class (index 0 = 1xx ... 4 = 5xx).
    pub by_class: [u64; CLASSES],
    /// Request durations: counts per bucket of [`BUCKETS`] plus the +Inf bucket (not
    /// cumulative).
    pub buckets: [u64; BUCKETS.len() + 1],
    /// Sum of request durations, in nanoseconds.
    pub duration_ns: u64,
    /// Bytes read from and written to connections.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Connections accepted (or handed over / adopted).
    pub connections: u64,
    /// Connections open when the snapshot was taken (a gauge).
    pub open: u64,
}

/// How many `u64`s a snapshot takes on the wire.
pub(crate) const WIRE_LEN: usize = CLASSES + BUCKETS.len() + 1 + 6;

impl Snapshot {
    /// Requests answered, all classes.
    pub(crate) fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// The counters as a flat list (the IPC encoding; `open` last).
    pub(crate) fn to_wire(self) -> Vec<u64> {
        let mut v = Vec::with_capacity(WIRE_LEN);
        v.extend_from_slice(&self.by_class);
        v.extend_from_slice(&self.buckets);
        v.extend_from_slice(&[
            self.duration_ns,
            self.bytes_in,
            self.bytes_out,
            self.connections,
            self.open,
        ]);
        v.push(0); // reserved
        v
    }

    /// The inverse of [`Snapshot::to_wire`]; `None` for a list of another length.
    pub(crate) fn from_wire(v: &[u64]) -> Option<Snapshot> {
        if v.len() != WIRE_LEN {
            return None;
        }
        let mut s = Snapshot::default();
        let (classes, rest) = v.split_at(CLASSES);
        s.by_class.copy_from_slice(classes);
        let (buckets, rest) = rest.split_at(BUCKETS.len() + 1);
        s.buckets.copy_from_slice(buckets);
        s.duration_ns = rest[0];
        s.bytes_in = rest[1];
        s.bytes_out = rest[2];
        s.connections = rest[3];
        s.open = rest[4];
        Some(s)
    }

    /// Adds `other`'s counters (not the `open` gauge) to these.
    pub(crate) fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.by_class.iter_mut().zip(other.by_class) {
            *a += b;
        }
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.duration_ns += other.duration_ns;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.connections += other.connections;
    }
}

struct Local {
    /// Counting is on (the worker runtime turned it on for this thread).
    on: Cell<bool>,
    by_class: [Cell<u64>; CLASSES],
    buckets: [Cell<u64>; BUCKETS.len() + 1],
    duration_ns: Cell<u64>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    connections: Cell<u64>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            on: Cell::new(false),
            by_class: [const { Cell::new(0) }; CLASSES],
            buckets: [const { Cell::new(0) }; BUCKETS.len() + 1],
            duration_ns: Cell::new(0),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            connections: Cell::new(0),
        }
    };
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// Turns counting on or off for this thread (the worker runtime turns it on for its loop).
pub(crate) fn enable(on: bool) {
    LOCAL.with(|l| l.on.set(on));
}

/// A request was answered with `status`; it started (its first byte arrived) at `started`.
/// Reads the clock once (vDSO, no syscall); nothing when counting is off.
#[inline]
pub(crate) fn request(status: u16, started: Instant) {
    LOCAL.with(|l| {
        if !l.on.get() {
            return;
        }
        let ns = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        let class = (status / 100).clamp(1, 5) as usize - 1;
        bump(&l.by_class[class], 1);
        let b = BUCKETS_NS
            .iter()
            .position(|&le| ns <= le)
            .unwrap_or(BUCKETS.len());
        bump(&l.buckets[b], 1);
        bump(&l.duration_ns, ns);
    });
}

/// `n` bytes were read from a connection.
#[inline]
pub(crate) fn bytes_in(n: usize) {
    LOCAL.with(|l| bump(&l.bytes_in, n as u64));
}

/// `n` bytes were written to a connection.
#[inline]
pub(crate) fn bytes_out(n: usize) {
    LOCAL.with(|l| bump(&l.bytes_out, n as u64));
}

/// A connection started being served here.
#[inline]
pub(crate) fn connection() {
    LOCAL.with(|l| bump(&l.connections, 1));
}

/// This thread's totals, with `open` connections.
pub(crate) fn snapshot(open: usize) -> Snapshot {
    LOCAL.with(|l| Snapshot {
        by_class: std::array::from_fn(|i| l.by_class[i].get()),
        buckets: std::array::from_fn(|i| l.buckets[i].get()),
        duration_ns: l.duration_ns.get(),
        bytes_in: l.bytes_in.get(),
        bytes_out: l.bytes_out.get(),
        connections: l.connections.get(),
        open: open as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_when_enabled_and_round_trips() {
        std::thread::spawn(|| {
            request(200, Instant::now());
            assert_eq!(snapshot(0).requests(), 0);
            enable(true);
            request(200, Instant::now());
            request(404, Instant::now());
            request(503, Instant::now() - std::time::Duration::from_secs(20));
            bytes_in(10);
            bytes_out(7);
            connection();
            let s = snapshot(3);
            assert_eq!(s.by_class, [0, 1, 0, 1, 1]);
            assert_eq!(s.buckets.iter().sum::<u64>(), 3);
            assert_eq!(s.buckets[BUCKETS.len()], 1, "20 s lands in +Inf");
            assert_eq!(
                (s.bytes_in, s.bytes_out, s.connections, s.open),
                (10, 7, 1, 3)
            );
            assert_eq!(Snapshot::from_wire(&s.to_wire()), Some(s));
            assert_eq!(Snapshot::from_wire(&[1, 2]), None);
        })
        .join()
        .unwrap();
    }
}
