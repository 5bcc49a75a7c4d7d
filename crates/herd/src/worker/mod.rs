//! The worker's side of the cluster: its IPC channel to the primary, `listen` through the
//! primary (Node's queryServer), messages, and serving with the event loop.

mod heartbeat;
mod hooks;

pub use heartbeat::Heartbeat;

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{BorrowedFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::event_loop;
use crate::http::{Handler, Http};
use crate::ipc::{self, Channel, Received, ToPrimary, ToWorker};
use crate::protocol::Protocol;
use crate::role::{self, WorkerEnv};

use hooks::WorkerHooks;

/// A callback for messages from the primary.
pub(crate) type OnMessage = Box<dyn FnMut(&[u8]) + Send>;

/// Set once the IPC fd has been taken by [`Worker::connect`].
static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set once this worker told the primary it listens or is ready: from then on, its failure
/// is a crash, not a failed boot (see [`crate::Cluster::run`]).
static ANNOUNCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this worker has told the primary it listens or is ready.
pub(crate) fn announced() -> bool {
    ANNOUNCED.load(std::sync::atomic::Ordering::Acquire)
}

/// How long `listen` waits for the primary's answer.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Something the primary told this worker, for workers that do not run the event loop
/// (see [`Worker::next_event`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// A message from the primary.
    Message(Vec<u8>),
    /// The primary asks this worker to finish its work and exit.
    Disconnect,
    /// Connections for this worker to serve, accepted elsewhere: what waited in the queue
    /// of a slot that a scale-down removed. Each is a connected socket whose request has
    /// not been read. Dropping them closes them (their clients see a reset).
    Connections(Vec<TcpStream>),
    /// Idle keep-alive connections a draining worker gave back, each with the bytes it had
    /// read from it and not consumed yet (the start of the next request): serve those bytes
    /// first, then what the socket brings.
    Adopted(Vec<(TcpStream, Vec<u8>)>),
}

/// What a worker serves: a listening socket of its own (kernel-scheduled policies), or an
/// address whose connections the primary accepts and hands over (a dispatch policy).
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    socket: Option<TcpListener>,
}

impl Listener {
    /// The real address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening socket, or `None` when the primary hands connections over.
    pub fn into_socket(self) -> Option<TcpListener> {
        self.socket
    }
}

/// What [`Worker::serve`] takes: a [`Listener`] or a plain `TcpListener`.
pub trait IntoListener {
    /// Converts into a [`Listener`].
    ///
    /// # Errors
    /// The socket's address cannot be read.
    fn into_listener(self) -> io::Result<Listener>;
}

impl IntoListener for Listener {
    fn into_listener(self) -> io::Result<Listener> {
        Ok(self)
    }
}

impl IntoListener for TcpListener {
    fn into_listener(self) -> io::Result<Listener> {
        Ok(Listener {
            addr: self.local_addr()?,
            socket: Some(self),
        })
    }
}

/// Sends messages to the primary; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct WorkerSender {
    stream: Arc<Mutex<UnixStream>>,
    max_message: usize,
}

impl WorkerSender {
    /// Sends a message to the primary (it arrives as [`crate::Event::Message`]).
    ///
    /// # Errors
    /// [`ErrorKind::MessageTooLarge`] over the IPC limit, [`ErrorKind::NotConnected`] when
    /// the primary is gone.
    pub fn send(&self, message: &[u8]) -> Result<()> {
        if message.len() > self.max_message {
            return Err(Error::new(
                ErrorKind::MessageTooLarge,
                format!(
                    "message of {} bytes exceeds the IPC limit of {} bytes (raise it with Cluster::max_message_bytes)",
                    message.len(),
                    self.max_message
                ),
            ));
        }
        self.frame(&ToPrimary::Message(message.to_vec()))
    }

    pub(crate) fn frame(&self, msg: &ToPrimary) -> Result<()> {
        self.frame_with(msg, &[])
    }

