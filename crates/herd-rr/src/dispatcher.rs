//! [`RoundRobin`]: the primary accepts every connection and hands it to a worker, with
//! acknowledgements, back-pressure and re-dispatch of what a dying worker did not take.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use herd::{Dispatch, DispatchCtx};
use mio::Interest;

use crate::accept::{Accepted, Listening};
use crate::peers::{Conn, Peers, STALE_LOAD};
use crate::strategy::{self, Strategy};

/// The most connections one IPC frame carries (the kernel's SCM_MAX_FD).
const MAX_FDS_PER_FRAME: usize = 253;

/// How long accepting stops after the primary ran out of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Node's SCHED_RR done right, with least-connections and sticky variants: the primary accepts
/// every connection and hands it to a worker over the worker's IPC socket (SCM_RIGHTS).
///
/// Install it with [`herd::Cluster::dispatch`]; workers serve with [`herd::Worker::bind`] and
/// [`herd::Worker::serve`] (or [`herd::Worker::serve_http`]) as under any policy.
///
/// - Everything accepted in one readiness pass for one worker goes in one IPC frame.
/// - The dispatcher keeps its copy of every handed-over connection until the worker
///   acknowledges it; a worker that dies first gets its unacknowledged connections given to
///   another worker (or, when none is serving, to the next one that comes up). Node loses
///   them (nodejs/node #3551, #21746).
/// - A worker with [`RoundRobin::max_unacknowledged`] connections in flight, or at
///   [`RoundRobin::max_connections`], is skipped; when every worker is saturated the dispatcher
///   stops accepting (the kernel's accept queue holds the rest) and resumes when one frees up.
///   The primary never queues more than the connections in flight.
///
/// ```no_run
/// use herd::{Cluster, Request, Response};
///
/// fn main() -> Result<(), herd::Error> {
///     Cluster::new()
///         .workers(2)
///         .dispatch(herd_rr::RoundRobin::least_connections().max_connections(1000))
///         .run(|worker| {
///             worker.serve_http("0.0.0.0:8000", |_req: &Request<'_>, res: &mut Response| {
///                 res.body("hello\n");
///             })
///         })
/// }
/// ```
pub struct RoundRobin {
    strategy: Strategy,
    peers: Peers,
    listeners: Vec<Listening>,
    /// Connections whose worker died before acknowledging them, oldest first; they go out
    /// before anything new is accepted.
    orphans: VecDeque<Conn>,
    cursor: usize,
    /// Accepting stopped because every worker is saturated (or none serves).
    paused: bool,
    /// Accepting stopped after EMFILE and the like, until then.
    backoff_until: Option<Instant>,
    /// When to look again at workers held back only by their last load report.
    recheck_at: Option<Instant>,
}

impl std::fmt::Debug for RoundRobin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundRobin")
            .field("strategy", &self.strategy)
            .field("max_unacknowledged", &self.peers.max_in_flight)
            .field("max_connections", &self.peers.max_connections)
            .field("workers", &self.peers.len())
            .field("orphans", &self.orphans.len())
            .field("paused", &self.paused)
            .finish_non_exhaustive()
    }
}

impl Default for RoundRobin {
    fn default() -> Self {
        Self::new()
    }
}

impl RoundRobin {
    /// The default for [`RoundRobin::max_unacknowledged`].
    pub const DEFAULT_MAX_UNACKNOWLEDGED: usize = 64;

    /// Round-robin dispatch (Node's SCHED_RR): each connection to the next worker in turn.
    pub fn new() -> RoundRobin {
        RoundRobin::with_strategy(Strategy::RoundRobin)
    }

    /// Least-connections dispatch: each connection to the worker with the fewest open plus
    /// unacknowledged connections (workers report their open counts, at most every 20 ms).
    pub fn least_connections() -> RoundRobin {
        RoundRobin::with_strategy(Strategy::LeastConnections)
    }

    /// Sticky dispatch by client IP: the same client address reaches the same worker while it
    /// lives; when a worker goes, only its clients move. See [`Strategy::Sticky`].
    pub fn sticky() -> RoundRobin {
        RoundRobin::with_strategy(Strategy::Sticky)
    }

    /// A dispatcher with `strategy` and the default settings.
    pub fn with_strategy(strategy: Strategy) -> RoundRobin {
        RoundRobin {
            strategy,
            peers: Peers::new(Self::DEFAULT_MAX_UNACKNOWLEDGED, None),
            listeners: Vec::new(),
            orphans: VecDeque::new(),
            cursor: 0,
            paused: false,
            backoff_until: None,
            recheck_at: None,
        }
    }

    /// The dispatcher named `name` as the examples' `POLICY` takes it: `rr`, `rr-least` or
    /// `rr-sticky`.
    pub fn from_name(name: &str) -> Option<RoundRobin> {
        match name {
            "rr" => Some(RoundRobin::new()),
            "rr-least" => Some(RoundRobin::least_connections()),
            "rr-sticky" => Some(RoundRobin::sticky()),
            _ => None,
        }
    }

