//! Changing the number of workers (SIGTTIN/SIGTTOU,
//! [`PrimaryHandle::scale`](crate::PrimaryHandle::scale)); never below one.
//!
//! Scaling up adds slots, each with a new worker. Scaling down removes the highest slots:
//! the primary first steers new connections away from a removed slot's listeners
//! ([`Action::RemoveSlot`]), its workers are disconnected (they hand their idle keep-alive
//! connections to the workers that stay), and once the last of them is gone what is still
//! queued on its listeners goes to another worker ([`Action::SlotRemoved`]). A removed slot
//! leaves a reload in progress.

use std::time::Instant;

use super::slots::Slot;
use super::{Action, Level, Supervisor};
use crate::primary::handle::Cause;

impl Supervisor {
    pub(super) fn scale(&mut self, want: usize, now: Instant) {
        if self.stop.is_some() {
            return;
        }
        let want = want.max(1);
        let have = self.active_slots();
        if want == have {
            return;
        }
        self.out.push(Action::Notify(super::Notice::Target(want)));
        self.log(
            Level::Info,
            format!("scaling from {have} to {want} workers"),
        );
        for _ in have..want {
            let slot = self.free_slot();
            self.slots.insert(slot, Slot::default());
            self.spawn(slot, false, now);
        }
        if want < have {
            let remove: Vec<usize> = self
                .slots
                .iter()
                .rev()
                .filter(|(_, s)| !s.removing)
                .take(have - want)
                .map(|(n, _)| *n)
                .collect();
            for n in remove {
                self.remove_slot(n, now);
            }
        }
    }

    fn remove_slot(&mut self, n: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(&n) else {
            return;
        };
        slot.removing = true;
        slot.restart_at = None;
        let ids: Vec<u32> = slot
            .current
            .iter()
            .chain(slot.incoming.iter())
            .copied()
            .collect();
        self.out.push(Action::RemoveSlot(n));
        if let Some(r) = self.reload.as_mut() {
            r.forget_slot(n);
        }
        if self.recycle.as_ref().is_some_and(|r| r.slot() == n) {
            self.recycle = None;
        }
        for id in &ids {
            self.disconnect(*id, Cause::Scale, now);
        }
        if ids.is_empty() {
            self.slot_gone(n);
        }
        self.advance_reload(now);
    }

    /// A removed slot's last worker is gone.
    pub(super) fn slot_gone(&mut self, n: usize) {
        self.slots.remove(&n);
        self.out.push(Action::SlotRemoved(n));
    }
}