    /// Sends `msg` with `fds` attached (as many as `msg` says it carries).
    pub(crate) fn frame_with(&self, msg: &ToPrimary, fds: &[BorrowedFd<'_>]) -> Result<()> {
        if matches!(msg, ToPrimary::Listening { .. } | ToPrimary::Ready) {
            ANNOUNCED.store(true, std::sync::atomic::Ordering::Release);
        }
        let mut frame = Vec::new();
        msg.encode(&mut frame);
        let stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        ipc::channel::send_blocking(&stream, &frame, fds)
            .map_err(|e| Error::new(ErrorKind::NotConnected, format!("the primary is gone: {e}")))
    }

    /// The IPC limit on one message's payload.
    pub(crate) fn max_message(&self) -> usize {
        self.max_message
    }
}

/// This process as a worker of a herd cluster (Node's `cluster.worker`).
pub struct Worker {
    env: &'static WorkerEnv,
    channel: Channel,
    sender: WorkerSender,
    next_req: u32,
    early: VecDeque<WorkerEvent>,
    early_conns: Vec<TcpStream>,
    early_adopted: Vec<(TcpStream, Vec<u8>)>,
    /// The last disconnect request asked for idle connections back.
    hand_back: bool,
    on_message: Option<OnMessage>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id())
            .field("slot", &self.slot())
            .finish()
    }
}

