//! A worker slot: a stable position in the cluster (slot i = the i-th worker) that a
//! replacement inherits, with its listener and its crash history.

use std::time::{Duration, Instant};

use super::Backoff;

#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The worker serving this slot.
    pub current: Option<u32>,
    /// The replacement a reload started, until it is ready.
    pub incoming: Option<u32>,
    /// When to start a new worker after the last one exited.
    pub restart_at: Option<Instant>,
    /// Crashes in a row (reset after a healthy run).
    crashes: u32,
    /// The slot is being removed (scale-down).
    pub removing: bool,
}

impl Slot {
    pub(crate) fn started(&mut self, id: u32, incoming: bool) {
        if incoming {
            self.incoming = Some(id);
        } else {
            self.current = Some(id);
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

    /// The current worker crashed after running `lived`: the delay before the next start.
    pub(crate) fn crashed(&mut self, lived: Duration, backoff: &Backoff) -> Duration {
        if lived >= backoff.healthy_after {
            self.crashes = 0;
        }
        self.crashes += 1;
        backoff.delay(self.crashes)
    }
}
