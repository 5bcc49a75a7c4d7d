//! The supervisor's rules, without I/O: what the primary does when something happens to a
//! worker.
//!
//! Like [`crate::http`]'s connection (bytes in, bytes out), the [`Supervisor`] takes
//! [`Input`]s (a worker forked, came online, listens, is ready, exited; a health sample;
//! a timer; a command) with the time passed in, and answers with [`Action`]s (spawn into a
//! slot, disconnect, kill with a signal, notify, log, exit the cluster). It owns no socket,
//! process or clock: `primary/mod.rs` polls, spawns, talks IPC and applies the actions, and
//! the table tests in `tests.rs` drive it with sequences of inputs.
//!
//! Each rule lives in the file named for it:
//!
//! | file | rule |
//! |---|---|
//! | `slots.rs` | a slot's lifecycle: its current worker, the replacement on its way, restarts by cause |
//! | `backoff.rs` | the restart delay after a crash |
//! | `boot.rs` | starting: a worker must connect, listen and be ready in time |
//! | `crash_loop.rs` | a slot that keeps failing is reported (and may stop the cluster) |
//! | `watchdog.rs` | a worker whose loop stopped turning is replaced and killed |
//! | `recycle.rs` | a worker at its request, lifetime or memory limit is replaced, new before old |
//! | `reload.rs` | the rolling reload, top to bottom |
//! | `scale.rs` | adding and removing slots |
//! | `stop.rs` | stopping the cluster |
//!
//! Timers are not armed one by one: like a connection's deadline, [`Supervisor::deadline`]
//! says when the next one is due and [`Input::Timer`] runs every rule whose time has come.

mod backoff;
mod boot;
mod crash_loop;
mod recycle;
mod reload;
mod scale;
mod slots;
mod stop;
mod watchdog;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(crate) use backoff::Backoff;
pub(crate) use crash_loop::CrashLoop;
pub use crash_loop::OnCrashLoop;
pub(crate) use recycle::Recycling;
use slots::Slot;

use super::handle::{Cause, Exit, Restarts};
use crate::error::{Error, ErrorKind};

/// The settings the rules follow (gathered by [`crate::Cluster`]).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub workers: usize,
    /// The worker program, for messages.
    pub exec: String,
    pub wait_ready: bool,
    /// How long a reload or a recycle waits for the new worker to be ready.
    pub ready_timeout: Duration,
    /// How long a disconnected worker may take to leave, and a stop to finish.
    pub shutdown_timeout: Duration,
    /// How long a stop signal leaves the cluster serving (not ready) before it drains.
    pub shutdown_delay: Duration,
    pub reload_batch: usize,
    pub backoff: Backoff,
    /// Fork to ready (listening, or `ready()` with `wait_ready`); zero: off.
    pub boot_timeout: Duration,
    /// The longest a worker's loop may go without turning; zero: off.
    pub run_timeout: Duration,
    pub recycling: Recycling,
    pub crash_loop: CrashLoop,
}

/// Something that happened, told to [`Supervisor::handle`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Input {
    /// The primary's loop starts: start the configured workers.
    Start,
    /// [`Action::Spawn`] for worker `id` succeeded: its process is `pid`.
    Forked { id: u32, pid: u32 },
    /// [`Action::Spawn`] for worker `id` failed.
    SpawnFailed { id: u32, error: String },
    /// The worker connected its IPC channel.
    Online(u32),
    /// A listen request of the worker failed (a worker that exits without ever listening
    /// after this stops the cluster with this reason).
    ListenFailed(u32, String),
    /// The worker serves.
    Listening(u32),
    /// The worker called `ready()`.
    Ready(u32),
    /// The worker process ended.
    Exited(u32, Exit),
    /// A health sample (the primary takes one per worker about every second).
    Health(u32, Health),
    /// Time passed: run the rules whose deadline has come.
    Timer,
    /// SIGTERM/SIGINT: a graceful stop; a second one kills every worker.
    StopSignal,
    /// [`PrimaryHandle::stop`](super::PrimaryHandle::stop): a graceful stop (never forced).
    Stop,
    /// SIGHUP or [`PrimaryHandle::reload`](super::PrimaryHandle::reload).
    Reload,
    /// SIGTTIN/SIGTTOU or [`PrimaryHandle::scale`](super::PrimaryHandle::scale).
    Scale(usize),
    /// SIGTTIN: one more.
    ScaleUp,
    /// SIGTTOU: one fewer (never below one).
    ScaleDown,
    /// [`WorkerHandle::recycle`](super::WorkerHandle::recycle): replace it, new before old.
    Recycle(u32),
    /// [`WorkerHandle::disconnect`](super::WorkerHandle::disconnect).
    Disconnect(u32),
    /// [`WorkerHandle::kill`](super::WorkerHandle::kill) with this signal.
    Kill(u32, i32),
}

