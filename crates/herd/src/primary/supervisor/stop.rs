//! Stopping the cluster (SIGTERM/SIGINT, [`PrimaryHandle::stop`](crate::PrimaryHandle::stop),
//! or a fatal rule). A stop signal with a shutdown delay first only reports the cluster not
//! ready and serves on for the delay (load balancers stop sending traffic meanwhile); a
//! second signal cuts the delay short. Then the stop proper: a reload or recycle in progress ends, no slot restarts, new connections
//! are refused ([`Action::StopListening`]), and every worker is disconnected: it finishes
//! what it is doing and exits. At the shutdown timeout, or on a second SIGTERM/SIGINT, the
//! workers still there are SIGKILLed. When the last one is gone the cluster exits: cleanly,
//! or with the fatal error, or with [`ErrorKind::Shutdown`] when workers had to be killed.

use std::time::{Duration, Instant};

use super::{Action, Fatal, Level, Supervisor};
use crate::error::ErrorKind;
use crate::primary::handle::Cause;

/// The graceful stop in progress.
#[derive(Debug)]
pub(super) struct Stop {
    pub(super) deadline: Instant,
    pub(super) killed: usize,
    forced: bool,
}

impl Supervisor {
    pub(super) fn begin_stop(&mut self, now: Instant) {
        if self.stop.is_some() {
            return;
        }
        self.reload = None;
        self.recycle = None;
        self.delay_until = None;
        self.stop = Some(Stop {
            deadline: now + self.s.shutdown_timeout,
            killed: 0,
            forced: false,
        });
        for s in self.slots.values_mut() {
            s.restart_at = None;
        }
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        for id in ids {
            self.disconnect(id, Cause::Stop, now);
        }
        self.out.push(Action::StopListening);
    }

    /// SIGTERM or SIGINT: the first stops gracefully (after the shutdown delay, if any; a
    /// second during the delay skips the rest of it), a second during the stop kills every
    /// worker now.
    pub(super) fn stop_signal(&mut self, now: Instant) {
        if self.stop.is_none() && self.delay_until.is_some() {
            self.log(
                Level::Info,
                "second stop signal: skipping the rest of the shutdown delay".into(),
            );
            self.begin_stop(now);
            return;
        }
        if self.stop.is_none() && !self.s.shutdown_delay.is_zero() {
            let d = self.s.shutdown_delay;
            self.log(
                Level::Info,
                format!(
                    "stop signal: not ready, serving for the shutdown delay ({:.1} s), then draining",
                    d.as_secs_f64()
                ),
            );
            self.delay_until = Some(now + d);
            self.out
                .push(Action::Notify(super::Notice::ShutdownDelay(d)));
            return;
        }
        if self.stop.is_none() {
            self.log(
                Level::Info,
                "stop signal: disconnecting every worker".into(),
            );
            self.begin_stop(now);
            return;
        }
        self.log(
            Level::Warn,
            "second stop signal: killing every worker now".into(),
        );
        let n = self.kill_all();
        if let Some(stop) = self.stop.as_mut() {
            stop.killed += n;
            stop.forced = true;
        }
    }

    /// SIGKILLs every worker; returns how many had not been killed before.
    fn kill_all(&mut self) -> usize {
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        ids.into_iter()
            .filter(|id| self.sigkill(*id, Cause::Stop))
            .count()
    }

    pub(super) fn stop_timers(&mut self, now: Instant) {
        if self.delay_until.is_some_and(|t| t <= now) {
            self.log(
                Level::Info,
                "shutdown delay over: disconnecting every worker".into(),
            );
            self.begin_stop(now);
            return;
        }
        let due = self
            .stop
            .as_ref()
            .is_some_and(|s| s.deadline <= now && !self.workers.is_empty());
        if !due {
            return;
        }
        let n = self.kill_all();
        if let Some(stop) = self.stop.as_mut() {
            stop.killed += n;
            // Killed: what remains is reaping.
            stop.deadline = now + Duration::from_secs(3600);
        }
    }

    /// How the cluster ends, once every worker is gone.
    pub(super) fn stop_result(&mut self) -> Option<Fatal> {
        if let Some(e) = self.fatal.take() {
            return Some(e);
        }
        let stop = self.stop.as_ref()?;
        if stop.killed > 0 {
            let why = if stop.forced {
                "a second signal"
            } else {
                "the shutdown timeout"
            };
            return Some(Fatal::new(
                ErrorKind::Shutdown,
                format!(
                    "stopped after {why}: {} worker(s) had to be killed",
                    stop.killed
                ),
            ));
        }
        self.out.push(Action::Log(
            Level::Info,
            "primary stopped: all workers exited cleanly".into(),
        ));
        None
    }
}
