//! The loop itself: poll, dispatch readiness to connections, accept, sweep timers, drain.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::accept::{Accepted, Acceptor};
use super::hooks::{Hooks, Inbound};
use super::slab::Slab;
use super::socket::{Buffers, Ctx, Socket, Status};
use super::wake::{Hub, Wake, Woken, RESUME};
use super::Config;
use crate::protocol::{Handover, Protocol};

/// The hooks' fd is registered as this token; listeners sit just below it.
const HOOKS: Token = Token(usize::MAX);
/// The waker of [`Wake`] handles; far from both connection keys and listener tokens.
const WAKE: Token = Token(usize::MAX >> 1);

/// Whether [`Reactor::run`] goes on after handling the hooks' news.
enum Next {
    Serve,
    Exit,
}

pub(super) struct Reactor<P: Protocol> {
    poll: Poll,
    protocol: Arc<P>,
    config: Config,
    acceptor: Acceptor,
    sockets: Slab<Socket<P::Conn>>,
    bufs: Buffers,
    /// When the next timer sweep is due; `None` while no connection has a deadline.
    next_sweep: Option<Instant>,
    last_sweep: Instant,
    /// Set once draining started: the moment the loop gives up waiting.
    drain_deadline: Option<Instant>,
    /// Draining, and idle connections go back to the surroundings instead of closing.
    handing_back: bool,
    /// Connections released this turn, for [`Hooks::hand_back`].
    leaving: Vec<(std::net::TcpStream, Vec<u8>)>,
    /// Connections that spent their read budget with input left: read again next turn, after
    /// the connections the poll reports (no new edge will announce their input).
    busy: Vec<usize>,
    /// Shared with every connection's [`Wake`].
    hub: Arc<Hub>,
    /// Connections woken from other threads, as (key, generation).
    woken: crossbeam_channel::Receiver<Woken>,
    /// The generation of the next connection (see [`Wake`]).
    next_gen: u64,
    /// Connections left unread while reading was paused (back-pressure), to read on resume.
    parked: Vec<usize>,
}

impl<P: Protocol> Reactor<P> {
    pub(super) fn new(
        listeners: Vec<std::net::TcpListener>,
        protocol: Arc<P>,
        config: &Config,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let acceptor = Acceptor::new(listeners, poll.registry())?;
        let (hub, woken) = Hub::new(poll.registry(), WAKE)?;
        Ok(Reactor {
            poll,
            protocol,
            config: config.clone(),
            acceptor,
            sockets: Slab::new(),
            bufs: Buffers {
                read: vec![0; config.read_buffer.max(1)],
                out: Vec::new(),
            },
            next_sweep: None,
            last_sweep: Instant::now(),
            drain_deadline: None,
            handing_back: false,
            leaving: Vec::new(),
            busy: Vec::new(),
            hub,
            woken,
            next_gen: 0,
            parked: Vec::new(),
        })
    }

