//! The results as JSON: the run, the machine, and per cell every round's figures (`rounds`),
//! their medians (`median`) and spreads (`min`, `max`). Scripts outside the repository read
//! `rounds[].rps`, `rounds[].p99_us`, `rounds[].cpu_us_per_request` and `median.*`: keep those
//! names.

use serde_json::{json, Value};

use crate::harness::stats::{Figures, Spread};
use crate::harness::{Cell, Outcome, Results, Round};

/// The whole run.
pub fn results(r: &Results) -> Value {
    json!({
        "mode": r.mode,
        "machine": r.machine.to_json(),
        "workers": r.workers,
        "rounds": r.rounds,
        "warmup_secs": r.timing.warmup.as_secs_f64(),
        "measure_secs": r.timing.measure.as_secs_f64(),
        "cells": r.cells.iter().map(cell).collect::<Vec<_>>(),
    })
}

/// One cell.
pub fn cell(c: &Cell) -> Value {
    let (status, reason) = match &c.outcome {
        Outcome::Measured(_) => ("ok", None),
        Outcome::Unavailable(why) => ("n/a", Some(why)),
        Outcome::Failed(why) => ("failed", Some(why)),
    };
    let mut v = json!({
        "server": c.server,
        "kind": c.kind,
        "load": c.load,
        "workload": c.workload.name(),
        "workers": c.workers,
        "status": status,
        "reason": reason,
    });
    if let (Some(rounds), Some(f)) = (c.rounds(), Figures::of(c)) {
        let pick = |g: fn(&Spread) -> f64| {
            json!({
                "rps": g(&f.rps),
                "p99_us": g(&f.p99_us),
                "cpu_us_per_request": f.cpu_us_per_request.as_ref().map(g),
                "errors": g(&f.errors),
                "jain_index": f.jain.as_ref().map(g),
            })
        };
        let extra = json!({
            "rounds": rounds.iter().map(|r| round(r, c.workers)).collect::<Vec<_>>(),
            "median": pick(|s| s.median),
            "min": pick(|s| s.min),
            "max": pick(|s| s.max),
        });
        if let (Value::Object(into), Value::Object(from)) = (&mut v, extra) {
            into.extend(from);
        }
    }
    v
}

/// One round: the headline figures, then herd-load's whole report.
fn round(r: &Round, workers: usize) -> Value {
    json!({
        "rps": r.rps(),
        "p99_us": r.report.latency.p99_us,
        "cpu_us_per_request": r.cpu_us_per_request(),
        "p50_us": r.report.latency.p50_us,
        "p999_us": r.report.latency.p999_us,
        "completed": r.report.completed,
        "server_cpu_secs": r.cpu_secs,
        "errors": r.report.errors.total(),
        "jain_index": super::jain(&r.report, workers),
        "killed_pid": r.killed,
        "report": serde_json::to_value(&*r.report).expect("a report serializes"),
    })
}
