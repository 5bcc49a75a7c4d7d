//! The results as a hand-written SVG chart: per worker count and workload, one row per measured
//! cell (fastest first, as in the table) with three bars at the median of the rounds,
//! throughput, p99 latency and server CPU per request, each with an error bar over the rounds'
//! min–max. Bars are scaled per group, since a new connection per request and keep-alive differ
//! by an order of magnitude.

use std::fmt::Write;

use super::{groups, micros, rate, small};
use crate::harness::stats::{Figures, Spread};
use crate::harness::Results;

const WIDTH: u32 = 1200;
const LABEL_X: u32 = 16;
/// Where each panel starts: req/s, p99, CPU per request.
const PANELS: [u32; 3] = [230, 555, 880];
const BAR_MAX: f64 = 250.0;
const ROW: u32 = 20;
const TOP: u32 = 84;

/// The chart: an `<svg>` document with, per measured cell, one `rect.rps`, `rect.p99` and
/// `rect.cpu` bar and one `path.err` error bar on each.
pub fn chart(r: &Results) -> String {
    let mut body = String::new();
    let mut y = TOP;
    for g in groups(r) {
        let rows: Vec<_> = g
            .rows
            .iter()
            .filter_map(|row| Some((row, row.figures?)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let top = |f: &dyn Fn(&Figures) -> Option<Spread>| {
            rows.iter()
                .filter_map(|(_, fig)| f(fig))
                .map(|s| s.max)
                .fold(f64::MIN_POSITIVE, f64::max)
        };
        let scale = [
            top(&|f| Some(f.rps)),
            top(&|f| Some(f.p99_us)),
            top(&|f| f.cpu_us_per_request),
        ];
        y += 8;
        let _ = writeln!(
            body,
            r#"<text x="{LABEL_X}" y="{}" class="group">{} · {} workers</text>"#,
            y + 12,
            escape(g.workload.name()),
            g.workers
        );
        y += ROW;
        for (row, f) in rows {
            let kind = row.cell.kind;
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}">{}</text>"#,
                LABEL_X + 12,
                y + 13,
                escape(&row.cell.server)
            );
            let bars = [
                ("rps", Some(f.rps), rate(f.rps.median)),
                ("p99", Some(f.p99_us), micros(f.p99_us.median as u64)),
                (
                    "cpu",
                    f.cpu_us_per_request,
                    f.cpu_us_per_request
                        .map_or_else(String::new, |s| format!("{} µs", small(s.median))),
                ),
            ];
            for (((class, spread, label), x), max) in bars.into_iter().zip(PANELS).zip(scale) {
                let Some(s) = spread else { continue };
                bar(&mut body, class, kind, x, y, s, max, &label);
            }
            y += ROW;
        }
    }
    let height = y + 30;
    let workers: Vec<String> = r.workers.iter().map(usize::to_string).collect();
    let title = format!(
        "herd scheduling policies: median of {} rounds, {} workers, {} mode, {} CPUs, Linux {}",
        r.rounds,
        workers.join("/"),
        r.mode,
        r.machine.nproc,
        r.machine.kernel
    );
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<style>
.group {{ font-weight: bold; }}
.title {{ font-size: 15px; font-weight: bold; }}
rect.rps.herd {{ fill: #3b6fb6; }}
rect.p99.herd {{ fill: #d9822b; }}
rect.cpu.herd {{ fill: #5a9e5a; }}
rect.reference {{ fill: #a0a0a0; }}
path.err {{ stroke: #202020; stroke-width: 1.2; fill: none; }}
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LABEL_X}" y="24" class="title">{}</text>
<text x="{LABEL_X}" y="44">Bars: the median of the rounds; error bars: their min–max. Scaled per group; grey rows are reference servers.</text>
<text x="{}" y="{}" class="group">throughput (req/s, higher is better)</text>
<text x="{}" y="{}" class="group">p99 latency (lower is better)</text>
<text x="{}" y="{}" class="group">server CPU per request (lower is better)</text>
{body}</svg>
"##,
        escape(&title),
        PANELS[0],
        TOP - 10,
        PANELS[1],
        TOP - 10,
        PANELS[2],
        TOP - 10,
    )
}

/// One bar at `s.median`, its error bar from `s.min` to `s.max`, and `label` after it; `max`
/// is the value drawn [`BAR_MAX`] wide.
#[allow(clippy::too_many_arguments)]
fn bar(
    out: &mut String,
    class: &str,
    kind: &str,
    x: u32,
    y: u32,
    s: Spread,
    max: f64,
    label: &str,
) {
    let at = |v: f64| x as f64 + (v / max * BAR_MAX).max(1.0);
    let (lo, mid, hi) = (at(s.min), at(s.median), at(s.max));
    let cy = y as f64 + 2.0 + (ROW - 5) as f64 / 2.0;
    let _ = writeln!(
        out,
        r#"<rect class="{class} {kind}" x="{x}" y="{}" width="{:.1}" height="{}"/><path class="err" d="M{lo:.1} {:.1}v8M{lo:.1} {cy:.1}H{hi:.1}M{hi:.1} {:.1}v8"/><text x="{:.1}" y="{}">{}</text>"#,
        y + 2,
        mid - x as f64,
        ROW - 5,
        cy - 4.0,
        cy - 4.0,
        hi.max(mid) + 4.0,
        y + 13,
        escape(label)
    );
}

/// Text safe inside an SVG element.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
