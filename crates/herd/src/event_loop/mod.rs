//! The worker's event loop: one mio `Poll` per worker (or per thread), serving every connection
//! of its listeners with a [`Protocol`].
//!
//! The loop stays at the syscall floor: per keep-alive request one `read` into a buffer shared
//! by all connections and one `write` of everything the protocol answered. Only bytes the
//! protocol leaves unconsumed, and output a short write leaves behind, are kept per connection,
//! so an idle connection costs its socket and its protocol state. Timers (the protocol's
//! deadlines) are checked by a sweep at the earliest deadline.
//!
//! ```no_run
//! use std::net::TcpListener;
//! use std::sync::Arc;
//! use herd::event_loop::{self, Config, Standalone};
//! use herd::{Http, Request, Response};
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = TcpListener::bind("127.0.0.1:8000")?;
//! let http = Http::new(|_req: &Request<'_>, res: &mut Response| {
//!     res.body("hello");
//! });
//! event_loop::run(vec![listener], Arc::new(http), &Config::default(), &mut Standalone)
//! # }
//! ```

mod accept;
mod config;
pub mod hooks;
mod reactor;
mod slab;
mod socket;
mod wake;

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

pub use config::Config;
pub use hooks::{Hooks, Inbound, Standalone};
pub use wake::Wake;

use crate::protocol::Protocol;

/// Serve `listeners` with `protocol` until `hooks` says stop.
///
/// The listeners are made non-blocking here (TCP_NODELAY, if wanted, is set on them by their
/// creator and inherited by accepted connections). Returns `Ok(())` after a drain
/// ([`Inbound::Disconnect`]: when the last connection closed, or at
/// [`Config::drain_timeout`]) or at once on [`Inbound::Closed`].
///
/// # Errors
///
/// Setting up the poll or registering a listener failed, polling failed, or
/// [`Hooks::read`] returned an error (the other side is gone).
pub fn run<P: Protocol>(
    listeners: Vec<TcpListener>,
    protocol: Arc<P>,
    config: &Config,
    hooks: &mut dyn Hooks,
) -> io::Result<()> {
    let reactor = reactor::Reactor::new(listeners, protocol, config)?;
    // Watched from now on (before the loop says it serves).
    crate::heartbeat::beat(std::time::Instant::now());
    let served = reactor.run(hooks);
    // No loop turns any more: the watchdog stops watching this process.
    crate::heartbeat::rest();
    served
}
