//! The heartbeat for workers that serve with a loop of their own (an async runtime, a
//! thread pool): the same page [`Worker::serve`](super::Worker::serve)'s event loop keeps
//! fresh, so that the primary's watchdog sees such a worker hang too.

use std::time::{Duration, Instant};

/// This worker's heartbeat page, for a loop of the application's own
/// ([`Worker::heartbeat`](super::Worker::heartbeat)). Cheap to copy, usable from any thread;
/// a beat is one atomic store, no syscall.
///
/// Once a worker has beaten, the primary's watchdog ([`crate::Cluster::run_timeout`])
/// expects a beat at least every run timeout: a worker whose beats stop is reported hung and
/// killed, as one whose event loop stopped turning. A worker that never beats is not
/// watched. Beat from the loop that would stop when the worker hangs (e.g. a task on the
/// async runtime that serves the requests), every [`Heartbeat::every`].
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    every: Duration,
}

impl Heartbeat {
    /// `None` when the primary passed no heartbeat page.
    pub(super) fn attached() -> Option<Heartbeat> {
        crate::heartbeat::every().map(|every| Heartbeat { every })
    }

    /// How often to beat: about every second, a quarter of a shorter run timeout.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// The worker's loop is alive now.
    pub fn beat(&self) {
        crate::heartbeat::beat(Instant::now());
    }

    /// The worker's loop stopped on purpose (it returned): the watchdog stops watching.
    pub fn rest(&self) {
        crate::heartbeat::rest();
    }
}
