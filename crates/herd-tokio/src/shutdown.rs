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
}

impl Drain {
    pub(crate) fn new() -> Arc<Drain> {
        Arc::new(Drain {
            draining: AtomicBool::new(false),
            tx: watch::Sender::new(false),
        })
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
    /// [`Shutdown::draining`]: the future to give the server's graceful shutdown, which
    /// then closes idle connections, finishes the requests in flight and returns. The
    /// worker should then return from its closure, so that its process exits before the
    /// shutdown timeout.
    pub fn signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            this.draining().await;
            tokio::time::sleep(this.linger).await;
            tracing::debug!("herd-tokio: graceful shutdown starts");
        }
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
