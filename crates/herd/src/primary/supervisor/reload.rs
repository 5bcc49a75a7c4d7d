//! The rolling reload (SIGHUP, [`PrimaryHandle::reload`](crate::PrimaryHandle::reload)),
//! top to bottom:
//!
//! 1. `begin_reload`: every slot that is not being removed joins the queue. A reload asked
//!    for during one follows it; none starts while the cluster stops. A recycle in flight
//!    finishes first (the reload waits for it).
//! 2. `advance_reload`: up to `reload_batch` slots at a time get a new worker, started from
//!    the executable now at the path, as the slot's *incoming* worker; the old one serves
//!    on. A slot waiting out a crash backoff is skipped: its restart uses the new
//!    executable anyway.
//! 3. `reloaded`: the new worker is ready (listening, or `ready()` under `wait_ready`): it
//!    becomes the slot's current worker, the old one is disconnected (it finishes its
//!    requests and hands its idle keep-alive connections to the new one), and the next
//!    slot starts.
//! 4. `reload_failed`: a new worker that fails (cannot spawn, exits or hangs before it is
//!    ready, or is not ready within the ready timeout) stops the reload: the new workers of
//!    the batch are killed, the old ones keep serving, and a slot that lost both starts
//!    afresh.
//! 5. When the queue is empty and no slot is in flight the reload is complete; one asked
//!    for meanwhile starts now.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Level, Supervisor};
use crate::primary::handle::Cause;

/// A rolling reload in progress.
#[derive(Debug)]
pub(super) struct Reload {
    queue: VecDeque<usize>,
    /// (slot, new worker id, ready deadline)
    active: Vec<(usize, u32, Instant)>,
    /// Another reload was asked for meanwhile.
    again: bool,
}

impl Reload {
    /// Slot `n` is being removed: the reload no longer waits for it.
    pub(super) fn forget_slot(&mut self, n: usize) {
        self.queue.retain(|s| *s != n);
        self.active.retain(|a| a.0 != n);
    }
}

impl Supervisor {
    pub(super) fn begin_reload(&mut self, now: Instant) {
        if self.stop.is_some() {
            self.out
                .push(super::Action::Notify(super::Notice::ReloadRefused(
                    "the cluster is stopping".into(),
                )));
            return;
        }
        if let Some(r) = self.reload.as_mut() {
            self.out.push(super::Action::Log(
                Level::Info,
                "reload already in progress: another one follows it".into(),
            ));
            r.again = true;
            return;
        }
        let queue = self
            .slots
            .iter()
            .filter(|(_, s)| !s.removing)
            .map(|(n, _)| *n)
            .collect();
        self.log(
            Level::Info,
            format!("rolling reload of {} slots started", self.active_slots()),
        );
        self.reload = Some(Reload {
            queue,
            active: Vec::new(),
            again: false,
        });
        self.out
            .push(super::Action::Notify(super::Notice::ReloadStarted));
        self.advance_reload(now);
    }

    pub(super) fn advance_reload(&mut self, now: Instant) {
        // A recycle in flight finishes first: one replacement at a time per slot.
        if self.recycle.is_some() {
            return;
        }
        loop {
            let Some(r) = self.reload.as_mut() else {
                return;
            };
            if r.active.len() >= self.s.reload_batch.max(1) {
                return;
            }
            let Some(slot) = r.queue.pop_front() else {
                if r.active.is_empty() {
                    let again = r.again;
                    self.reload = None;
                    self.log(Level::Info, "rolling reload complete".into());
                    self.out.push(super::Action::Reloaded);
                    if again {
                        self.begin_reload(now);
                    } else {
                        self.recycle_next(now);
                    }
                }
                return;
            };
            if self
                .slots
                .get(&slot)
                .is_none_or(|s| s.removing || s.current.is_none() || s.incoming.is_some())
            {
                continue;
            }
            let deadline = now + self.s.ready_timeout;
            let id = self.spawn(slot, true, now);
            if let Some(r) = self.reload.as_mut() {
                r.active.push((slot, id, deadline));
            }
        }
    }

    /// The reload's new worker `id` for `slot` is ready: it takes over.
    pub(super) fn reloaded(&mut self, slot: usize, id: u32, now: Instant) {
        let Some(r) = self.reload.as_mut() else {
            return;
        };
        r.active.retain(|a| a.1 != id);
        let old = self.slots.get_mut(&slot).and_then(|s| s.promote(id));
        if let Some(s) = self.slots.get_mut(&slot) {
            s.restarts.count(Cause::Reload);
        }
        if let Some(old) = old {
            self.disconnect(old, Cause::Reload, now);
        }
        self.advance_reload(now);
    }

    /// The reload's new worker failed (`why`): the reload stops, the old workers stay.
    pub(super) fn reload_failed(&mut self, why: String, now: Instant) {
        self.log(
            Level::Error,
            format!("reload stopped, the old workers keep serving: {why}"),
        );
        let Some(r) = self.reload.take() else {
            return;
        };
        self.out
            .push(super::Action::Notify(super::Notice::ReloadFailed(why)));
        for (slot, id, _) in r.active {
            if let Some(s) = self.slots.get_mut(&slot) {
                s.forget(id);
            }
            self.sigkill(id, Cause::Reload);
            self.keep_served(slot, now);
        }
        self.recycle_next(now);
    }

    pub(super) fn reload_deadline(&self) -> Option<Instant> {
        self.reload
            .as_ref()
            .and_then(|r| r.active.iter().map(|a| a.2).min())
    }

    pub(super) fn reload_timers(&mut self, now: Instant) {
        let late = self
            .reload
            .as_ref()
            .and_then(|r| r.active.iter().find(|a| a.2 <= now).copied());
        if let Some((slot, id, _)) = late {
            let what = format!(
                "new worker {id} for slot {slot} was not ready within {} ms",
                self.s.ready_timeout.as_millis()
            );
            self.reload_failed(what, now);
        }
    }

    /// Whether worker `id` is a reload's new worker.
    pub(super) fn reloading(&self, id: u32) -> bool {
        self.reload
            .as_ref()
            .is_some_and(|r| r.active.iter().any(|a| a.1 == id))
    }
}
