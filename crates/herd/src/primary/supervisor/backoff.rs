//! Restart delays after a crash, growing while a slot keeps crashing (PM2's
//! exp_backoff_restart_delay).

use std::time::Duration;

/// Exponential restart delay: `first`, doubled per consecutive crash, capped at `max`; the
/// count resets once a worker of the slot has lived `healthy_after`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub healthy_after: Duration,
}

impl Backoff {
    /// The delay before restart number `crashes` (1-based) in a row.
    pub(crate) fn delay(&self, crashes: u32) -> Duration {
        let factor = 1u32
            .checked_shl(crashes.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_first_and_stops_at_the_cap() {
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(15),
            healthy_after: Duration::from_secs(60),
        };
        let ms: Vec<u128> = (1..=10).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000]
        );
        assert_eq!(b.delay(200), Duration::from_secs(15));
    }
}
