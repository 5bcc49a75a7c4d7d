//! herd: Node.js's `cluster` for Rust on Linux — a primary supervises worker processes that
//! share a server port; each worker serves its connections with one event loop.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod event_loop;
pub mod http;
pub mod protocol;

pub use http::{Handler, Http, Request, Response};
