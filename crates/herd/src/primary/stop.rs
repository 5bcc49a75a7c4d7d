//! Stopping the cluster (SIGTERM/SIGINT, [`PrimaryHandle::stop`](super::PrimaryHandle::stop)):
//! every worker is disconnected, then SIGKILLed at the shutdown timeout or on a second signal.
//!
//! New connections are refused as soon as the queues are taken: the primary closes its copy
//! of every listener (and the dispatcher its own) when the stop begins and makes no new
//! ones; each draining worker accepts what is queued on its listener, then closes it, which
//! closes the socket. Connections already in a queue are served, later ones are refused.

use std::time::Instant;

use super::{Live, Primary, Stop};

impl Primary {
    pub(super) fn begin_stop(&mut self) {
        self.reload = None;
        self.stop = Some(Stop {
            deadline: Instant::now() + self.cfg.shutdown_timeout,
            killed: 0,
            forced: false,
        });
        for s in self.slots.values_mut() {
            s.restart_at = None;
        }
        let ids: Vec<u32> = self.live.keys().copied().collect();
        for id in ids {
            self.disconnect(id);
        }
        self.cfg.listeners.close_all();
        self.with_dispatch(|d, ctx| d.stop(ctx));
    }

    pub(super) fn force_stop(&mut self) {
        let n = self.kill_all();
        if let Some(stop) = self.stop.as_mut() {
            stop.killed += n;
            stop.forced = true;
        }
    }

    /// SIGKILLs every worker; returns how many had not been killed before.
    pub(super) fn kill_all(&mut self) -> usize {
        self.live
            .values_mut()
            .map(Live::sigkill)
            .filter(|&first| first)
            .count()
    }
}