/// What the primary read about a worker (see `primary/heartbeat.rs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Health {
    /// How long since the worker's loop last turned; `None` while it runs no loop that beats.
    pub beat_age: Option<Duration>,
    /// Requests the worker has served.
    pub requests: u64,
    /// Resident memory, when sampled.
    pub rss: Option<u64>,
    /// The request in progress, `METHOD target`, if one is.
    pub doing: Option<String>,
}

/// What the supervisor wants done.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Start worker `id` in `slot`; answer with [`Input::Forked`] or [`Input::SpawnFailed`].
    Spawn {
        id: u32,
        slot: usize,
        restarts: Restarts,
    },
    /// Ask the worker to finish and leave.
    Disconnect { id: u32, cause: Cause },
    /// Send `signal` to the worker.
    Kill { id: u32, signal: i32, cause: Cause },
    /// Tell the application.
    Notify(Notice),
    /// One line for the operator.
    Log(Level, String),
    /// Steer new connections away from `slot`'s listeners (scale-down).
    RemoveSlot(usize),
    /// `slot`'s last worker is gone: move what its listeners still queue, close them.
    SlotRemoved(usize),
    /// A stop began: refuse new connections.
    StopListening,
    /// A rolling reload completed: every slot runs the new program.
    Reloaded,
    /// The cluster is done: exit, with this error if it failed.
    Exit(Option<Fatal>),
}

/// Why the cluster ended badly: [`Action::Exit`]'s error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fatal {
    pub kind: ErrorKind,
    pub message: String,
}

impl Fatal {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Fatal {
        Fatal {
            kind,
            message: message.into(),
        }
    }
}

impl From<Fatal> for Error {
    fn from(f: Fatal) -> Error {
        Error::new(f.kind, f.message)
    }
}

/// How loud a [`Action::Log`] line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Info,
    Warn,
    Error,
    /// An error the cluster also returns from `Cluster::run`: the application reports it,
    /// so it goes to a tracing subscriber only (told once either way).
    Returned,
}

/// An event for the application's `on_event` beyond Node's lifecycle ones.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Notice {
    /// Worker `id`'s loop has not turned for `stuck`, in `doing`.
    Hung {
        id: u32,
        stuck: Duration,
        doing: Option<String>,
    },
    /// `slot` failed `crashes` times within `within`; the last ended with `last`.
    Failed {
        slot: usize,
        crashes: u32,
        within: Duration,
        last: Exit,
    },
    /// A rolling reload started: the next generation (for the control plane and metrics).
    ReloadStarted,
    /// The reload running stopped for this reason; the old workers keep serving.
    ReloadFailed(String),
    /// A reload was asked for and not started, for this reason.
    ReloadRefused(String),
    /// The cluster now aims at this many workers.
    Target(usize),
    /// `slot` has no worker until its restart, for this reason.
    SlotDown { slot: usize, why: String },
    /// A stop signal arrived: the cluster reports not ready and serves on for this long
    /// before it drains.
    ShutdownDelay(Duration),
}

/// A worker the supervisor is responsible for, from its spawn to its exit.
#[derive(Debug)]
struct Worker {
    slot: usize,
    /// 0 until [`Input::Forked`].
    pid: u32,
    forked: Instant,
    online: bool,
    listened: bool,
    /// Listening (or `ready()` under `wait_ready`).
    ready: bool,
    listen_error: Option<String>,
    /// Why it was asked to leave, once it was.
    leaving: Option<Cause>,
    /// The next escalation: SIGKILL at this moment.
    kill_at: Option<Instant>,
    /// SIGKILL was sent.
    killed: bool,
    /// Its recycling limits (jittered per worker).
    limits: recycle::Limits,
}

