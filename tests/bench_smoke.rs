//! The policy bench's harness, end to end in a smoke mode: the debug workload server, rr-sticky
//! under the spread load and under plain loopback, a policy that does not exist, two workloads,
//! a sweep of 1 and 2 workers, 2 interleaved rounds of 200 ms. Checks the shape of the report
//! (rounds, medians and spreads in JSON, error bars in the SVG, one table row per cell), the
//! round order, that server CPU per request is measured, and what the spread load changes for
//! a per-client policy; never the speed. No server process is left behind.

#[path = "../benches/harness/mod.rs"]
mod harness;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::{output, Load, Machine, Outcome, Plan, Target, Timing, Workload};

/// target/debug, from this test's own path (target/debug/deps/bench_smoke-…).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    exe.ancestors()
        .nth(2)
        .expect("under target/debug/deps")
        .to_path_buf()
}

#[test]
fn smoke_run_produces_a_well_formed_report() {
    let started = Instant::now();
    let dir = profile_dir();
    let bin = dir.join("examples/workload");
    assert!(
        bin.is_file(),
        "{} is missing: cargo test builds examples; run `cargo build --example workload`",
        bin.display()
    );
    let out_dir = dir.join("herd-bench-smoke");
    let _ = std::fs::remove_dir_all(&out_dir);
    let plan = Plan {
        mode: "smoke".to_string(),
        bin,
        out_dir: out_dir.clone(),
        targets: vec![
            Target::Herd("rr-sticky".to_string()),
            Target::Plain("rr-sticky".to_string()),
            Target::Herd("no-such-policy".to_string()),
        ],
        workloads: vec![Workload::KeepAlive, Workload::KillWorker],
        workers: vec![1, 2],
        rounds: 2,
        load: Load::Spread {
            cpus: Machine::detect().cpus,
        },
        timing: Timing {
            warmup: Duration::ZERO,
            measure: Duration::from_millis(200),
            start_timeout: Duration::from_secs(10),
        },
    };
    let mut order: Vec<(usize, usize, &'static str, String)> = Vec::new();
    let results = harness::run(&plan, |p| {
        order.push((
            p.workers,
            p.round.0,
            p.workload.name(),
            p.server.to_string(),
        ))
    })
    .expect("the run");
    let written = output::write_all(&results, &out_dir).expect("the outputs");

    // Rounds interleave the servers, the order rotating each round; the unknown policy is
    // started once, then known to be n/a.
    let keepalive_2: Vec<(usize, &str)> = order
        .iter()
        .filter(|(w, _, wl, _)| *w == 2 && *wl == "keepalive-64")
        .map(|(_, r, _, s)| (*r, s.as_str()))
        .collect();
    assert_eq!(
        keepalive_2,
        [
            (1, "rr-sticky"),
            (1, "rr-sticky (plain loopback)"),
            (2, "rr-sticky (plain loopback)"),
            (2, "rr-sticky"),
        ]
    );
    assert_eq!(
        order.iter().filter(|o| o.3 == "no-such-policy").count(),
        1,
        "{order:?}"
    );

    // Every cell is there: per worker count, keep-alive for the three servers, kill-worker for
    // the two that run it (not the plain-loopback row).
    assert_eq!(results.cells.len(), 2 * (3 + 2));
    for c in &results.cells {
        match (&c.outcome, c.server.as_str()) {
            (Outcome::Measured(rounds), _) if c.server.starts_with("rr-sticky") => {
                assert_eq!(rounds.len(), 2, "{}", c.server);
                for r in rounds {
                    let cpu = r.cpu_us_per_request().expect("requests completed");
                    assert!(cpu.is_finite() && cpu > 0.0, "server CPU measured: {cpu}");
                }
            }
            (Outcome::Unavailable(why), "no-such-policy") => {
                assert!(why.contains("POLICY"), "{why}")
            }
            (o, s) => panic!("{s} × {}: unexpected {o:?}", c.workload.name()),
        }
    }
    let kills = results
        .cells
        .iter()
        .filter(|c| c.workload == Workload::KillWorker)
        .filter_map(|c| c.rounds())
        .flatten();
    assert!(
        kills.clone().count() == 4 && kills.clone().all(|r| r.killed.is_some()),
        "a worker was killed in every kill-worker round"
    );

    // The loopback artefact, handled: with 2 workers, plain loopback (one client address) sends
    // every connection of rr-sticky to one worker (bar one that may spill over when that
    // worker has 64 hand-offs unacknowledged); the spread load (64 addresses) reaches both.
    let busiest_share = |server: &str| -> Vec<f64> {
        let cell = results
            .cells
            .iter()
            .find(|c| c.workers == 2 && c.workload == Workload::KeepAlive && c.server == server)
            .expect("the cell");
        cell.rounds()
            .expect("measured")
            .iter()
            .map(|r| {
                let counts = &r.report.workers.counts;
                let total: u64 = counts.values().sum();
                *counts.values().max().expect("some responses") as f64 / total as f64
            })
            .collect()
    };
    let plain = busiest_share("rr-sticky (plain loopback)");
    assert!(plain.iter().all(|&s| s > 0.9), "{plain:?}");
    let spread = busiest_share("rr-sticky");
    assert!(spread.iter().all(|&s| s < 0.8), "{spread:?}");

    // The ranking: every measured row but the first of its group says ≈ or a ratio.
    for g in output::groups(&results) {
        for (i, row) in g.rows.iter().filter(|r| r.figures.is_some()).enumerate() {
            if i == 0 {
                assert_eq!(row.ranking, "fastest");
            } else {
                assert!(
                    row.ranking.starts_with("≈ ") || row.ranking.contains("× "),
                    "{}",
                    row.ranking
                );
            }
        }
    }

    // JSON: per cell, every round's figures under `rounds` and their medians under `median`.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&written.json).unwrap()).unwrap();
    for key in [
        "mode",
        "machine",
        "workers",
        "rounds",
        "measure_secs",
        "cells",
    ] {
        assert!(json.get(key).is_some(), "results.json lacks {key}");
    }
    assert!(json["machine"]["nproc"].as_u64().is_some_and(|n| n >= 1));
    let cells = json["cells"].as_array().expect("cells is an array");
    assert_eq!(cells.len(), results.cells.len());
    for c in cells {
        for key in ["server", "kind", "load", "workload", "workers", "status"] {
            assert!(c.get(key).is_some(), "cell lacks {key}: {c}");
        }
        if c["status"] != "ok" {
            assert_eq!(c["status"], "n/a", "{c}");
            continue;
        }
        let rounds = c["rounds"].as_array().expect("rounds is an array");
        assert_eq!(rounds.len(), 2, "{c}");
        // serde_json's float parsing may be one ulp off: compare closely, not exactly.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
        for key in ["rps", "p99_us", "cpu_us_per_request"] {
            let of_rounds: Vec<f64> = rounds.iter().map(|r| r[key].as_f64().unwrap()).collect();
            let (lo, hi) = (
                of_rounds[0].min(of_rounds[1]),
                of_rounds[0].max(of_rounds[1]),
            );
            let figure = |k: &str| {
                c[k][key]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{k}.{key} in {c}"))
            };
            assert!(
                close(figure("median"), (lo + hi) / 2.0),
                "median.{key}: {c}"
            );
            assert!(close(figure("min"), lo), "min.{key}: {c}");
            assert!(close(figure("max"), hi), "max.{key}: {c}");
        }
    }

    // SVG: one document; per measured cell three bars, each with an error bar.
    let measured = results
        .cells
        .iter()
        .filter(|c| c.rounds().is_some())
        .count();
    assert_eq!(measured, 6);
    let svg = std::fs::read_to_string(&written.svg).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    for class in ["rps", "p99", "cpu"] {
        let bars = format!(r#"<rect class="{class} "#);
        assert_eq!(svg.matches(&bars).count(), measured, "{class} bars");
    }
    assert_eq!(svg.matches(r#"<path class="err""#).count(), 3 * measured);
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());

    // Markdown: the header, a separator, one row per cell; the machine's CPU count.
    let md = std::fs::read_to_string(&written.markdown).unwrap();
    assert!(
        md.contains(&format!("{} CPUs", results.machine.nproc)),
        "{md}"
    );
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows[0], output::markdown::HEADER);
    assert_eq!(rows.len(), 2 + results.cells.len(), "{md}");
    assert_eq!(rows.iter().filter(|r| r.contains("| n/a |")).count(), 4);

    assert!(started.elapsed() < Duration::from_secs(60));
    // Every server was killed and reaped when its round ended.
    assert!(!workload_running(), "a workload server outlived its round");
}

/// The server CPU figure keeps a worker that died: its time moves to the primary's reaped
/// children (cutime + cstime) and still counts.
#[test]
fn server_cpu_keeps_the_time_of_a_killed_worker() {
    use harness::process::{free_port, Ready};
    let dir = profile_dir();
    let out_dir = dir.join("herd-bench-smoke-cpu");
    std::fs::create_dir_all(&out_dir).unwrap();
    let target = Target::Herd("reuseport".to_string());
    let (mut server, listening) = target
        .start(
            &dir.join("examples/workload"),
            &out_dir,
            2,
            free_port().unwrap(),
        )
        .expect("the server starts");
    let ready = server.wait_ready(listening, Duration::from_secs(10));
    assert!(matches!(ready, Ready::Up), "{ready:?}");
    let load = Workload::KeepAlive.config(server.addr, Duration::from_millis(800), &Load::Plain);
    let report = herd_load::run(&load).expect("the load");
    assert!(report.completed > 0);
    let before = server.cpu_ticks();
    let victim = server.busiest_worker().expect("a worker");
    // SAFETY: kill(2) on a worker of the server this test started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{victim}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = server.cpu_ticks();
    assert!(
        before > 0,
        "the server used CPU serving {} requests",
        report.completed
    );
    assert!(
        after >= before,
        "CPU ticks went from {before} to {after} when worker {victim} died"
    );
}

#[test]
fn spread_is_median_min_max_and_overlap_means_no_ranking() {
    use harness::stats::Spread;
    let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
    assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
    let s = Spread::of([4.0, 1.0, 2.0, 3.0, f64::NAN]).unwrap();
    assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
    assert!(Spread::of([]).is_none());
    let a = Spread::of([1.0, 2.0]).unwrap();
    assert!(a.overlaps(&Spread::of([2.0, 5.0]).unwrap()));
    assert!(!a.overlaps(&Spread::of([2.5, 5.0]).unwrap()));
}

/// Whether any examples/workload process of this target directory still runs.
fn workload_running() -> bool {
    let bin = profile_dir().join("examples/workload");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|exe| exe == bin))
}
