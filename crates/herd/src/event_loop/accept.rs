//! The listening side: the listeners, and whether accepting is paused (at the connection cap, or
//! backing off after the process ran out of file descriptors).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// Listener `i` is registered as `Token(LISTENER_BASE - i)`, far above any connection key.
const LISTENER_BASE: usize = usize::MAX - 1;

pub(super) struct Acceptor {
    listeners: Vec<TcpListener>,
    /// Accepting stopped at the connection cap; the queued connections gave their edge already,
    /// so accepting must be retried when a connection closes.
    full: bool,
    /// Accepting stopped after EMFILE & co until then.
    backoff_until: Option<Instant>,
}

/// What one accept attempt produced.
pub(super) enum Accepted {
    Stream(TcpStream, SocketAddr),
    /// Nothing more to accept now (queue empty, at the cap, backing off, or drained).
    Done,
}

impl Acceptor {
    /// Make the listeners non-blocking and register them.
    pub(super) fn new(
        listeners: Vec<std::net::TcpListener>,
        registry: &Registry,
    ) -> io::Result<Self> {
        let mut registered = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            listener.set_nonblocking(true)?;
            let mut listener = TcpListener::from_std(listener);
            registry.register(&mut listener, Token(LISTENER_BASE - i), Interest::READABLE)?;
            registered.push(listener);
        }
        Ok(Acceptor {
            listeners: registered,
            full: false,
            backoff_until: None,
        })
    }

    pub(super) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The listener a token stands for, if it is a listener's.
    pub(super) fn listener_of(&self, token: Token) -> Option<usize> {
        let i = LISTENER_BASE.checked_sub(token.0)?;
        (i < self.listeners.len()).then_some(i)
    }

    /// When the accept backoff ends, if one is running.
    pub(super) fn backoff_until(&self) -> Option<Instant> {
        self.backoff_until
    }

    /// Whether accepting should be retried on every listener: a backoff ended, or the loop is
    /// below the cap again after having stopped at it.
    pub(super) fn should_retry(&mut self, now: Instant, open: usize, max: usize) -> bool {
        if self.backoff_until.is_some_and(|t| t <= now) {
            self.backoff_until = None;
            self.full = false;
            return true;
        }
        if self.full && open < max && self.backoff_until.is_none() {
            self.full = false;
            return true;
        }
        false
    }

    /// Accept one connection from listener `i`, unless the loop is at `max` open connections.
    pub(super) fn accept(
        &mut self,
        i: usize,
        open: usize,
        max: usize,
        now: Instant,
        backoff: Duration,
    ) -> Accepted {
        if self.backoff_until.is_some() {
            return Accepted::Done;
        }
        if open >= max {
            self.full = true;
            return Accepted::Done;
        }
        let Some(listener) = self.listeners.get(i) else {
            return Accepted::Done;
        };
        loop {
            match listener.accept() {
                Ok((stream, peer)) => return Accepted::Stream(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Done,
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!("accept: {e}");
                }
                Err(e) => {
                    if is_resource_exhaustion(&e) {
                        warn_every!("accept: {e}; pausing accepts for {backoff:?}");
                    } else {
                        tracing::error!("accept: {e}; pausing accepts for {backoff:?}");
                    }
                    self.backoff_until = Some(now + backoff);
                    return Accepted::Done;
                }
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.listeners.len()
    }

    /// Stop listening: deregister and close this process's copies. The primary keeps its own
    /// copy of each socket, so the accept queues survive for the next worker.
    pub(super) fn close(&mut self, registry: &Registry) {
        for mut listener in self.listeners.drain(..) {
            let _ = registry.deregister(&mut listener);
        }
        self.backoff_until = None;
        self.full = false;
    }
}

/// The queued connection died, or a signal came (Linux passes pending network errors of the new
/// connection on to `accept`): try the next one.
fn is_connection_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
        || matches!(
            e.raw_os_error(),
            Some(
                libc::ECONNABORTED
                    | libc::EPROTO
                    | libc::ENETDOWN
                    | libc::ENOPROTOOPT
                    | libc::EHOSTDOWN
                    | libc::ENONET
                    | libc::EHOSTUNREACH
                    | libc::EOPNOTSUPP
                    | libc::ENETUNREACH
            )
        )
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
