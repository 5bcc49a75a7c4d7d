//! Recycling: workers are replaced before they rot (gunicorn's `max_requests` and
//! `max_requests_jitter`, PM2's `max_memory_restart`, granian's `workers_lifetime`).
//!
//! Each worker gets its limits at its start, spread by a jitter so that workers started
//! together do not reach them together. A health sample (about every second) that finds a
//! worker past one of them recycles it:
//!
//! - new before old, in the same slot: a new worker starts as the slot's incoming one; once
//!   it is ready the old one is disconnected, finishes the requests it is in and hands its
//!   idle keep-alive connections to the new one. A worker is never killed mid-request.
//! - one slot at a time, never during a reload or a stop; the other workers past their
//!   limits wait their turn (the next sample finds them again).
//! - a new worker that fails (exits, hangs or is not ready within the ready timeout) leaves
//!   the old one serving; the slot tries again after the ready timeout.

use std::time::{Duration, Instant};

use super::{spread, Health, Level, Supervisor};
use crate::primary::handle::Cause;

/// The recycling settings (all off by default).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Recycling {
    /// (requests, jitter): recycle after `requests + spread(0..=jitter)` requests.
    pub max_requests: Option<(u64, u64)>,
    /// (lifetime, jitter): recycle after `lifetime + spread(0..=jitter)`.
    pub max_lifetime: Option<(Duration, Duration)>,
    /// Recycle once the resident memory exceeds this many bytes.
    pub max_rss: Option<u64>,
}

impl Recycling {
    pub(crate) fn any(&self) -> bool {
        self.max_requests.is_some() || self.max_lifetime.is_some() || self.max_rss.is_some()
    }

    /// Worker `id`'s own limits.
    pub(super) fn limits_for(&self, id: u32) -> Limits {
        Limits {
            requests: self.max_requests.map(|(n, j)| n + spread(id, j)),
            lifetime: self.max_lifetime.map(|(d, j)| {
                let ms = spread(id, j.as_millis().min(u128::from(u64::MAX)) as u64);
                d + Duration::from_millis(ms)
            }),
        }
    }
}

/// One worker's recycling limits.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Limits {
    requests: Option<u64>,
    lifetime: Option<Duration>,
}

#[cfg(test)]
impl Limits {
    pub(super) fn requests(&self) -> Option<u64> {
        self.requests
    }
    pub(super) fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }
}

/// The recycle in flight.
#[derive(Debug)]
pub(super) struct InFlight {
    slot: usize,
    new: u32,
    deadline: Instant,
}

impl InFlight {
    pub(super) fn slot(&self) -> usize {
        self.slot
    }
}

impl Supervisor {
    /// A health sample of worker `id`: past a limit?
    pub(super) fn recycle_if_due(&mut self, id: u32, h: &Health, now: Instant) {
        let Some(w) = self.workers.get(&id) else {
            return;
        };
        let why = if let Some(n) = w.limits.requests.filter(|n| h.requests >= *n) {
            format!("served {} requests (limit {n})", h.requests)
        } else if let Some((rss, max)) = h.rss.zip(self.s.recycling.max_rss).filter(|(r, m)| r > m)
        {
            format!("uses {} MiB (limit {} MiB)", rss >> 20, max >> 20)
        } else if let Some(d) = w
            .limits
            .lifetime
            .filter(|d| now.saturating_duration_since(w.forked) >= *d)
        {
            format!(
                "lived {:.1} s (limit {:.1} s)",
                now.saturating_duration_since(w.forked).as_secs_f64(),
                d.as_secs_f64()
            )
        } else {
            return;
        };
        self.recycle(id, why, now);
    }

    /// Replaces worker `id` (its slot's current worker) new before old, if nothing else is
    /// replacing workers now; otherwise a later sample asks again.
    pub(super) fn recycle(&mut self, id: u32, why: String, now: Instant) {
        if self.stop.is_some() || self.reload.is_some() || self.recycle.is_some() {
            return;
        }
        let Some(w) = self.workers.get(&id) else {
            return;
        };
        let slot_no = w.slot;
        let serving = w.leaving.is_none() && w.ready && w.pid != 0;
        let Some(slot) = self.slots.get(&slot_no) else {
            return;
        };
        let free = slot.current == Some(id)
            && slot.incoming.is_none()
            && !slot.removing
            && slot.recycle_after.is_none_or(|t| t <= now);
        if !serving || !free {
            return;
        }
        let pid = w.pid;
        self.log(
            Level::Info,
            format!("recycling worker {id} (pid {pid}) of slot {slot_no}: it {why}"),
        );
        let new = self.spawn(slot_no, true, now);
        self.recycle = Some(InFlight {
            slot: slot_no,
            new,
            deadline: now + self.s.ready_timeout,
        });
    }

    /// Whether worker `id` is a recycle's new worker.
    pub(super) fn recycling(&self, id: u32) -> bool {
        self.recycle.as_ref().is_some_and(|r| r.new == id)
    }

    /// The recycle's new worker is ready: it takes over, the old one drains.
    pub(super) fn recycled(&mut self, slot: usize, id: u32, now: Instant) {
        if self.recycle.take().is_none() {
            return;
        }
        let old = self.slots.get_mut(&slot).and_then(|s| s.promote(id));
        if let Some(s) = self.slots.get_mut(&slot) {
            s.restarts.count(Cause::Recycle);
        }
        if let Some(old) = old {
            self.disconnect(old, Cause::Recycle, now);
        }
        self.recycle_next(now);
    }

    /// The recycle's new worker failed: the old one serves on; the slot tries again later.
    pub(super) fn recycle_failed(&mut self, slot: usize, id: u32, what: String, now: Instant) {
        self.recycle = None;
        self.log(
            Level::Warn,
            format!("recycle stopped, the old worker keeps serving: {what}"),
        );
        if let Some(s) = self.slots.get_mut(&slot) {
            s.forget(id);
            s.recycle_after = Some(now + self.s.ready_timeout);
        }
        self.sigkill(id, Cause::Recycle);
        self.keep_served(slot, now);
        self.recycle_next(now);
    }

    /// A reload or recycle ended: a reload that waited goes on.
    pub(super) fn recycle_next(&mut self, now: Instant) {
        if self.reload.is_some() && self.recycle.is_none() {
            self.advance_reload(now);
        }
    }

    pub(super) fn recycle_deadline(&self) -> Option<Instant> {
        self.recycle.as_ref().map(|r| r.deadline)
    }

    pub(super) fn recycle_timers(&mut self, now: Instant) {
        let late = self
            .recycle
            .as_ref()
            .filter(|r| r.deadline <= now)
            .map(|r| (r.slot, r.new));
        if let Some((slot, id)) = late {
            let what = format!(
                "new worker {id} for slot {slot} was not ready within {} ms",
                self.s.ready_timeout.as_millis()
            );
            self.recycle_failed(slot, id, what, now);
        }
    }
}
