//! The primary: starts, watches, restarts, reloads and stops worker processes.
//!
//! The decisions are the [`supervisor`]'s, a core without I/O: this file only polls, spawns,
//! reaps, samples the workers' heartbeat pages and applies what the supervisor answers. One
//! mio loop serves signals (through signal-hook's self-pipe), commands from
//! [`PrimaryHandle`]s (crossbeam channel + mio Waker) and every worker's IPC socket; the
//! supervisor's next deadline and the health-sampling period set the poll timeout, never
//! longer than a second: each turn tells the [`Board`] that the loop turns and whether the
//! cluster is ready (what `/livez` and `/readyz` answer).
//!
//! Around it: `messages` (each worker's IPC channel, queryServer, hand-off plumbing),
//! `spawn`, `dispatch` (the hook for hand-off policies) and `handle` (what the user holds).

mod allow;
mod dispatch;
mod handle;
mod messages;
mod notify;
pub(crate) mod spawn;
mod supervisor;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
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
use dispatch::DISPATCH_BASE;
pub(crate) use dispatch::MAX_FDS_PER_FRAME;
pub use dispatch::{Dispatch, DispatchCtx};
pub use handle::{
    Cause, Event, Exit, Hang, PrimaryHandle, Restarts, SlotFailure, WorkerHandle, WorkerState,
};
pub(crate) use handle::{Command, Line};
use spawn::SpawnSettings;
pub use supervisor::OnCrashLoop;
use supervisor::{Action, Health, Input, Level, Notice, Supervisor};
pub(crate) use supervisor::{Backoff, CrashLoop, Recycling, Settings};

use crate::error::{Error, Result};
use crate::heartbeat;
use crate::ipc::{Channel, ToWorker};
use crate::listen::Listeners;
use crate::metrics::board::TICK;
use crate::metrics::{Board, RestartReason};

const SIGNALS: Token = Token(0);
const WAKER: Token = Token(1);
/// Worker `id`'s IPC socket is registered as `Token(id + TOKEN_BASE)`.
const TOKEN_BASE: usize = 2;

/// A lifecycle callback.
pub(crate) type OnEvent = Box<dyn FnMut(&Event, &PrimaryHandle)>;

/// Everything the loop needs, gathered by [`crate::Cluster`].
pub(crate) struct Config {
    pub settings: Settings,
    pub spawn: SpawnSettings,
    pub listeners: Listeners,
    pub dispatch: Option<Box<dyn Dispatch>>,
    /// The addresses workers may listen on.
    pub allowed: Allowed,
    /// What the control socket and `/metrics` read (see [`crate::metrics::board`]).
    pub board: Arc<Board>,
}

/// A worker process the primary is responsible for (the I/O side: the supervisor keeps
/// the rest).
struct Live {
    handle: WorkerHandle,
    child: Child,
    channel: Option<Channel>,
    queued: bool,
    /// Its heartbeat page.
    page: heartbeat::Page,
    /// Listen requests made so far (bounded: see `allow`).
    listen_requests: u32,
    /// The addresses it was given listeners for (as requested).
    asked: Vec<std::net::SocketAddr>,
    /// SIGKILL was sent (a zombie not reaped yet still takes another one).
    killed: bool,
}

pub(crate) struct Primary {
    cfg: Config,
    sup: Supervisor,
    poll: Poll,
    signals: Signals,
    commands: Receiver<Command>,
    handle: PrimaryHandle,
    on_event: Option<OnEvent>,
    live: HashMap<u32, Live>,
    /// Turns over the workers that adopt given-back connections when no successor is there.
    adopt_turn: usize,
    /// SIGCHLD arrived since the last reap: some worker may have exited.
    child_exited: bool,
    /// When the workers' heartbeat pages are next sampled.
    next_health: Option<Instant>,
    /// How the cluster ended, once the supervisor said.
    exit: Option<Option<Error>>,
    /// systemd's notification socket (`Type=notify`), if any.
    notifier: notify::Notifier,
    /// The primary is PID 1 (a container's init): orphans are reparented to it, and it
    /// reaps them too.
    init: bool,
}

/// How often the heartbeat pages are sampled (and so, at most, how late a hang is seen
/// after the run timeout).
fn health_every(s: &Settings) -> Duration {
    beat_every(s.run_timeout)
}

