//! Crash loops are reported, not hidden: after `crashes` failures of a slot (crashes, hangs,
//! boots that never finished) within `window`, the slot is `Failed`: one error line names
//! the slot, how often and the last exit, the application gets
//! [`Event::Failed`](crate::Event::Failed), and [`OnCrashLoop`] says whether the slot keeps
//! retrying with the capped backoff or the cluster stops with an error (a non-zero exit for
//! systemd or Kubernetes to act on). A worker that lives the backoff's `healthy_after`
//! clears the state.

use std::time::{Duration, Instant};

use super::Fatal;
use super::{Exit, Level, Notice, Supervisor};
use crate::error::ErrorKind;

/// What a crash-looping slot does (see [`Cluster::crash_loop`](crate::Cluster::crash_loop)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCrashLoop {
    /// Keep restarting it, with the restart backoff (capped). The default.
    #[default]
    Retry,
    /// Stop the cluster: [`Cluster::run`](crate::Cluster::run) returns an error of kind
    /// [`ErrorKind::CrashLoop`](crate::ErrorKind::CrashLoop).
    Stop,
}

/// When a slot counts as crash-looping, and what then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CrashLoop {
    pub crashes: u32,
    pub window: Duration,
    pub then: OnCrashLoop,
}

impl Supervisor {
    /// Slot `slot_no` failed once more (its worker lived `lived`, ended with `last`).
    pub(super) fn count_failure(
        &mut self,
        slot_no: usize,
        lived: Duration,
        last: Exit,
        now: Instant,
    ) {
        let rule = self.s.crash_loop;
        let Some(slot) = self.slots.get_mut(&slot_no) else {
            return;
        };
        if lived >= self.s.backoff.healthy_after {
            slot.failures.clear();
        }
        slot.failures.push_back(now);
        while slot
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > rule.window)
        {
            slot.failures.pop_front();
        }
        let n = slot.failures.len() as u32;
        if rule.crashes == 0 || n < rule.crashes || slot.failed {
            return;
        }
        slot.failed = true;
        let within = slot
            .failures
            .front()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(*t));
        let then = match rule.then {
            OnCrashLoop::Retry => "retrying with backoff",
            OnCrashLoop::Stop => "stopping the cluster",
        };
        let line = format!(
            "slot {slot_no} failed: {n} crashes in {:.1} s, the last one {last}; {then}",
            within.as_secs_f64()
        );
        // With Stop, Cluster::run returns the same line: the application tells it.
        let level = match rule.then {
            OnCrashLoop::Retry => Level::Error,
            OnCrashLoop::Stop => Level::Returned,
        };
        self.log(level, line.clone());
        self.out.push(super::Action::Notify(Notice::Failed {
            slot: slot_no,
            crashes: n,
            within,
            last,
        }));
        if rule.then == OnCrashLoop::Stop && self.fatal.is_none() {
            // The line was said once: the stop does not repeat it.
            self.fatal = Some(Fatal::new(ErrorKind::CrashLoop, line));
            self.fatal_said = true;
        }
    }
}