impl Worker {
    /// Connects to the primary that started this process.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when this process was not started as a worker.
    pub fn connect() -> Result<Worker> {
        let env = role::worker_env().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "this process was not started by a herd primary",
            )
        })?;
        // The fd is owned by one Worker for the life of the process.
        if TAKEN.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(Error::new(
                ErrorKind::Config,
                "Worker::connect was already called in this process: keep the Worker it returned",
            ));
        }
        if !crate::sys::fd_is_open(env.fd) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("IPC fd {} from {} is not open", env.fd, role::ENV_FD),
            ));
        }
        // SAFETY: the primary passed this fd for us alone (checked open above); this is the
        // only place that takes ownership of it, once (role::worker_env runs once).
        let stream = unsafe { UnixStream::from_raw_fd(env.fd) };
        crate::sys::set_cloexec(env.fd).map_err(|e| Error::io("IPC fd", e))?;
        crate::sys::ignore_terminal_signals();
        if let Some((fd, every)) = env.heartbeat {
            // Without it the worker serves as before; only the watchdog cannot see it.
            if let Err(e) = crate::heartbeat::attach(fd, every) {
                tracing::warn!("no heartbeat page (fd {fd}): {e}");
            }
        }
        let sender = WorkerSender {
            stream: Arc::new(Mutex::new(
                stream.try_clone().map_err(|e| Error::io("IPC fd", e))?,
            )),
            max_message: env.max_message,
        };
        let channel = Channel::new(stream, env.max_message).map_err(|e| Error::io("IPC fd", e))?;
        sender.frame(&ToPrimary::Online)?;
        Ok(Worker {
            env,
            channel,
            sender,
            next_req: 1,
            early: VecDeque::new(),
            early_conns: Vec::new(),
            early_adopted: Vec::new(),
            hand_back: false,
            on_message: None,
        })
    }

    /// This worker's id (1, 2, ...; never reused).
    pub fn id(&self) -> u32 {
        self.env.id
    }

    /// This worker's slot (0-based; stable across replacements).
    pub fn slot(&self) -> usize {
        self.env.slot
    }

    /// The CPU this worker's slot is pinned to, under a pinned policy.
    pub fn cpu(&self) -> Option<usize> {
        self.env.cpu
    }

    /// The cluster's shutdown timeout ([`crate::Cluster::shutdown_timeout`]): how long this
    /// worker has, once asked to leave, before the primary SIGKILLs it.
    pub fn shutdown_timeout(&self) -> Duration {
        self.env.drain
    }

    /// This worker's heartbeat page, for a worker that serves with a loop of its own (not
    /// [`Worker::serve`]) and wants the primary's watchdog to see it hang; `None` when the
    /// primary passed no page. See [`Heartbeat`].
    pub fn heartbeat(&self) -> Option<Heartbeat> {
        Heartbeat::attached()
    }

    /// A sender for messages to the primary, for use from any thread.
    pub fn sender(&self) -> WorkerSender {
        self.sender.clone()
    }

    /// Sends a message to the primary.
    ///
    /// # Errors
    /// As [`WorkerSender::send`].
    pub fn send(&self, message: &[u8]) -> Result<()> {
        self.sender.send(message)
    }

    /// Tells the primary this worker is ready (PM2's `process.send('ready')`): with
    /// [`crate::Cluster::wait_ready`], a reload replaces the old worker only after this. A
    /// worker that serves no socket calls it to end its
    /// [`boot timeout`](crate::Cluster::boot_timeout).
    ///
    /// # Errors
    /// [`ErrorKind::NotConnected`] when the primary is gone.
    pub fn ready(&self) -> Result<()> {
        self.sender.frame(&ToPrimary::Ready)
    }

    /// Called with every message from the primary while [`Worker::serve`] runs.
    pub fn on_message(&mut self, f: impl FnMut(&[u8]) + Send + 'static) {
        self.on_message = Some(Box::new(f));
    }

    /// Asks the primary for this slot's listening socket on `addr` (Node's queryServer).
    /// Port 0 resolves to one real port shared by every worker.
    ///
    /// # Errors
    /// [`ErrorKind::Listen`] with the primary's sentence (e.g. address in use, permission
    /// denied, an address that is not one, or EPERM for an address the cluster does not
    /// serve: see [`crate::Cluster::listen_on`]) and its errno in [`Error::raw_os_error`];
    /// [`ErrorKind::Config`] when the
    /// cluster hands connections over (use [`Worker::bind`] then).
    pub fn listen(&mut self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<TcpListener> {
        let l = self.bind(addr)?;
        let addr = l.local_addr();
        l.into_socket().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{addr}: this cluster's primary hands connections over; use Worker::bind and Worker::serve"),
            )
        })
    }

    /// Asks the primary to serve `addr` for this worker, whatever the policy: a listening
    /// socket of the slot's own, or hand-off from the primary's dispatcher. Pass the result
    /// to [`Worker::serve`].
    ///
    /// # Errors
    /// As [`Worker::listen`], except that hand-off is not an error.
    pub fn bind(&mut self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<Listener> {
        // An address that does not resolve still goes to the primary, which refuses it: a
        // worker that exits without listening then stops the cluster with that sentence
        // instead of being restarted forever.
        let wire = match addr.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a.to_string(),
            Ok(None) => format!("{addr:?} (resolves to nothing)"),
            Err(e) => format!("{addr:?} ({e})"),
        };
        let req = self.next_req;
        self.next_req += 1;
        self.sender.frame(&ToPrimary::Listen {
            req,
            addr: wire.clone(),
        })?;
        let addr = wire;
        loop {
            let got = self
                .channel
                .recv_blocking::<ToWorker>(LISTEN_TIMEOUT)
                .map_err(|e| {
                    Error::new(ErrorKind::NotConnected, format!("listen on {addr}: {e}"))
                })?;
            match got {
                Received::Message(ToWorker::ListenOk { req: r }, fds) if r == req => {
                    let fd = fds
                        .into_iter()
                        .next()
                        .expect("one fd, checked by the channel");
                    return TcpListener::from(fd)
                        .into_listener()
                        .map_err(|e| Error::io("the listener from the primary", e));
                }
                Received::Message(ToWorker::ListenHandoff { req: r, addr: real }, _)
                    if r == req =>
                {
                    let addr = real.parse().map_err(|_| {
                        Error::new(
                            ErrorKind::Listen,
                            format!("bad address {real:?} from the primary"),
                        )
                    })?;
                    return Ok(Listener { addr, socket: None });
                }
                Received::Message(
                    ToWorker::ListenErr {
                        req: r,
                        errno,
                        text,
                    },
                    _,
                ) if r == req => {
                    return Err(Error::with_errno(ErrorKind::Listen, text, errno));
                }
                other => self.stash(other),
            }
        }
    }

    fn stash(&mut self, r: Received<ToWorker>) {
        match r {
            Received::Message(ToWorker::Message(m), _) => {
                self.early.push_back(WorkerEvent::Message(m))
            }
            Received::Message(ToWorker::Disconnect { hand_back }, _) => {
                self.hand_back = hand_back;
                self.early.push_back(WorkerEvent::Disconnect)
            }
            Received::Message(ToWorker::Connections(_), fds) => self
                .early_conns
                .extend(fds.into_iter().map(TcpStream::from)),
            Received::Message(ToWorker::Adopt(inputs), fds) => self
                .early_adopted
                .extend(fds.into_iter().map(TcpStream::from).zip(inputs)),
            other => tracing::debug!("ignored IPC message: {other:?}"),
        }
    }

    /// Tells the primary this worker serves `addr` (its `listening` event). [`Worker::serve`]
    /// does this itself; a worker with its own server calls it.
    ///
    /// # Errors
    /// [`ErrorKind::NotConnected`] when the primary is gone.
    pub fn listening(&self, addr: SocketAddr) -> Result<()> {
        self.sender.frame(&ToPrimary::Listening {
            addr: addr.to_string(),
        })
    }

    /// Serves `listeners` with `protocol` on this worker's event loop until the primary asks
    /// it to leave (then drains: stops accepting, finishes in-flight work, closes idle
    /// connections) or dies. `config`'s drain timeout is the cluster's shutdown timeout.
    ///
    /// # Errors
    /// The event loop could not start or failed.
    pub fn serve<P, L>(self, listeners: impl IntoIterator<Item = L>, protocol: P) -> Result<()>
    where
        P: Protocol,
        L: IntoListener,
    {
        let config = event_loop::Config {
            drain_timeout: self.env.drain,
            ..Default::default()
        };
        self.serve_with(listeners, protocol, &config)
    }

    /// [`Worker::serve`] with an explicit event-loop configuration.
    ///
    /// # Errors
    /// The event loop could not start or failed.
    pub fn serve_with<P, L>(
        self,
        listeners: impl IntoIterator<Item = L>,
        protocol: P,
        config: &event_loop::Config,
    ) -> Result<()>
    where
        P: Protocol,
        L: IntoListener,
    {
        let mut announce = Vec::new();
        let mut sockets = Vec::new();
        for l in listeners {
            let l = l
                .into_listener()
                .map_err(|e| Error::io("a listener to serve", e))?;
            announce.push(l.addr);
            sockets.extend(l.socket);
        }
        let mut hooks = WorkerHooks {
            channel: self.channel,
            sender: self.sender,
            on_message: self.on_message,
            early: self.early.into(),
            early_conns: self.early_conns,
            early_adopted: self.early_adopted,
            hand_back: self.hand_back,
            report_load: self.env.report_load,
            last_load: None,
            announce,
            stats_every: self.env.metrics_every,
            // The first report comes soon after start: `herd status` shows the worker alive.
            next_stats: self
                .env
                .metrics_every
                .map(|every| std::time::Instant::now() + every.min(Duration::from_millis(100))),
            open: 0,
        };
        crate::metrics::local::enable(self.env.metrics_every.is_some());
        let served = event_loop::run(sockets, Arc::new(protocol), config, &mut hooks);
        // The last counts, so that a clean exit loses none.
        hooks.send_stats(0);
        served.map_err(|e| Error::io("the worker's event loop failed", e))
    }

    /// Listens on `addr` through the primary and serves HTTP/1.1 with `handler` (defaults of
    /// [`Http`]); see [`Worker::serve`].
    ///
    /// # Errors
    /// As [`Worker::listen`] and [`Worker::serve`].
    pub fn serve_http<H: Handler>(
        mut self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
        handler: H,
    ) -> Result<()> {
        let listener = self.bind(addr)?;
        self.serve([listener], Http::new(handler))
    }

    /// As [`serve_http`](Self::serve_http), over TLS with `tls` (HTTPS; feature `tls`, see
    /// [`crate::tls`]). Load `tls` in the worker (then a reload's new workers read renewed
    /// certificate files).
    ///
    /// # Errors
    /// As [`Worker::listen`] and [`Worker::serve`].
    #[cfg(feature = "tls")]
    pub fn serve_https<H: Handler>(
        mut self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
        tls: crate::tls::TlsConfig,
        handler: H,
    ) -> Result<()> {
        let listener = self.bind(addr)?;
        self.serve([listener], Http::new(handler).tls(tls))
    }

    /// Waits up to `timeout` for the next message, disconnect request or connections handed
    /// over, for workers that do not run the event loop. `Ok(None)` when the time ran out.
    ///
    /// # Errors
    /// [`ErrorKind::NotConnected`] once the primary is gone.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<WorkerEvent>> {
        loop {
            if let Some(ev) = self.early.pop_front() {
                return Ok(Some(ev));
            }
            if !self.early_conns.is_empty() {
                let conns = std::mem::take(&mut self.early_conns);
                return Ok(Some(WorkerEvent::Connections(conns)));
            }
            if !self.early_adopted.is_empty() {
                let conns = std::mem::take(&mut self.early_adopted);
                return Ok(Some(WorkerEvent::Adopted(conns)));
            }
            match self.channel.recv_blocking::<ToWorker>(timeout) {
                Ok(r) => self.stash(r),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(None),
                Err(e) => return Err(Error::new(ErrorKind::NotConnected, e.to_string())),
            }
        }
    }
}
