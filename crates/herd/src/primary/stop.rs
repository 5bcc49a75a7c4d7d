//! Stopping the cluster (SIGTERM/SIGINT, [`PrimaryHandle::stop`](super::PrimaryHandle::stop)):
//! every worker is disconnected, then SIGKILLed at the shutdown timeout or on a second signal.

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
