//! The results as JSON: the run, the machine, and per cell the headline figures plus
//! herd-load's whole report.

use serde_json::{json, Value};

use crate::harness::{Cell, Outcome, Results};

/// The whole run.
pub fn results(r: &Results) -> Value {
    json!({
        "mode": r.mode,
        "machine": r.machine.to_json(),
        "workers": r.timing.workers,
        "warmup_secs": r.timing.warmup.as_secs_f64(),
        "measure_secs": r.timing.measure.as_secs_f64(),
        "cells": r.cells.iter().map(|c| cell(c, r.timing.workers)).collect::<Vec<_>>(),
    })
}

/// One cell.
pub fn cell(c: &Cell, workers: usize) -> Value {
    let (status, reason) = match &c.outcome {
        Outcome::Measured { .. } => ("ok", None),
        Outcome::Unavailable(why) => ("n/a", Some(why)),
        Outcome::Failed(why) => ("failed", Some(why)),
    };
    let mut v = json!({
        "server": c.server,
        "kind": c.kind,
        "workload": c.workload.name(),
        "status": status,
        "reason": reason,
    });
    if let Outcome::Measured { report, killed } = &c.outcome {
        let extra = json!({
            "req_per_sec": report.requests_per_sec,
            "p50_us": report.latency.p50_us,
            "p99_us": report.latency.p99_us,
            "p999_us": report.latency.p999_us,
            "errors": serde_json::to_value(report.errors).expect("errors serialize"),
            "errors_total": report.errors.total(),
            "jain_index": super::jain(report, workers),
            "killed_pid": killed,
            "report": serde_json::to_value(&**report).expect("a report serializes"),
        });
        if let (Value::Object(into), Value::Object(from)) = (&mut v, extra) {
            into.extend(from);
        }
    }
    v
}
