//! The results of a run: counts, rates, latency percentiles, errors by kind, and the spread over
//! server workers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workers::{WorkerDistribution, WorkerTally};

/// Latencies above this (µs) are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Failed requests by kind. Each request sent ends either completed or as exactly one error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// The connection carrying the request could not be opened: refused, unreachable, no
    /// local port, or not open within the timeout.
    pub connect: u64,
    /// The connection broke before the whole response arrived: ECONNRESET, EPIPE, or EOF.
    pub reset: u64,
    /// No complete response within the per-request timeout.
    pub timeout: u64,
    /// A complete response whose status is not 2xx.
    pub bad_status: u64,
    /// A response that could not be parsed (malformed head, bad length or chunk).
    pub parse: u64,
}

impl Errors {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.timeout + self.bad_status + self.parse
    }

    fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.bad_status += other.bad_status;
        self.parse += other.parse;
    }
}

/// Latency percentiles of the completed (2xx) requests, in microseconds, measured from the
/// request's write to the end of its response (in [`Mode::Close`](crate::Mode::Close), from
/// the start of the connect).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples: equal to [`Report::completed`].
    pub count: u64,
    /// The smallest sample.
    pub min_us: u64,
    /// The arithmetic mean.
    pub mean_us: f64,
    /// The median.
    pub p50_us: u64,
    /// The 90th percentile.
    pub p90_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The 99.9th percentile.
    pub p999_us: u64,
    /// The largest sample.
    pub max_us: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// What a run measured. Serializes to JSON with serde; `Display` gives a text summary.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Connections used.
    pub connections: usize,
    /// Generator threads used.
    pub threads: usize,
    /// Requests in flight per connection (1 unless pipelining).
    pub depth: usize,
    /// Wall time of the run, in seconds.
    pub elapsed_secs: f64,
    /// Requests sent that ended, completed or failed: `completed + errors.total()`.
    pub sent: u64,
    /// Requests answered with a 2xx status.
    pub completed: u64,
    /// Completed requests per second of wall time.
    pub requests_per_sec: f64,
    /// Requests still in flight when a duration-bound run ended; not counted in `sent`.
    pub abandoned: u64,
    /// Failed requests by kind.
    pub errors: Errors,
    /// Latency of the completed requests.
    pub latency: Latency,
    /// The spread of complete responses over server workers.
    pub workers: WorkerDistribution,
    #[serde(skip)]
    histogram: Histogram<u64>,
}

impl Report {
    /// The full latency histogram of the completed requests (µs), e.g. to merge runs or to
    /// read other quantiles.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }
}

/// What one generator thread counted.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub(crate) completed: u64,
    pub(crate) abandoned: u64,
    pub(crate) errors: Errors,
    pub(crate) histogram: Histogram<u64>,
    pub(crate) workers: WorkerTally,
    pub(crate) elapsed: Duration,
}

impl Stats {
    pub(crate) fn new() -> Stats {
        Stats {
            completed: 0,
            abandoned: 0,
            errors: Errors::default(),
            histogram: new_histogram(),
            workers: WorkerTally::default(),
            elapsed: Duration::ZERO,
        }
    }

    /// Records a completed request that took `latency`.
    pub(crate) fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(us.clamp(1, MAX_LATENCY_US));
        self.completed += 1;
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Merges the threads' counts into one report.
pub(crate) fn merge(
    stats: &[Stats],
    connections: usize,
    depth: usize,
    worker_header: &str,
) -> Report {
    let mut histogram = new_histogram();
    let mut errors = Errors::default();
    let (mut completed, mut abandoned) = (0, 0);
    let mut counts = BTreeMap::new();
    let mut missing = 0;
    let mut elapsed = Duration::ZERO;
    for s in stats {
        histogram
            .add(&s.histogram)
            .expect("histograms share bounds");
        errors.add(&s.errors);
        completed += s.completed;
        abandoned += s.abandoned;
        s.workers.merge_into(&mut counts, &mut missing);
        elapsed = elapsed.max(s.elapsed);
    }
    let elapsed_secs = elapsed.as_secs_f64();
    Report {
        connections,
        threads: stats.len(),
        depth,
        elapsed_secs,
        sent: completed + errors.total(),
        completed,
        requests_per_sec: if elapsed_secs > 0.0 {
            completed as f64 / elapsed_secs
        } else {
            0.0
        },
        abandoned,
        errors,
        latency: Latency::of(&histogram),
        workers: WorkerDistribution::new(worker_header, counts, missing),
        histogram,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} connections, {} threads, depth {}, {:.2}s",
            self.connections, self.threads, self.depth, self.elapsed_secs
        )?;
        writeln!(
            f,
            "requests: {} sent, {} completed, {} abandoned at the end",
            self.sent, self.completed, self.abandoned
        )?;
        writeln!(f, "req/s:    {:.1}", self.requests_per_sec)?;
        let l = &self.latency;
        writeln!(
            f,
            "latency:  p50 {} p90 {} p99 {} p99.9 {} max {} mean {:.1} (µs, {} samples)",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us, l.count
        )?;
        let e = &self.errors;
        writeln!(
            f,
            "errors:   {} (connect {}, reset {}, timeout {}, bad_status {}, parse {})",
            e.total(),
            e.connect,
            e.reset,
            e.timeout,
            e.bad_status,
            e.parse
        )?;
        let w = &self.workers;
        write!(f, "workers:  {}:", w.header)?;
        if w.counts.is_empty() {
            write!(f, " none seen")?;
        }
        for (name, count) in &w.counts {
            write!(f, " {name}={count}")?;
        }
        if w.missing > 0 {
            write!(f, " (missing {})", w.missing)?;
        }
        if let (Some(ratio), Some(jain)) = (w.max_min_ratio, w.jain_index) {
            write!(f, "; max/min {ratio:.3}, Jain {jain:.4}")?;
        }
        writeln!(f)
    }
}
