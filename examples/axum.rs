// cargo run --release --example axum
//! An axum server as the workers of a herd cluster, through herd-tokio: each worker runs a
//! tokio runtime and serves `GET /` with `Hello from worker <id> (pid <pid>)` and an
//! `X-Herd-Worker` header, on the port the primary hands out. SIGHUP reloads (each old
//! worker stops accepting, tells its keep-alive clients to reconnect, finishes its requests
//! and exits), SIGTTIN/SIGTTOU add/remove a worker, SIGTERM/Ctrl-C stop.
//!
//! Environment: `PORT` (default 8000), `WORKERS` (default: the CPUs available),
//! `SHUTDOWN_TIMEOUT_MS` (how long a leaving worker has before it is SIGKILLed; default
//! herd's 30 s), `IGNORE_SHUTDOWN=1` serves without hearing the primary, as a plain axum
//! app would: then every reload waits for the shutdown timeout and SIGKILLs the old workers
//! (for showing what herd-tokio is for). `LINGER_MS` sets herd-tokio's linger (default:
//! 1 s, or a quarter of the shutdown timeout). `RUN_TIMEOUT_MS` sets the watchdog's run
//! timeout (default herd's 30 s); `GET /block` blocks a runtime thread for 20 s, as a
//! handler that blocks would: block every runtime thread (2) and the watchdog reports the
//! worker hung and replaces it.
//!
//! Limits: herd's worker metrics and `max_requests` do not count these requests, and idle
//! keep-alive connections are closed at the end of the linger rather than handed over.

use std::process::ExitCode;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use herd::Cluster;

#[path = "support/env.rs"]
mod env;
#[path = "support/logging.rs"]
mod logging;

fn main() -> ExitCode {
    logging::main("axum", "info", run)
}

fn run() -> Result<(), String> {
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::workers()?;
    let shutdown_ms: u64 = env::env_or("SHUTDOWN_TIMEOUT_MS", 30_000)?;
    let ignore: u8 = env::env_or("IGNORE_SHUTDOWN", 0)?;
    let linger: Option<u64> = match std::env::var("LINGER_MS") {
        Ok(_) => Some(env::env_or("LINGER_MS", 0)?),
        Err(_) => None,
    };
    let run_ms: u64 = env::env_or("RUN_TIMEOUT_MS", 30_000)?;
    Cluster::new()
        .workers(workers)
        .shutdown_timeout(Duration::from_millis(shutdown_ms))
        .run_timeout(Duration::from_millis(run_ms))
        .run(move |worker| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let linger = linger.map(Duration::from_millis);
            rt.block_on(serve(worker, port, ignore != 0, linger))
        })
        .map_err(|e| e.to_string())
}

/// Serves hello on `port` until herd asks this worker to leave (or forever, when `ignore`).
async fn serve(
    worker: herd::Worker,
    port: u16,
    ignore: bool,
    linger: Option<Duration>,
) -> herd::Result<()> {
    let body = format!(
        "Hello from worker {} (pid {})\n",
        worker.id(),
        std::process::id()
    );
    let id = HeaderValue::from(worker.id());
    let mut worker = herd_tokio::Worker::new(worker);
    if let Some(linger) = linger {
        worker = worker.linger(linger);
    }
    let listener = worker.listen(("0.0.0.0", port))?;
    let shutdown = worker.start();
    let closing = shutdown.clone();
    let app = Router::new()
        .route("/", get(move || async move { body }))
        .route("/block", get(block))
        .layer(map_response(move |mut res: Response| {
            res.headers_mut()
                .insert(HeaderName::from_static("x-herd-worker"), id.clone());
            closing.connection_close(res.headers_mut());
            async { res }
        }));
    if ignore {
        // What a plain axum app does: it never hears the primary.
        axum::serve(listener.into_inner(), app).await?;
    } else {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.signal())
            .await?;
    }
    Ok(())
}

/// Blocks this runtime thread (what a handler must never do on an async runtime).
async fn block() -> &'static str {
    std::thread::sleep(Duration::from_secs(20));
    "blocked\n"
}
