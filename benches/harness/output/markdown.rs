//! The results as a markdown table: per worker count and workload, the servers by median req/s,
//! each figure as `median (min–max)` over the rounds, and a ranking that says `≈` where the
//! req/s spreads overlap; then a note per server without figures.

use std::fmt::Write;

use super::{groups, micros, micros_range, rate, small};
use crate::harness::stats::Spread;
use crate::harness::{Outcome, Results};

/// The table's header line.
pub const HEADER: &str =
    "| workers | workload | server | req/s | ranking | p99 | CPU µs/req | errors | Jain |";

/// The sentence before the table, the table and its notes.
pub fn table(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Median of {} rounds (min–max over the rounds in parentheses); {} CPUs: {}. \
         Ranking: `≈ a` names each faster row whose req/s spread overlaps this one (no \
         ranking), else the ratio of medians to the row above. CPU µs/req: the server's CPU \
         time (primary and workers) per completed request. errors, Jain: per round.\n",
        r.rounds, r.machine.nproc, r.machine
    );
    out.push_str(HEADER);
    out.push_str("\n|--:|---|---|--:|---|--:|--:|--:|--:|\n");
    let mut notes: Vec<String> = Vec::new();
    for g in groups(r) {
        let w = g.workload.name();
        for row in g.rows {
            let c = row.cell;
            let _ = match (&row.figures, &c.outcome) {
                (Some(f), _) => writeln!(
                    out,
                    "| {} | {w} | {} | {} | {} | {} | {} | {} | {} |",
                    c.workers,
                    c.server,
                    with_range(&f.rps, rate, |s| format!("{}–{}", rate(s.min), rate(s.max))),
                    row.ranking,
                    with_range(
                        &f.p99_us,
                        |x| micros(x as u64),
                        |s| micros_range(s.min as u64, s.max as u64)
                    ),
                    f.cpu_us_per_request.map_or_else(
                        || "-".to_string(),
                        |s| with_range(&s, small, |s| format!("{}–{}", small(s.min), small(s.max)))
                    ),
                    if f.errors.max == 0.0 {
                        "0".to_string()
                    } else {
                        with_range(
                            &f.errors,
                            |x| format!("{x:.0}"),
                            |s| format!("{:.0}–{:.0}", s.min, s.max),
                        )
                    },
                    f.jain
                        .map_or_else(|| "-".to_string(), |j| format!("{:.3}", j.median)),
                ),
                (None, outcome) => {
                    let (label, why) = match outcome {
                        Outcome::Unavailable(why) => ("n/a", why.as_str()),
                        Outcome::Failed(why) => ("failed", why.as_str()),
                        Outcome::Measured(_) => ("failed", "no round ran"),
                    };
                    let note = format!("- {}: {label} ({})", c.server, why.trim());
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                    writeln!(
                        out,
                        "| {} | {w} | {} | {label} | | {label} | {label} | {label} | {label} |",
                        c.workers, c.server
                    )
                }
            };
        }
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

/// `median (min–max)`, or the median alone when every round gave the same figure.
fn with_range(
    s: &Spread,
    one: impl Fn(f64) -> String,
    range: impl Fn(&Spread) -> String,
) -> String {
    let median = one(s.median);
    if s.min == s.max {
        median
    } else {
        format!("{median} ({})", range(s))
    }
}
