//! A worker slot: a stable position in the cluster (slot i = the i-th worker) that a
//! replacement inherits, with its listener, its crash history and its restarts by cause.
//!
//! A slot has at most two workers: the `current` one, and the `incoming` one a reload or a
//! recycle started, which becomes current once ready (new before old). A slot whose worker
//! died and whose next one waits out a backoff has `restart_at`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Backoff;
use crate::primary::handle::Restarts;

#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The worker serving this slot.
    pub current: Option<u32>,
    /// The replacement a reload or recycle started, until it is ready.
    pub incoming: Option<u32>,
    /// When to start a new worker after the last one exited.
    pub restart_at: Option<Instant>,
    /// Crashes in a row (reset after a healthy run): the backoff's count.
    crashes: u32,
    /// When the recent failures happened (the crash-loop window).
    pub failures: VecDeque<Instant>,
    /// The slot crash-loops (reported once, until a healthy run).
    pub failed: bool,
    /// The slot is being removed (scale-down).
    pub removing: bool,
    /// A failed recycle is not tried again before this.
    pub recycle_after: Option<Instant>,
    /// How often the slot's worker was replaced, by cause.
    pub restarts: Restarts,
}

impl Slot {
    pub(crate) fn started(&mut self, id: u32, incoming: bool) {
        if incoming {
            self.incoming = Some(id);
        } else {
            self.current = Some(id);
        }
    }

    /// Worker `id` never started: the slot forgets it.
    pub(crate) fn forget(&mut self, id: u32) {
        if self.incoming == Some(id) {
            self.incoming = None;
        }
        if self.current == Some(id) {
            self.current = None;
        }
    }

    /// The incoming worker `id` is ready: it becomes current; returns the one it replaces.
    pub(crate) fn promote(&mut self, id: u32) -> Option<u32> {
        if self.incoming != Some(id) {
            return None;
        }
        self.incoming = None;
        self.current.replace(id)
    }

    /// The current worker failed after running `lived`: the delay before the next start.
    pub(crate) fn crashed(&mut self, lived: Duration, backoff: &Backoff) -> Duration {
        if lived >= backoff.healthy_after {
            self.crashes = 0;
            self.failed = false;
        }
        self.crashes += 1;
        backoff.delay(self.crashes)
    }
}
