//! herd-tokio: any tokio server (axum, hyper, ...) as the workers of a [herd] cluster.
//!
//! herd's primary hands each worker its listening sockets and, on a rolling reload, a stop,
//! a recycle or a scale-down, asks the worker to leave: stop accepting, finish what it is
//! doing, exit. A worker that does not hear the request keeps serving until the primary's
//! shutdown timeout and is then SIGKILLed, every worker on every reload, with whatever it
//! was doing. This crate does the hearing for a tokio server:
//!
//! - [`Worker::listen`] asks the primary for the worker's socket and returns a [`Listener`]
//!   that stops accepting the moment the worker is asked to leave (the connections still
//!   queued go to the worker that replaces it: the primary keeps the socket open). It also
//!   yields the connections the primary hands this worker (a removed slot's queue on a
//!   scale-down, keep-alive connections a herd-loop worker gave back), as [`Conn`]s.
//! - [`Worker::start`] hands the worker to a thread that waits for the primary's word, and
//!   ticks herd's heartbeat from the runtime, so that the watchdog
//!   ([`herd::Cluster::run_timeout`]) sees a runtime that stopped.
//! - [`Shutdown::signal`] is the future for the server's graceful shutdown
//!   (`axum::serve(..).with_graceful_shutdown(..)`, hyper's `graceful_shutdown`): it
//!   resolves a short linger after the request to leave (sooner once the worker has no
//!   connection open). During the linger responses carry
//!   `Connection: close` ([`Shutdown::connection_close`]), so busy keep-alive clients are
//!   told to reconnect instead of racing a close; when it resolves the server closes the
//!   idle connections and finishes the requests in flight.
//!
//! With axum (feature `axum`):
//!
//! ```no_run
//! use axum::{http::HeaderMap, middleware::map_response, response::Response, routing::get, Router};
//!
//! fn main() -> Result<(), herd::Error> {
//!     herd::Cluster::new().workers(2).run(|worker| {
//!         let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//!         rt.block_on(async {
//!             let mut worker = herd_tokio::Worker::new(worker);
//!             let listener = worker.listen("0.0.0.0:8000")?;
//!             let shutdown = worker.start();
//!             let closing = shutdown.clone();
//!             let app = Router::new()
//!                 .route("/", get(|| async { "hello\n" }))
//!                 .layer(map_response(move |mut res: Response| {
//!                     closing.connection_close(res.headers_mut());
//!                     async { res }
//!                 }));
//!             axum::serve(listener, app).with_graceful_shutdown(shutdown.signal()).await?;
//!             Ok(())
//!         })
//!     })
//! }
//! ```
//!
//! What herd's own event loop does and a tokio server does not: herd counts the requests it
//! serves (worker metrics, [`herd::Cluster::max_requests`]) and hands idle keep-alive
//! connections over to the next worker on a reload; a tokio worker's requests are not
//! counted, and its idle keep-alive connections are closed when [`Shutdown::signal`]
//! resolves (a client that sends on one at that very moment sees the close, as with any
//! keep-alive timeout).
#![deny(missing_docs)]

mod listener;
mod shutdown;
mod worker;

pub use listener::{Conn, Listener};
pub use shutdown::Shutdown;
pub use worker::Worker;

#[cfg(test)]
mod tests;
