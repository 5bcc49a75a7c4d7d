//! The results as a markdown table: one row per cell, then a note per server without figures.

use std::fmt::Write;

use super::{jain, micros, rate};
use crate::harness::{Outcome, Results};

/// The table's header line.
pub const HEADER: &str = "| server | workload | req/s | p50 | p99 | p99.9 | errors | Jain |";

/// The table and its notes.
pub fn table(r: &Results) -> String {
    let mut out = String::new();
    out.push_str(HEADER);
    out.push_str("\n|---|---|--:|--:|--:|--:|--:|--:|\n");
    let mut notes: Vec<String> = Vec::new();
    for c in &r.cells {
        let w = c.workload.name();
        let _ = match &c.outcome {
            Outcome::Measured { report, .. } => {
                let l = &report.latency;
                let jain = jain(report, r.timing.workers)
                    .map_or_else(|| "-".to_string(), |j| format!("{j:.3}"));
                writeln!(
                    out,
                    "| {} | {w} | {} | {} | {} | {} | {} | {jain} |",
                    c.server,
                    rate(report.requests_per_sec),
                    micros(l.p50_us),
                    micros(l.p99_us),
                    micros(l.p999_us),
                    errors(&report.errors),
                )
            }
            Outcome::Unavailable(why) | Outcome::Failed(why) => {
                let label = if matches!(c.outcome, Outcome::Unavailable(_)) {
                    "n/a"
                } else {
                    "failed"
                };
                let note = format!("- {}: {label} ({})", c.server, why.trim());
                if !notes.contains(&note) {
                    notes.push(note);
                }
                writeln!(
                    out,
                    "| {} | {w} | {label} | {label} | {label} | {label} | {label} | {label} |",
                    c.server
                )
            }
        };
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// `0`, or the total and its kinds: `41 (reset 37, connect 4)`.
fn errors(e: &herd_load::Errors) -> String {
    let kinds: Vec<String> = [
        ("connect", e.connect),
        ("reset", e.reset),
        ("timeout", e.timeout),
        ("status", e.bad_status),
        ("parse", e.parse),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k} {n}"))
    .collect();
    if kinds.is_empty() {
        "0".to_string()
    } else {
        format!("{} ({})", e.total(), kinds.join(", "))
    }
}
