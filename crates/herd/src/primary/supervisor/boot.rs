//! Starting a worker: the rules from fork to ready.
//!
//! - Until some worker of the cluster has connected its IPC channel, a worker that exits
//!   without connecting, or does not connect within the ready timeout, stops the cluster:
//!   the `exec` is not a herd program (its `main` must call `Cluster::run`), or it fails
//!   before getting there, and restarting it would only loop. Once one worker has
//!   connected, later failures are crashes.
//! - A worker that exits with `EX_CONFIG` (78: its `run` closure returned a configuration
//!   error, e.g. a TLS file that cannot be read) before it was ever ready failed to boot:
//!   while no worker of the cluster serves (the start), the cluster stops with one line
//!   naming it, at once, without restarts (Gunicorn's `WORKER_BOOT_ERROR`). A reload's new
//!   worker that does so stops the reload (the old workers serve on, see `reload.rs`). When
//!   other workers serve outside a reload (a crashed worker's restart), it is a crash like
//!   any other: the cluster serves on, and a file that comes back lets the restart succeed.
//! - A worker that is not ready (listening, or `ready()` under `wait_ready`) within the boot
//!   timeout is killed and counts as a failure of its slot (restart after the backoff, crash
//!   loop). A reload's or recycle's new worker has the (shorter) ready timeout as well.

use std::time::Instant;

use super::Fatal;
use super::{Exit, Level, Supervisor, Worker};
use crate::cluster::EX_CONFIG;
use crate::error::ErrorKind;
use crate::primary::handle::Cause;

impl Supervisor {
    /// When worker `id` must be ready (or connected, while none ever was) by.
    pub(super) fn boot_deadline(&self, id: u32) -> Option<Instant> {
        let w = self.workers.get(&id)?;
        if w.leaving.is_some() || w.pid == 0 {
            return None;
        }
        let connect = (!self.connected_once && !w.online && self.stop.is_none())
            .then(|| w.forked + self.s.ready_timeout);
        let boot =
            (!w.ready && !self.s.boot_timeout.is_zero()).then(|| w.forked + self.s.boot_timeout);
        connect.into_iter().chain(boot).min()
    }

    pub(super) fn boot_timers(&mut self, now: Instant) {
        let late: Vec<u32> = self
            .workers
            .keys()
            .copied()
            .filter(|id| self.boot_deadline(*id).is_some_and(|t| t <= now))
            .collect();
        for id in late {
            let Some(w) = self.workers.get(&id) else {
                continue;
            };
            if !self.connected_once && !w.online {
                let what = format!(
                    "worker {id} did not connect to the primary within {} ms",
                    self.s.ready_timeout.as_millis()
                );
                self.not_a_herd_program(what);
                continue;
            }
            let (slot, pid, forked) = (w.slot, w.pid, w.forked);
            let secs = self.s.boot_timeout.as_secs_f64();
            self.log(
                Level::Warn,
                format!("worker {id} (pid {pid}) was not ready within the boot timeout of {secs:.1} s: killing it"),
            );
            self.sigkill(id, Cause::Hang);
            let current = self.slots.get(&slot).and_then(|s| s.current) == Some(id);
            if current {
                // Its slot does not wait for the exit: the replacement starts after the
                // backoff, as after a crash.
                if let Some(s) = self.slots.get_mut(&slot) {
                    s.current = None;
                }
                if self.stop.is_none() && !self.slots.get(&slot).is_some_and(|s| s.removing) {
                    let lived = now.saturating_duration_since(forked);
                    self.crashed(slot, lived, Exit::Signal(libc::SIGKILL), Cause::Hang, now);
                }
            }
        }
    }

    /// Worker `w` (`id`) exited with `exit` without ever connecting: fatal while none ever
    /// has. Returns whether it was.
    pub(super) fn exited_unconnected(&mut self, w: &Worker, id: u32, exit: Exit) -> bool {
        if self.connected_once || w.online || w.leaving.is_some() {
            return false;
        }
        self.not_a_herd_program(format!(
            "worker {id} exited ({exit}) without connecting to the primary"
        ));
        true
    }

    /// Worker `w` (`id`) of slot `slot` exited with `exit` as its slot's current worker:
    /// a boot failure that stops the cluster when it exited with [`EX_CONFIG`] before it
    /// was ready, unasked, while no other worker serves. Returns whether it did.
    pub(super) fn failed_to_boot(&mut self, w: &Worker, id: u32, exit: Exit) -> bool {
        if !boot_error(exit) || w.ready || w.leaving.is_some() {
            return false;
        }
        if self
            .workers
            .values()
            .any(|o| o.ready && o.leaving.is_none())
        {
            return false;
        }
        let line = format!(
            "worker {id} (slot {}) failed to boot (configuration error, exit {EX_CONFIG}): see its message above; not restarting",
            w.slot
        );
        // Cluster::run returns the line: the application tells it, once.
        self.log(Level::Returned, line.clone());
        if self.fatal.is_none() {
            self.fatal = Some(Fatal::new(ErrorKind::Config, line));
            self.fatal_said = true;
        }
        true
    }

    fn not_a_herd_program(&mut self, what: String) {
        // Those that never connected will not hear a disconnect either.
        let silent: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.online)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            self.sigkill(id, Cause::Stop);
        }
        self.fail(Fatal::new(
            ErrorKind::Config,
            format!(
                "{what}: {} is not a herd program, or failed before Cluster::run; set Cluster::exec to a program whose main calls Cluster::run",
                self.s.exec
            ),
        ));
    }
}

/// Whether `exit` is a worker's failed boot: [`EX_CONFIG`] (see `Cluster::run`).
pub(super) fn boot_error(exit: Exit) -> bool {
    exit == Exit::Code(EX_CONFIG)
}
