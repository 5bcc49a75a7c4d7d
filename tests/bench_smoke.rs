//! The policy bench's harness, end to end in a smoke mode: the debug workload server, two
//! policies plus one that does not exist, two workloads, 300 ms cells. Checks the shape of the
//! report (JSON keys per cell, one SVG bar pair per measured cell, one table row per cell),
//! never the figures, and that no server process is left behind.

#[path = "../benches/harness/mod.rs"]
mod harness;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::{output, Outcome, Plan, Target, Timing, Workload};

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
        targets: ["reuseport", "shared", "no-such-policy"]
            .iter()
            .map(|p| Target::Herd(p.to_string()))
            .collect(),
        workloads: vec![Workload::KeepAlive, Workload::KillWorker],
        timing: Timing {
            workers: 2,
            warmup: Duration::ZERO,
            measure: Duration::from_millis(300),
            start_timeout: Duration::from_secs(10),
        },
    };
    let results = harness::run(&plan, |_| {}).expect("the run");
    let written = output::write_all(&results, &out_dir).expect("the outputs");

    // Every cell is there, in order; the known policies measured, the unknown one n/a.
    assert_eq!(results.cells.len(), 6);
    for c in &results.cells {
        match (&c.outcome, c.server.as_str()) {
            (Outcome::Measured { .. }, "reuseport" | "shared") => {}
            (Outcome::Unavailable(why), "no-such-policy") => {
                assert!(why.contains("POLICY"), "{why}")
            }
            (o, s) => panic!("{s} × {}: unexpected {o:?}", c.workload.name()),
        }
    }
    let kill = results
        .cells
        .iter()
        .find(|c| c.workload == Workload::KillWorker);
    assert!(
        matches!(
            kill.map(|c| &c.outcome),
            Some(Outcome::Measured {
                killed: Some(_),
                ..
            })
        ),
        "a worker was killed in the kill workload"
    );

    // JSON: the expected keys per cell.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&written.json).unwrap()).unwrap();
    for key in ["mode", "machine", "workers", "measure_secs", "cells"] {
        assert!(json.get(key).is_some(), "results.json lacks {key}");
    }
    let cells = json["cells"].as_array().expect("cells is an array");
    assert_eq!(cells.len(), 6);
    for c in cells {
        for key in ["server", "kind", "workload", "status", "reason"] {
            assert!(c.get(key).is_some(), "cell lacks {key}: {c}");
        }
        if c["status"] == "ok" {
            for key in [
                "req_per_sec",
                "p50_us",
                "p99_us",
                "p999_us",
                "errors",
                "errors_total",
                "jain_index",
                "killed_pid",
                "report",
            ] {
                assert!(c.get(key).is_some(), "measured cell lacks {key}: {c}");
            }
        } else {
            assert_eq!(c["status"], "n/a", "{c}");
        }
    }

    // SVG: one document, one throughput bar and one p99 bar per measured cell.
    let svg = std::fs::read_to_string(&written.svg).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    assert_eq!(svg.matches(r#"<rect class="rps"#).count(), 4);
    assert_eq!(svg.matches(r#"<rect class="p99"#).count(), 4);
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());

    // Markdown: the header, a separator, one row per cell.
    let md = std::fs::read_to_string(&written.markdown).unwrap();
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows[0], output::markdown::HEADER);
    assert_eq!(rows.len(), 2 + 6, "{md}");
    assert_eq!(rows.iter().filter(|r| r.contains("| n/a |")).count(), 2);

    assert!(started.elapsed() < Duration::from_secs(30));
    // Every server was killed and reaped when its cell ended.
    assert!(!workload_running(), "a workload server outlived its cell");
}

/// Whether any examples/workload process of this target directory still runs.
fn workload_running() -> bool {
    let bin = profile_dir().join("examples/workload");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|exe| exe == bin))
}
