//! `herd status` as text: a table with one line per worker, then the cluster.

use std::fmt::Write;

use serde_json::Value;

fn duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `crash/reload/scale/kill/hang/recycle` counts.
fn restarts(r: &Value) -> String {
    ["crash", "reload", "scale", "kill", "hang", "recycle"]
        .iter()
        .map(|k| r[k].as_u64().unwrap_or(0).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The status answer as a table and a summary.
pub(crate) fn status(s: &Value) -> String {
    let header = [
        "id",
        "slot",
        "pid",
        "state",
        "gen",
        "uptime",
        "requests",
        "conns",
        "memory",
        "cpu",
        "restarts c/r/s/k/h/y",
        "heartbeat",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for w in s["workers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        rows.push(vec![
            w["id"].to_string(),
            w["slot"].to_string(),
            w["pid"].to_string(),
            w["state"].as_str().unwrap_or("?").to_string(),
            w["generation"].to_string(),
            duration(w["uptime_s"].as_f64().unwrap_or(0.0)),
            w["requests"].to_string(),
            w["open"].to_string(),
            bytes(w["rss_bytes"].as_u64().unwrap_or(0)),
            format!("{:.1}%", w["cpu_percent"].as_f64().unwrap_or(0.0)),
            restarts(&w["restarts"]),
            w["heartbeat_age_s"]
                .as_f64()
                .map_or("-".to_string(), |a| format!("{a:.1}s ago")),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let addrs: Vec<&str> = s["addresses"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let reload = match &s["last_reload"] {
        Value::Null => "no reload yet".to_string(),
        r if r["ok"] == true => "last reload ok".to_string(),
        r => format!(
            "last reload rolled back: {}",
            r["error"].as_str().unwrap_or("?")
        ),
    };
    let _ = writeln!(
        out,
        "\npolicy {}, address {}, generation {}{} ({reload})",
        s["policy"].as_str().unwrap_or("?"),
        if addrs.is_empty() {
            "-".to_string()
        } else {
            addrs.join(" ")
        },
        s["generation"],
        if s["reloading"] == true {
            ", reloading"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "{} of {} workers, {} requests, {} open connections, restarts c/r/s/k/h/y {}, primary pid {}",
        s["workers"].as_array().map_or(0, Vec::len),
        s["workers_target"],
        s["requests"],
        s["open"],
        restarts(&s["restarts"]),
        s["pid"],
    );
    let failed = s["failed_slots"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if failed.is_empty() {
        let _ = writeln!(out, "failed slots: none");
    } else {
        for f in failed {
            let _ = writeln!(
                out,
                "failed slot {}: {}",
                f["slot"],
                f["why"].as_str().unwrap_or("?")
            );
        }
    }
    out
}
