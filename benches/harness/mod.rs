//! The scheduling-policy comparison behind `make bench`, shared by benches/policies.rs and
//! tests/bench_smoke.rs: for every server (herd policies, then the reference servers) and every
//! workload, a fresh 2-worker server on a free 127.0.0.1 port, loaded in-process by herd-load;
//! the results as a markdown table, JSON and an SVG chart.
// The bench and the smoke test each use a part (the smoke test starts no reference server).
#![allow(dead_code)]

pub mod cell;
mod cleanup;
pub mod machine;
pub mod output;
mod process;
mod reference;
pub mod target;
pub mod workload;

use std::path::PathBuf;

pub use cell::{Cell, Outcome, Timing};
pub use machine::Machine;
pub use target::Target;
pub use workload::Workload;

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `quick`, `full` or `smoke`: printed and recorded, nothing more.
    pub mode: String,
    /// The workload server (examples/workload.rs, built).
    pub bin: PathBuf,
    /// Where results (and the reference servers' files) go; created if missing.
    pub out_dir: PathBuf,
    /// The servers, in table order.
    pub targets: Vec<Target>,
    /// The workloads, in table order.
    pub workloads: Vec<Workload>,
    /// Per cell.
    pub timing: Timing,
}

/// A finished run.
#[derive(Debug)]
pub struct Results {
    /// The mode it ran in.
    pub mode: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// Per-cell timing.
    pub timing: Timing,
    /// One per server × workload that applies to it, in table order.
    pub cells: Vec<Cell>,
}

/// Runs every cell of `plan`, calling `progress` after each one.
///
/// # Errors
/// When the output directory cannot be created. A server that fails is a cell outcome.
pub fn run(plan: &Plan, mut progress: impl FnMut(&Cell)) -> std::io::Result<Results> {
    std::fs::create_dir_all(&plan.out_dir)?;
    let mut cells = Vec::new();
    for target in &plan.targets {
        let mut unavailable: Option<String> = None;
        for &workload in plan.workloads.iter().filter(|&&w| target.runs(w)) {
            let cell = match &unavailable {
                // Once a server is known not to exist, do not start it again.
                Some(why) => Cell {
                    server: target.name(),
                    kind: target.kind(),
                    workload,
                    outcome: Outcome::Unavailable(why.clone()),
                },
                None => cell::run(&plan.bin, &plan.out_dir, target, workload, &plan.timing),
            };
            if let Outcome::Unavailable(why) = &cell.outcome {
                unavailable = Some(why.clone());
            }
            progress(&cell);
            cells.push(cell);
        }
    }
    Ok(Results {
        mode: plan.mode.clone(),
        machine: Machine::detect(),
        timing: plan.timing.clone(),
        cells,
    })
}
