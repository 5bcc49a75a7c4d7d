//! The primary: starts, watches, restarts, reloads and stops worker processes.
//!
//! One mio loop serves signals (through signal-hook's self-pipe), commands from
//! [`PrimaryHandle`]s (crossbeam channel + mio Waker) and every worker's IPC socket. Timers
//! (restart backoff, kill deadlines, reload deadlines, the shutdown deadline) set the poll
//! timeout.

mod backoff;
mod dispatch;
mod handle;
mod slots;
pub(crate) mod spawn;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU};
use signal_hook_mio::v1_0::Signals;

pub(crate) use backoff::Backoff;
pub(crate) use dispatch::MAX_FDS_PER_FRAME;
pub use dispatch::{Dispatch, DispatchCtx};
use dispatch::{HandOff, DISPATCH_BASE};
pub(crate) use handle::{Command, Line};
pub use handle::{Event, Exit, PrimaryHandle, WorkerHandle, WorkerState};
use slots::Slot;
use spawn::SpawnSettings;

use crate::error::{Error, ErrorKind, Result};
use crate::ipc::{Channel, Received, ToPrimary, ToWorker};
use crate::listen::Listeners;

const SIGNALS: Token = Token(0);
const WAKER: Token = Token(1);
/// Worker `id`'s IPC socket is registered as `Token(id + TOKEN_BASE)`.
const TOKEN_BASE: usize = 2;

/// A lifecycle callback.
pub(crate) type OnEvent = Box<dyn FnMut(&Event, &PrimaryHandle)>;

/// Everything the loop needs, gathered by [`crate::Cluster`].
pub(crate) struct Config {
    pub workers: usize,
    pub spawn: SpawnSettings,
    pub listeners: Listeners,
    pub shutdown_timeout: Duration,
    pub wait_ready: bool,
    pub ready_timeout: Duration,
    pub reload_batch: usize,
    pub backoff: Backoff,
    pub dispatch: Option<Box<dyn Dispatch>>,
}

/// A worker process the primary is responsible for.
struct Live {
    handle: WorkerHandle,
    child: Child,
    channel: Option<Channel>,
    queued: bool,
    started: Instant,
    ready: bool,
    listened: bool,
    listen_error: Option<String>,
    kill_at: Option<Instant>,
    /// SIGKILL was sent (a zombie not reaped yet still accepts another one: count it once).
    killed: bool,
}

impl Live {
    /// SIGKILLs the worker; true the first time only.
    fn sigkill(&mut self) -> bool {
        self.handle.mark_asked_to_leave();
        self.kill_at = None;
        let first = !self.killed;
        self.killed = true;
        self.child.kill().is_ok() && first
    }
}

/// A rolling reload in progress.
struct Reload {
    queue: VecDeque<usize>,
    /// (slot, new worker id, ready deadline)
    active: Vec<(usize, u32, Instant)>,
    again: bool,
}

/// The graceful stop in progress.
struct Stop {
    deadline: Instant,
    killed: usize,
    forced: bool,
}

pub(crate) struct Primary {
    cfg: Config,
    poll: Poll,
    signals: Signals,
    commands: Receiver<Command>,
    handle: PrimaryHandle,
    on_event: Option<OnEvent>,
    live: HashMap<u32, Live>,
    slots: BTreeMap<usize, Slot>,
    next_id: u32,
    reload: Option<Reload>,
    stop: Option<Stop>,
    fatal: Option<Error>,
    /// SIGCHLD arrived since the last reap: some worker may have exited.
    child_exited: bool,
    /// The initial workers were started: a failed start is no longer fatal.
    started: bool,
}