    /// The names [`RoundRobin::from_name`] knows.
    pub const NAMES: [&'static str; 3] = ["rr", "rr-least", "rr-sticky"];

    /// The most connections handed to one worker and not yet acknowledged; a worker with this
    /// many in flight gets nothing more until it acknowledges (Node allows one). Also the
    /// largest batch one worker gets per pass. Default: 64.
    ///
    /// # Panics
    /// When `n` is 0.
    pub fn max_unacknowledged(mut self, n: usize) -> Self {
        assert!(n > 0, "max_unacknowledged must be at least 1");
        self.peers.max_in_flight = n;
        self
    }

    /// The most connections one worker holds (open, as it last reported, plus acknowledged
    /// since and in flight); a worker at the cap gets nothing more until some close. `None`
    /// removes the cap. With a cap, workers report their open counts (at most every 20 ms, at
    /// once when they drop to 0); a worker whose last report is older than 50 ms while it sits
    /// at the cap may get one connection beyond it (its count then changes and it reports
    /// afresh), so a report the worker throttled cannot hold it back forever. Default: none
    /// (only [`RoundRobin::max_unacknowledged`] limits a worker, and round-robin and sticky
    /// dispatch need no load reports).
    ///
    /// # Panics
    /// When the cap is 0.
    pub fn max_connections(mut self, cap: impl Into<Option<usize>>) -> Self {
        let cap = cap.into();
        assert!(cap != Some(0), "max_connections must be at least 1");
        self.peers.max_connections = cap;
        self
    }

    /// How this dispatcher picks workers.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Connections the primary holds now: handed over and not yet acknowledged, plus those
    /// waiting for a worker after theirs died.
    pub fn held(&self) -> usize {
        (0..self.peers.len())
            .map(|i| self.peers.get(i).in_flight())
            .sum::<usize>()
            + self.orphans.len()
    }

    /// Hands out what waits and accepts what the listeners hold (only listener `only`, when
    /// given and nothing else waits), in batches, until the queues are empty or every worker
    /// is saturated.
    fn pump(&mut self, only: Option<usize>, ctx: &mut DispatchCtx<'_>) {
        let mut only = only;
        loop {
            self.place_orphans();
            if self.orphans.is_empty() {
                let range = match only.take() {
                    Some(i) if !self.paused => i..i + 1,
                    _ => 0..self.listeners.len(),
                };
                self.accept_from(range);
            } else {
                self.paused = true;
            }
            if self.flush(ctx) {
                return;
            }
            // A hand-off failed: its connections are orphans again; place them elsewhere.
        }
    }

    /// Gives waiting orphans to workers with room.
    fn place_orphans(&mut self) {
        while let Some(c) = self.orphans.pop_front() {
            match strategy::pick(self.strategy, &self.peers, &mut self.cursor, c.ip) {
                Some(i) => {
                    let p = self.peers.get_mut(i);
                    p.batch.push(c.stream);
                    p.batch_ips.push(c.ip);
                }
                None => {
                    self.orphans.push_front(c);
                    return;
                }
            }
        }
    }

    /// Accepts from the listeners in `range` while some worker has room.
    fn accept_from(&mut self, range: std::ops::Range<usize>) {
        if self.backoff_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.backoff_until = None;
        self.paused = false;
        for l in &self.listeners[range] {
            loop {
                if !self.peers.any_room() {
                    self.paused = true;
                    return;
                }
                match l.accept() {
                    Accepted::Conn(stream, peer) => {
                        let ip = peer.ip();
                        match strategy::pick(self.strategy, &self.peers, &mut self.cursor, ip) {
                            Some(i) => {
                                let p = self.peers.get_mut(i);
                                p.batch.push(stream);
                                p.batch_ips.push(ip);
                            }
                            None => self.orphans.push_back(Conn { stream, ip }),
                        }
                    }
                    Accepted::Empty => break,
                    Accepted::Starved(e) => {
                        tracing::warn!(
                            addr = %l.addr,
                            "accept: {e}; pausing {} ms",
                            ACCEPT_BACKOFF.as_millis()
                        );
                        self.backoff_until = Some(Instant::now() + ACCEPT_BACKOFF);
                        self.paused = true;
                        return;
                    }
                    Accepted::Failed(e) => {
                        tracing::warn!(addr = %l.addr, "accept: {e}");
                        break;
                    }
                }
            }
        }
    }

    /// Sends every worker its batch, one frame each. Returns false when a hand-off failed (its
    /// connections are back among the orphans and the worker takes nothing more).
    fn flush(&mut self, ctx: &mut DispatchCtx<'_>) -> bool {
        let mut all_sent = true;
        for p in self.peers.iter_mut() {
            if p.batch.is_empty() {
                continue;
            }
            let streams = std::mem::take(&mut p.batch);
            let ips = std::mem::take(&mut p.batch_ips);
            let mut sent = 0;
            for chunk in streams.chunks(MAX_FDS_PER_FRAME) {
                if let Err(e) = ctx.hand(p.id, chunk) {
                    tracing::debug!(worker = p.id, "hand-off failed: {e}");
                    p.closed = true;
                    all_sent = false;
                    break;
                }
                sent += chunk.len();
            }
            for (k, (stream, ip)) in streams.into_iter().zip(ips).enumerate() {
                let c = Conn { stream, ip };
                if k < sent {
                    p.unacked.push_back(c);
                } else {
                    self.orphans.push_back(c);
                }
            }
        }
        all_sent
    }

    /// Runs [`RoundRobin::pump`] when something waits for a worker to free up.
    fn resume(&mut self, ctx: &mut DispatchCtx<'_>) {
        if self.paused || !self.orphans.is_empty() {
            self.pump(None, ctx);
        }
        self.recheck_at =
            (self.paused && self.peers.waiting_on_reports()).then(|| Instant::now() + STALE_LOAD);
    }
}

impl Dispatch for RoundRobin {
    fn listen(
        &mut self,
        addr: SocketAddr,
        listener: TcpListener,
        ctx: &mut DispatchCtx<'_>,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let mut socket = mio::net::TcpListener::from_std(listener);
        let token = self.listeners.len();
        ctx.register(&mut socket, token, Interest::READABLE)?;
        self.listeners.push(Listening { addr, socket });
        self.pump(Some(token), ctx);
        Ok(())
    }

