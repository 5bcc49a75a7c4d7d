//! The results as a markdown table, JSON and an SVG chart, and the files they go to.

pub mod json;
pub mod markdown;
pub mod svg;

use std::io;
use std::path::{Path, PathBuf};

use super::Results;

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
