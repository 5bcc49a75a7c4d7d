//! Metrics: what workers count on their hot path, the snapshots they ship to the primary,
//! and the primary's merged view of the whole cluster.
//!
//! - [`local`]: per-thread counters in plain memory (a thread-local of `Cell`s: no syscall,
//!   no atomic, no lock per request), bumped by the HTTP connection and the event loop's
//!   socket code, read by the same thread when it ships a [`Snapshot`].
//! - [`board`]: the primary's view, updated by its loop (forks, exits, snapshots, reloads)
//!   and read by the control socket and the `/metrics` endpoint. A dead worker's totals are
//!   folded into its slot's, so every counter is monotonic across crashes and reloads.
//! - [`prom`]: the Prometheus text rendering of the board (prometheus-client).

pub(crate) mod board;
pub(crate) mod local;
pub(crate) mod prom;
pub(crate) mod reason;

pub(crate) use board::Board;
pub(crate) use local::Snapshot;
pub use reason::RestartReason;
