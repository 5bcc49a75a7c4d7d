//! The boundary between the event loop and what surrounds it (the worker runtime, or nothing
//! when a loop runs standalone).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::RawFd;

/// Something the surroundings tell the loop.
#[derive(Debug)]
pub enum Inbound {
    /// Stop accepting, finish in-flight work, close idle connections, exit when empty or at
    /// the drain deadline.
    Disconnect,
    /// Connections accepted elsewhere (by the primary, under a hand-off policy) to serve like
    /// accepted ones.
    Connections(Vec<TcpStream>),
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
