//! Waking the loop from other threads: a per-loop queue of connections to look at again, and a
//! mio `Waker` that interrupts the loop's `epoll_wait` when something was queued.
//!
//! A [`Wake`] names one connection by its slab key and a generation: a completion for a
//! connection that closed meanwhile (its key possibly reused by a newer connection) carries an
//! old generation and is discarded.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::{Registry, Token, Waker};

/// The key a "resume reading" message carries (no connection has it).
pub(super) const RESUME: usize = usize::MAX;

/// A connection to look at again: its slab key and generation.
pub(super) type Woken = (usize, u64);

/// What the loop and every [`Wake`] of its connections share.
pub(super) struct Hub {
    tx: Sender<Woken>,
    waker: Waker,
    /// A wake-up is on its way: later ones need no syscall until the loop has looked.
    armed: AtomicBool,
    /// Work started on behalf of a connection and not finished yet (a drain waits for it).
    pending: AtomicUsize,
    /// Back-pressure: the loop reads no new input while set (see [`Wake::pause_reading`]).
    paused: AtomicBool,
}

impl Hub {
    pub(super) fn new(
        registry: &Registry,
        token: Token,
    ) -> io::Result<(Arc<Hub>, Receiver<Woken>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let hub = Hub {
            tx,
            waker: Waker::new(registry, token)?,
            armed: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
        };
        Ok((Arc::new(hub), rx))
    }

    fn send(&self, key: usize, gen: u64) {
        // The receiver lives as long as the loop; after it, nobody is left to tell.
        if self.tx.send((key, gen)).is_ok() && !self.armed.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                tracing::warn!("waking the event loop: {e}");
            }
        }
    }

    /// The loop is about to drain the queue: the next message needs a new wake-up.
    pub(super) fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }

    pub(super) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub(super) fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
}

/// A handle that wakes one connection of an event loop from any thread: the loop then calls
/// the connection's [`Connection::on_wake`](crate::protocol::Connection::on_wake) on its own
/// thread. Given to the protocol by [`Protocol::connect_with`](crate::protocol::Protocol::connect_with);
/// cloning it is cheap (a reference count).
#[derive(Clone)]
pub struct Wake {
    hub: Arc<Hub>,
    key: usize,
    gen: u64,
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wake")
            .field("key", &self.key)
            .field("gen", &self.gen)
            .finish()
    }
}

impl Wake {
    pub(super) fn new(hub: Arc<Hub>, key: usize, gen: u64) -> Self {
        Wake { hub, key, gen }
    }

    /// Ask the loop to call this connection's `on_wake` soon. Costs a channel push, and one
    /// `eventfd` write when the loop was not already due to look. If the connection closed
    /// meanwhile, the loop discards the wake-up.
    pub fn wake(&self) {
        self.hub.send(self.key, self.gen);
    }

    /// Count one unit of work begun for this loop (a deferred response): a draining loop does
    /// not exit while any is outstanding (up to its drain timeout), even if the connection it
    /// was for has closed. Pair with [`Wake::end_work`].
    pub fn begin_work(&self) {
        self.hub.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// One unit of work counted by [`Wake::begin_work`] is finished.
    pub fn end_work(&self) {
        self.hub.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Back-pressure for the whole loop: while `on`, the loop stops reading new input from
    /// its connections (the kernel's buffers and accept queue hold it); turning it off makes
    /// the loop read what it left, from any thread.
    pub fn pause_reading(&self, on: bool) {
        let was = self.hub.paused.swap(on, Ordering::AcqRel);
        if was && !on {
            self.hub.send(RESUME, 0);
        }
    }
}
