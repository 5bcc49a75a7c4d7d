// cargo run --release --example hello        (or: make run)
//! The hello example: a cluster of HTTP workers on 0.0.0.0:8000, every response
//! `200 text/plain` with body `Hello from worker <id> (pid <pid>)` and an `X-Herd-Worker`
//! header naming the worker, so load generators can see how connections were spread.
//!
//! Environment: `PORT` (default 8000), `WORKERS` (default: the CPUs available), `POLICY`
//! (`reuseport`, the default; `shared`; `pinned`, `pinned-incoming-cpu`, `pinned-cbpf`; or
//! herd-rr's `rr`, `rr-least`, `rr-sticky`). The `X-Herd-Cpu` header says which CPU served the
//! request, so the effect of pinning shows. SIGHUP reloads, SIGTTIN/SIGTTOU add/remove a
//! worker, SIGTERM/Ctrl-C stop gracefully.
//!
//! The control socket is on (`herd status`; env `HERD_SOCKET` moves it). `METRICS_ADDR=
//! host:port` serves Prometheus metrics at `http://host:port/metrics`, and the health checks
//! `/readyz` and `/livez` on the same address. `SHUTDOWN_DELAY=<seconds>` (fractions allowed;
//! default 0) keeps serving that long after SIGTERM, `/readyz` answering 503, before the
//! workers drain (a second SIGTERM skips it). `WORKER_METRICS=0` turns the workers' counting
//! off (for measuring what it costs).
//!
//! `TLS_CERT` and `TLS_KEY` (PEM files, both or neither) serve HTTPS on `PORT` instead (ALPN
//! `http/1.1`). The files are checked before the cluster starts (a bad one is one line and
//! exit status 1) and read by every worker, so a reload (SIGHUP) serves renewed files.

use std::process::ExitCode;

use herd::tls::TlsConfig;
use herd::{Cluster, Request, Response};

#[path = "support/env.rs"]
mod env;
#[path = "support/logging.rs"]
mod logging;
#[path = "support/policy.rs"]
mod policy;

fn main() -> ExitCode {
    start("hello", "Hello")
}

/// Logs to stdout, runs the cluster answering `<greeting> from worker <id> (pid <pid>)`, and
/// turns an error into one line on stderr (prefixed by `name`) and a failing exit code.
pub fn start(name: &str, greeting: &str) -> ExitCode {
    logging::main(name, "info", || run(greeting))
}

fn run(greeting: &str) -> Result<(), String> {
    let greeting = greeting.to_string();
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::workers()?;
    let policy_name = std::env::var("POLICY").unwrap_or_else(|_| "reuseport".into());
    let metrics = match std::env::var("METRICS_ADDR") {
        Ok(a) if !a.is_empty() => Some(
            std::net::ToSocketAddrs::to_socket_addrs(&a)
                .ok()
                .and_then(|mut it| it.next())
                .ok_or_else(|| {
                    format!("METRICS_ADDR={a:?} is not host:port (e.g. 127.0.0.1:9100)")
                })?,
        ),
        _ => None,
    };
    let counting: u8 = env::env_or("WORKER_METRICS", 1)?;
    let delay: f64 = env::env_or("SHUTDOWN_DELAY", 0.0)?;
    let delay = std::time::Duration::try_from_secs_f64(delay)
        .map_err(|_| format!("SHUTDOWN_DELAY={delay} is not valid: give seconds, e.g. 5 or 0.5"))?;
    let tls = tls_files()?;
    if let (Some((cert, key)), true) = (&tls, herd::is_primary()) {
        // Once in the primary, so that a bad file stops the start instead of every worker.
        TlsConfig::from_pem_files(cert, key).map_err(|e| format!("TLS_CERT/TLS_KEY: {e}"))?;
    }
    let cluster = Cluster::new()
        .workers(workers)
        .metrics_addr(metrics)
        .shutdown_delay(delay)
        .worker_metrics((counting != 0).then_some(std::time::Duration::from_secs(1)));
    let cluster = policy::apply(cluster, &policy_name)?;
    cluster
        .run(move |worker| {
            let id = worker.id().to_string();
            let body = format!("{greeting} from worker {id} (pid {})\n", std::process::id());
            let hello = move |_req: &Request<'_>, res: &mut Response| {
                let mut cpu = itoa::Buffer::new();
                let cpu = herd::current_cpu().map_or("", |c| cpu.format(c));
                res.header("Content-Type", "text/plain")
                    .header("X-Herd-Worker", &id)
                    .header("X-Herd-Cpu", cpu)
                    .body(&body);
            };
            match &tls {
                // Read by each worker: a reload's new workers serve renewed files.
                Some((cert, key)) => {
                    let config = TlsConfig::from_pem_files(cert, key)?;
                    worker.serve_https(("0.0.0.0", port), config, hello)
                }
                None => worker.serve_http(("0.0.0.0", port), hello),
            }
        })
        .map_err(|e| e.to_string())
}

/// `TLS_CERT` and `TLS_KEY`: both (HTTPS) or neither (HTTP).
fn tls_files() -> Result<Option<(String, String)>, String> {
    let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("TLS_CERT"), var("TLS_KEY")) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(
            "TLS_CERT is set but TLS_KEY is not: set both (PEM files) for HTTPS, or neither".into(),
        ),
        (None, Some(_)) => Err(
            "TLS_KEY is set but TLS_CERT is not: set both (PEM files) for HTTPS, or neither".into(),
        ),
    }
}
