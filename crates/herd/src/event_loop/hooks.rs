//! The boundary between the event loop and what surrounds it (the worker runtime, or nothing
//! when a loop runs standalone).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::RawFd;
use std::time::Instant;

/// Something the surroundings tell the loop.
#[derive(Debug)]
pub enum Inbound {
    /// Stop accepting, finish in-flight work, close idle connections, exit when empty or at
    /// the drain deadline.
    Disconnect,
    /// Connections accepted elsewhere (by the primary, under a hand-off policy) to serve like
    /// accepted ones.
    Connections(Vec<TcpStream>),
    /// Connections another worker gave back while draining (see [`Hooks::hand_back`]), each
    /// with the bytes it had read and not consumed: serve them as if those bytes had just
    /// arrived.
    Adopt(Vec<(TcpStream, Vec<u8>)>),
    /// The other side is gone (the primary died): exit now.
    Closed,
}

/// What the event loop needs from its surroundings. The worker runtime implements it over
/// the IPC channel; [`Standalone`] is the no-op for a loop without a primary.
pub trait Hooks {
    /// A file descriptor to watch for readability (the IPC socket), if any.
    fn fd(&self) -> Option<RawFd>;

    /// `fd()` is readable: read what is available and push what concerns the loop onto
    /// `inbound`. `Err` (other than `WouldBlock`) means the other side is gone.
    fn read(&mut self, inbound: &mut Vec<Inbound>) -> io::Result<()>;

    /// The loop has registered its listeners and is about to serve (called once).
    fn serving(&mut self, addrs: &[SocketAddr]);

    /// The loop took the `n` connections of an [`Inbound::Connections`] (the acknowledgement
    /// a hand-off policy waits for): this process holds them, and serves them next.
    fn took(&mut self, _n: usize) {}

    /// The number of open connections, after every loop iteration: repeats are common, so
    /// an implementation that reports elsewhere dedupes and throttles here.
    fn load(&mut self, _open: usize) {}

    /// When the loop should next call [`Hooks::tick`], if ever (it wakes up for it even
    /// when idle). Default: never.
    fn tick_at(&self) -> Option<Instant> {
        None
    }

    /// The moment [`Hooks::tick_at`] named has come; `open` connections are open. Runs on
    /// the loop's thread (the worker ships its metric counters from here).
    fn tick(&mut self, _now: Instant, _open: usize) {}

    /// Whether connections can leave this loop while it drains (asked when the drain
    /// starts): another process takes them through [`Hooks::hand_back`]. Default: no.
    fn can_hand_back(&self) -> bool {
        false
    }

    /// The draining loop gives up `conns`, idle between exchanges, each with the bytes it
    /// read and did not consume (the protocol said [`Handover::Now`]). The loop no longer
    /// watches them; they close here once sent. `Err` means they could not go (the loop
    /// has nothing more to do with them either way: the client sees a close).
    ///
    /// [`Handover::Now`]: crate::protocol::Handover::Now
    fn hand_back(&mut self, conns: Vec<(TcpStream, Vec<u8>)>) -> io::Result<()> {
        drop(conns);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no one to hand connections back to",
        ))
    }
}

/// Hooks for a loop with no surroundings: no fd to watch, nothing to report.
#[derive(Debug, Default)]
pub struct Standalone;

impl Hooks for Standalone {
    fn fd(&self) -> Option<RawFd> {
        None
    }
    fn read(&mut self, _inbound: &mut Vec<Inbound>) -> io::Result<()> {
        Ok(())
    }
    fn serving(&mut self, _addrs: &[SocketAddr]) {}
}
