//! herd: Node.js's `cluster` module for Rust on Linux.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod sys;
mod cluster;
mod error;
pub mod event_loop;
mod ipc;
mod listen;
mod primary;
pub mod protocol;
mod role;
mod worker;

pub use cluster::Cluster;
pub use error::{Error, ErrorKind, Result};
pub use listen::Policy;
pub use primary::{Event, Exit, PrimaryHandle, WorkerHandle, WorkerState};
pub use role::{is_primary, is_worker, worker_id, worker_slot};
pub use worker::{Worker, WorkerEvent, WorkerSender};