impl Primary {
    pub(crate) fn new(
        cfg: Config,
        poll: Poll,
        commands: Receiver<Command>,
        handle: PrimaryHandle,
        on_event: Option<OnEvent>,
    ) -> Result<Primary> {
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGTTIN, SIGTTOU, SIGCHLD])
            .map_err(|e| Error::io("cannot install the primary's signal handlers", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| Error::io("cannot register signals", e))?;
        Ok(Primary {
            cfg,
            poll,
            signals,
            commands,
            handle,
            on_event,
            live: HashMap::new(),
            slots: BTreeMap::new(),
            next_id: 1,
            reload: None,
            stop: None,
            fatal: None,
            child_exited: false,
            started: false,
        })
    }

    /// Runs until the cluster has stopped.
    pub(crate) fn run(mut self) -> Result<()> {
        tracing::info!(
            pid = std::process::id(),
            workers = self.cfg.workers,
            "primary started"
        );
        for _ in 0..self.cfg.workers {
            let slot = self.free_slot();
            self.slots.insert(slot, Slot::default());
            self.start(slot, false);
        }
        self.started = true;
        if self.cfg.workers == 0 {
            tracing::info!("no workers configured: nothing to supervise");
            return Ok(());
        }
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self
                .next_timer()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(Error::io("the primary's poll failed", e));
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    SIGNALS => self.on_signals(),
                    WAKER => self.on_commands(),
                    Token(t) if t >= DISPATCH_BASE => {
                        self.with_dispatch(|d, ctx| d.ready(t - DISPATCH_BASE, ctx))
                    }
                    Token(t) => {
                        let id = (t - TOKEN_BASE) as u32;
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read_worker(id);
                        }
                        if ev.is_writable() {
                            self.flush_worker(id);
                        }
                    }
                }
            }
            self.reap();
            self.on_timers();
            if let Some(e) = &self.fatal {
                if self.stop.is_none() {
                    tracing::error!("{e}; stopping");
                    self.begin_stop();
                }
            }
            if self.stop.is_some() && self.live.is_empty() {
                break;
            }
        }
        let stop = self.stop.take().expect("the loop ends only when stopping");
        if let Some(e) = self.fatal.take() {
            return Err(e);
        }
        if stop.killed > 0 {
            let why = if stop.forced {
                "a second signal"
            } else {
                "the shutdown timeout"
            };
            return Err(Error::new(
                ErrorKind::Shutdown,
                format!(
                    "stopped after {why}: {} worker(s) had to be killed",
                    stop.killed
                ),
            ));
        }
        tracing::info!("primary stopped: all workers exited cleanly");
        Ok(())
    }

    fn emit(&mut self, event: Event) {
        if let Some(cb) = self.on_event.as_mut() {
            cb(&event, &self.handle);
        }
    }

    fn free_slot(&self) -> usize {
        (0..)
            .find(|s| !self.slots.contains_key(s))
            .expect("a free slot")
    }

    fn publish(&self) {
        let mut list: Vec<WorkerHandle> = self.live.values().map(|l| l.handle.clone()).collect();
        list.sort_by_key(|h| h.id());
        if let Ok(mut w) = self.handle.workers.lock() {
            *w = list;
        }
    }

    /// Starts a worker in `slot`, as the slot's current worker or (`incoming`) as the
    /// replacement a reload waits for. Returns its id.
    fn start(&mut self, slot: usize, incoming: bool) -> Option<u32> {
        let id = self.next_id;
        self.next_id += 1;
        let started = UnixStream::pair().and_then(|(ours, theirs)| {
            let cpu = self.cfg.listeners.cpu_for(slot);
            let mut child = spawn::spawn(&self.cfg.spawn, id, slot, cpu, &theirs)?;
            drop(theirs);
            let registered = Channel::new(ours, self.cfg.spawn.max_message).and_then(|channel| {
                self.poll.registry().register(
                    &mut SourceFd(&channel.raw_fd()),
                    Token(id as usize + TOKEN_BASE),
                    Interest::READABLE,
                )?;
                Ok(channel)
            });
            match registered {
                Ok(channel) => Ok((child, channel)),
                Err(e) => {
                    // Started but unreachable: do not leave it running or unreaped.
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(e)
                }
            }
        });
        let (child, channel) = match started {
            Ok(x) => x,
            Err(e) => {
                self.start_failed(slot, incoming, e);
                return None;
            }
        };
        let handle = WorkerHandle::new(id, slot, child.id(), self.handle.line.clone());
        tracing::info!(worker = id, pid = child.id(), slot, "worker forked");
        self.live.insert(
            id,
            Live {
                handle: handle.clone(),
                child,
                channel: Some(channel),
                queued: false,
                started: Instant::now(),
                ready: false,
                listened: false,
                listen_error: None,
                kill_at: None,
                killed: false,
            },
        );
        if let Some(s) = self.slots.get_mut(&slot) {
            s.started(id, incoming);
        }
        self.publish();
        self.emit(Event::Fork(handle));
        Some(id)
    }

    /// A worker could not be started in `slot`. At the cluster's start that is fatal (the
    /// program or a setting is wrong); later it stops a reload, or retries after a backoff.
    fn start_failed(&mut self, slot: usize, incoming: bool, e: io::Error) {
        let what = format!(
            "cannot start a worker from {}",
            self.cfg.spawn.exec.display()
        );
        if !self.started {
            self.fatal.get_or_insert_with(|| Error::io(what, e));
        } else if incoming {
            self.reload_failed(format!("{what}: {e}"));
        } else if let Some(s) = self.slots.get_mut(&slot) {
            let delay = s.crashed(Duration::ZERO, &self.cfg.backoff);
            tracing::error!(slot, "{what}: {e}; retrying in {} ms", delay.as_millis());
            s.restart_at = Some(Instant::now() + delay);
        }
    }

    fn send(&mut self, id: u32, msg: &ToWorker, fds: &[BorrowedFd<'_>]) {
        if let Err(e) = send_to(&mut self.live, self.poll.registry(), id, msg, fds) {
            tracing::debug!(worker = id, "IPC send failed: {e}");
        }
    }

    /// Runs `f` with the dispatcher, if the cluster has one.
    fn with_dispatch(&mut self, f: impl FnOnce(&mut dyn Dispatch, &mut DispatchCtx<'_>)) {
        let Some(mut d) = self.cfg.dispatch.take() else {
            return;
        };
        let registry = self.poll.registry();
        let mut hands = Hands {
            live: &mut self.live,
            registry,
        };
        let mut ctx = DispatchCtx {
            registry,
            hand: &mut hands,
        };
        f(&mut *d, &mut ctx);
        self.cfg.dispatch = Some(d);
    }

    fn flush_worker(&mut self, id: u32) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let Some(ch) = live.channel.as_mut() else {
            return;
        };
        if let Ok(false) = ch.flush() {
            live.queued = false;
            let fd = ch.raw_fd();
            let _ = self.poll.registry().reregister(
                &mut SourceFd(&fd),
                Token(id as usize + TOKEN_BASE),
                Interest::READABLE,
            );
        }
    }

    fn read_worker(&mut self, id: u32) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let Some(ch) = live.channel.as_mut() else {
            return;
        };
        let open = ch.fill().unwrap_or(false);
        let mut got = Vec::new();
        while let Some(r) = ch.next::<ToPrimary>() {
            got.push(r);
        }
        for r in got {
            match r {
                Received::Message(m, _) => self.on_message(id, m),
                Received::Oversized(n) => tracing::warn!(
                    worker = id,
                    "discarded a {n}-byte IPC message over the limit of {} bytes",
                    self.cfg.spawn.max_message
                ),
                Received::Malformed(e) => {
                    tracing::warn!(worker = id, "discarded a malformed IPC message: {e}")
                }
            }
        }
        if !open {
            self.channel_closed(id);
        }
    }

    fn channel_closed(&mut self, id: u32) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let Some(ch) = live.channel.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut SourceFd(&ch.raw_fd()));
        drop(ch);
        let h = live.handle.clone();
        h.set_state(WorkerState::Disconnected);
        tracing::info!(worker = id, pid = h.pid(), "worker disconnected");
        self.with_dispatch(|d, ctx| d.worker_gone(id, ctx));
        self.emit(Event::Disconnect(h));
    }

    fn on_message(&mut self, id: u32, msg: ToPrimary) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let h = live.handle.clone();
        match msg {
            ToPrimary::Online => {
                h.set_state(WorkerState::Online);
                tracing::info!(worker = id, pid = h.pid(), "worker online");
                self.emit(Event::Online(h));
            }
            ToPrimary::Listen { req, addr } => self.on_listen(id, h.slot(), req, &addr),
            ToPrimary::Listening { addr } => {
                if !std::mem::replace(&mut live.listened, true) {
                    self.with_dispatch(|d, ctx| d.worker_up(id, ctx));
                }
                let Some(live) = self.live.get_mut(&id) else {
                    return;
                };
                h.set_state(WorkerState::Listening);
                let addr: SocketAddr = match addr.parse() {
                    Ok(a) => a,
                    Err(_) => return,
                };
                tracing::info!(worker = id, pid = h.pid(), %addr, "worker listening");
                let became_ready = !self.cfg.wait_ready && !live.ready;
                live.ready |= became_ready;
                self.emit(Event::Listening(h, addr));
                if became_ready {
                    self.on_ready(id);
                }
            }
            ToPrimary::Ready => {
                if !live.ready {
                    live.ready = true;
                    tracing::info!(worker = id, pid = h.pid(), "worker ready");
                    self.on_ready(id);
                }
            }
            ToPrimary::Message(data) => self.emit(Event::Message(h, data)),
            ToPrimary::Took(n) => self.with_dispatch(|d, ctx| d.took(id, n as usize, ctx)),
            ToPrimary::Load(n) => self.with_dispatch(|d, ctx| d.load(id, n as usize, ctx)),
        }
    }

    fn on_listen(&mut self, id: u32, slot: usize, req: u32, addr: &str) {
        if self.cfg.listeners.handoff() {
            return self.on_listen_handoff(id, req, addr);
        }
        let parsed: std::result::Result<SocketAddr, _> = addr.parse();
        let result = match parsed {
            Ok(a) => self.cfg.listeners.get(a, slot).and_then(|fd| {
                fd.try_clone_to_owned()
                    .map_err(|e| crate::listen::ListenError {
                        errno: e.raw_os_error().unwrap_or(libc::EIO),
                        text: format!("cannot pass the listener for {a}: {e}"),
                    })
            }),
            Err(_) => Err(crate::listen::ListenError {
                errno: libc::EINVAL,
                text: format!("{addr:?} is not an IP address and port"),
            }),
        };
        match result {
            Ok(fd) => self.send(id, &ToWorker::ListenOk { req }, &[fd.as_fd()]),
            Err(e) => self.listen_failed(id, req, e),
        }
    }

    /// Tells worker `id` its listen request `req` failed, and remembers why (a worker that
    /// exits without ever listening stops the cluster with this reason).
    fn listen_failed(&mut self, id: u32, req: u32, e: crate::listen::ListenError) {
        tracing::warn!(worker = id, "{}", e.text);
        if let Some(live) = self.live.get_mut(&id) {
            live.listen_error = Some(e.text.clone());
        }
        let msg = ToWorker::ListenErr {
            req,
            errno: e.errno,
            text: e.text,
        };
        self.send(id, &msg, &[]);
    }

    fn on_listen_handoff(&mut self, id: u32, req: u32, addr: &str) {
        let result = match addr.parse::<SocketAddr>() {
            Ok(a) => self.cfg.listeners.get_handoff(a),
            Err(_) => Err(crate::listen::ListenError {
                errno: libc::EINVAL,
                text: format!("{addr:?} is not an IP address and port"),
            }),
        };
        let result = result.and_then(|(real, created)| {
            let Some(fd) = created else { return Ok(real) };
            let mut outcome = Ok(());
            self.with_dispatch(|d, ctx| {
                outcome = d.listen(real, std::net::TcpListener::from(fd), ctx);
            });
            outcome
                .map(|_| real)
                .map_err(|e| crate::listen::ListenError {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                    text: format!("the dispatcher cannot accept on {real}: {e}"),
                })
        });
        match result {
            Ok(real) => self.send(
                id,
                &ToWorker::ListenHandoff {
                    req,
                    addr: real.to_string(),
                },
                &[],
            ),
            Err(e) => self.listen_failed(id, req, e),
        }
    }

    fn disconnect(&mut self, id: u32) {
        let deadline = Instant::now() + self.cfg.shutdown_timeout;
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        live.handle.mark_asked_to_leave();
        live.kill_at.get_or_insert(deadline);
        self.with_dispatch(|d, ctx| d.worker_leaving(id, ctx));
        self.send(id, &ToWorker::Disconnect, &[]);
    }

    fn kill(&mut self, id: u32, signal: i32) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        live.handle.mark_asked_to_leave();
        let pid = nix::unistd::Pid::from_raw(live.child.id() as i32);
        if let Ok(sig) = nix::sys::signal::Signal::try_from(signal) {
            let _ = nix::sys::signal::kill(pid, sig);
        }
        self.with_dispatch(|d, ctx| d.worker_leaving(id, ctx));
    }

    fn on_signals(&mut self) {
        let got: Vec<i32> = self.signals.pending().collect();
        for sig in got {
            match sig {
                SIGTERM | SIGINT => {
                    if self.stop.is_some() {
                        tracing::warn!("second stop signal: killing every worker now");
                        self.force_stop();
                    } else {
                        tracing::info!("stop signal: disconnecting every worker");
                        self.begin_stop();
                    }
                }
                SIGHUP => self.begin_reload(),
                SIGTTIN => self.scale(self.active_slots() + 1),
                SIGTTOU => self.scale(self.active_slots().saturating_sub(1)),
                _ => self.child_exited = true, // SIGCHLD: reaped after this wake-up
            }
        }
    }

    fn on_commands(&mut self) {
        while let Ok(c) = self.commands.try_recv() {
            match c {
                Command::Send(id, data) => self.send(id, &ToWorker::Message(data), &[]),
                Command::Broadcast(data) => {
                    let ids: Vec<u32> = self.live.keys().copied().collect();
                    let msg = ToWorker::Message(data);
                    for id in ids {
                        self.send(id, &msg, &[]);
                    }
                }
                Command::Disconnect(id) => self.disconnect(id),
                Command::Kill(id, sig) => self.kill(id, sig),
                Command::Reload => self.begin_reload(),
                Command::Scale(n) => self.scale(n),
                Command::Stop => {
                    if self.stop.is_none() {
                        self.begin_stop();
                    }
                }
            }
        }
    }

    fn begin_stop(&mut self) {
        self.reload = None;
        self.stop = Some(Stop {
            deadline: Instant::now() + self.cfg.shutdown_timeout,
            killed: 0,
            forced: false,
        });
        for s in self.slots.values_mut() {
            s.restart_at = None;
        }
        let ids: Vec<u32> = self.live.keys().copied().collect();
        for id in ids {
            self.disconnect(id);
        }
    }

    fn force_stop(&mut self) {
        let n = self.kill_all();
        if let Some(stop) = self.stop.as_mut() {
            stop.killed += n;
            stop.forced = true;
        }
    }

    /// SIGKILLs every worker; returns how many had not been killed before.
    fn kill_all(&mut self) -> usize {
        self.live
            .values_mut()
            .map(Live::sigkill)
            .filter(|&first| first)
            .count()
    }

    /// Reaps every worker that exited, when SIGCHLD said one did (one wait4 per worker).
    fn reap(&mut self) {
        if !std::mem::take(&mut self.child_exited) {
            return;
        }
        let exited: Vec<(u32, std::process::ExitStatus)> = self
            .live
            .iter_mut()
            .filter_map(|(id, l)| match l.child.try_wait() {
                Ok(Some(status)) => Some((*id, status)),
                _ => None,
            })
            .collect();
        for (id, status) in exited {
            // Messages sent just before exiting come first, then disconnect, then exit.
            self.read_worker(id);
            self.channel_closed(id);
            let Some(live) = self.live.remove(&id) else {
                continue;
            };
            self.publish();
            let exit = match status.signal() {
                Some(sig) => Exit::Signal(sig),
                None => Exit::Code(status.code().unwrap_or(-1)),
            };
            let h = live.handle.clone();
            h.set_state(WorkerState::Dead);
            if h.exited_after_disconnect() || exit == Exit::Code(0) {
                tracing::info!(worker = id, pid = h.pid(), %exit, "worker exited");
            } else {
                tracing::warn!(worker = id, pid = h.pid(), %exit, "worker died");
            }
            self.emit(Event::Exit(h.clone(), exit));
            self.after_exit(live, exit);
        }
    }

    /// Decides what a slot does after its worker exited.
    fn after_exit(&mut self, live: Live, exit: Exit) {
        let id = live.handle.id();
        let slot_no = live.handle.slot();
        let stopping = self.stop.is_some();
        let Some(slot) = self.slots.get_mut(&slot_no) else {
            return;
        };
        if slot.incoming == Some(id) {
            slot.incoming = None;
            if slot.removing {
                // Scale-down met a reload: the slot goes once both of its workers have.
                if slot.current.is_none() {
                    self.finish_remove_slot(slot_no);
                }
                return;
            }
            if !live.handle.exited_after_disconnect() {
                self.reload_failed(format!(
                    "new worker {id} for slot {slot_no} exited ({exit}) before it was ready"
                ));
            }
            self.keep_served(slot_no);
            return;
        }
        if slot.current != Some(id) {
            return;
        }
        slot.current = None;
        if slot.removing {
            if slot.incoming.is_none() {
                self.finish_remove_slot(slot_no);
            }
            return;
        }
        if stopping || slot.incoming.is_some() {
            return;
        }
        if !live.listened {
            if let Some(why) = live.listen_error {
                self.fatal.get_or_insert_with(|| {
                    Error::new(
                        ErrorKind::Start,
                        format!("worker {id} could not start: {why}"),
                    )
                });
                return;
            }
        }
        let delay = if live.handle.exited_after_disconnect() {
            Duration::ZERO
        } else {
            slot.crashed(live.started.elapsed(), &self.cfg.backoff)
        };
        if !delay.is_zero() {
            tracing::warn!(
                slot = slot_no,
                "restarting slot in {} ms",
                delay.as_millis()
            );
        }
        slot.restart_at = Some(Instant::now() + delay);
    }

    fn next_timer(&self) -> Option<Instant> {
        let restarts = self.slots.values().filter_map(|s| s.restart_at);
        let kills = self.live.values().filter_map(|l| l.kill_at);
        let reloads = self
            .reload
            .iter()
            .flat_map(|r| r.active.iter().map(|a| a.2));
        let stop = self.stop.as_ref().map(|s| s.deadline);
        let dispatch = self.cfg.dispatch.as_ref().and_then(|d| d.deadline());
        restarts
            .chain(kills)
            .chain(reloads)
            .chain(stop)
            .chain(dispatch)
            .min()
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        if self
            .cfg
            .dispatch
            .as_ref()
            .and_then(|d| d.deadline())
            .is_some_and(|t| t <= now)
        {
            self.with_dispatch(|d, ctx| d.timer(ctx));
        }
        let due: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| s.restart_at.is_some_and(|t| t <= now))
            .map(|(n, _)| *n)
            .collect();
        for slot in due {
            if let Some(s) = self.slots.get_mut(&slot) {
                s.restart_at = None;
            }
            if self.stop.is_none() {
                self.start(slot, false);
            }
        }
        for live in self.live.values_mut() {
            if live.kill_at.is_some_and(|t| t <= now) {
                tracing::warn!(worker = live.handle.id(), "did not exit in time: SIGKILL");
                if live.sigkill() {
                    if let Some(stop) = self.stop.as_mut() {
                        stop.killed += 1;
                    }
                }
            }
        }
        let late = self
            .reload
            .as_ref()
            .and_then(|r| r.active.iter().find(|a| a.2 <= now).copied());
        if let Some((slot, id, _)) = late {
            if let Some(s) = self.slots.get_mut(&slot) {
                s.incoming = None;
            }
            if let Some(live) = self.live.get_mut(&id) {
                live.sigkill();
            }
            self.reload_failed(format!(
                "new worker {id} for slot {slot} was not ready within {} ms",
                self.cfg.ready_timeout.as_millis()
            ));
        }
        if let Some(stop) = &self.stop {
            if stop.deadline <= now && !self.live.is_empty() {
                let n = self.kill_all();
                if let Some(stop) = self.stop.as_mut() {
                    stop.killed += n;
                    stop.deadline = now + Duration::from_secs(3600);
                }
            }
        }
    }

    fn active_slots(&self) -> usize {
        self.slots.values().filter(|s| !s.removing).count()
    }

    fn scale(&mut self, want: usize) {
        if self.stop.is_some() {
            return;
        }
        let want = want.max(1);
        let have = self.active_slots();
        tracing::info!(from = have, to = want, "scaling");
        for _ in have..want {
            let slot = self.free_slot();
            self.slots.insert(slot, Slot::default());
            self.start(slot, false);
        }
        if want < have {
            let remove: Vec<usize> = self
                .slots
                .iter()
                .rev()
                .filter(|(_, s)| !s.removing)
                .take(have - want)
                .map(|(n, _)| *n)
                .collect();
            for n in remove {
                self.remove_slot(n);
            }
        }
    }

    fn remove_slot(&mut self, n: usize) {
        let Some(slot) = self.slots.get_mut(&n) else {
            return;
        };
        slot.removing = true;
        slot.restart_at = None;
        let ids: Vec<u32> = slot
            .current
            .iter()
            .chain(slot.incoming.iter())
            .copied()
            .collect();
        self.cfg.listeners.begin_remove_slot(n);
        if ids.is_empty() {
            self.finish_remove_slot(n);
        }
        for id in ids {
            self.disconnect(id);
        }
    }

    /// The removed slot's worker is gone: what still waits in the slot's queue goes to
    /// the other workers, then its listeners close.
    fn finish_remove_slot(&mut self, n: usize) {
        self.slots.remove(&n);
        let queued = self.cfg.listeners.finish_remove_slot(n);
        tracing::info!(slot = n, moved = queued.len(), "slot removed");
        let mut takers: Vec<u32> = self
            .live
            .iter()
            .filter(|(_, l)| {
                l.listened && l.channel.is_some() && !l.handle.exited_after_disconnect()
            })
            .map(|(id, _)| *id)
            .collect();
        takers.sort_unstable();
        if takers.is_empty() && !queued.is_empty() {
            tracing::warn!(
                slot = n,
                "no worker to take {} queued connections",
                queued.len()
            );
            return;
        }
        for (i, chunk) in queued.chunks(MAX_FDS_PER_FRAME).enumerate() {
            let to = takers[i % takers.len()];
            let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(|c| c.as_fd()).collect();
            self.send(to, &ToWorker::Connections(fds.len() as u32), &fds);
        }
    }

    fn begin_reload(&mut self) {
        if self.stop.is_some() {
            return;
        }
        if let Some(r) = self.reload.as_mut() {
            tracing::info!("reload already in progress: another one follows it");
            r.again = true;
            return;
        }
        tracing::info!(slots = self.active_slots(), "rolling reload started");
        let queue = self
            .slots
            .iter()
            .filter(|(_, s)| !s.removing)
            .map(|(n, _)| *n)
            .collect();
        self.reload = Some(Reload {
            queue,
            active: Vec::new(),
            again: false,
        });
        self.advance_reload();
    }

    fn advance_reload(&mut self) {
        loop {
            let Some(r) = self.reload.as_mut() else {
                return;
            };
            if r.active.len() >= self.cfg.reload_batch.max(1) {
                return;
            }
            let Some(slot) = r.queue.pop_front() else {
                if r.active.is_empty() {
                    let again = r.again;
                    self.reload = None;
                    tracing::info!("rolling reload complete");
                    if again {
                        self.begin_reload();
                    }
                }
                return;
            };
            // A slot being removed needs no new worker; one waiting out a crash backoff
            // restarts from the executable now at the path anyway.
            if self
                .slots
                .get(&slot)
                .is_none_or(|s| s.removing || s.current.is_none())
            {
                continue;
            }
            let deadline = Instant::now() + self.cfg.ready_timeout;
            let Some(id) = self.start(slot, true) else {
                return;
            };
            if let Some(r) = self.reload.as_mut() {
                r.active.push((slot, id, deadline));
            }
        }
    }

    fn on_ready(&mut self, id: u32) {
        let Some(r) = self.reload.as_mut() else {
            return;
        };
        let Some(pos) = r.active.iter().position(|a| a.1 == id) else {
            return;
        };
        let (slot_no, _, _) = r.active.remove(pos);
        let old = self.slots.get_mut(&slot_no).and_then(|s| s.promote(id));
        if let Some(old) = old {
            self.disconnect(old);
        }
        self.advance_reload();
    }

    fn reload_failed(&mut self, why: String) {
        tracing::error!("reload stopped, the old workers keep serving: {why}");
        if let Some(r) = self.reload.take() {
            for (slot, id, _) in r.active {
                if let Some(s) = self.slots.get_mut(&slot) {
                    s.incoming = None;
                }
                if let Some(live) = self.live.get_mut(&id) {
                    live.sigkill();
                }
                self.keep_served(slot);
            }
        }
    }

    /// A slot left with no worker, none coming and no restart planned (its current worker
    /// died while a replacement was on its way, then the replacement failed) restarts now.
    fn keep_served(&mut self, slot_no: usize) {
        let stopping = self.stop.is_some();
        if let Some(s) = self.slots.get_mut(&slot_no) {
            if !stopping
                && !s.removing
                && s.current.is_none()
                && s.incoming.is_none()
                && s.restart_at.is_none()
            {
                s.restart_at = Some(Instant::now());
            }
        }
    }
}

