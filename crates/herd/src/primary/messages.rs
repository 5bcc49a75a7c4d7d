//! What flows over each worker's IPC channel: reading and decoding its messages, sending
//! without ever blocking, answering its listen requests (Node's queryServer), and the
//! primary's side of hand-off policies.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::dispatch::HandOff;
use super::{Dispatch, DispatchCtx, Event, Input, Live, Primary, WorkerState, TOKEN_BASE};
use crate::ipc::{Received, ToPrimary, ToWorker};

impl Primary {
    pub(super) fn send(&mut self, id: u32, msg: &ToWorker, fds: &[BorrowedFd<'_>]) {
        match send_to(&mut self.live, self.poll.registry(), id, msg, fds) {
            Ok(()) => self.cfg.board.ipc_out(),
            Err(e) => tracing::debug!(worker = id, "IPC send failed: {e}"),
        }
    }

    /// Runs `f` with the dispatcher, if the cluster has one.
    pub(super) fn with_dispatch(
        &mut self,
        f: impl FnOnce(&mut dyn Dispatch, &mut DispatchCtx<'_>),
    ) {
        let Some(mut d) = self.cfg.dispatch.take() else {
            return;
        };
        let registry = self.poll.registry();
        let mut hands = Hands {
            live: &mut self.live,
            registry,
        };
        let mut ctx = DispatchCtx {
            registry,
            hand: &mut hands,
        };
        f(&mut *d, &mut ctx);
        self.cfg.dispatch = Some(d);
    }

    pub(super) fn flush_worker(&mut self, id: u32) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let Some(ch) = live.channel.as_mut() else {
            return;
        };
        if let Ok(false) = ch.flush() {
            live.queued = false;
            let fd = ch.raw_fd();
            let _ = self.poll.registry().reregister(
                &mut SourceFd(&fd),
                Token(id as usize + TOKEN_BASE),
                Interest::READABLE,
            );
        }
    }

    pub(super) fn read_worker(&mut self, id: u32) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let Some(ch) = live.channel.as_mut() else {
            return;
        };
        let open = ch.fill().unwrap_or(false);
        let mut got = Vec::new();
        while let Some(r) = ch.next::<ToPrimary>() {
            got.push(r);
        }
        for r in got {
            self.cfg.board.ipc_in();
            match r {
                Received::Message(ToPrimary::HandBack(inputs), fds) => self.adopt(id, inputs, fds),
                Received::Message(m, _) => self.on_message(id, m),
                Received::Oversized(n) => tracing::warn!(
                    worker = id,
                    "discarded a {n}-byte IPC message over the limit of {} bytes",
                    self.cfg.spawn.max_message
                ),
                Received::Malformed(e) => {
                    tracing::warn!(worker = id, "discarded a malformed IPC message: {e}")
                }
            }
        }
        if !open {
            self.channel_closed(id);
        }
    }

