//! The results as a markdown table, JSON and an SVG chart, and the files they go to.

pub mod json;
pub mod markdown;
pub mod svg;

use std::io;
use std::path::{Path, PathBuf};

use super::stats::Figures;
use super::{Cell, Results, Workload};

/// The files a run wrote.
#[derive(Debug)]
pub struct Written {
    /// results.json
    pub json: PathBuf,
    /// policies.svg
    pub svg: PathBuf,
    /// table.md
    pub markdown: PathBuf,
}

/// Writes results.json, policies.svg and table.md into `dir`.
///
/// # Errors
/// When a file cannot be written.
pub fn write_all(results: &Results, dir: &Path) -> io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let written = Written {
        json: dir.join("results.json"),
        svg: dir.join("policies.svg"),
        markdown: dir.join("table.md"),
    };
    let json = serde_json::to_string_pretty(&json::results(results)).map_err(io::Error::other)?;
    std::fs::write(&written.json, json + "\n")?;
    std::fs::write(&written.svg, svg::chart(results))?;
    std::fs::write(&written.markdown, markdown::table(results))?;
    Ok(written)
}

/// The cells of one worker count and workload, fastest first.
pub struct Group<'a> {
    /// Workers of every server in the group.
    pub workers: usize,
    /// The workload.
    pub workload: Workload,
    /// Measured cells by median req/s, fastest first; then those without figures.
    pub rows: Vec<Row<'a>>,
}

/// One cell in its group.
pub struct Row<'a> {
    /// The cell.
    pub cell: &'a Cell,
    /// Its figures, when measured.
    pub figures: Option<Figures>,
    /// How it ranks against the faster rows: `fastest`, `≈ a, b` (the faster rows whose req/s
    /// spread overlaps its own: no ranking), or `0.62× a` (the median ratio to the row above,
    /// when no faster row's spread overlaps). Empty without figures.
    pub ranking: String,
}

/// The results grouped by worker count and workload (in run order), rows ranked by req/s.
pub fn groups(r: &Results) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    for c in &r.cells {
        let row = Row {
            cell: c,
            figures: Figures::of(c),
            ranking: String::new(),
        };
        match out
            .iter_mut()
            .find(|g| g.workers == c.workers && g.workload == c.workload)
        {
            Some(g) => g.rows.push(row),
            None => out.push(Group {
                workers: c.workers,
                workload: c.workload,
                rows: vec![row],
            }),
        }
    }
    for g in &mut out {
        // Stable: equal medians keep the plan's order; cells without figures go last.
        g.rows.sort_by(|a, b| match (&a.figures, &b.figures) {
            (Some(x), Some(y)) => y.rps.median.total_cmp(&x.rps.median),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        for i in 0..g.rows.len() {
            let Some(me) = g.rows[i].figures else {
                continue;
            };
            let faster = &g.rows[..i];
            let same: Vec<&str> = faster
                .iter()
                .rev()
                .filter(|r| r.figures.is_some_and(|f| f.rps.overlaps(&me.rps)))
                .map(|r| r.cell.server.as_str())
                .collect();
            g.rows[i].ranking = match faster.last() {
                None => "fastest".to_string(),
                Some(_) if !same.is_empty() => format!("≈ {}", same.join(", ")),
                Some(above) => {
                    let ratio = above
                        .figures
                        .map_or(f64::NAN, |f| me.rps.median / f.rps.median);
                    format!("{ratio:.2}× {}", above.cell.server)
                }
            };
        }
    }
    out
}

/// Jain's fairness index of the responses over `workers` workers: herd-load's index counts
/// only the workers it saw, so a worker that answered nothing would not lower it; here it counts
/// as a zero. A replacement worker (kill workload) counts as one more worker.
pub fn jain(report: &herd_load::Report, workers: usize) -> Option<f64> {
    let counts = &report.workers.counts;
    if counts.is_empty() {
        return None;
    }
    let n = counts.len().max(workers) as f64;
    let sum: f64 = counts.values().map(|&c| c as f64).sum();
    let sum_sq: f64 = counts.values().map(|&c| (c as f64) * (c as f64)).sum();
    Some(if sum_sq > 0.0 {
        sum * sum / (n * sum_sq)
    } else {
        1.0
    })
}

/// Microseconds for people: `850 µs`, `1.25 ms`, `2.10 s`.
pub fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// A range of microseconds, the unit said once when both ends share it: `4.10–8.20 ms`.
pub fn micros_range(min: u64, max: u64) -> String {
    let (lo, hi) = (micros(min), micros(max));
    match (lo.rsplit_once(' '), hi.rsplit_once(' ')) {
        (Some((l, lu)), Some((_, hu))) if lu == hu => format!("{l}–{hi}"),
        _ => format!("{lo}–{hi}"),
    }
}

/// A small figure with three significant digits or so: `7.31`, `12.4`, `153`.
pub fn small(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// A rate for people: `950`, `12.3k`, `151k`.
pub fn rate(per_sec: f64) -> String {
    if per_sec < 1_000.0 {
        format!("{per_sec:.0}")
    } else if per_sec < 100_000.0 {
        format!("{:.1}k", per_sec / 1e3)
    } else {
        format!("{:.0}k", per_sec / 1e3)
    }
}
