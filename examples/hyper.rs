// cargo run --release --example hyper
//! hyper without a framework as the workers of a herd cluster, through herd-tokio: the
//! accept loop, the per-connection graceful shutdown and the wait for the last connection
//! that a server of its own needs. Serves `GET /` like examples/axum.rs
//! (`Hello from worker <id> (pid <pid>)`, `X-Herd-Worker`), same signals.
//!
//! Environment: `PORT` (default 8000), `WORKERS` (default: the CPUs available),
//! `SHUTDOWN_TIMEOUT_MS` (default herd's 30 s).

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use herd::Cluster;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[path = "support/env.rs"]
mod env;
#[path = "support/logging.rs"]
mod logging;

fn main() -> ExitCode {
    logging::main("hyper", "info", run)
}

fn run() -> Result<(), String> {
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::workers()?;
    let shutdown_ms: u64 = env::env_or("SHUTDOWN_TIMEOUT_MS", 30_000)?;
    Cluster::new()
        .workers(workers)
        .shutdown_timeout(Duration::from_millis(shutdown_ms))
        .run(move |worker| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(serve(worker, port))
        })
        .map_err(|e| e.to_string())
}

/// Serves hello on `port` until herd asks this worker to leave and its connections closed.
async fn serve(worker: herd::Worker, port: u16) -> herd::Result<()> {
    let body = format!(
        "Hello from worker {} (pid {})\n",
        worker.id(),
        std::process::id()
    );
    let id = HeaderValue::from(worker.id());
    let mut worker = herd_tokio::Worker::new(worker);
    let listener = worker.listen(("0.0.0.0", port))?;
    let shutdown = worker.start();
    let signal = shutdown.signal();
    tokio::pin!(signal);
    loop {
        let conn = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, _peer)) => conn,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let _ = conn.set_nodelay(true);
        let (shutdown, body, id) = (shutdown.clone(), body.clone(), id.clone());
        tokio::spawn(async move {
            let closing = shutdown.clone();
            let service = service_fn(move |_req: Request<Incoming>| {
                let mut res = Response::new(body.clone());
                res.headers_mut().insert("x-herd-worker", id.clone());
                closing.connection_close(res.headers_mut());
                async move { Ok::<_, Infallible>(res) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(conn), service);
            let signal = shutdown.signal();
            tokio::pin!(conn, signal);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = &mut signal => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    // The requests in flight finish before the runtime goes.
    shutdown.connections_closed().await;
    Ok(())
}