    pub(super) fn channel_closed(&mut self, id: u32) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let Some(ch) = live.channel.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut SourceFd(&ch.raw_fd()));
        drop(ch);
        let h = live.handle.clone();
        h.set_state(WorkerState::Disconnected);
        tracing::info!(worker = id, pid = h.pid(), "worker disconnected");
        self.with_dispatch(|d, ctx| d.worker_gone(id, ctx));
        self.emit(Event::Disconnect(h));
    }

    pub(super) fn on_message(&mut self, id: u32, msg: ToPrimary) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let h = live.handle.clone();
        match msg {
            ToPrimary::Online => {
                h.set_state(WorkerState::Online);
                tracing::info!(worker = id, pid = h.pid(), "worker online");
                self.emit(Event::Online(h));
                self.feed(Input::Online(id));
            }
            ToPrimary::Listen { req, addr } => self.on_listen(id, h.slot(), req, &addr),
            ToPrimary::Listening { addr } => {
                self.cfg.allowed.stop_learning();
                if !self.sup.listened(id) {
                    self.with_dispatch(|d, ctx| d.worker_up(id, ctx));
                }
                h.set_state(WorkerState::Listening);
                let addr: SocketAddr = match addr.parse() {
                    Ok(a) => a,
                    Err(_) => return,
                };
                tracing::info!(worker = id, pid = h.pid(), %addr, "worker listening");
                self.cfg.board.listening(addr);
                self.emit(Event::Listening(h, addr));
                self.feed(Input::Listening(id));
                self.maybe_started();
            }
            ToPrimary::Ready => {
                tracing::info!(worker = id, pid = h.pid(), "worker ready");
                self.feed(Input::Ready(id));
                self.maybe_started();
            }
            ToPrimary::Message(data) => self.emit(Event::Message(h, data)),
            ToPrimary::Took(n) => self.with_dispatch(|d, ctx| d.took(id, n as usize, ctx)),
            ToPrimary::Load(n) => self.with_dispatch(|d, ctx| d.load(id, n as usize, ctx)),
            ToPrimary::HandBack(inputs) => self.adopt(id, inputs, Vec::new()),
            ToPrimary::Stats(snap) => {
                let queues = crate::metrics::board::queues(&self.cfg.listeners, h.slot());
                self.cfg.board.snapshot(id, snap, queues);
            }
        }
    }

    /// Every slot has a ready worker: systemd hears the cluster started (once).
    fn maybe_started(&mut self) {
        if self.sup.all_ready() {
            self.notifier.all_ready(self.cfg.settings.workers);
        }
    }

    /// Workers (other than `except`) that can take connections from elsewhere (given back
    /// by a draining worker, or left queued on a removed slot): serving, and staying.
    pub(super) fn adopters(&self, except: Option<u32>) -> impl Iterator<Item = u32> + '_ {
        self.live
            .iter()
            .filter(move |(id, l)| {
                Some(**id) != except && self.sup.serving(**id) && l.channel.is_some()
            })
            .map(|(id, _)| *id)
    }

    /// Draining worker `from` gave back idle connections (`fds`, each with the bytes it had
    /// read): they go to its slot's successor (a reload), else across the workers that
    /// stay (a scale-down, a disconnect). With no one to take them they close, as they
    /// would have in the worker.
    fn adopt(&mut self, from: u32, inputs: Vec<Vec<u8>>, fds: Vec<OwnedFd>) {
        let successor = self
            .live
            .get(&from)
            .and_then(|l| self.sup.current(l.handle.slot()));
        let mut takers: Vec<u32> = self.adopters(Some(from)).collect();
        if let Some(s) = successor.filter(|s| takers.contains(s)) {
            takers = vec![s];
        }
        if takers.is_empty() {
            tracing::debug!(
                worker = from,
                "no worker to adopt {} connections",
                fds.len()
            );
            return;
        }
        takers.sort_unstable();
        let mut each: Vec<(Vec<Vec<u8>>, Vec<OwnedFd>)> =
            (0..takers.len()).map(|_| Default::default()).collect();
        for (input, fd) in inputs.into_iter().zip(fds) {
            let i = self.adopt_turn % takers.len();
            self.adopt_turn = self.adopt_turn.wrapping_add(1);
            each[i].0.push(input);
            each[i].1.push(fd);
        }
        for (to, (inputs, fds)) in takers.into_iter().zip(each) {
            if fds.is_empty() {
                continue;
            }
            let n = fds.len();
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
            self.send(to, &ToWorker::Adopt(inputs), &borrowed);
            tracing::debug!(from, to, n, "connections adopted");
        }
    }

    /// A worker's listen request: an address it may not have is refused before any socket
    /// is made (see `allow`).
    pub(super) fn on_listen(&mut self, id: u32, slot: usize, req: u32, addr: &str) {
        let requests = self.live.get_mut(&id).map_or(0, |l| {
            l.listen_requests = l.listen_requests.saturating_add(1);
            l.listen_requests
        });
        let parsed = match addr.parse::<SocketAddr>() {
            Ok(a) if self.sup.stopping() => Err(crate::listen::ListenError {
                errno: libc::ESHUTDOWN,
                text: format!("refused to listen on {a}: the cluster is stopping"),
            }),
            Ok(a) => self
                .cfg
                .allowed
                .check(a, requests)
                .map(|_| a)
                .map_err(|text| crate::listen::ListenError {
                    errno: libc::EPERM,
                    text,
                }),
            Err(_) => Err(crate::listen::ListenError {
                errno: libc::EINVAL,
                text: format!(
                    "cannot listen on {addr}: give an IP address and port, like 0.0.0.0:8000"
                ),
            }),
        };
        if self.cfg.listeners.handoff() {
            return self.on_listen_handoff(id, req, parsed);
        }
        let result = parsed.and_then(|a| {
            let fd = self.cfg.listeners.get(a, slot)?;
            fd.try_clone_to_owned()
                .map(|fd| (a, fd))
                .map_err(|e| crate::listen::ListenError {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                    text: format!("cannot pass the listener for {a}: {e}"),
                })
        });
        match result {
            Ok((a, fd)) => {
                if let Some(live) = self.live.get_mut(&id) {
                    if !live.asked.contains(&a) {
                        live.asked.push(a);
                    }
                }
                self.send(id, &ToWorker::ListenOk { req }, &[fd.as_fd()])
            }
            Err(e) => self.listen_failed(id, req, e),
        }
    }

    /// Tells worker `id` its listen request `req` failed, and remembers why (a worker that
    /// exits without ever listening stops the cluster with this reason).
    pub(super) fn listen_failed(&mut self, id: u32, req: u32, e: crate::listen::ListenError) {
        tracing::warn!(worker = id, "{}", e.text);
        self.feed(Input::ListenFailed(id, e.text.clone()));
        let msg = ToWorker::ListenErr {
            req,
            errno: e.errno,
            text: e.text,
        };
        self.send(id, &msg, &[]);
    }

    pub(super) fn on_listen_handoff(
        &mut self,
        id: u32,
        req: u32,
        addr: Result<SocketAddr, crate::listen::ListenError>,
    ) {
        let result = addr.and_then(|a| self.cfg.listeners.get_handoff(a));
        let result = result.and_then(|(real, created)| {
            let Some(fd) = created else { return Ok(real) };
            let mut outcome = Ok(());
            self.with_dispatch(|d, ctx| {
                outcome = d.listen(real, std::net::TcpListener::from(fd), ctx);
            });
            outcome
                .map(|_| real)
                .map_err(|e| crate::listen::ListenError {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                    text: format!("the dispatcher cannot accept on {real}: {e}"),
                })
        });
        match result {
            Ok(real) => self.send(
                id,
                &ToWorker::ListenHandoff {
                    req,
                    addr: real.to_string(),
                },
                &[],
            ),
            Err(e) => self.listen_failed(id, req, e),
        }
    }
}