    pub(super) fn run(mut self, hooks: &mut dyn Hooks) -> io::Result<()> {
        if let Some(fd) = hooks.fd() {
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), HOOKS, Interest::READABLE)?;
        }
        hooks.serving(&self.acceptor.local_addrs());
        let mut events = Events::with_capacity(self.config.events.max(1));
        let mut inbound = Vec::new();
        // What arrived before the loop (e.g. a disconnect while the worker was still asking
        // for its listener) may already sit in the hooks' buffers with no edge left to
        // report it: look once before the first poll.
        if hooks.fd().is_some() {
            match hooks.read(&mut inbound) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
            if let Next::Exit = self.inbound(&mut inbound, hooks, Instant::now())? {
                return Ok(());
            }
            self.hand_back(hooks);
            if self.drained() {
                return Ok(());
            }
            self.report_load(hooks);
        }
        loop {
            let timeout = if self.busy.is_empty() {
                self.wake_at()
                    .into_iter()
                    .chain(hooks.tick_at())
                    .min()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(std::time::Duration::ZERO)
            };
            // An idle loop still turns now and then: its heartbeat says it is not hung.
            let timeout = crate::heartbeat::cap(timeout);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            let busy = std::mem::take(&mut self.busy);
            crate::heartbeat::beat(now);
            for event in &events {
                let token = event.token();
                if token == HOOKS {
                    match hooks.read(&mut inbound) {
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                        _ => {}
                    }
                    if let Next::Exit = self.inbound(&mut inbound, hooks, now)? {
                        return Ok(());
                    }
                } else if token == WAKE {
                    self.wake(now);
                } else if let Some(i) = self.acceptor.listener_of(token) {
                    self.accept(i, now);
                } else {
                    self.ready(
                        token.0,
                        event.is_writable(),
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_error() || event.is_write_closed(),
                        now,
                    );
                }
            }
            for key in busy {
                self.with(key, now, |s, cx| s.on_readable(cx));
            }
            self.timers(now);
            if self
                .acceptor
                .should_retry(now, self.sockets.len(), self.config.max_connections)
            {
                for i in 0..self.acceptor.len() {
                    self.accept(i, now);
                }
            }
            self.hand_back(hooks);
            self.report_load(hooks);
            if hooks.tick_at().is_some_and(|t| t <= now) {
                hooks.tick(now, self.sockets.len());
            }
            if let Some(deadline) = self.drain_deadline {
                if self.drained() || now >= deadline {
                    return Ok(());
                }
            }
        }
    }

    /// Gives the connections released this turn to the hooks (one message for all).
    fn hand_back(&mut self, hooks: &mut dyn Hooks) {
        if self.leaving.is_empty() {
            return;
        }
        let conns = std::mem::take(&mut self.leaving);
        let n = conns.len();
        if let Err(e) = hooks.hand_back(conns) {
            tracing::debug!("could not hand back {n} idle connections ({e}): closed");
        }
    }

    /// Draining, and nothing left: no connection, no work begun for one (see [`Wake`]).
    fn drained(&self) -> bool {
        self.drain_deadline.is_some() && self.sockets.len() == 0 && self.hub.pending() == 0
    }

    /// Other threads woke connections (or lifted the back-pressure): serve them.
    fn wake(&mut self, now: Instant) {
        self.hub.disarm();
        while let Ok((key, gen)) = self.woken.try_recv() {
            if key == RESUME {
                self.resume(now);
            } else if self.sockets.get_mut(key).is_some_and(|s| s.gen == gen) {
                self.with(key, now, |s, cx| s.on_wake(cx));
                if self.sockets.get_mut(key).is_some_and(|s| s.take_missed()) {
                    if self.hub.paused() {
                        self.parked.push(key);
                    } else {
                        self.with(key, now, |s, cx| s.on_readable(cx));
                    }
                }
            }
            // Otherwise the connection closed meanwhile (its key may serve a newer one).
        }
    }

    /// Reading was paused and is allowed again: read what the parked connections left.
    fn resume(&mut self, now: Instant) {
        if self.hub.paused() {
            return;
        }
        for key in std::mem::take(&mut self.parked) {
            self.with(key, now, |s, cx| s.on_readable(cx));
        }
    }

    /// Tells the hooks the open-connection count (they decide what is worth sending).
    fn report_load(&self, hooks: &mut dyn Hooks) {
        hooks.load(self.sockets.len());
    }

    /// The earliest moment the loop must wake up without an event.
    fn wake_at(&self) -> Option<Instant> {
        [
            self.next_sweep,
            self.acceptor.backoff_until(),
            self.drain_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn inbound(
        &mut self,
        inbound: &mut Vec<Inbound>,
        hooks: &mut dyn Hooks,
        now: Instant,
    ) -> io::Result<Next> {
        for news in inbound.drain(..) {
            match news {
                Inbound::Disconnect => self.drain(now, hooks.can_hand_back()),
                Inbound::Connections(streams) => {
                    // This process holds them now: the primary may close its copies before
                    // they are served (which may happen right away, below).
                    hooks.took(streams.len());
                    for stream in streams {
                        stream.set_nonblocking(true)?;
                        let peer = stream.peer_addr().ok();
                        self.add(TcpStream::from_std(stream), peer, true, Vec::new(), now);
                    }
                }
                Inbound::Adopt(conns) => {
                    for (stream, input) in conns {
                        stream.set_nonblocking(true)?;
                        let peer = stream.peer_addr().ok();
                        self.add(TcpStream::from_std(stream), peer, true, input, now);
                    }
                }
                Inbound::Closed => return Ok(Next::Exit),
            }
        }
        Ok(Next::Serve)
    }

    fn accept(&mut self, listener: usize, now: Instant) {
        loop {
            let open = self.sockets.len();
            let max = self.config.max_connections;
            match self
                .acceptor
                .accept(listener, open, max, now, self.config.accept_backoff)
            {
                Accepted::Stream(stream, peer) => {
                    self.add(stream, Some(peer), false, Vec::new(), now)
                }
                Accepted::Done => return,
            }
        }
    }

    /// Serves a new connection: accepted here, handed over by the primary, or adopted from a
    /// draining worker with the `input` it had read.
    fn add(
        &mut self,
        stream: TcpStream,
        peer: Option<std::net::SocketAddr>,
        handed_over: bool,
        input: Vec<u8>,
        now: Instant,
    ) {
        crate::metrics::local::connection();
        let token = Token(self.sockets.vacant_key());
        let gen = self.next_gen;
        self.next_gen += 1;
        let wake = Wake::new(Arc::clone(&self.hub), token.0, gen);
        let proto = self.protocol.connect_with(peer, now, wake);
        let mut socket = Socket::new(stream, token, proto, handed_over, now);
        socket.gen = gen;
        let key = self.sockets.insert(socket);
        // Read before registering: the request is usually there already, and a connection
        // answered and closed in this read never costs an epoll_ctl or a wake-up.
        if !input.is_empty() {
            self.with(key, now, |s, cx| s.on_adopted(input, cx));
        } else if self.drain_deadline.is_some() && !self.handing_back {
            // A hand-off raced with the drain: treat it like the connections already open.
            self.with(key, now, |s, cx| s.on_drain(cx));
        } else if self.hub.paused() {
            self.parked.push(key);
        } else {
            self.with(key, now, |s, cx| s.on_readable(cx));
        }
        let registry = self.poll.registry();
        if let Some(socket) = self.sockets.get_mut(key) {
            if let Err(e) = socket.register(registry) {
                tracing::warn!("register: {e}");
                if let Some(socket) = self.sockets.remove(key) {
                    socket.close(registry);
                }
            }
        }
    }

    /// Readiness for connection `key`.
    fn ready(&mut self, key: usize, writable: bool, readable: bool, hung_up: bool, now: Instant) {
        if writable {
            self.with(key, now, |s, cx| s.on_writable(cx));
        }
        if readable {
            match self.sockets.get_mut(key) {
                // The client is gone while its answer is being prepared: free the slot now;
                // the answer, when it comes, finds another generation and is dropped.
                Some(s) if hung_up && s.is_waiting() => {
                    if let Some(socket) = self.sockets.remove(key) {
                        socket.close(self.poll.registry());
                    }
                }
                Some(_) if self.hub.paused() => self.parked.push(key),
                _ => self.with(key, now, |s, cx| s.on_readable(cx)),
            }
        }
    }

    /// Run one callback on connection `key` (if it still exists), then close it or note its
    /// deadline.
    fn with(
        &mut self,
        key: usize,
        now: Instant,
        f: impl FnOnce(&mut Socket<P::Conn>, &mut Ctx<'_>) -> Status,
    ) {
        let Some(socket) = self.sockets.get_mut(key) else {
            return;
        };
        let mut cx = Ctx {
            registry: self.poll.registry(),
            bufs: &mut self.bufs,
            now,
            max_pending_output: self.config.max_pending_output,
        };
        match f(socket, &mut cx) {
            Status::Open if self.handing_back && socket.handover() == Handover::Now => {
                if let Some(socket) = self.sockets.remove(key) {
                    self.leaving.push(socket.release(self.poll.registry()));
                }
            }
            Status::Open => self.schedule_for(key),
            Status::Busy => {
                self.schedule_for(key);
                self.busy.push(key);
            }
            Status::Closed => {
                if let Some(socket) = self.sockets.remove(key) {
                    socket.close(self.poll.registry());
                }
            }
        }
    }

    /// Make sure the sweep runs by connection `key`'s deadline.
    fn schedule_for(&mut self, key: usize) {
        let write_timeout = self.config.write_timeout;
        if let Some(at) = self
            .sockets
            .get_mut(key)
            .and_then(|s| s.deadline(write_timeout))
        {
            self.schedule(at);
        }
    }

    /// Sweep by `at`, but not sooner than a granule after the last sweep.
    fn schedule(&mut self, at: Instant) {
        let at = at.max(self.last_sweep + self.config.timer_granularity);
        self.next_sweep = Some(self.next_sweep.map_or(at, |t| t.min(at)));
    }

    /// The periodic sweep: fire every passed deadline, then schedule the next sweep by the
    /// earliest deadline left.
    fn timers(&mut self, now: Instant) {
        if !matches!(self.next_sweep, Some(t) if t <= now) {
            return;
        }
        self.last_sweep = now;
        self.next_sweep = None;
        let write_timeout = self.config.write_timeout;
        for key in 0..self.sockets.bound() {
            self.with(key, now, |s, cx| s.on_timer(cx, write_timeout));
        }
    }

    /// Stop accepting and let every connection finish what it is doing. With `hand_back`,
    /// connections whose protocol can move are not told: each leaves for another worker as
    /// soon as it is idle (at once for most), the others drain as usual.
    fn drain(&mut self, now: Instant, hand_back: bool) {
        if self.drain_deadline.is_some() {
            return;
        }
        // Take what is queued first (it is served like the connections already open): once
        // the primary has closed its copy too, closing ours refuses new connections and would
        // reset these.
        for i in 0..self.acceptor.len() {
            self.accept(i, now);
        }
        self.acceptor.close(self.poll.registry());
        self.drain_deadline = Some(now + self.config.drain_timeout);
        self.handing_back = hand_back;
        for key in 0..self.sockets.bound() {
            let movable = hand_back
                && self
                    .sockets
                    .get_mut(key)
                    .is_some_and(|s| s.handover() != Handover::Never);
            if movable {
                // No callback needed: `with` releases it if it is idle now.
                self.with(key, now, |_, _| Status::Open);
            } else {
                self.with(key, now, |s, cx| s.on_drain(cx));
            }
        }
    }
}
