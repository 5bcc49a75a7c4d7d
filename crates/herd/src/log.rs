//! Lines a person reads. herd logs through `tracing`; the few lines that must never be lost
//! (a worker crashed, a reload failed, a worker's error ended it) go through [`warn`] and
//! [`error`] here, which fall back to one line on stderr, written with a single `write(2)` so
//! that lines from several processes never interleave, when the program installed no tracing
//! subscriber. Warnings that can repeat in a burst (accept failing with EMFILE) go through
//! [`RateLimit`]: one line per window, with how many were held back.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a repeating warning is let through.
pub(crate) const REPEAT_WINDOW: Duration = Duration::from_secs(5);

/// Logs a warning: through tracing when a subscriber is installed, else as one stderr line.
pub(crate) fn warn(line: fmt::Arguments<'_>) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{line}");
    } else {
        to_stderr("warning", line);
    }
}

/// Logs an error: through tracing when a subscriber is installed, else as one stderr line.
pub(crate) fn error(line: fmt::Arguments<'_>) {
    if tracing::dispatcher::has_been_set() {
        tracing::error!("{line}");
    } else {
        to_stderr("error", line);
    }
}

/// `herd worker 3 (pid 1234): error: <line>` (or `herd primary (pid ..)`), in one write.
pub(crate) fn to_stderr(level: &str, line: fmt::Arguments<'_>) {
    let pid = std::process::id();
    let who = match crate::worker_id() {
        Some(id) => format!("herd worker {id} (pid {pid})"),
        None => format!("herd primary (pid {pid})"),
    };
    let text = format!("{who}: {level}: {line}\n");
    // One write(2): Stderr is unbuffered, and write_all of a line this short is one call.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Lets a repeating message through once per window and counts the ones held back; a
/// `static` per call site (see `warn_every!`).
#[derive(Debug)]
pub(crate) struct RateLimit {
    window: Duration,
    /// When the last one was let through, and how many were held back since.
    state: Mutex<Option<(Instant, u64)>>,
}

/// What [`RateLimit::check`] lets through: held back since `since` (`n` = 0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub n: u64,
    pub since: Duration,
}

impl fmt::Display for Held {
    /// ` (repeated 492 times in the last 5 s)`, or nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.n == 0 {
            return Ok(());
        }
        write!(
            f,
            " (repeated {} time{} in the last {} s)",
            self.n,
            if self.n == 1 { "" } else { "s" },
            self.since.as_secs().max(1)
        )
    }
}

impl RateLimit {
    pub(crate) const fn new(window: Duration) -> RateLimit {
        RateLimit {
            window,
            state: Mutex::new(None),
        }
    }

    /// `Some` when this occurrence should be logged (with what was held back before it).
    pub(crate) fn check(&self, now: Instant) -> Option<Held> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.as_mut() {
            Some((last, held)) if now.duration_since(*last) < self.window => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                let out = Held {
                    n: *held,
                    since: now.duration_since(*last),
                };
                *last = now;
                *held = 0;
                Some(out)
            }
            None => {
                *state = Some((now, 0));
                Some(Held {
                    n: 0,
                    since: Duration::ZERO,
                })
            }
        }
    }
}

/// `warn_every!("accept: {e}")`: a [`warn`](crate::log::warn) let through once per
/// [`REPEAT_WINDOW`] at this call site, with how many were held back.
macro_rules! warn_every {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::log::RateLimit =
            $crate::log::RateLimit::new($crate::log::REPEAT_WINDOW);
        if let Some(held) = LIMIT.check(std::time::Instant::now()) {
            $crate::log::warn(format_args!("{}{held}", format_args!($($arg)+)));
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_with_the_count_held_back() {
        let limit = RateLimit::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let first = limit.check(t0).unwrap();
        assert_eq!(first.to_string(), "");
        let held = (1..=492)
            .filter(|i| limit.check(t0 + Duration::from_millis(*i * 10)).is_none())
            .count();
        assert_eq!(held, 492);
        let next = limit.check(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(next.to_string(), " (repeated 492 times in the last 5 s)");
        assert!(limit.check(t0 + Duration::from_secs(6)).is_none());
        let after = limit.check(t0 + Duration::from_secs(30)).unwrap();
        assert_eq!(after.to_string(), " (repeated 1 time in the last 25 s)");
    }
}
