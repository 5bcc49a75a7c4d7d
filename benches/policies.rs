// make bench      (or: cargo bench --bench policies [-- --quick]; HERD_BENCH=quick)
//! The scheduling-policy comparison: builds examples/workload.rs in release, then for every
//! worker count, workload and server (herd's policies, Node's cluster and nginx when installed)
//! runs several interleaved rounds, each against a fresh server, and prints a markdown table of
//! medians and spreads; JSON and an SVG chart go to target/herd-bench/. A policy this build
//! does not know shows as n/a.
//!
//! Modes: full (default: 5 rounds of 3 s after a 1 s warm-up) or quick (`-- --quick` or
//! `HERD_BENCH=quick`: 3 rounds of 1 s after 0.5 s). `HERD_BENCH_ROUNDS=N` and
//! `HERD_BENCH_SECS=S` override rounds and seconds per round; `HERD_BENCH_WORKERS=1,2,4`
//! sweeps worker counts (default: the CPU count); `HERD_BENCH_POLICIES=reuseport,shared` and
//! `HERD_BENCH_WORKLOADS=keepalive-64,close-32` narrow the run; `HERD_BENCH_REFERENCES=0`
//! leaves out node and nginx. The load generator runs on the same CPUs as the server: compare
//! rows of one run, not runs.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use harness::{output, Load, Machine, Plan, Target, Timing, Workload};

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and a test run must not turn into a 20-minute benchmark (tests/bench_smoke.rs covers it).
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
    // Full: 5 rounds × 44 cells must fit in ~20 minutes on 2 CPUs, hence 3 s rounds; the
    // spread over rounds says more than a longer single run would. The warm-up lets Node's
    // JIT settle (its first second runs at a fraction of its speed).
    let (mode, rounds, measure, warmup) = if quick {
        ("quick", 3, 1.0, Duration::from_millis(500))
    } else {
        ("full", 5, 3.0, Duration::from_secs(1))
    };
    let rounds: usize = env_number("HERD_BENCH_ROUNDS", rounds)?;
    let measure: f64 = env_number("HERD_BENCH_SECS", measure)?;
    if rounds == 0 || !measure.is_finite() || measure <= 0.0 {
        return Err("HERD_BENCH_ROUNDS and HERD_BENCH_SECS must be above 0".to_string());
    }
    let machine = Machine::detect();
    let workers = match std::env::var("HERD_BENCH_WORKERS") {
        Ok(list) => list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| match s.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "HERD_BENCH_WORKERS: '{s}' is not a worker count (1, 2, …)"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Err(_) => vec![machine.nproc],
    };
    let target_dir = target_dir()?;
    let bin = build_workload(&target_dir)?;
    let plan = Plan {
        mode: mode.to_string(),
        bin,
        out_dir: target_dir.join("herd-bench"),
        targets: targets(),
        workloads: workloads()?,
        workers,
        rounds,
        load: Load::Spread {
            cpus: machine.cpus.clone(),
        },
        timing: Timing {
            warmup,
            measure: Duration::from_secs_f64(measure),
            start_timeout: Duration::from_secs(10),
        },
    };
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    println!(
        "# herd scheduling policies: {mode} mode, {rounds} interleaved rounds of {measure}s after \
         a {}s warm-up, workers {}",
        warmup.as_secs_f64(),
        list(&plan.workers)
    );
    println!("machine: {machine}");
    println!(
        "load: herd-load threads pinned to CPUs {}, connections from 127.0.0.2-{} (plain \
         loopback rows: 2 unpinned threads, 127.0.0.1)",
        list(&machine.cpus),
        1 + harness::workload::SOURCES
    );
    println!(
        "servers: {}",
        plan.targets
            .iter()
            .map(Target::name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let per_run = measure + warmup.as_secs_f64() + 0.6;
    println!(
        "{} server runs, about {:.0} minutes",
        plan.runs(),
        plan.runs() as f64 * per_run / 60.0
    );
    let started = std::time::Instant::now();
    let results = harness::run(&plan, |p| {
        let what = match p.result {
            Ok(r) => format!(
                "{} req/s, p99 {}, {} µs CPU/req",
                output::rate(r.rps()),
                output::micros(r.p99_us() as u64),
                r.cpu_us_per_request()
                    .map_or("-".to_string(), output::small)
            ),
            Err(o) => format!("{o:?}"),
        };
        eprintln!(
            "  round {}/{}, {} workers, {} × {}: {what}",
            p.round.0,
            p.round.1,
            p.workers,
            p.server,
            p.workload.name()
        );
    })
    .map_err(|e| format!("cannot create {}: {e}", plan.out_dir.display()))?;
    println!();
    print!("{}", output::markdown::table(&results));
    let written = output::write_all(&results, &plan.out_dir)
        .map_err(|e| format!("cannot write results: {e}"))?;
    println!();
    println!(
        "{} server runs in {:.1} minutes",
        plan.runs(),
        started.elapsed().as_secs_f64() / 60.0
    );
    println!(
        "wrote {}, {}, {}",
        written.json.display(),
        written.svg.display(),
        written.markdown.display()
    );
    Ok(())
}

/// The value of the environment variable `name`, or `default` when unset.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}: '{v}' is not a number")),
        Err(_) => Ok(default),
    }
}

/// The herd policies (`HERD_BENCH_POLICIES` or every known name), each policy of
/// [`harness::target::PLAIN_LESSONS`] followed by its plain-loopback row, then the references.
fn targets() -> Vec<Target> {
    let policies: Vec<String> = match std::env::var("HERD_BENCH_POLICIES") {
        Ok(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => harness::target::POLICIES
            .iter()
            .map(|p| p.to_string())
            .collect(),
    };
    let mut out = Vec::new();
    for p in policies {
        let plain = harness::target::PLAIN_LESSONS.contains(&p.as_str());
        out.push(Target::Herd(p.clone()));
        if plain {
            out.push(Target::Plain(p));
        }
    }
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
