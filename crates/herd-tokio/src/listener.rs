//! The worker's listening socket on the tokio runtime, closed to new connections once the
//! worker drains.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::shutdown::Drain;

/// A listening socket the primary handed to this worker ([`Worker::listen`](crate::Worker::listen)),
/// on the tokio runtime. Once the worker is asked to leave, [`Listener::accept`] takes no
/// more connections: those still queued stay in the socket, which the primary keeps open,
/// for the worker that replaces this one.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    drain: Arc<Drain>,
}

impl Listener {
    pub(crate) fn new(inner: TcpListener, drain: Arc<Drain>) -> Listener {
        Listener { inner, drain }
    }

    /// The next connection, as [`TcpListener::accept`]; pending forever once the worker
    /// drains (select it against the server's shutdown).
    ///
    /// # Errors
    /// As [`TcpListener::accept`].
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        if self.drain.is_draining() {
            return std::future::pending().await;
        }
        tokio::select! {
            biased;
            () = self.drain.wait() => std::future::pending().await,
            accepted = self.inner.accept() => accepted,
        }
    }

    /// The address served (the real port when the cluster asked for port 0).
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The tokio socket, for a server that takes one (it then accepts after the worker
    /// drains: stop it yourself on [`Shutdown::draining`](crate::Shutdown::draining)).
    pub fn into_inner(self) -> TcpListener {
        self.inner
    }
}

/// Errors of one connection (the peer gave up before `accept`): the next one is fine.
fn connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(feature = "axum")]
impl axum::serve::Listener for Listener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match Listener::accept(self).await {
                Ok(accepted) => return accepted,
                Err(e) if connection_error(&e) => {}
                Err(e) => {
                    // Out of fds or memory: waiting is all that helps (as axum does).
                    tracing::error!("herd-tokio: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