/// How often a worker's idle loop turns, so that its heartbeat stays fresh: about every
/// second, a quarter of a shorter run timeout.
pub(crate) fn beat_every(run_timeout: Duration) -> Duration {
    let mut every = Duration::from_secs(1);
    if !run_timeout.is_zero() {
        every = every.min(run_timeout / 4);
    }
    every.max(Duration::from_millis(20))
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
        let sup = Supervisor::new(cfg.settings.clone());
        Ok(Primary {
            cfg,
            sup,
            poll,
            signals,
            commands,
            handle,
            on_event,
            live: HashMap::new(),
            adopt_turn: 0,
            child_exited: false,
            next_health: None,
            exit: None,
            notifier: notify::Notifier::from_env(),
            init: std::process::id() == 1,
        })
    }

    /// Runs until the cluster has stopped.
    pub(crate) fn run(mut self) -> Result<()> {
        tracing::info!(
            pid = std::process::id(),
            workers = self.cfg.settings.workers,
            "primary started"
        );
        self.feed(Input::Start);
        if self.sup.wants_health() {
            self.next_health = Some(Instant::now() + health_every(&self.cfg.settings));
        }
        let mut events = Events::with_capacity(256);
        while self.exit.is_none() {
            let timeout = self
                .sup
                .deadline()
                .into_iter()
                .chain(self.next_health)
                .chain(self.cfg.dispatch.as_ref().and_then(|d| d.deadline()))
                .chain(self.notifier.watchdog.as_ref().map(|w| w.deadline()))
                .min()
                .map_or(TICK, |t| {
                    t.saturating_duration_since(Instant::now()).min(TICK)
                });
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
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
            let now = Instant::now();
            if self.sup.deadline().is_some_and(|t| t <= now) {
                self.feed(Input::Timer);
            }
            if self.next_health.is_some_and(|t| t <= now) {
                self.sample_health();
                self.next_health = Some(now + health_every(&self.cfg.settings));
            }
            if self
                .cfg
                .dispatch
                .as_ref()
                .and_then(|d| d.deadline())
                .is_some_and(|t| t <= now)
            {
                self.with_dispatch(|d, ctx| d.timer(ctx));
            }
            // One lock per turn: what /livez and /readyz read from the control thread.
            let now = Instant::now();
            self.cfg.board.turned(now, self.sup.unready());
            if self.notifier.watchdog.is_some() {
                let failing = self.sup.failing();
                self.notifier.watchdog(now, failing.as_deref());
            }
        }
        self.cfg.board.stopped();
        match self.exit.take().flatten() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Tells the supervisor `input` and applies what it answers (a spawn's outcome is told
    /// back at once).
    fn feed(&mut self, input: Input) {
        let mut todo: VecDeque<Action> = self.sup.handle(input, Instant::now()).into();
        while let Some(action) = todo.pop_front() {
            let more = match action {
                Action::Spawn { id, slot, restarts } => {
                    let outcome = match self.start(id, slot, restarts) {
                        Ok(pid) => Input::Forked { id, pid },
                        Err(e) => Input::SpawnFailed {
                            id,
                            error: e.to_string(),
                        },
                    };
                    self.sup.handle(outcome, Instant::now())
                }
                Action::Disconnect { id, cause } => {
                    self.disconnect(id, cause);
                    continue;
                }
                Action::Kill { id, signal, cause } => {
                    self.kill(id, signal, cause);
                    continue;
                }
                Action::Notify(n) => {
                    self.notify(n);
                    continue;
                }
                Action::Log(level, line) => {
                    match level {
                        Level::Info => tracing::info!("{line}"),
                        Level::Warn => crate::log::warn(format_args!("{line}")),
                        Level::Error => crate::log::error(format_args!("{line}")),
                        Level::Returned => tracing::error!("{line}"),
                    }
                    continue;
                }
                Action::RemoveSlot(n) => {
                    self.cfg.listeners.begin_remove_slot(n);
                    continue;
                }
                Action::SlotRemoved(n) => {
                    self.slot_removed(n);
                    self.cfg.board.slot_removed(n);
                    continue;
                }
                Action::StopListening => {
                    self.notifier.stopping();
                    // New connections are refused once the queues are taken: the workers
                    // accept what is queued on their listeners, then close them.
                    self.cfg.listeners.close_all();
                    self.with_dispatch(|d, ctx| d.stop(ctx));
                    continue;
                }
                Action::Reloaded => {
                    self.close_unused_listeners();
                    self.cfg.board.reload_finished(Ok(()));
                    self.notifier.reloaded(Ok(()));
                    continue;
                }
                Action::Exit(fatal) => {
                    self.exit = Some(fatal.map(Error::from));
                    continue;
                }
            };
            todo.extend(more);
        }
    }

    fn emit(&mut self, event: Event) {
        if let Some(cb) = self.on_event.as_mut() {
            cb(&event, &self.handle);
        }
    }

    fn notify(&mut self, n: Notice) {
        match n {
            Notice::Hung { id, stuck, doing } => {
                if let Some(h) = self.live.get(&id).map(|l| l.handle.clone()) {
                    self.emit(Event::Hung(
                        h,
                        Hang {
                            stuck,
                            request: doing,
                        },
                    ));
                }
            }
            Notice::Failed {
                slot,
                crashes,
                within,
                last,
            } => self.emit(Event::Failed(SlotFailure {
                slot,
                crashes,
                within,
                last,
            })),
            Notice::ReloadStarted => {
                self.cfg.board.reload_started();
                self.notifier.reloading();
            }
            Notice::ReloadFailed(why) => {
                self.notifier.reloaded(Err(&why));
                self.cfg.board.reload_finished(Err(why));
            }
            Notice::ReloadRefused(why) => self.cfg.board.reload_refused(&why),
            Notice::Target(n) => self.cfg.board.target(n),
            Notice::SlotDown { slot, why } => self.cfg.board.slot_down(slot, Some(why)),
            Notice::ShutdownDelay(d) => self.notifier.shutdown_delay(d),
        }
    }

    fn publish(&self) {
        let mut list: Vec<WorkerHandle> = self.live.values().map(|l| l.handle.clone()).collect();
        list.sort_by_key(|h| h.id());
        if let Ok(mut w) = self.handle.workers.lock() {
            *w = list;
        }
    }

    /// Starts worker `id` in `slot`; returns its pid.
    fn start(&mut self, id: u32, slot: usize, restarts: Restarts) -> io::Result<u32> {
        let mut page = heartbeat::Page::create()?;
        let (ours, theirs) = UnixStream::pair()?;
        let cpu = self.cfg.listeners.cpu_for(slot);
        let beat = page.fd().expect("a fresh page has its fd");
        let mut child = spawn::spawn(&self.cfg.spawn, id, slot, cpu, &theirs, beat)?;
        drop(theirs);
        page.forget_fd();
        let registered = Channel::new(ours, self.cfg.spawn.max_message).and_then(|channel| {
            self.poll.registry().register(
                &mut SourceFd(&channel.raw_fd()),
                Token(id as usize + TOKEN_BASE),
                Interest::READABLE,
            )?;
            Ok(channel)
        });
        let channel = match registered {
            Ok(channel) => channel,
            Err(e) => {
                // Started but unreachable: do not leave it running or unreaped.
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let pid = child.id();
        let handle = WorkerHandle::new(id, slot, pid, restarts, self.handle.line.clone());
        tracing::info!(worker = id, pid, slot, "worker forked");
        self.live.insert(
            id,
            Live {
                handle: handle.clone(),
                child,
                channel: Some(channel),
                queued: false,
                page,
                listen_requests: 0,
                asked: Vec::new(),
                killed: false,
            },
        );
        self.publish();
        self.cfg.board.forked(&handle);
        self.emit(Event::Fork(handle));
        Ok(pid)
    }

    fn disconnect(&mut self, id: u32, cause: Cause) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        live.handle.mark_asked_to_leave();
        live.handle.set_cause(cause);
        self.with_dispatch(|d, ctx| d.worker_leaving(id, ctx));
        // Its idle keep-alive connections go to a worker that stays, if one does.
        let hand_back = !self.sup.stopping() && self.adopters(Some(id)).next().is_some();
        self.send(id, &ToWorker::Disconnect { hand_back }, &[]);
    }

    fn kill(&mut self, id: u32, signal: i32, cause: Cause) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        live.handle.mark_asked_to_leave();
        live.handle.set_cause(cause);
        if signal == libc::SIGKILL {
            if std::mem::replace(&mut live.killed, true) {
                return;
            }
            let _ = live.child.kill();
        } else {
            let pid = nix::unistd::Pid::from_raw(live.child.id() as i32);
            if let Ok(sig) = nix::sys::signal::Signal::try_from(signal) {
                let _ = nix::sys::signal::kill(pid, sig);
            }
        }
        self.with_dispatch(|d, ctx| d.worker_leaving(id, ctx));
    }

    fn on_signals(&mut self) {
        let got: Vec<i32> = self.signals.pending().collect();
        for sig in got {
            match sig {
                SIGTERM | SIGINT => self.feed(Input::StopSignal),
                SIGHUP => self.feed(Input::Reload),
                SIGTTIN => self.feed(Input::ScaleUp),
                SIGTTOU => self.feed(Input::ScaleDown),
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
                Command::Disconnect(id) => self.feed(Input::Disconnect(id)),
                Command::Kill(id, sig) => self.feed(Input::Kill(id, sig)),
                Command::Recycle(id) => self.feed(Input::Recycle(id)),
                Command::Reload => self.feed(Input::Reload),
                Command::Scale(n) => self.feed(Input::Scale(n)),
                Command::Stop => self.feed(Input::Stop),
                // What a second SIGTERM does: stop (no shutdown delay), and SIGKILL every
                // worker now.
                Command::StopNow => {
                    if !self.sup.stopping() {
                        self.feed(Input::Stop);
                    }
                    self.feed(Input::StopSignal);
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
            h.set_cause(Cause::Crash);
            h.set_state(WorkerState::Dead);
            if h.exited_after_disconnect() || exit == Exit::Code(0) {
                tracing::info!(worker = id, pid = h.pid(), %exit, cause = %h.cause().unwrap_or(Cause::Crash), "worker exited");
            } else {
                crate::log::warn(format_args!(
                    "worker {id} (pid {}, slot {}) died: {exit}",
                    h.pid(),
                    h.slot()
                ));
            }
            self.cfg
                .board
                .exited(id, RestartReason::from(h.cause().unwrap_or(Cause::Crash)));
            self.emit(Event::Exit(h, exit));
            self.feed(Input::Exited(id, exit));
        }
        if self.init {
            self.reap_orphans();
        }
    }

    /// As PID 1, reaps every exited child that is not a worker: processes orphaned in the
    /// container were reparented to the primary, and would stay zombies. A worker's exit
    /// is only peeked at (WNOWAIT): its `Child` reaps it, so its status is not lost.
    fn reap_orphans(&mut self) {
        use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag};
        let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        // Bounded: every round reaps one zombie, or ends.
        for _ in 0..4096 {
            let Ok(Some(pid)) = waitid(Id::All, peek).map(|s| s.pid()) else {
                return; // no child has exited (or none is left)
            };
            if self
                .live
                .values()
                .any(|l| l.child.id() == pid.as_raw() as u32)
            {
                // A worker that exited since reap() looked: reaped on the next turn, and
                // the orphans behind it then.
                self.child_exited = true;
                return;
            }
            if let Ok(status) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                tracing::debug!(pid = pid.as_raw(), ?status, "reaped an orphaned process");
            }
        }
    }

    /// Reads every worker's heartbeat page (and, when a limit needs it, its memory) and
    /// tells the supervisor.
    fn sample_health(&mut self) {
        let rss = self.sup.wants_rss();
        let mut samples: Vec<(u32, Health)> = self
            .live
            .iter()
            .map(|(id, l)| {
                let s = l.page.sample();
                let health = Health {
                    beat_age: s.beat_age,
                    requests: s.requests,
                    rss: if rss { rss_of(l.child.id()) } else { None },
                    doing: s.doing.map(|(what, _)| what),
                };
                (*id, health)
            })
            .collect();
        samples.sort_by_key(|(id, _)| *id);
        for (id, h) in samples {
            self.feed(Input::Health(id, h));
        }
    }

    /// A removed slot's last worker is gone: what still waits in the slot's queue goes to
    /// the other workers, then its listeners close.
    fn slot_removed(&mut self, n: usize) {
        let queued = self.cfg.listeners.finish_remove_slot(n);
        tracing::info!(slot = n, moved = queued.len(), "slot removed");
        let mut takers: Vec<u32> = self.adopters(None).collect();
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
}

impl Primary {
    /// After a reload every slot runs the new program: a listener none of them asked for
    /// (the new build serves fewer addresses) would queue connections nobody accepts.
    fn close_unused_listeners(&mut self) {
        let slots = self.sup.slots();
        let current: HashMap<usize, &[std::net::SocketAddr]> = slots
            .iter()
            .filter_map(|n| {
                let id = self.sup.current(*n)?;
                // A worker not ready yet may still ask: keep its slot's listeners.
                let live = self.live.get(&id).filter(|_| self.sup.is_ready(id))?;
                Some((*n, live.asked.as_slice()))
            })
            .collect();
        let waiting: Vec<usize> = slots
            .iter()
            .copied()
            .filter(|n| !current.contains_key(n))
            .collect();
        self.cfg.listeners.close_unused(&slots, |addr, slot| {
            waiting.contains(&slot) || current.get(&slot).is_some_and(|a| a.contains(&addr))
        });
    }
}

/// The resident memory of process `pid`, from /proc (one read).
fn rss_of(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some(pages * page)
}