/// The supervisor: every slot and worker, and the operations in progress.
#[derive(Debug)]
pub(crate) struct Supervisor {
    s: Settings,
    slots: BTreeMap<usize, Slot>,
    workers: BTreeMap<u32, Worker>,
    next_id: u32,
    reload: Option<reload::Reload>,
    recycle: Option<recycle::InFlight>,
    stop: Option<stop::Stop>,
    /// A stop signal's shutdown delay runs until then: not ready, still serving.
    delay_until: Option<Instant>,
    /// Set by a rule that ends the cluster (reported by the exit).
    fatal: Option<Fatal>,
    /// The rule that set `fatal` said so itself: the stop does not repeat it.
    fatal_said: bool,
    /// Some worker has connected: the program is a herd program.
    connected_once: bool,
    /// [`Action::Exit`] was returned.
    exited: bool,
    out: Vec<Action>,
}

impl Supervisor {
    pub(crate) fn new(s: Settings) -> Supervisor {
        Supervisor {
            s,
            slots: BTreeMap::new(),
            workers: BTreeMap::new(),
            next_id: 1,
            reload: None,
            recycle: None,
            stop: None,
            delay_until: None,
            fatal: None,
            fatal_said: false,
            connected_once: false,
            exited: false,
            out: Vec::new(),
        }
    }

