//! The primary-side hook for hand-off policies (Node's SCHED_RR and its relatives): the
//! primary accepts connections itself and hands each to a worker over that worker's IPC
//! socket (SCM_RIGHTS). herd-rr implements it; the core only provides the plumbing.
//!
//! A dispatcher keeps its copy of every handed-over connection until the worker acknowledges
//! it ([`Dispatch::took`]); if the worker dies first, the copy is still open and can go to
//! another worker, so nothing handed over is lost.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use mio::{Interest, Registry, Token};

/// Tokens at and above this belong to the dispatcher (below are the primary's own).
pub(crate) const DISPATCH_BASE: usize = 1 << 40;

/// The most fds one IPC frame carries (the kernel's SCM_MAX_FD).
pub(crate) const MAX_FDS_PER_FRAME: usize = 253;

/// A primary-side connection dispatcher, installed with [`crate::Cluster::dispatch`].
///
/// Every method runs on the primary's loop; none may block.
pub trait Dispatch: 'static {
    /// The primary created the listening socket for `addr` (once per address, non-blocking).
    /// The dispatcher owns this copy: register it with `ctx` and accept from it.
    ///
    /// # Errors
    /// Registration failed; the workers asking to listen get the error.
    fn listen(
        &mut self,
        addr: SocketAddr,
        listener: TcpListener,
        ctx: &mut DispatchCtx<'_>,
    ) -> io::Result<()>;

    /// A source registered with [`DispatchCtx::register`] under `token` is ready.
    fn ready(&mut self, token: usize, ctx: &mut DispatchCtx<'_>);

    /// Worker `id` serves and takes hand-offs from now on.
    fn worker_up(&mut self, id: u32, ctx: &mut DispatchCtx<'_>);

    /// Worker `id` was asked to leave (disconnect, reload, scale-down, stop): hand it
    /// nothing more. What it has not acknowledged may still be taken by it; wait for
    /// [`Dispatch::worker_gone`] before giving that to another worker.
    fn worker_leaving(&mut self, id: u32, ctx: &mut DispatchCtx<'_>);

    /// Worker `id` is gone (its channel closed or it exited): every hand-off it did not
    /// acknowledge is still the dispatcher's to give to another worker.
    fn worker_gone(&mut self, id: u32, ctx: &mut DispatchCtx<'_>);

    /// Worker `id` registered the first `n` connections handed to it and not yet
    /// acknowledged, in order: the dispatcher can close its copies.
    fn took(&mut self, id: u32, n: usize, ctx: &mut DispatchCtx<'_>);

    /// Worker `id` holds `open` connections (reported only when [`Dispatch::wants_load`]).
    fn load(&mut self, _id: u32, _open: usize, _ctx: &mut DispatchCtx<'_>) {}

    /// Whether workers should report their open-connection counts.
    fn wants_load(&self) -> bool {
        false
    }

    /// The cluster is stopping (every worker was asked to leave): stop accepting and close the
    /// listeners, so that new connections are refused at once (a load balancer then retries
    /// elsewhere) rather than queued until the primary exits. Default: nothing.
    fn stop(&mut self, _ctx: &mut DispatchCtx<'_>) {}

    /// When [`Dispatch::timer`] should next run, if ever.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The deadline passed.
    fn timer(&mut self, _ctx: &mut DispatchCtx<'_>) {}
}

/// Sends a frame of connections to a worker; implemented by the primary.
pub(crate) trait HandOff {
    fn hand(&mut self, worker: u32, fds: &[BorrowedFd<'_>]) -> io::Result<()>;
    /// The slot of worker `worker`, while the primary knows it.
    fn slot(&self, worker: u32) -> Option<usize>;
}

/// What a dispatcher may do on the primary's loop.
pub struct DispatchCtx<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) hand: &'a mut dyn HandOff,
}

impl std::fmt::Debug for DispatchCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchCtx").finish_non_exhaustive()
    }
}

impl DispatchCtx<'_> {
    /// Registers `source` on the primary's poll; readiness comes back as
    /// [`Dispatch::ready`] with `token`.
    ///
    /// # Errors
    /// As mio's `Registry::register`.
    pub fn register<S: mio::event::Source + ?Sized>(
        &self,
        source: &mut S,
        token: usize,
        interest: Interest,
    ) -> io::Result<()> {
        self.registry
            .register(source, Token(DISPATCH_BASE + token), interest)
    }

    /// Changes what `source` is registered for.
    ///
    /// # Errors
    /// As mio's `Registry::reregister`.
    pub fn reregister<S: mio::event::Source + ?Sized>(
        &self,
        source: &mut S,
        token: usize,
        interest: Interest,
    ) -> io::Result<()> {
        self.registry
            .reregister(source, Token(DISPATCH_BASE + token), interest)
    }

    /// Removes `source` from the primary's poll.
    ///
    /// # Errors
    /// As mio's `Registry::deregister`.
    pub fn deregister<S: mio::event::Source + ?Sized>(&self, source: &mut S) -> io::Result<()> {
        self.registry.deregister(source)
    }

    /// The slot of worker `worker` (0-based, stable across replacements: a replacement
    /// inherits its predecessor's slot), or `None` once the primary has forgotten it. Lets a
    /// dispatcher key its choices on slots rather than worker ids (e.g. sticky hashing that
    /// sends a slot's clients back to its replacement).
    pub fn slot(&self, worker: u32) -> Option<usize> {
        self.hand.slot(worker)
    }

    /// Hands `conns` to worker `worker` in as few IPC frames as possible (one per 253
    /// connections). The dispatcher keeps its copies until [`Dispatch::took`] says the worker
    /// has them.
    ///
    /// # Errors
    /// The worker's channel is closed or the send failed; nothing was handed over then
    /// (frames already sent before a failure stay sent).
    pub fn hand(&mut self, worker: u32, conns: &[TcpStream]) -> io::Result<()> {
        for chunk in conns.chunks(MAX_FDS_PER_FRAME) {
            let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(|c| c.as_fd()).collect();
            self.hand.hand(worker, &fds)?;
        }
        Ok(())
    }
}
