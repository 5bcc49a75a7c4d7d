//! The worker's shutdown, as the server sees it: draining (asked to leave) and the signal
//! (the linger after it is over).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION};
use http::HeaderMap;
use tokio::sync::watch;

/// The state both the primary's thread and the server share.
#[derive(Debug)]
pub(crate) struct Drain {
    draining: AtomicBool,
    tx: watch::Sender<bool>,
    /// Connections accepted through a [`Listener`](crate::Listener) and still open.
    open: watch::Sender<usize>,
    /// A listener was taken out ([`Listener::into_inner`](crate::Listener::into_inner)): its
    /// connections are not counted, so the linger always runs to its end.
    untracked: AtomicBool,
}

impl Drain {
    pub(crate) fn new() -> Arc<Drain> {
        Arc::new(Drain {
            draining: AtomicBool::new(false),
            tx: watch::Sender::new(false),
            open: watch::Sender::new(0),
            untracked: AtomicBool::new(false),
        })
    }

    pub(crate) fn opened(&self) {
        self.open.send_modify(|n| *n += 1);
    }

    pub(crate) fn closed(&self) {
        self.open.send_modify(|n| *n = n.saturating_sub(1));
    }

    pub(crate) fn untrack(&self) {
        self.untracked.store(true, Ordering::Release);
    }

    /// Resolves when no counted connection is open, or never when some are not counted.
    async fn idle(&self) {
        if self.untracked.load(Ordering::Acquire) {
            return std::future::pending().await;
        }
        self.all_closed().await
    }

    /// Resolves when no counted connection is open.
    async fn all_closed(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// The primary asked this worker to leave (or is gone).
    pub(crate) fn begin(&self) {
        self.draining.store(true, Ordering::Release);
        self.tx.send_replace(true);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Resolves once [`Drain::begin`] was called.
    pub(crate) async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`: `wait_for` cannot fail while we hold it.
        let _ = rx.wait_for(|draining| *draining).await;
    }
}

/// The worker's shutdown, from [`Worker::start`](crate::Worker::start): cheap to clone, one
/// per place that needs it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    pub(crate) drain: Arc<Drain>,
    pub(crate) linger: Duration,
}

impl Shutdown {
    /// Whether the primary asked this worker to leave (a reload, a stop, a recycle, a
    /// scale-down), or is gone. One atomic load.
    pub fn is_draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// Resolves when the primary asks this worker to leave (or is gone). The worker's
    /// [`Listener`](crate::Listener) stops accepting at that moment.
    pub async fn draining(&self) {
        self.drain.wait().await
    }

    /// Resolves the linger ([`Worker::linger`](crate::Worker::linger)) after
    /// [`Shutdown::draining`], or as soon as the worker's [`Listener`](crate::Listener)s have
    /// no connection open: the future to give the server's graceful shutdown, which then
    /// closes idle connections, finishes the requests in flight and returns. The worker
    /// should then return from its closure, so that its process exits before the shutdown
    /// timeout.
    pub fn signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            this.draining().await;
            tokio::select! {
                () = tokio::time::sleep(this.linger) => {}
                () = this.drain.idle() => {}
            }
            tracing::debug!("herd-tokio: graceful shutdown starts");
        }
    }

    /// Resolves once every connection accepted through the worker's
    /// [`Listener`](crate::Listener)s ([`Conn`](crate::Conn)s) is closed (at once when none
    /// is open). A server with an accept loop of its own awaits it after
    /// [`Shutdown::signal`], before it returns and the runtime drops the connections' tasks.
    pub async fn connections_closed(&self) {
        self.drain.all_closed().await
    }

    /// Adds `Connection: close` to a response's `headers` while the worker drains, and says
    /// whether it did: the client reads the response, then reconnects (to the worker that
    /// replaces this one) instead of sending its next request on a connection about to
    /// close. Call it on every response (an axum `map_response` layer, a hyper service
    /// wrapper); it costs one atomic load while the worker does not drain.
    pub fn connection_close(&self, headers: &mut HeaderMap) -> bool {
        if !self.is_draining() {
            return false;
        }
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        true
    }
}
