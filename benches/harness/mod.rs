//! The scheduling-policy comparison behind `make bench`, shared by benches/policies.rs and
//! tests/bench_smoke.rs: for every worker count, workload and server (herd policies, then the
//! reference servers), several rounds against a fresh server on a free 127.0.0.1 port, loaded
//! in-process by herd-load. Rounds interleave the servers (ABC BCA CAB …) so that a slow stretch
//! of a shared machine lands on all of them; each figure is reported as the median and the
//! spread (min–max) of its rounds, as a markdown table, JSON and an SVG chart.
// The bench and the smoke test each use a part (the smoke test starts no reference server).
#![allow(dead_code)]

pub mod cell;
mod cleanup;
pub mod machine;
pub mod output;
pub mod process;
mod reference;
pub mod stats;
pub mod target;
pub mod workload;

use std::collections::HashMap;
use std::path::PathBuf;

pub use cell::{Cell, Outcome, Round, Timing};
pub use machine::Machine;
pub use target::Target;
pub use workload::{Load, Workload};

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `quick`, `full` or `smoke`: printed and recorded, nothing more.
    pub mode: String,
    /// The workload server (examples/workload.rs, built).
    pub bin: PathBuf,
    /// Where results (and the reference servers' files) go; created if missing.
    pub out_dir: PathBuf,
    /// The servers, in table order (the first round's order).
    pub targets: Vec<Target>,
    /// The workloads, in table order.
    pub workloads: Vec<Workload>,
    /// The worker counts to run every server with (the sweep), in table order.
    pub workers: Vec<usize>,
    /// Rounds per cell.
    pub rounds: usize,
    /// The load every server gets (but the plain-loopback rows).
    pub load: Load,
    /// Per round.
    pub timing: Timing,
}

impl Plan {
    /// Server runs this plan will make (rounds × cells), for an estimate of its length.
    pub fn runs(&self) -> usize {
        let per_workers: usize = self
            .workloads
            .iter()
            .map(|&w| self.targets.iter().filter(|t| t.runs(w)).count())
            .sum();
        per_workers * self.workers.len() * self.rounds
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Results {
    /// The mode it ran in.
    pub mode: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// Rounds per cell.
    pub rounds: usize,
    /// The worker counts of the sweep.
    pub workers: Vec<usize>,
    /// Per-round timing.
    pub timing: Timing,
    /// One per worker count × workload × server that runs it, in table order.
    pub cells: Vec<Cell>,
}

/// What one round of one cell gave, for progress lines.
pub struct Progress<'a> {
    /// The cell's server.
    pub server: &'a str,
    /// The workload.
    pub workload: Workload,
    /// Workers of the server.
    pub workers: usize,
    /// Which round (from 1), and of how many.
    pub round: (usize, usize),
    /// The round's figures, or why there are none.
    pub result: Result<&'a Round, &'a Outcome>,
}

/// Runs every cell of `plan`, calling `progress` after each round.
///
/// For each worker count and workload, round `r` runs the servers in the plan's order rotated
/// by `r`, each against a fresh server. A server that turns out not to exist is not started
/// again; a cell whose round fails runs no further rounds.
///
/// # Errors
/// When the output directory cannot be created. A server that fails is a cell outcome.
pub fn run(plan: &Plan, mut progress: impl FnMut(&Progress<'_>)) -> std::io::Result<Results> {
    std::fs::create_dir_all(&plan.out_dir)?;
    let mut unavailable: HashMap<String, String> = HashMap::new();
    let mut cells = Vec::new();
    for &workers in &plan.workers {
        for &workload in &plan.workloads {
            let targets: Vec<&Target> = plan.targets.iter().filter(|t| t.runs(workload)).collect();
            let mut outcomes: Vec<Outcome> = targets
                .iter()
                .map(|_| Outcome::Measured(Vec::new()))
                .collect();
            for r in 0..plan.rounds {
                for k in 0..targets.len() {
                    let i = (k + r) % targets.len();
                    let target = targets[i];
                    if let Some(why) = unavailable.get(&target.name()) {
                        outcomes[i] = Outcome::Unavailable(why.clone());
                    }
                    let Outcome::Measured(rounds) = &mut outcomes[i] else {
                        continue;
                    };
                    let load = target.load(&plan.load);
                    let result = cell::round(
                        &plan.bin,
                        &plan.out_dir,
                        target,
                        &load,
                        workload,
                        workers,
                        &plan.timing,
                    );
                    let name = target.name();
                    let report = |result| Progress {
                        server: &name,
                        workload,
                        workers,
                        round: (r + 1, plan.rounds),
                        result,
                    };
                    match result {
                        Ok(round) => {
                            progress(&report(Ok(&round)));
                            rounds.push(round);
                        }
                        Err(outcome) => {
                            progress(&report(Err(&outcome)));
                            if let Outcome::Unavailable(why) = &outcome {
                                unavailable.insert(target.name(), why.clone());
                            }
                            outcomes[i] = match outcome {
                                Outcome::Failed(why) => {
                                    Outcome::Failed(format!("round {}: {why}", r + 1))
                                }
                                other => other,
                            };
                        }
                    }
                }
            }
            for (target, outcome) in targets.into_iter().zip(outcomes) {
                cells.push(Cell {
                    server: target.name(),
                    kind: target.kind(),
                    load: target.load(&plan.load).name(),
                    workload,
                    workers,
                    outcome,
                });
            }
        }
    }
    Ok(Results {
        mode: plan.mode.clone(),
        machine: Machine::detect(),
        rounds: plan.rounds,
        workers: plan.workers.clone(),
        timing: plan.timing.clone(),
        cells,
    })
}
