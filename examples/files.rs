// ROOT=./public cargo run --release --example files
//! The files example: a cluster of workers serving the directory `ROOT` as static files on
//! 0.0.0.0:`PORT` ([`herd::http::StaticDir`]): bodies go out with sendfile(2); `ETag`,
//! `Last-Modified`, `304` for `If-None-Match`/`If-Modified-Since`, one byte range (`206`,
//! `416`), `Content-Type` from the extension; `index.html` for a directory, no listings;
//! paths that would leave `ROOT` (`..`, encoded or not, symbolic links out of it) are refused.
//!
//! Environment: `PORT` (default 8000), `ROOT` (the directory to serve; default `.`, the
//! current directory), `WORKERS` (default: the CPUs available). A `ROOT` that is not a
//! readable directory stops it at once with one line that says so. SIGHUP reloads,
//! SIGTERM/Ctrl-C stop gracefully.

use std::process::ExitCode;

use herd::http::StaticDir;
use herd::Cluster;

#[path = "support/env.rs"]
mod env;
#[path = "support/logging.rs"]
mod logging;

fn main() -> ExitCode {
    logging::main("files", "info", run)
}

fn run() -> Result<(), String> {
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::workers()?;
    let root = std::env::var("ROOT").unwrap_or_else(|_| ".".into());
    // Opened here, in the primary (a bad ROOT stops it before any worker starts) and again
    // in each worker (each process runs `main`).
    let dir = StaticDir::new(&root).map_err(|e| format!("ROOT={root:?}: {e}"))?;
    Cluster::new()
        .workers(workers)
        .run(move |worker| worker.serve_http(("0.0.0.0", port), dir))
        .map_err(|e| e.to_string())
}
