//! The primary-side listening sockets the dispatcher accepts from (accept4 with
//! NONBLOCK|CLOEXEC through mio), and what an accept error means.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;

use mio::net::TcpListener;

/// What one `accept` gave.
pub(crate) enum Accepted {
    /// A connection, as a plain std stream (non-blocking, close-on-exec) ready to hand over.
    Conn(TcpStream, SocketAddr),
    /// The accept queue is empty.
    Empty,
    /// Out of file descriptors or memory: stop accepting for a while instead of spinning.
    Starved(io::Error),
    /// Something else failed; the queue is left for the next readiness.
    Failed(io::Error),
}

/// One listening socket.
pub(crate) struct Listening {
    pub addr: SocketAddr,
    pub socket: TcpListener,
}

impl Listening {
    /// Accepts the next connection, retrying what is worth retrying at once (EINTR, and a
    /// connection the client aborted while it waited in the queue).
    pub fn accept(&self) -> Accepted {
        loop {
            match self.socket.accept() {
                Ok((stream, peer)) => {
                    return Accepted::Conn(TcpStream::from(OwnedFd::from(stream)), peer)
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return Accepted::Empty,
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                    _ if starved(&e) => return Accepted::Starved(e),
                    _ => return Accepted::Failed(e),
                },
            }
        }
    }
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or the system is out of something; retrying at
/// once would spin.
fn starved(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
