//! The primary: starts, watches, restarts, reloads and stops worker processes.
//!
//! One mio loop serves signals (through signal-hook's self-pipe), commands from
//! [`PrimaryHandle`]s (crossbeam channel + mio Waker) and every worker's IPC socket. Timers
//! (restart backoff, kill deadlines, reload deadlines, the shutdown deadline) set the poll
//! timeout.
//!
//! This file holds the loop, starting and reaping workers, and restart supervision; the
//! rest is by concern: `messages` (each worker's IPC channel, queryServer, hand-off
//! plumbing), `reload`, `scale`, `stop`, `slots`, `spawn`, `backoff`, `dispatch` (the hook
//! for hand-off policies) and `handle` (what the user holds).

mod allow;
mod backoff;
mod dispatch;
mod handle;
mod messages;
mod reload;
mod scale;
mod slots;
pub(crate) mod spawn;
mod startup;
mod stop;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU};
use signal_hook_mio::v1_0::Signals;

pub(crate) use allow::Allowed;
pub(crate) use backoff::Backoff;
use dispatch::DISPATCH_BASE;
pub(crate) use dispatch::MAX_FDS_PER_FRAME;
pub use dispatch::{Dispatch, DispatchCtx};
pub(crate) use handle::{Command, Line};
pub use handle::{Event, Exit, PrimaryHandle, WorkerHandle, WorkerState};
use slots::Slot;
use spawn::SpawnSettings;

use crate::error::{Error, ErrorKind, Result};
use crate::ipc::{Channel, ToWorker};
use crate::listen::Listeners;
use crate::metrics::{Board, RestartReason};

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
    /// The addresses workers may listen on.
    pub allowed: Allowed,
    pub shutdown_timeout: Duration,
    pub wait_ready: bool,
    pub ready_timeout: Duration,
    pub reload_batch: usize,
    pub backoff: Backoff,
    pub dispatch: Option<Box<dyn Dispatch>>,
    /// What the control socket and `/metrics` read (see [`crate::metrics::board`]).
    pub board: Arc<Board>,
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
    /// The worker connected its IPC channel (sent Online).
    online: bool,
    listen_error: Option<String>,
    /// Listen requests made so far (bounded: see `allow`).
    listen_requests: u32,
    /// The addresses it was given listeners for (as requested).
    asked: Vec<std::net::SocketAddr>,
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
    /// Turns over the workers that adopt given-back connections when no successor is there.
    adopt_turn: usize,
    /// SIGCHLD arrived since the last reap: some worker may have exited.
    child_exited: bool,
    /// The initial workers were started: a failed start is no longer fatal.
    started: bool,
    /// Some worker connected once: the program is a herd program (see `startup`).
    connected_once: bool,
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
            adopt_turn: 0,
            child_exited: false,
            started: false,
            connected_once: false,
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
        self.cfg.board.stopped();
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
        self.cfg.board.forked(&handle);
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
                online: false,
                listen_error: None,
                listen_requests: 0,
                asked: Vec::new(),
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
            crate::log::error(format_args!(
                "{what} for slot {slot}: {e}; retrying in {} ms",
                delay.as_millis()
            ));
            s.restart_at = Some(Instant::now() + delay);
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
        // Its idle keep-alive connections go to a worker that stays, if one does.
        let hand_back = self.stop.is_none() && self.adopters(id).next().is_some();
        self.send(id, &ToWorker::Disconnect { hand_back }, &[]);
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
                        crate::log::warn(format_args!(
                            "second stop signal: killing every worker now"
                        ));
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
                Command::StopNow => {
                    if self.stop.is_none() {
                        self.begin_stop();
                    }
                    self.force_stop();
                }
            }
        }
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
                crate::log::warn(format_args!(
                    "worker {id} (pid {}, slot {}) died: {exit}",
                    h.pid(),
                    h.slot()
                ));
            }
            self.emit(Event::Exit(h.clone(), exit));
            let slot = self.slots.get(&h.slot());
            self.cfg.board.exited(
                id,
                RestartReason::infer(
                    h.exited_after_disconnect(),
                    self.stop.is_some(),
                    slot.is_none_or(|s| s.removing),
                    slot.is_some_and(|s| s.current != Some(id) && s.incoming != Some(id)),
                ),
            );
            self.after_exit(live, exit);
        }
    }

    /// Decides what a slot does after its worker exited.
    fn after_exit(&mut self, live: Live, exit: Exit) {
        let id = live.handle.id();
        if !live.online && self.exited_unconnected(id, exit) {
            return;
        }
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
                let why = live
                    .listen_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                self.reload_failed(format!(
                    "new worker {id} for slot {slot_no} exited ({exit}) before it was ready{why}"
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
            crate::log::warn(format_args!(
                "restarting slot {slot_no} in {} ms",
                delay.as_millis()
            ));
            let why = format!("crashed ({exit}); restarting in {} ms", delay.as_millis());
            self.cfg.board.slot_down(slot_no, Some(why));
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
            .chain(self.connect_deadline())
            .chain(kills)
            .chain(reloads)
            .chain(stop)
            .chain(dispatch)
            .min()
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        self.connect_timers(now);
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
                crate::log::warn(format_args!(
                    "worker {} did not exit in time: SIGKILL",
                    live.handle.id()
                ));
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