    /// Applies `input` at `now`; returns what to do, in order.
    pub(crate) fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        match input {
            Input::Start if self.s.workers == 0 => {
                self.log(
                    Level::Info,
                    "no workers configured: nothing to supervise".into(),
                );
                self.exited = true;
                self.out.push(Action::Exit(None));
            }
            Input::Start => {
                for _ in 0..self.s.workers {
                    let slot = self.free_slot();
                    self.slots.insert(slot, Slot::default());
                    self.spawn(slot, false, now);
                }
            }
            Input::Forked { id, pid } => self.forked(id, pid),
            Input::SpawnFailed { id, error } => self.spawn_failed(id, &error, now),
            Input::Online(id) => self.online(id),
            Input::ListenFailed(id, why) => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.listen_error = Some(why);
                }
            }
            Input::Listening(id) => self.listening(id, now),
            Input::Ready(id) => self.ready(id, now),
            Input::Exited(id, exit) => self.exited(id, exit, now),
            Input::Health(id, h) => {
                self.watch(id, &h, now);
                self.recycle_if_due(id, &h, now);
            }
            Input::Timer => self.timers(now),
            Input::StopSignal => self.stop_signal(now),
            Input::Stop => self.begin_stop(now),
            Input::Reload => self.begin_reload(now),
            Input::Scale(n) => self.scale(n, now),
            Input::ScaleUp => self.scale(self.active_slots() + 1, now),
            Input::ScaleDown => self.scale(self.active_slots().saturating_sub(1), now),
            Input::Recycle(id) => self.recycle(id, "asked to".into(), now),
            Input::Disconnect(id) => self.disconnect(id, Cause::User, now),
            Input::Kill(id, signal) => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.leaving.get_or_insert(Cause::User);
                    self.out.push(Action::Kill {
                        id,
                        signal,
                        cause: Cause::User,
                    });
                }
            }
        }
        self.settle(now);
        std::mem::take(&mut self.out)
    }

    /// When [`Input::Timer`] is next due, if ever.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let restarts = self.slots.values().filter_map(|s| s.restart_at);
        let kills = self.workers.values().filter_map(|w| w.kill_at);
        let boots = self.workers.keys().filter_map(|id| self.boot_deadline(*id));
        restarts
            .chain(kills)
            .chain(boots)
            .chain(self.reload_deadline())
            .chain(self.recycle_deadline())
            .chain(self.stop.as_ref().map(|s| s.deadline))
            .chain(self.delay_until)
            .min()
    }

    /// The worker serving `slot` now (a reload's successor once it took over).
    pub(crate) fn current(&self, slot: usize) -> Option<u32> {
        self.slots.get(&slot).and_then(|s| s.current)
    }

    /// Whether worker `id` listens and was not asked to leave: it can take connections.
    pub(crate) fn serving(&self, id: u32) -> bool {
        self.workers
            .get(&id)
            .is_some_and(|w| w.listened && w.ready && w.leaving.is_none())
    }

    /// Whether worker `id` is ready (listening, or `ready()` under `wait_ready`).
    pub(crate) fn is_ready(&self, id: u32) -> bool {
        self.workers.get(&id).is_some_and(|w| w.ready)
    }

    /// Every slot, in order (those being removed too).
    pub(crate) fn slots(&self) -> Vec<usize> {
        self.slots.keys().copied().collect()
    }

    /// Whether worker `id` listens (it may be leaving).
    pub(crate) fn listened(&self, id: u32) -> bool {
        self.workers.get(&id).is_some_and(|w| w.listened)
    }

    /// Whether every slot has a current worker that is ready (listening, or `ready()`
    /// under `wait_ready`).
    pub(crate) fn all_ready(&self) -> bool {
        let mut slots = self.slots.values().filter(|s| !s.removing).peekable();
        slots.peek().is_some()
            && slots.all(|s| {
                s.current
                    .is_some_and(|id| self.workers.get(&id).is_some_and(|w| w.ready))
            })
    }

    /// Why the cluster should not be sent traffic now (`/readyz`), or `None` when every
    /// slot has a ready worker, no slot crash-loops and the cluster is not stopping. A
    /// reload in progress (or one that failed, the old workers serving on) is ready.
    pub(crate) fn unready(&self) -> Option<String> {
        if self.stop.is_some() {
            return Some("stopping: the workers are draining".into());
        }
        if self.delay_until.is_some() {
            return Some("shutting down: serving out the shutdown delay, then draining".into());
        }
        if let Some(n) = self.slots.iter().find(|(_, s)| s.failed).map(|(n, _)| n) {
            return Some(format!("slot {n} crash-loops"));
        }
        if !self.all_ready() {
            let active = self.active_slots();
            let ready = self
                .slots
                .values()
                .filter(|s| !s.removing)
                .filter(|s| s.current.is_some_and(|id| self.is_ready(id)))
                .count();
            return Some(format!("{ready} of {active} workers ready"));
        }
        None
    }

    /// Whether the cluster is failing now, and how (for systemd's watchdog): a slot
    /// crash-loops, or not one worker is ready. A stopping cluster is not failing.
    pub(crate) fn failing(&self) -> Option<String> {
        if self.stop.is_some() {
            return None;
        }
        if let Some(n) = self.slots.iter().find(|(_, s)| s.failed).map(|(n, _)| n) {
            return Some(format!("slot {n} crash-loops"));
        }
        let any_ready = self
            .slots
            .values()
            .any(|s| s.current.is_some_and(|id| self.is_ready(id)));
        (!any_ready).then(|| "no worker is ready".to_string())
    }

    /// Whether the cluster is stopping.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.is_some()
    }

    /// Whether any rule needs health samples.
    pub(crate) fn wants_health(&self) -> bool {
        !self.s.run_timeout.is_zero() || self.s.recycling.any()
    }

    /// Whether health samples should include the resident memory.
    pub(crate) fn wants_rss(&self) -> bool {
        self.s.recycling.max_rss.is_some()
    }

    /// Slots that are not being removed.
    pub(crate) fn active_slots(&self) -> usize {
        self.slots.values().filter(|s| !s.removing).count()
    }

    pub(super) fn free_slot(&self) -> usize {
        (0..)
            .find(|s| !self.slots.contains_key(s))
            .expect("a free slot")
    }

    pub(super) fn log(&mut self, level: Level, line: String) {
        self.out.push(Action::Log(level, line));
    }

    /// Starts a worker in `slot`: as its current worker, or (`incoming`) as the replacement
    /// a reload or recycle waits for. Returns its id.
    pub(super) fn spawn(&mut self, slot: usize, incoming: bool, now: Instant) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let restarts = self
            .slots
            .get(&slot)
            .map(|s| s.restarts)
            .unwrap_or_default();
        if let Some(s) = self.slots.get_mut(&slot) {
            s.started(id, incoming);
        }
        let limits = self.s.recycling.limits_for(id);
        self.workers.insert(
            id,
            Worker {
                slot,
                pid: 0,
                forked: now,
                online: false,
                listened: false,
                ready: false,
                listen_error: None,
                leaving: None,
                kill_at: None,
                killed: false,
                limits,
            },
        );
        self.out.push(Action::Spawn { id, slot, restarts });
        id
    }

    fn forked(&mut self, id: u32, pid: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.pid = pid;
        // Asked to leave before its fork was reported (a stop that began meanwhile).
        match w.leaving {
            Some(cause) if w.killed => self.out.push(Action::Kill {
                id,
                signal: libc::SIGKILL,
                cause,
            }),
            Some(cause) => self.out.push(Action::Disconnect { id, cause }),
            None => {}
        }
    }

    fn online(&mut self, id: u32) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.online = true;
            self.connected_once = true;
        }
    }

    fn listening(&mut self, id: u32, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.listened = true;
        if !self.s.wait_ready && !w.ready {
            self.ready(id, now);
        }
    }

    fn ready(&mut self, id: u32, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if std::mem::replace(&mut w.ready, true) {
            return;
        }
        let slot = w.slot;
        if w.leaving.is_none() && self.slots.get(&slot).and_then(|s| s.incoming) == Some(id) {
            self.replacement_ready(slot, id, now);
        }
    }

    /// A slot's incoming worker is ready: the reload or recycle that started it goes on.
    pub(super) fn replacement_ready(&mut self, slot: usize, id: u32, now: Instant) {
        if self.recycling(id) {
            self.recycled(slot, id, now);
        } else {
            self.reloaded(slot, id, now);
        }
    }

    /// A slot's incoming worker failed (`what`): the reload or recycle that started it
    /// stops.
    pub(super) fn replacement_failed(&mut self, slot: usize, id: u32, what: String, now: Instant) {
        if self.recycling(id) {
            self.recycle_failed(slot, id, what, now);
        } else if self.reloading(id) {
            self.reload_failed(what, now);
        }
    }

    /// Asks worker `id` to leave for `cause` (SIGKILL after the shutdown timeout).
    pub(super) fn disconnect(&mut self, id: u32, cause: Cause, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.killed || w.leaving.is_some() && w.kill_at.is_some() {
            return;
        }
        w.leaving.get_or_insert(cause);
        w.kill_at.get_or_insert(now + self.s.shutdown_timeout);
        if w.pid != 0 {
            self.out.push(Action::Disconnect { id, cause });
        }
    }

    /// SIGKILLs worker `id` now; true the first time.
    pub(super) fn sigkill(&mut self, id: u32, cause: Cause) -> bool {
        let Some(w) = self.workers.get_mut(&id) else {
            return false;
        };
        w.leaving.get_or_insert(cause);
        w.kill_at = None;
        if std::mem::replace(&mut w.killed, true) {
            return false;
        }
        let cause = w.leaving.unwrap_or(cause);
        self.out.push(Action::Kill {
            id,
            signal: libc::SIGKILL,
            cause,
        });
        true
    }

    fn timers(&mut self, now: Instant) {
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
                self.spawn(slot, false, now);
            }
        }
        let late: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.kill_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            // A hung worker's SIGKILL was announced with the hang.
            let said = self
                .workers
                .get(&id)
                .is_some_and(|w| w.killed || w.leaving == Some(Cause::Hang));
            if !said {
                self.log(
                    Level::Warn,
                    format!("worker {id} did not exit in time: SIGKILL"),
                );
            }
            let cause = self.workers.get(&id).and_then(|w| w.leaving);
            if self.sigkill(id, cause.unwrap_or(Cause::User)) {
                if let Some(stop) = self.stop.as_mut() {
                    stop.killed += 1;
                }
            }
        }
        self.boot_timers(now);
        self.reload_timers(now);
        self.recycle_timers(now);
        self.stop_timers(now);
    }

    /// Stops the cluster with `e` (the first fatal error wins).
    pub(super) fn fail(&mut self, e: Fatal) {
        if self.fatal.is_none() {
            self.fatal = Some(e);
        }
    }

    /// After every input: a fatal error starts the stop; a finished stop exits.
    fn settle(&mut self, now: Instant) {
        if self.stop.is_none() {
            if let Some(e) = &self.fatal {
                if !self.fatal_said {
                    let line = format!("{}; stopping", e.message);
                    self.log(Level::Returned, line);
                }
                self.begin_stop(now);
            }
        }
        if self.stop.is_some() && self.workers.is_empty() && !self.exited {
            self.exited = true;
            let result = self.stop_result();
            self.out.push(Action::Exit(result));
        }
    }
}

/// A deterministic spread in `0..=jitter` for worker `id` (splitmix64): workers with the
/// same limit reach it at different moments, and a test sees the same spread every run.
pub(crate) fn spread(id: u32, jitter: u64) -> u64 {
    if jitter == 0 {
        return 0;
    }
    let mut z = u64::from(id).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z % (jitter + 1)
}
