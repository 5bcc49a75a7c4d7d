//! The worker's listening socket on the tokio runtime, closed to new connections once the
//! worker drains.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

use crate::shutdown::Drain;

/// A listening socket the primary handed to this worker ([`Worker::listen`](crate::Worker::listen)),
/// on the tokio runtime. Once the worker is asked to leave, [`Listener::accept`] takes no
/// more connections: those still queued stay in the socket, which the primary keeps open,
/// for the worker that replaces this one.
///
/// With axum (feature `axum`), pass it to `axum::serve`. With hyper, accept until the
/// shutdown signal, shut each connection down gracefully on it, and wait for them all:
///
/// ```no_run
/// use std::convert::Infallible;
///
/// use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
/// use hyper_util::rt::TokioIo;
///
/// async fn serve(listener: herd_tokio::Listener, shutdown: herd_tokio::Shutdown) {
///     let signal = shutdown.signal();
///     tokio::pin!(signal);
///     loop {
///         let conn = tokio::select! {
///             accepted = listener.accept() => match accepted {
///                 Ok((conn, _peer)) => conn,
///                 Err(_) => continue,
///             },
///             () = &mut signal => break,
///         };
///         let shutdown = shutdown.clone();
///         tokio::spawn(async move {
///             let closing = shutdown.clone();
///             let service = service_fn(move |_req: Request<Incoming>| {
///                 let mut res = Response::new("hello\n".to_string());
///                 closing.connection_close(res.headers_mut());
///                 async move { Ok::<_, Infallible>(res) }
///             });
///             let conn = http1::Builder::new().serve_connection(TokioIo::new(conn), service);
///             let signal = shutdown.signal();
///             tokio::pin!(conn, signal);
///             tokio::select! {
///                 _ = conn.as_mut() => return,
///                 () = &mut signal => conn.as_mut().graceful_shutdown(),
///             }
///             let _ = conn.await;
///         });
///     }
///     // The requests in flight finish before the worker returns and its runtime goes.
///     shutdown.connections_closed().await;
/// }
/// ```
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    drain: Arc<Drain>,
    /// Connections the primary handed over for this address, each with bytes to read first.
    handed: Mutex<mpsc::UnboundedReceiver<Handed>>,
}

/// A connection accepted elsewhere, with the bytes of its next request already read.
pub(crate) type Handed = (std::net::TcpStream, Vec<u8>);

impl Listener {
    pub(crate) fn new(
        inner: TcpListener,
        drain: Arc<Drain>,
        handed: mpsc::UnboundedReceiver<Handed>,
    ) -> Listener {
        Listener {
            inner,
            drain,
            handed: Mutex::new(handed),
        }
    }

    /// The next connection, as [`TcpListener::accept`], or one the primary handed over
    /// (what waited on a slot a scale-down removed, or an idle keep-alive connection a
    /// draining worker gave back). Once the worker drains it takes no more connections
    /// from the socket (select it against the server's shutdown).
    ///
    /// # Errors
    /// As [`TcpListener::accept`].
    pub async fn accept(&self) -> io::Result<(Conn, SocketAddr)> {
        let mut handed = self.handed.lock().await;
        let (stream, peer, input) = loop {
            if self.drain.is_draining() {
                break handed_over(&mut handed).await?;
            }
            let got = tokio::select! {
                biased;
                got = handed_over(&mut handed) => Some(got?),
                () = self.drain.wait() => None,
                accepted = self.inner.accept() => {
                    let (stream, peer) = accepted?;
                    Some((stream, peer, Vec::new()))
                }
            };
            if let Some(got) = got {
                break got;
            }
        };
        drop(handed);
        self.drain.opened();
        let conn = Conn {
            stream,
            drain: self.drain.clone(),
            input,
            read: 0,
        };
        Ok((conn, peer))
    }

    /// The address served (the real port when the cluster asked for port 0).
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The tokio socket, for a server that takes one (it then accepts after the worker
    /// drains: stop it yourself on [`Shutdown::draining`](crate::Shutdown::draining)). Its
    /// connections are not counted: [`Shutdown::signal`](crate::Shutdown::signal) then
    /// always waits the whole linger.
    pub fn into_inner(self) -> TcpListener {
        self.drain.untrack();
        self.inner
    }
}

/// A connection accepted by a [`Listener`]: a [`TcpStream`] (through `Deref`) that the
/// worker counts while it is open, so that its shutdown need not wait for the linger once
/// every connection is closed.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    drain: Arc<Drain>,
    /// Bytes another worker read from a handed-over connection, served before the socket.
    input: Vec<u8>,
    /// How much of `input` was read.
    read: usize,
}

impl std::ops::Deref for Conn {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.stream
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.drain.closed();
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read < self.input.len() {
            let n = buf.remaining().min(self.input.len() - self.read);
            buf.put_slice(&self.input[self.read..self.read + n]);
            self.read += n;
            if self.read == self.input.len() {
                self.input = Vec::new();
                self.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The next connection handed over, on the runtime; pending when none comes.
async fn handed_over(
    handed: &mut mpsc::UnboundedReceiver<Handed>,
) -> io::Result<(TcpStream, SocketAddr, Vec<u8>)> {
    let Some((std, input)) = handed.recv().await else {
        return std::future::pending().await;
    };
    std.set_nonblocking(true)?;
    let peer = std.peer_addr()?;
    Ok((TcpStream::from_std(std)?, peer, input))
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
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
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
