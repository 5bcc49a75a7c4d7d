//! A worker program that never connects: the rule, in one place. Until some worker of the
//! cluster has connected its IPC channel, a worker that exits without connecting, or does not
//! connect within the ready timeout, stops the cluster with one line: the `exec` is not a herd
//! program (its `main` must call [`Cluster::run`](crate::Cluster::run)), or it fails before
//! getting there. Restarting it would only loop. Once one worker has connected, the program is
//! known to be a herd program and later failures are crashes (restarted with backoff).

use std::time::Instant;

use super::{Exit, Primary};
use crate::error::{Error, ErrorKind};

impl Primary {
    /// Worker `id` exited with `exit` without ever connecting: fatal while none ever has.
    /// Returns whether it was.
    pub(super) fn exited_unconnected(&mut self, id: u32, exit: Exit) -> bool {
        if self.connected_once {
            return false;
        }
        self.not_a_herd_program(format!(
            "worker {id} exited ({exit}) without connecting to the primary"
        ));
        true
    }

    /// When the first workers must have connected by, while none has.
    pub(super) fn connect_deadline(&self) -> Option<Instant> {
        if self.connected_once || self.stop.is_some() {
            return None;
        }
        self.live
            .values()
            .filter(|l| !l.online)
            .map(|l| l.started + self.cfg.ready_timeout)
            .min()
    }

    /// Kills the first workers that did not connect in time, and stops the cluster.
    pub(super) fn connect_timers(&mut self, now: Instant) {
        if self.connect_deadline().is_none_or(|t| t > now) {
            return;
        }
        let late: Vec<u32> = self
            .live
            .iter()
            .filter(|(_, l)| !l.online && l.started + self.cfg.ready_timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &late {
            if let Some(l) = self.live.get_mut(id) {
                l.sigkill();
            }
        }
        if let Some(id) = late.first() {
            self.not_a_herd_program(format!(
                "worker {id} did not connect to the primary within {} ms",
                self.cfg.ready_timeout.as_millis()
            ));
        }
    }

    fn not_a_herd_program(&mut self, what: String) {
        // Those that never connected will not hear a disconnect either.
        for l in self.live.values_mut().filter(|l| !l.online) {
            l.sigkill();
        }
        let exec = self.cfg.spawn.exec.display().to_string();
        self.fatal.get_or_insert_with(|| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "{what}: {exec} is not a herd program, or failed before Cluster::run; set Cluster::exec to a program whose main calls Cluster::run"
                ),
            )
        });
    }
}
