//! One cell of the table: a fresh server, one workload, one report.

use std::path::Path;
use std::time::Duration;

use herd_load::Report;

use super::process::{free_port, Ready};
use super::target::Target;
use super::workload::Workload;

/// What one cell measured, or why it has no figures.
#[derive(Debug)]
pub enum Outcome {
    /// The load ran; `killed` is the worker pid killed half-way (the busiest one), for the
    /// kill workload.
    Measured {
        /// herd-load's report of the measured run.
        report: Box<Report>,
        /// The worker killed half-way (kill workload only).
        killed: Option<i32>,
    },
    /// The server does not exist in this build (an unknown policy): "n/a".
    Unavailable(String),
    /// The server or the load failed: a reason instead of figures.
    Failed(String),
}

/// A server × workload pair and its outcome.
#[derive(Debug)]
pub struct Cell {
    /// The server's name (a policy, or a reference server).
    pub server: String,
    /// `herd` or `reference`.
    pub kind: &'static str,
    /// The workload.
    pub workload: Workload,
    /// What happened.
    pub outcome: Outcome,
}

/// How long and with how many workers each cell runs.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Workers per server.
    pub workers: usize,
    /// An unmeasured run before the measured one (zero for none).
    pub warmup: Duration,
    /// The measured run.
    pub measure: Duration,
    /// How long a server may take to serve.
    pub start_timeout: Duration,
}

/// Runs `workload` against a fresh `target`; the server is killed and reaped before this
/// returns (or unwinds).
pub fn run(bin: &Path, dir: &Path, target: &Target, workload: Workload, t: &Timing) -> Cell {
    let outcome = measure(bin, dir, target, workload, t).unwrap_or_else(|o| o);
    Cell {
        server: target.name(),
        kind: target.kind(),
        workload,
        outcome,
    }
}

fn measure(
    bin: &Path,
    dir: &Path,
    target: &Target,
    workload: Workload,
    t: &Timing,
) -> Result<Outcome, Outcome> {
    let failed = |what: &str, e: std::io::Error| Outcome::Failed(format!("{what}: {e}"));
    let port = free_port().map_err(|e| failed("no free port", e))?;
    let (mut server, listening) = target
        .start(bin, dir, t.workers, port)
        .map_err(|e| failed("cannot start", e))?;
    match server.wait_ready(listening, t.start_timeout) {
        Ready::Up => {}
        Ready::Unavailable(why) => return Err(Outcome::Unavailable(why)),
        Ready::Failed(why) => return Err(Outcome::Failed(why)),
    }
    if !t.warmup.is_zero() {
        herd_load::run(&workload.config(server.addr, t.warmup))
            .map_err(|e| failed("warm-up load", e))?;
    }
    let config = workload.config(server.addr, t.measure);
    let (report, killed) = if workload.kills_a_worker() {
        std::thread::scope(|s| {
            let load = s.spawn(|| herd_load::run(&config));
            std::thread::sleep(t.measure / 2);
            let victim = server.busiest_worker();
            if let Some(pid) = victim {
                // SAFETY: kill(2) on a worker of the server this cell started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let report = load.join().expect("the load thread does not panic");
            (report, victim)
        })
    } else {
        (herd_load::run(&config), None)
    };
    let report = report.map_err(|e| failed("load", e))?;
    drop(server);
    Ok(Outcome::Measured {
        report: Box::new(report),
        killed,
    })
}
