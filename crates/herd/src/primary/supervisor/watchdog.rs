//! The watchdog: a worker whose loop stopped turning (an endless handler, a deadlock, a
//! stopped process) is found from its heartbeat and replaced.
//!
//! Every worker's event loop stores the time of each turn in a page it shares with the
//! primary, with the request it is running (see `crate::heartbeat`); the primary samples it
//! and tells the supervisor ([`Input::Health`](super::Input::Health)). When the last beat is
//! older than the run timeout:
//!
//! 1. one warning names the worker, its pid, how long it has been stuck and the request it
//!    was in (`worker 3 (pid 812) stuck 31.2 s in GET /report?id=9`), and the application
//!    gets [`Event::Hung`](crate::Event::Hung);
//! 2. a replacement starts in the same slot at once (the slot's listener, with the
//!    connections queued on it, carries over as after a crash);
//! 3. the hung worker gets [`HANG_SIGNAL`] (SIGABRT: its default action dumps core, and a
//!    handler installed by the application can log its state), then SIGKILL after
//!    [`HANG_GRACE`].
//!
//! A worker that is only busy (a long handler on a pool thread) is not hung: its loop still
//! turns. A worker that never beat (it serves with a loop of its own, not herd's) is not
//! watched; neither is one asked to leave (the shutdown timeout covers it).

use std::time::{Duration, Instant};

use super::{Action, Exit, Health, Level, Notice, Supervisor};
use crate::primary::handle::Cause;

/// The first signal a hung worker gets: SIGABRT, as gunicorn sends on a worker timeout. The
/// default action ends the process with a core dump (where core dumps are enabled); an
/// application may catch it to log what it was doing.
pub(crate) const HANG_SIGNAL: i32 = libc::SIGABRT;

/// How long a hung worker has between [`HANG_SIGNAL`] and SIGKILL.
pub(crate) const HANG_GRACE: Duration = Duration::from_secs(2);

impl Supervisor {
    /// A health sample of worker `id`: is its loop stuck?
    pub(super) fn watch(&mut self, id: u32, h: &Health, now: Instant) {
        let timeout = self.s.run_timeout;
        let Some(age) = h.beat_age else {
            return;
        };
        if timeout.is_zero() || age < timeout {
            return;
        }
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.leaving.is_some() || w.pid == 0 {
            return;
        }
        let (slot_no, pid, forked) = (w.slot, w.pid, w.forked);
        w.leaving = Some(Cause::Hang);
        w.kill_at = Some(now + HANG_GRACE);
        let doing = match &h.doing {
            Some(r) => format!("in {r}"),
            None => "between requests".to_string(),
        };
        self.log(
            Level::Warn,
            format!(
                "worker {id} (pid {pid}) stuck {:.1} s {doing}",
                age.as_secs_f64()
            ),
        );
        self.out.push(Action::Notify(Notice::Hung {
            id,
            stuck: age,
            doing: h.doing.clone(),
        }));
        // The replacement first, then the signal: the slot's queue is served again as soon
        // as the new worker listens, whatever the hung one does with the signal.
        let Some(slot) = self.slots.get_mut(&slot_no) else {
            return;
        };
        if slot.current == Some(id) {
            slot.current = None;
            let alone = slot.incoming.is_none() && !slot.removing;
            let lived = now.saturating_duration_since(forked);
            if alone && self.stop.is_none() {
                slot.crashed(lived, &self.s.backoff);
                slot.restarts.count(Cause::Hang);
                self.count_failure(slot_no, lived, Exit::Signal(HANG_SIGNAL), now);
                if self.fatal.is_none() {
                    self.spawn(slot_no, false, now);
                }
            }
        } else if slot.incoming == Some(id) {
            // A reload's or recycle's new worker that hangs fails it (its exit says so).
            slot.incoming = None;
            let what = format!("new worker {id} for slot {slot_no} hung before it was ready");
            self.replacement_failed(slot_no, id, what, now);
            self.keep_served(slot_no, now);
        }
        self.out.push(Action::Kill {
            id,
            signal: HANG_SIGNAL,
            cause: Cause::Hang,
        });
    }
}