/// Sends `msg` (with `fds`) to worker `id` without blocking; a full socket queues the rest
/// and asks the poll for writability.
fn send_to(
    live: &mut HashMap<u32, Live>,
    registry: &Registry,
    id: u32,
    msg: &ToWorker,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let not_connected = || io::Error::new(io::ErrorKind::NotConnected, "worker channel closed");
    let live = live.get_mut(&id).ok_or_else(not_connected)?;
    let ch = live.channel.as_mut().ok_or_else(not_connected)?;
    let mut frame = Vec::new();
    msg.encode(&mut frame);
    if ch.send(frame, fds)? && !live.queued {
        live.queued = true;
        let fd = ch.raw_fd();
        registry.reregister(
            &mut SourceFd(&fd),
            Token(id as usize + TOKEN_BASE),
            Interest::READABLE | Interest::WRITABLE,
        )?;
    }
    Ok(())
}

/// The primary's side of [`DispatchCtx::hand`].
struct Hands<'a> {
    live: &'a mut HashMap<u32, Live>,
    registry: &'a Registry,
}

impl HandOff for Hands<'_> {
    fn hand(&mut self, worker: u32, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        send_to(
            self.live,
            self.registry,
            worker,
            &ToWorker::Connections(fds.len() as u32),
            fds,
        )
    }
    fn slot(&self, worker: u32) -> Option<usize> {
        self.live.get(&worker).map(|l| l.handle.slot())
    }
}
