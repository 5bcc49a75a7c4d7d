// make bench      (or: cargo bench --bench policies [-- --quick]; HERD_BENCH=quick)
//! The scheduling-policy comparison: builds examples/workload.rs in release, then for every
//! herd policy (and Node's cluster and nginx when installed) runs each workload against a
//! fresh 2-worker server and prints a markdown table; JSON and an SVG chart go to
//! target/herd-bench/. A policy this build does not know shows as n/a.
//!
//! Modes: full (default, 10 s per cell after a 1 s warm-up) or quick (`-- --quick` or
//! `HERD_BENCH=quick`: 3 s per cell). `HERD_BENCH_POLICIES=reuseport,shared` and
//! `HERD_BENCH_WORKLOADS=keepalive-64,close-32` narrow the run; `HERD_BENCH_REFERENCES=0`
//! leaves out node and nginx. The load generator runs on the same CPUs as the server: compare
//! rows of one run, not runs.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use harness::{output, Plan, Target, Timing, Workload};

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and a test run must not turn into a 10-minute benchmark (tests/bench_smoke.rs covers it).
    if !std::env::args().any(|a| a == "--bench") {
        println!("policies: a benchmark; run it with `make bench` (cargo bench --bench policies)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("policies bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("HERD_BENCH").is_ok_and(|v| v == "quick");
    let (mode, measure, warmup) = if quick {
        ("quick", Duration::from_secs(3), Duration::from_millis(500))
    } else {
        ("full", Duration::from_secs(10), Duration::from_secs(1))
    };
    let target_dir = target_dir()?;
    let bin = build_workload(&target_dir)?;
    let plan = Plan {
        mode: mode.to_string(),
        bin,
        out_dir: target_dir.join("herd-bench"),
        targets: targets(),
        workloads: workloads()?,
        timing: Timing {
            workers: 2,
            warmup,
            measure,
            start_timeout: Duration::from_secs(10),
        },
    };
    println!(
        "# herd scheduling policies: {mode} mode ({}s per cell after a {}s warm-up), {} workers",
        measure.as_secs_f64(),
        warmup.as_secs_f64(),
        plan.timing.workers
    );
    println!("machine: {}", harness::Machine::detect());
    println!(
        "servers: {}",
        plan.targets
            .iter()
            .map(Target::name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let results = harness::run(&plan, |cell| {
        eprintln!("  done: {} × {}", cell.server, cell.workload.name());
    })
    .map_err(|e| format!("cannot create {}: {e}", plan.out_dir.display()))?;
    println!();
    print!("{}", output::markdown::table(&results));
    let written = output::write_all(&results, &plan.out_dir)
        .map_err(|e| format!("cannot write results: {e}"))?;
    println!();
    println!(
        "wrote {}, {}, {}",
        written.json.display(),
        written.svg.display(),
        written.markdown.display()
    );
    Ok(())
}

/// The herd policies (`HERD_BENCH_POLICIES` or every known name), then the references.
fn targets() -> Vec<Target> {
    let mut out: Vec<Target> = match std::env::var("HERD_BENCH_POLICIES") {
        Ok(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| Target::Herd(s.trim().to_string()))
            .collect(),
        Err(_) => harness::target::POLICIES
            .iter()
            .map(|p| Target::Herd(p.to_string()))
            .collect(),
    };
    if std::env::var("HERD_BENCH_REFERENCES").map_or(true, |v| v != "0") {
        out.extend(harness::target::references());
    }
    out
}

/// `HERD_BENCH_WORKLOADS` or every workload.
fn workloads() -> Result<Vec<Workload>, String> {
    match std::env::var("HERD_BENCH_WORKLOADS") {
        Ok(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                Workload::from_name(s.trim()).ok_or_else(|| {
                    let all: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                    format!("unknown workload {s}: use {}", all.join(", "))
                })
            })
            .collect(),
        Err(_) => Ok(Workload::ALL.to_vec()),
    }
}

/// The target directory this bench was built into (…/target/release/deps/policies-… → …/target).
fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} is not under target/<profile>/deps", exe.display()))
}

/// Builds the workload server in release; returns its path.
fn build_workload(target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--example",
            "workload",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --release --example workload: {status}"
        ));
    }
    let bin = target_dir.join("release/examples/workload");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} is missing after the build", bin.display()))
    }
}