/// Sends `msg` (with `fds`) to worker `id` without blocking; a full socket queues the rest
/// and asks the poll for writability.
fn send_to(
    live: &mut HashMap<u32, Live>,
    registry: &Registry,
    id: u32,
    msg: &ToWorker,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let not_connected = || io::Error::new(io::ErrorKind::NotConnected, "worker channel closed");
    let live = live.get_mut(&id).ok_or_else(not_connected)?;
    let ch = live.channel.as_mut().ok_or_else(not_connected)?;
    let mut frame = Vec::new();
    msg.encode(&mut frame);
    if ch.send(frame, fds)? && !live.queued {
        live.queued = true;
        let fd = ch.raw_fd();
        registry.reregister(
            &mut SourceFd(&fd),
            Token(id as usize + TOKEN_BASE),
            Interest::READABLE | Interest::WRITABLE,
        )?;
    }
    Ok(())
}

/// The primary's side of [`DispatchCtx::hand`].
struct Hands<'a> {
    live: &'a mut HashMap<u32, Live>,
    registry: &'a Registry,
}

impl HandOff for Hands<'_> {
    fn hand(&mut self, worker: u32, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        send_to(
            self.live,
            self.registry,
            worker,
            &ToWorker::Connections(fds.len() as u32),
            fds,
        )
    }
    fn slot(&self, worker: u32) -> Option<usize> {
        self.live.get(&worker).map(|l| l.handle.slot())
    }
}
