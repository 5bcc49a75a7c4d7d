// PORT=8000 WORKERS=2 POLICY=reuseport cargo run --release --example workload
//! The bench workload server: a herd cluster whose routes cost what the URL says, so that a
//! load generator can compare scheduling policies under cheap, CPU-heavy and blocking work.
//!
//! - `/`             a hello body (the cheapest request)
//! - `/spin?us=N`    busy CPU work for N µs (at most 1 s) on the worker's event loop
//! - `/sleep?ms=N`   a blocking sleep of N ms (at most 10 s): the worker serves nothing else
//! - anything else   404
//!
//! Every response carries `X-Herd-Worker: <worker id>`, so the generator sees the spread over
//! workers. The primary prints `listening id=<id> pid=<pid> addr=<addr>` on stdout when a
//! worker listens (the bench harness waits for these lines).
//!
//! Environment: `HOST` (default 0.0.0.0), `PORT` (default 8000; 0 for any free port), `WORKERS` (default: the CPUs
//! available), `POLICY` (default `reuseport`). An unknown policy name prints one line and
//! exits with status 2, which the bench harness reports as "n/a".
//!
//! Limits: `/spin` and `/sleep` run on the event loop, so they stall every connection of
//! that worker: that is the point of the skewed workload, not a pattern to copy.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use herd::{Cluster, Event, Request, Response};

#[path = "support/env.rs"]
mod env;
#[path = "support/policy.rs"]
mod policy;

fn main() -> ExitCode {
    let policy_name = std::env::var("POLICY").unwrap_or_else(|_| "reuseport".into());
    let cluster = match policy::apply(Cluster::new(), &policy_name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("workload: {e}");
            return ExitCode::from(2);
        }
    };
    match run(cluster) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cluster: Cluster) -> Result<(), String> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::workers()?;
    cluster
        .workers(workers)
        .on_event(|event, _| {
            if let Event::Listening(w, addr) = event {
                println!("listening id={} pid={} addr={addr}", w.id(), w.pid());
            }
        })
        .run(move |worker| {
            let id = worker.id().to_string();
            worker.serve_http(
                (host.as_str(), port),
                move |req: &Request<'_>, res: &mut Response| {
                    res.header("X-Herd-Worker", &id);
                    route(req, res);
                },
            )
        })
        .map_err(|e| e.to_string())
}

/// Serves one request by its path.
fn route(req: &Request<'_>, res: &mut Response) {
    res.header("Content-Type", "text/plain");
    match req.path() {
        "/" => {
            res.body("hello\n");
        }
        "/spin" => {
            let us = query_number(req, "us").min(1_000_000);
            spin(Duration::from_micros(us));
            res.body(format!("spun {us} us\n"));
        }
        "/sleep" => {
            let ms = query_number(req, "ms").min(10_000);
            std::thread::sleep(Duration::from_millis(ms));
            res.body(format!("slept {ms} ms\n"));
        }
        _ => {
            res.status(404).body("not found\n");
        }
    }
}

/// Keeps this CPU busy for `d`.
fn spin(d: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        for _ in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// The number after `key=` in the query, or 0 when absent or not a number.
fn query_number(req: &Request<'_>, key: &str) -> u64 {
    req.query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