    fn ready(&mut self, token: usize, ctx: &mut DispatchCtx<'_>) {
        if token < self.listeners.len() {
            self.pump(Some(token), ctx);
            self.recheck_at = (self.paused && self.peers.waiting_on_reports())
                .then(|| Instant::now() + STALE_LOAD);
        }
    }

    fn worker_up(&mut self, id: u32, ctx: &mut DispatchCtx<'_>) {
        // A slot the primary does not know cannot collide with real ones.
        let slot = ctx.slot(id).unwrap_or(usize::MAX - id as usize);
        self.peers.add(id, slot, Instant::now());
        tracing::debug!(worker = id, slot, "dispatch: worker up");
        self.resume(ctx);
    }

    fn stop(&mut self, ctx: &mut DispatchCtx<'_>) {
        // Every worker is leaving and gets nothing more: what waits in the queues would only
        // be reset when the primary exits. Closing now refuses new connections at once.
        for mut l in self.listeners.drain(..) {
            let _ = ctx.deregister(&mut l.socket);
        }
    }

    fn worker_leaving(&mut self, id: u32, _ctx: &mut DispatchCtx<'_>) {
        if let Some(p) = self.peers.find_mut(id) {
            p.closed = true;
        }
    }

    fn worker_gone(&mut self, id: u32, ctx: &mut DispatchCtx<'_>) {
        let Some(i) = self.peers.position(id) else {
            return;
        };
        let p = self.peers.remove(i);
        if self.cursor > i {
            self.cursor -= 1;
        }
        if !p.unacked.is_empty() {
            tracing::info!(
                worker = id,
                n = p.unacked.len(),
                "dispatch: worker gone before acknowledging; handing its connections to another"
            );
        }
        // Oldest first: they waited longer than anything still in the accept queue.
        for c in p.unacked.into_iter().rev() {
            self.orphans.push_front(c);
        }
        self.resume(ctx);
    }

    fn took(&mut self, id: u32, n: usize, ctx: &mut DispatchCtx<'_>) {
        let Some(p) = self.peers.find_mut(id) else {
            return;
        };
        let n = n.min(p.unacked.len());
        p.unacked.drain(..n);
        p.acked_since_report += n;
        self.resume(ctx);
    }

    fn load(&mut self, id: u32, open: usize, ctx: &mut DispatchCtx<'_>) {
        let Some(p) = self.peers.find_mut(id) else {
            return;
        };
        p.open = open;
        p.acked_since_report = 0;
        p.reported_at = Instant::now();
        self.resume(ctx);
    }

    fn wants_load(&self) -> bool {
        self.strategy == Strategy::LeastConnections || self.peers.max_connections.is_some()
    }

    fn deadline(&self) -> Option<Instant> {
        match (self.backoff_until, self.recheck_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn timer(&mut self, ctx: &mut DispatchCtx<'_>) {
        let now = Instant::now();
        if self.backoff_until.is_some_and(|t| t <= now) {
            self.paused = true;
        }
        if self.recheck_at.is_some_and(|t| t <= now) {
            self.recheck_at = None;
        }
        self.resume(ctx);
        if self.backoff_until.is_some_and(|t| t <= now) {
            self.backoff_until = None;
        }
    }
}
