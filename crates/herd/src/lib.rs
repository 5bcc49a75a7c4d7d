//! herd: Node.js's `cluster` module for Rust on Linux. A primary process starts worker
//! processes that share one server port, restarts them when they crash, talks to them over
//! IPC, and replaces them one by one without dropping a connection. Each worker serves its
//! connections with one event loop ([`event_loop`]) and, for HTTP, a [`Handler`].
//!
//! ```no_run
//! use herd::{Cluster, Request, Response};
//!
//! fn main() -> Result<(), herd::Error> {
//!     Cluster::new().workers(2).run(|worker| {
//!         worker.serve_http("0.0.0.0:8000", |_req: &Request<'_>, res: &mut Response| {
//!             res.body("hello\n");
//!         })
//!     })
//! }
//! ```
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod sys;
#[macro_use]
mod log;
mod cluster;
pub mod control;
mod error;
pub mod event_loop;
mod heartbeat;
pub mod http;
mod ipc;
#[cfg(feature = "serde")]
mod json;
mod listen;
mod metrics;
mod primary;
pub mod protocol;
mod role;
#[cfg(feature = "tls")]
pub mod tls;
mod worker;
pub mod ws;

pub use cluster::Cluster;
pub use error::{Error, ErrorKind, Result};
pub use http::{Handler, Http, Request, Response};
#[cfg(feature = "serde")]
pub use json::from_json;
pub use listen::{current_cpu, Policy, Steering};
pub use metrics::RestartReason;
pub use primary::{
    Cause, Dispatch, DispatchCtx, Event, Exit, Hang, OnCrashLoop, PrimaryHandle, Restarts,
    SlotFailure, WorkerHandle, WorkerState,
};
pub use role::{is_primary, is_worker, worker_id, worker_slot};
pub use worker::{Heartbeat, IntoListener, Listener, Worker, WorkerEvent, WorkerSender};
