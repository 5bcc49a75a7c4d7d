//! The results as a hand-written SVG chart: per workload, one row per measured cell with a
//! throughput bar (left) and a p99 latency bar (right). Bars are scaled per workload, since a
//! new connection per request and keep-alive differ by an order of magnitude.

use std::fmt::Write;

use super::{micros, rate};
use crate::harness::{Outcome, Results};

const WIDTH: u32 = 980;
const LABEL_X: u32 = 16;
const RPS_X: u32 = 200;
const P99_X: u32 = 600;
const BAR_MAX: f64 = 300.0;
const ROW: u32 = 20;
const TOP: u32 = 70;

/// The chart: an `<svg>` document with one `rect.rps` and one `rect.p99` per measured cell.
pub fn chart(r: &Results) -> String {
    let mut body = String::new();
    let mut y = TOP;
    for &workload in &workloads(r) {
        let rows: Vec<_> = r
            .cells
            .iter()
            .filter(|c| c.workload == workload)
            .filter_map(|c| match &c.outcome {
                Outcome::Measured { report, .. } => Some((c, report)),
                _ => None,
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let max_rps = rows
            .iter()
            .map(|(_, r)| r.requests_per_sec)
            .fold(1.0, f64::max);
        let max_p99 = rows
            .iter()
            .map(|(_, r)| r.latency.p99_us)
            .max()
            .unwrap_or(1)
            .max(1);
        y += 8;
        let _ = writeln!(
            body,
            r#"<text x="{LABEL_X}" y="{}" class="group">{}</text>"#,
            y + 12,
            escape(workload.name())
        );
        y += ROW;
        for (c, report) in rows {
            let (rps, p99) = (report.requests_per_sec, report.latency.p99_us);
            let rps_w = (rps / max_rps * BAR_MAX).max(1.0);
            let p99_w = (p99 as f64 / max_p99 as f64 * BAR_MAX).max(1.0);
            let kind = c.kind;
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}">{}</text>"#,
                LABEL_X + 12,
                y + 13,
                escape(&c.server)
            );
            let _ = writeln!(
                body,
                r#"<rect class="rps {kind}" x="{RPS_X}" y="{}" width="{rps_w:.1}" height="{}"/><text x="{:.1}" y="{}">{}</text>"#,
                y + 2,
                ROW - 5,
                RPS_X as f64 + rps_w + 4.0,
                y + 13,
                escape(&rate(rps))
            );
            let _ = writeln!(
                body,
                r#"<rect class="p99 {kind}" x="{P99_X}" y="{}" width="{p99_w:.1}" height="{}"/><text x="{:.1}" y="{}">{}</text>"#,
                y + 2,
                ROW - 5,
                P99_X as f64 + p99_w + 4.0,
                y + 13,
                escape(&micros(p99))
            );
            y += ROW;
        }
    }
    let height = y + 30;
    let title = format!(
        "herd scheduling policies: {} workers, {} mode, {} CPUs, Linux {}",
        r.timing.workers, r.mode, r.machine.nproc, r.machine.kernel
    );
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<style>
.group {{ font-weight: bold; }}
.title {{ font-size: 15px; font-weight: bold; }}
rect.rps.herd {{ fill: #3b6fb6; }}
rect.p99.herd {{ fill: #d9822b; }}
rect.reference {{ fill: #a0a0a0; }}
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LABEL_X}" y="24" class="title">{}</text>
<text x="{RPS_X}" y="{}" class="group">throughput (req/s, higher is better)</text>
<text x="{P99_X}" y="{}" class="group">p99 latency (lower is better)</text>
<text x="{LABEL_X}" y="{}">Bars are scaled per workload; grey rows are reference servers.</text>
{body}</svg>
"##,
        escape(&title),
        TOP - 10,
        TOP - 10,
        height - 12,
    )
}

/// The workloads of the run, in table order, each once.
fn workloads(r: &Results) -> Vec<crate::harness::Workload> {
    let mut out = Vec::new();
    for c in &r.cells {
        if !out.contains(&c.workload) {
            out.push(c.workload);
        }
    }
    out
}

/// Text safe inside an SVG element.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
