//! A worker slot: a stable position in the cluster (slot i = the i-th worker) that a
//! replacement inherits, with its listener, its crash history and its restarts by cause;
//! and the slot's lifecycle: what happens when its worker cannot start or exits.
//!
//! A slot has at most two workers: the `current` one, and the `incoming` one a reload or a
//! recycle started, which becomes current once ready (new before old). When the current
//! worker exits:
//! - asked to leave (a disconnect, a kill): the slot restarts at once;
//! - on its own (a crash): after the backoff, counted toward a crash loop;
//! - while an incoming worker is on its way, or the cluster stops: nothing (the incoming
//!   one takes over; a stop restarts nothing);
//! - from a slot being removed: the slot goes once both of its workers have;
//! - without ever listening, after a listen error: the cluster stops (a port in use will not
//!   free itself by restarting).
//!
//! An incoming worker that exits before it is ready fails its reload or recycle.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Backoff, Exit, Fatal, Level, Supervisor};
use crate::error::ErrorKind;
use crate::primary::handle::{Cause, Restarts};

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

impl Supervisor {
    /// A worker could not be started. Before any worker connected that is fatal (the
    /// program or a setting is wrong); later it stops a reload or recycle, or the slot
    /// retries after a backoff.
    pub(super) fn spawn_failed(&mut self, id: u32, error: &str, now: Instant) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        let slot_no = w.slot;
        let incoming = self.slots.get(&slot_no).and_then(|s| s.incoming) == Some(id);
        if let Some(s) = self.slots.get_mut(&slot_no) {
            s.forget(id);
        }
        let what = format!(
            "cannot start a worker from {} for slot {slot_no}: {error}",
            self.s.exec
        );
        if !self.connected_once {
            self.fail(Fatal::new(ErrorKind::Start, what));
        } else if incoming {
            self.replacement_failed(slot_no, id, what, now);
        } else if self.stop.is_none() {
            if let Some(s) = self.slots.get_mut(&slot_no) {
                if !s.removing {
                    let delay = s.crashed(Duration::ZERO, &self.s.backoff);
                    s.restart_at = Some(now + delay);
                    self.log(
                        Level::Error,
                        format!("{what}; retrying in {} ms", delay.as_millis()),
                    );
                }
            }
        }
    }

    /// Worker `id` exited: forget it, and decide what its slot does.
    pub(super) fn exited(&mut self, id: u32, exit: Exit, now: Instant) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        if self.exited_unconnected(&w, id, exit) {
            return;
        }
        let Some(slot) = self.slots.get_mut(&w.slot) else {
            return;
        };
        let slot_no = w.slot;
        if slot.incoming == Some(id) {
            slot.incoming = None;
            if slot.removing {
                // Scale-down met a reload: the slot goes once both of its workers have.
                if slot.current.is_none() {
                    self.slot_gone(slot_no);
                }
                return;
            }
            if w.leaving.is_none() {
                let why = w
                    .listen_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                let config = if super::boot::boot_error(exit) {
                    ": a configuration error, see its message above"
                } else {
                    ""
                };
                let what = format!(
                    "new worker {id} for slot {slot_no} exited ({exit}) before it was ready{why}{config}"
                );
                self.replacement_failed(slot_no, id, what, now);
            }
            self.keep_served(slot_no, now);
            return;
        }
        if slot.current != Some(id) {
            // Replaced already (a hang, a boot timeout), or never the slot's.
            return;
        }
        slot.current = None;
        if slot.removing {
            if slot.incoming.is_none() {
                self.slot_gone(slot_no);
            }
            return;
        }
        if self.stop.is_some() || slot.incoming.is_some() {
            // The incoming worker takes over once ready (a reload, a recycle).
            return;
        }
        if !w.listened {
            if let Some(why) = w.listen_error {
                self.fail(Fatal::new(
                    ErrorKind::Start,
                    format!("worker {id} could not start: {why}"),
                ));
                return;
            }
        }
        if self.failed_to_boot(&w, id, exit) {
            return;
        }
        match w.leaving {
            Some(_) => self.restart(slot_no, Duration::ZERO, None, now),
            None => {
                let lived = now.saturating_duration_since(w.forked);
                self.crashed(slot_no, lived, exit, Cause::Crash, now);
            }
        }
    }

    /// Slot `slot_no`'s worker failed (`cause`: a crash, a hang, a boot that never ended)
    /// after living `lived`: count it, report a crash loop, restart after the backoff.
    pub(super) fn crashed(
        &mut self,
        slot_no: usize,
        lived: Duration,
        last: Exit,
        cause: Cause,
        now: Instant,
    ) {
        let Some(slot) = self.slots.get_mut(&slot_no) else {
            return;
        };
        let delay = slot.crashed(lived, &self.s.backoff);
        self.count_failure(slot_no, lived, last, now);
        if self.fatal.is_some() {
            return;
        }
        self.restart(slot_no, delay, Some(cause), now);
    }

    /// Starts the slot's next worker after `delay` (at once when zero).
    pub(super) fn restart(
        &mut self,
        slot_no: usize,
        delay: Duration,
        cause: Option<Cause>,
        now: Instant,
    ) {
        let Some(slot) = self.slots.get_mut(&slot_no) else {
            return;
        };
        if let Some(c) = cause {
            slot.restarts.count(c);
        }
        if delay.is_zero() {
            self.spawn(slot_no, false, now);
        } else {
            slot.restart_at = Some(now + delay);
            let why = match cause {
                Some(c) => format!("{c}; restarting in {} ms", delay.as_millis()),
                None => format!("restarting in {} ms", delay.as_millis()),
            };
            self.out
                .push(super::Action::Notify(super::Notice::SlotDown {
                    slot: slot_no,
                    why,
                }));
            self.log(
                Level::Warn,
                format!("restarting slot {slot_no} in {} ms", delay.as_millis()),
            );
        }
    }

    /// A slot left with no worker, none coming and no restart planned (its current worker
    /// died while a replacement was on its way, then the replacement failed) restarts now.
    pub(super) fn keep_served(&mut self, slot_no: usize, now: Instant) {
        let Some(s) = self.slots.get(&slot_no) else {
            return;
        };
        if self.stop.is_none()
            && !s.removing
            && s.current.is_none()
            && s.incoming.is_none()
            && s.restart_at.is_none()
        {
            self.spawn(slot_no, false, now);
        }
    }
}
