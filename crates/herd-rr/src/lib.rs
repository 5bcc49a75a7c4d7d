//! herd-rr: Node's SCHED_RR for [herd], done right. The primary accepts every connection
//! and hands it to a worker over the worker's IPC socket (SCM_RIGHTS); the worker's event loop
//! serves it like one it accepted. Pick it like any policy, with [`herd::Cluster::dispatch`]:
//!
//! ```no_run
//! use herd::{Cluster, Request, Response};
//!
//! fn main() -> Result<(), herd::Error> {
//!     Cluster::new()
//!         .workers(4)
//!         .dispatch(herd_rr::RoundRobin::new())
//!         .run(|worker| {
//!             worker.serve_http("0.0.0.0:8000", |_req: &Request<'_>, res: &mut Response| {
//!                 res.body("hello\n");
//!             })
//!         })
//! }
//! ```
//!
//! Three strategies ([`Strategy`]): round-robin ([`RoundRobin::new`]), least-connections
//! ([`RoundRobin::least_connections`]) and sticky by client IP ([`RoundRobin::sticky`]). Unlike
//! Node's, every hand-off is acknowledged: what a dying worker did not take goes to another
//! worker, saturated workers are skipped, and when all are saturated the primary stops accepting
//! instead of queueing.
#![deny(missing_docs)]

mod accept;
mod dispatcher;
mod peers;
mod strategy;

pub use dispatcher::RoundRobin;
pub use strategy::Strategy;
