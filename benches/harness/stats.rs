//! The median and spread of a figure over a cell's rounds, and when two cells differ.

use super::cell::{Cell, Round};

/// A figure over rounds: its median and its spread (min–max).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest round.
    pub min: f64,
    /// The largest round.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none (NaNs are left out).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// Whether the two spreads overlap: then the rounds do not tell the two apart.
    pub fn overlaps(&self, other: &Spread) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

/// A measured cell's figures over its rounds.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Completed requests per second.
    pub rps: Spread,
    /// p99 latency, µs.
    pub p99_us: Spread,
    /// Server CPU per request, µs (`None` when no round completed a request).
    pub cpu_us_per_request: Option<Spread>,
    /// Failed requests per round.
    pub errors: Spread,
    /// Jain's fairness index of responses over workers (`None` when no worker was seen).
    pub jain: Option<Spread>,
}

impl Figures {
    /// The figures of `cell`, when it was measured (in at least one round).
    pub fn of(cell: &Cell) -> Option<Figures> {
        let rounds = cell.rounds()?;
        let over = |f: &dyn Fn(&Round) -> f64| Spread::of(rounds.iter().map(f));
        Some(Figures {
            rps: over(&Round::rps)?,
            p99_us: over(&Round::p99_us)?,
            cpu_us_per_request: over(&|r| r.cpu_us_per_request().unwrap_or(f64::NAN)),
            errors: over(&|r| r.report.errors.total() as f64)?,
            jain: over(&|r| super::output::jain(&r.report, cell.workers).unwrap_or(f64::NAN)),
        })
    }
}
