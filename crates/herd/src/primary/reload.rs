//! Rolling reload (SIGHUP, [`PrimaryHandle::reload`](super::PrimaryHandle::reload)): per
//! slot, a new worker from the executable now at the path; the old one is disconnected once
//! the new one is ready. A new worker that fails stops the reload and the old ones keep
//! serving.

use std::time::Instant;

use super::{Primary, Reload};

impl Primary {
    pub(super) fn begin_reload(&mut self) {
        if self.stop.is_some() {
            self.cfg.board.reload_refused("the cluster is stopping");
            return;
        }
        if let Some(r) = self.reload.as_mut() {
            tracing::info!("reload already in progress: another one follows it");
            r.again = true;
            return;
        }
        tracing::info!(slots = self.active_slots(), "rolling reload started");
        let queue = self
            .slots
            .iter()
            .filter(|(_, s)| !s.removing)
            .map(|(n, _)| *n)
            .collect();
        self.reload = Some(Reload {
            queue,
            active: Vec::new(),
            again: false,
        });
        self.cfg.board.reload_started();
        self.advance_reload();
    }

    pub(super) fn advance_reload(&mut self) {
        loop {
            let Some(r) = self.reload.as_mut() else {
                return;
            };
            if r.active.len() >= self.cfg.reload_batch.max(1) {
                return;
            }
            let Some(slot) = r.queue.pop_front() else {
                if r.active.is_empty() {
                    let again = r.again;
                    self.reload = None;
                    tracing::info!("rolling reload complete");
                    self.close_unused_listeners();
                    self.cfg.board.reload_finished(Ok(()));
                    if again {
                        self.begin_reload();
                    }
                }
                return;
            };
            // A slot being removed needs no new worker; one waiting out a crash backoff
            // restarts from the executable now at the path anyway.
            if self
                .slots
                .get(&slot)
                .is_none_or(|s| s.removing || s.current.is_none())
            {
                continue;
            }
            let deadline = Instant::now() + self.cfg.ready_timeout;
            let Some(id) = self.start(slot, true) else {
                return;
            };
            if let Some(r) = self.reload.as_mut() {
                r.active.push((slot, id, deadline));
            }
        }
    }

    /// After a reload every slot runs the new program: a listener none of them asked for
    /// (the new build serves fewer addresses) would queue connections nobody accepts.
    fn close_unused_listeners(&mut self) {
        let current: std::collections::HashMap<usize, &[std::net::SocketAddr]> = self
            .slots
            .iter()
            .filter_map(|(n, s)| {
                let live = self.live.get(&s.current?)?;
                // A worker not ready yet may still ask: keep its slot's listeners.
                live.ready.then_some((*n, live.asked.as_slice()))
            })
            .collect();
        let waiting: Vec<usize> = self
            .slots
            .keys()
            .copied()
            .filter(|n| !current.contains_key(n))
            .collect();
        let slots: Vec<usize> = self.slots.keys().copied().collect();
        self.cfg.listeners.close_unused(&slots, |addr, slot| {
            waiting.contains(&slot) || current.get(&slot).is_some_and(|a| a.contains(&addr))
        });
    }

    pub(super) fn on_ready(&mut self, id: u32) {
        let Some(r) = self.reload.as_mut() else {
            return;
        };
        let Some(pos) = r.active.iter().position(|a| a.1 == id) else {
            return;
        };
        let (slot_no, _, _) = r.active.remove(pos);
        let old = self.slots.get_mut(&slot_no).and_then(|s| s.promote(id));
        if let Some(old) = old {
            self.disconnect(old);
        }
        self.advance_reload();
    }

    pub(super) fn reload_failed(&mut self, why: String) {
        crate::log::error(format_args!(
            "reload stopped, the old workers keep serving: {why}"
        ));
        self.cfg.board.reload_finished(Err(why.clone()));
        if let Some(r) = self.reload.take() {
            for (slot, id, _) in r.active {
                if let Some(s) = self.slots.get_mut(&slot) {
                    s.incoming = None;
                }
                if let Some(live) = self.live.get_mut(&id) {
                    live.sigkill();
                }
                self.keep_served(slot);
            }
        }
    }
}
