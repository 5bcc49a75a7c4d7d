//! One cell of the table: a server × workload × worker count, measured in several rounds, each
//! against a fresh server.

use std::path::Path;
use std::time::Duration;

use herd_load::Report;

use super::process::{free_port, ticks_per_sec, Ready};
use super::target::Target;
use super::workload::{Load, Workload};

/// What one round measured.
#[derive(Debug)]
pub struct Round {
    /// herd-load's report of the measured run.
    pub report: Box<Report>,
    /// The worker killed half-way (the busiest one; kill workload only).
    pub killed: Option<i32>,
    /// CPU time the server's processes used during the measured run, in seconds.
    pub cpu_secs: f64,
}

impl Round {
    /// Completed requests per second.
    pub fn rps(&self) -> f64 {
        self.report.requests_per_sec
    }

    /// The 99th percentile of latency, in µs.
    pub fn p99_us(&self) -> f64 {
        self.report.latency.p99_us as f64
    }

    /// Server CPU time per completed request, in µs; `None` when nothing completed.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        (self.report.completed > 0).then(|| self.cpu_secs * 1e6 / self.report.completed as f64)
    }
}

/// What a cell measured, or why it has no figures.
#[derive(Debug)]
pub enum Outcome {
    /// Every round ran, in the order they ran.
    Measured(Vec<Round>),
    /// The server does not exist in this build (an unknown policy): "n/a".
    Unavailable(String),
    /// The server or the load failed in some round: a reason instead of figures.
    Failed(String),
}

/// A server × workload × worker count and its outcome.
#[derive(Debug)]
pub struct Cell {
    /// The server's name (a policy, or a reference server).
    pub server: String,
    /// `herd` or `reference`.
    pub kind: &'static str,
    /// `spread` or `plain` ([`Load::name`]).
    pub load: &'static str,
    /// The workload.
    pub workload: Workload,
    /// Workers of the server.
    pub workers: usize,
    /// What happened.
    pub outcome: Outcome,
}

impl Cell {
    /// The rounds, when measured.
    pub fn rounds(&self) -> Option<&[Round]> {
        match &self.outcome {
            Outcome::Measured(rounds) => Some(rounds),
            _ => None,
        }
    }
}

/// How long each round runs.
#[derive(Debug, Clone)]
pub struct Timing {
    /// An unmeasured run before the measured one (zero for none).
    pub warmup: Duration,
    /// The measured run.
    pub measure: Duration,
    /// How long a server may take to serve.
    pub start_timeout: Duration,
}

/// One round: `workload` against a fresh `target` with `workers` workers, under `load`. The
/// server is killed and reaped before this returns (or unwinds). `Err` is an
/// [`Outcome::Unavailable`] or [`Outcome::Failed`].
pub fn round(
    bin: &Path,
    dir: &Path,
    target: &Target,
    load: &Load,
    workload: Workload,
    workers: usize,
    t: &Timing,
) -> Result<Round, Outcome> {
    let failed = |what: &str, e: std::io::Error| Outcome::Failed(format!("{what}: {e}"));
    let port = free_port().map_err(|e| failed("no free port", e))?;
    let (mut server, listening) = target
        .start(bin, dir, workers, port)
        .map_err(|e| failed("cannot start", e))?;
    match server.wait_ready(listening, t.start_timeout) {
        Ready::Up => {}
        Ready::Unavailable(why) => return Err(Outcome::Unavailable(why)),
        Ready::Failed(why) => return Err(Outcome::Failed(why)),
    }
    if !t.warmup.is_zero() {
        herd_load::run(&workload.config(server.addr, t.warmup, load))
            .map_err(|e| failed("warm-up load", e))?;
    }
    let config = workload.config(server.addr, t.measure, load);
    let ticks_before = server.cpu_ticks();
    let (report, killed) = if workload.kills_a_worker() {
        std::thread::scope(|s| {
            let load = s.spawn(|| herd_load::run(&config));
            std::thread::sleep(t.measure / 2);
            let victim = server.busiest_worker();
            if let Some(pid) = victim {
                // SAFETY: kill(2) on a worker of the server this round started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let report = load.join().expect("the load thread does not panic");
            (report, victim)
        })
    } else {
        (herd_load::run(&config), None)
    };
    let ticks = server.cpu_ticks().saturating_sub(ticks_before);
    let report = report.map_err(|e| failed("load", e))?;
    drop(server);
    Ok(Round {
        report: Box::new(report),
        killed,
        cpu_secs: ticks as f64 / ticks_per_sec() as f64,
    })
}
