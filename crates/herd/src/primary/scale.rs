//! Changing the number of workers (SIGTTIN/SIGTTOU, [`PrimaryHandle::scale`](super::PrimaryHandle::scale)).
//! A removed slot first steers new connections away, then hands what is still queued on its
//! socket to another worker before the socket closes.

use std::os::fd::{AsFd, BorrowedFd};

use super::slots::Slot;
use super::{Primary, MAX_FDS_PER_FRAME};
use crate::ipc::ToWorker;

impl Primary {
    pub(super) fn active_slots(&self) -> usize {
        self.slots.values().filter(|s| !s.removing).count()
    }

    pub(super) fn scale(&mut self, want: usize) {
        if self.stop.is_some() {
            return;
        }
        let want = want.max(1);
        let have = self.active_slots();
        tracing::info!(from = have, to = want, "scaling");
        self.cfg.board.target(want);
        for _ in have..want {
            let slot = self.free_slot();
            self.slots.insert(slot, Slot::default());
            self.start(slot, false);
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
                self.remove_slot(n);
            }
        }
    }

    pub(super) fn remove_slot(&mut self, n: usize) {
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
        self.cfg.listeners.begin_remove_slot(n);
        if ids.is_empty() {
            self.finish_remove_slot(n);
        }
        for id in ids {
            self.disconnect(id);
        }
    }

    /// The removed slot's worker is gone: what still waits in the slot's queue goes to
    /// the other workers, then its listeners close.
    pub(super) fn finish_remove_slot(&mut self, n: usize) {
        self.slots.remove(&n);
        self.cfg.board.slot_removed(n);
        let queued = self.cfg.listeners.finish_remove_slot(n);
        tracing::info!(slot = n, moved = queued.len(), "slot removed");
        let mut takers: Vec<u32> = self
            .live
            .iter()
            .filter(|(_, l)| {
                l.listened && l.channel.is_some() && !l.handle.exited_after_disconnect()
            })
            .map(|(id, _)| *id)
            .collect();
        takers.sort_unstable();
        if takers.is_empty() && !queued.is_empty() {
            tracing::warn!(
                slot = n,
                "no worker to take {} queued connections",
                queued.len()
            );
            return;
        }
        for (i, chunk) in queued.chunks(MAX_FDS_PER_FRAME).enumerate() {
            let to = takers[i % takers.len()];
            let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(|c| c.as_fd()).collect();
            self.send(to, &ToWorker::Connections(fds.len() as u32), &fds);
        }
    }
}
