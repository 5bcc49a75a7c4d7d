//! The `status` answer: the board's view as JSON (what `herd status` prints).

use std::time::UNIX_EPOCH;

use serde_json::{json, Map, Value};

use crate::metrics::board::View;
use crate::metrics::RestartReason;

fn reasons(counts: &[u64; RestartReason::ALL.len()]) -> Value {
    let mut m = Map::new();
    for r in RestartReason::ALL {
        if r != RestartReason::Stop {
            m.insert(r.as_str().into(), counts[r as usize].into());
        }
    }
    Value::Object(m)
}

/// The status of the cluster as `v` saw it.
pub(crate) fn status(v: &View) -> Value {
    let workers: Vec<Value> = v
        .workers
        .iter()
        .map(|w| {
            let restarts = v
                .slots
                .get(&w.slot)
                .map_or(Value::Null, |s| reasons(&s.restarts));
            json!({
                "id": w.id,
                "slot": w.slot,
                "pid": w.pid,
                "state": w.state,
                "generation": w.generation,
                "uptime_s": w.uptime.as_secs_f64(),
                "requests": w.snapshot.requests(),
                "open": w.snapshot.open,
                "rss_bytes": w.rss,
                "cpu_percent": w.cpu_percent,
                "cpu_seconds": w.cpu_seconds,
                "restarts": restarts,
                "heartbeat_age_s": w.heartbeat_age.map(|d| d.as_secs_f64()),
            })
        })
        .collect();
    let failed: Vec<Value> = v
        .slots
        .iter()
        .filter_map(|(n, s)| s.down.as_ref().map(|why| json!({"slot": n, "why": why})))
        .collect();
    let last_reload = v.last_reload.as_ref().map(|(r, at)| {
        json!({
            "ok": r.is_ok(),
            "error": r.as_ref().err(),
            "at_unix_s": at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
        })
    });
    json!({
        "pid": std::process::id(),
        "policy": v.policy,
        "addresses": v.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "workers_target": v.target,
        "generation": v.generation,
        "reloading": v.reloading,
        "last_reload": last_reload,
        "requests": v.totals.requests(),
        "open": v.open,
        "restarts": reasons(&v.restarts),
        "failed_slots": failed,
        "workers": workers,
    })
}
