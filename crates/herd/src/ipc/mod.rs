//! IPC between the primary and its workers: framed messages over a Unix stream socketpair,
//! with file descriptors (listening sockets, handed-over connections) passed by SCM_RIGHTS.
//!
//! A frame is `len: u32 LE | kind: u8 | payload`, where `len` counts kind and payload. File
//! descriptors travel with the first byte of the frame that needs them and are queued on
//! arrival, so a frame takes its fds from the front of the queue.

pub(crate) mod channel;
mod message;

pub(crate) use channel::{Channel, Received};
pub(crate) use message::{ToPrimary, ToWorker};

/// The default and documented limit on one user message, in bytes (1 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;
