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
use crate::protocol::Protocol;

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
            if self.drained() {
                return Ok(());
            }
            self.report_load(hooks);
        }
        loop {
            let timeout = self
                .wake_at()
                .map(|at| at.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
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
            self.timers(now);
            if self
                .acceptor
                .should_retry(now, self.sockets.len(), self.config.max_connections)
            {
                for i in 0..self.acceptor.len() {
                    self.accept(i, now);
                }
            }
            self.report_load(hooks);
            if let Some(deadline) = self.drain_deadline {
                if self.drained() || now >= deadline {
                    return Ok(());
                }
            }
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
                Inbound::Disconnect => self.drain(now),
                Inbound::Connections(streams) => {
                    // This process holds them now: the primary may close its copies before
                    // they are served (which may happen right away, below).
                    hooks.took(streams.len());
                    for stream in streams {
                        stream.set_nonblocking(true)?;
                        let peer = stream.peer_addr().ok();
                        self.add(TcpStream::from_std(stream), peer, true, now);
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
                Accepted::Stream(stream, peer) => self.add(stream, Some(peer), false, now),
                Accepted::Done => return,
            }
        }
    }

    fn add(
        &mut self,
        stream: TcpStream,
        peer: Option<std::net::SocketAddr>,
        handed_over: bool,
        now: Instant,
    ) {
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
        if self.drain_deadline.is_some() {
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
            Status::Open => self.schedule_for(key),
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

    /// Stop accepting and let every connection finish what it is doing.
    fn drain(&mut self, now: Instant) {
        if self.drain_deadline.is_some() {
            return;
        }
        self.acceptor.close(self.poll.registry());
        self.drain_deadline = Some(now + self.config.drain_timeout);
        for key in 0..self.sockets.bound() {
            self.with(key, now, |s, cx| s.on_drain(cx));
        }
    }
}
