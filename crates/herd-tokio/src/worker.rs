//! A herd worker that serves on a tokio runtime: its listeners, the thread that hears the
//! primary, and the heartbeat.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use herd::{ErrorKind, WorkerEvent, WorkerSender};

use tokio::sync::mpsc;

use crate::listener::{Handed, Listener};
use crate::shutdown::{Drain, Shutdown};

/// A callback for messages from the primary.
type OnMessage = Box<dyn FnMut(&[u8]) + Send>;

/// The longest linger by default.
const LINGER: Duration = Duration::from_secs(1);

/// A herd worker that serves with a tokio server: wrap the [`herd::Worker`] that
/// [`herd::Cluster::run`] gives, take its listeners, then [`Worker::start`].
///
/// Under [`herd::Cluster::wait_ready`], call `worker.herd().ready()` once the application
/// is ready (a reload replaces the old worker only then); otherwise the worker counts as
/// ready when it listens.
pub struct Worker {
    inner: herd::Worker,
    drain: Arc<Drain>,
    /// Each listener's port and where connections handed over for it go.
    routes: Vec<(u16, mpsc::UnboundedSender<Handed>)>,
    linger: Duration,
    on_message: Option<OnMessage>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("inner", &self.inner)
            .field("linger", &self.linger)
            .finish()
    }
}

impl Worker {
    /// Wraps the worker [`herd::Cluster::run`] gave.
    pub fn new(worker: herd::Worker) -> Worker {
        let linger = LINGER.min(worker.shutdown_timeout() / 4);
        Worker {
            inner: worker,
            drain: Drain::new(),
            routes: Vec::new(),
            linger,
            on_message: None,
        }
    }

    /// The herd worker (its id, slot, [`herd::Worker::send`], ...).
    pub fn herd(&self) -> &herd::Worker {
        &self.inner
    }

    /// A sender for messages to the primary, usable from any thread or task.
    pub fn sender(&self) -> WorkerSender {
        self.inner.sender()
    }

    /// How long [`Shutdown::signal`] waits after the request to leave, while responses
    /// carry `Connection: close`, before the server's graceful shutdown closes idle
    /// connections. Default: 1 s, or a quarter of the cluster's shutdown timeout when
    /// that is shorter.
    pub fn linger(mut self, linger: Duration) -> Worker {
        self.linger = linger;
        self
    }

    /// Called on the worker's IPC thread with every message from the primary, once
    /// [`Worker::start`]ed. Default: messages are dropped.
    pub fn on_message(&mut self, f: impl FnMut(&[u8]) + Send + 'static) {
        self.on_message = Some(Box::new(f));
    }

    /// Asks the primary for this worker's listening socket on `addr` (see
    /// [`herd::Worker::listen`]), tells the primary the worker listens there, and returns
    /// it on the current tokio runtime. Call it for each address before [`Worker::start`].
    ///
    /// # Errors
    /// As [`herd::Worker::listen`]; an I/O error making the socket non-blocking.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled (as `tokio::net::TcpListener::from_std`).
    pub fn listen(&mut self, addr: impl ToSocketAddrs + std::fmt::Debug) -> herd::Result<Listener> {
        let std = self.inner.listen(addr)?;
        let real = std
            .local_addr()
            .map_err(|e| context("the listener's address", e))?;
        std.set_nonblocking(true)
            .map_err(|e| context("a non-blocking listener", e))?;
        let tokio = tokio::net::TcpListener::from_std(std)
            .map_err(|e| context("the listener on the tokio runtime", e))?;
        self.inner.listening(real)?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes.push((real.port(), tx));
        Ok(Listener::new(tokio, self.drain.clone(), rx))
    }

    /// Starts hearing the primary: a thread waits for its requests (a request to leave
    /// makes the listeners stop accepting and starts [`Shutdown`]; so does a primary that
    /// is gone), and a task on the current runtime beats herd's heartbeat, so that the
    /// watchdog ([`herd::Cluster::run_timeout`]) reports and replaces a worker whose
    /// runtime stopped running tasks.
    ///
    /// # Panics
    /// Outside a tokio runtime with the time driver enabled, or when the thread cannot be
    /// started.
    pub fn start(self) -> Shutdown {
        let shutdown = Shutdown {
            drain: self.drain.clone(),
            linger: self.linger,
        };
        if let Some(beat) = self.inner.heartbeat() {
            tokio::spawn(async move {
                let mut every = tokio::time::interval(beat.every());
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    beat.beat();
                }
            });
        }
        let drain = self.drain;
        let mut on_message = self.on_message;
        let mut inner = self.inner;
        let routes = self.routes;
        std::thread::Builder::new()
            .name("herd-ipc".into())
            .spawn(move || loop {
                match inner.next_event(Duration::from_secs(3600)) {
                    Ok(Some(WorkerEvent::Disconnect)) => {
                        tracing::debug!("herd-tokio: asked to leave");
                        drain.begin();
                    }
                    Ok(Some(WorkerEvent::Message(m))) => {
                        if let Some(f) = on_message.as_mut() {
                            f(&m);
                        }
                    }
                    Ok(Some(WorkerEvent::Connections(conns))) => {
                        route(&routes, conns.into_iter().map(|c| (c, Vec::new())));
                    }
                    Ok(Some(WorkerEvent::Adopted(conns))) => route(&routes, conns.into_iter()),
                    Ok(Some(_)) | Ok(None) => {}
                    Err(e) => {
                        if e.kind() != ErrorKind::NotConnected || !drain.is_draining() {
                            tracing::warn!("herd-tokio: leaving: {e}");
                        }
                        drain.begin();
                        return;
                    }
                }
            })
            .expect("start the herd-ipc thread");
        shutdown
    }
}

/// Sends each handed-over connection to the listener of its port (the first listener when
/// none matches); with no listener left, it closes.
fn route(routes: &[(u16, mpsc::UnboundedSender<Handed>)], conns: impl Iterator<Item = Handed>) {
    for (conn, input) in conns {
        let port = conn.local_addr().map(|a| a.port()).ok();
        let to = routes
            .iter()
            .find(|(p, _)| Some(*p) == port)
            .or(routes.first());
        if let Some((_, tx)) = to {
            let _ = tx.send((conn, input));
        }
    }
}

/// `e` as a herd error whose sentence starts with `what`.
fn context(what: &str, e: std::io::Error) -> herd::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}")).into()
}
