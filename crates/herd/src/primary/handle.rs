//! What the primary's user sees: worker handles, the primary handle, and lifecycle events.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use mio::Waker;

use crate::error::{Error, ErrorKind, Result};

/// A worker's state, in Node's order: none → online → listening → disconnected → dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkerState {
    /// Forked; not yet connected.
    None,
    /// The worker process started and connected its IPC channel.
    Online,
    /// The worker listens (serves) on an address.
    Listening,
    /// The IPC channel is closed; the process may still be exiting.
    Disconnected,
    /// The process exited.
    Dead,
}

impl WorkerState {
    fn from_u8(v: u8) -> WorkerState {
        match v {
            0 => WorkerState::None,
            1 => WorkerState::Online,
            2 => WorkerState::Listening,
            3 => WorkerState::Disconnected,
            _ => WorkerState::Dead,
        }
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal (this number) ended it.
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "code {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(*s) {
                Ok(sig) => write!(f, "signal {}", sig.as_str()),
                Err(_) => write!(f, "signal {s}"),
            },
        }
    }
}

/// Why a worker left, or was replaced ([`WorkerHandle::cause`], [`WorkerHandle::restarts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// It ended without being asked to (a crash, an exit of its own).
    Crash,
    /// Its loop stopped turning (the run timeout), or it never became ready (the boot
    /// timeout): it was killed.
    Hang,
    /// It reached a recycling limit (requests, lifetime, memory) or
    /// [`WorkerHandle::recycle`] was called: replaced, new before old.
    Recycle,
    /// A rolling reload replaced it.
    Reload,
    /// A scale-down removed its slot.
    Scale,
    /// The cluster stopped.
    Stop,
    /// The application asked ([`WorkerHandle::disconnect`], [`WorkerHandle::kill`]).
    User,
}

impl Cause {
    fn to_u8(self) -> u8 {
        match self {
            Cause::Crash => 1,
            Cause::Hang => 2,
            Cause::Recycle => 3,
            Cause::Reload => 4,
            Cause::Scale => 5,
            Cause::Stop => 6,
            Cause::User => 7,
        }
    }

    fn from_u8(v: u8) -> Option<Cause> {
        Some(match v {
            1 => Cause::Crash,
            2 => Cause::Hang,
            3 => Cause::Recycle,
            4 => Cause::Reload,
            5 => Cause::Scale,
            6 => Cause::Stop,
            7 => Cause::User,
            _ => return None,
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Crash => "crash",
            Cause::Hang => "hang",
            Cause::Recycle => "recycle",
            Cause::Reload => "reload",
            Cause::Scale => "scale",
            Cause::Stop => "stop",
            Cause::User => "user",
        })
    }
}

/// How often a slot's worker was replaced, by cause, up to the start of a worker
/// ([`WorkerHandle::restarts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restarts {
    /// After a crash.
    pub crash: u32,
    /// After a hang (run or boot timeout).
    pub hang: u32,
    /// By recycling.
    pub recycle: u32,
    /// By a rolling reload.
    pub reload: u32,
}

impl Restarts {
    /// The sum over every cause.
    pub fn total(&self) -> u32 {
        self.crash + self.hang + self.recycle + self.reload
    }

    pub(crate) fn count(&mut self, cause: Cause) {
        match cause {
            Cause::Crash => self.crash += 1,
            Cause::Hang => self.hang += 1,
            Cause::Recycle => self.recycle += 1,
            Cause::Reload => self.reload += 1,
            Cause::Scale | Cause::Stop | Cause::User => {}
        }
    }
}

/// What [`Event::Hung`] says about a hung worker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hang {
    /// How long its loop had not turned.
    pub stuck: Duration,
    /// The request it was in (`METHOD target`, the target cut at 200 bytes), if any.
    pub request: Option<String>,
}

/// What [`Event::Failed`] says about a crash-looping slot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotFailure {
    /// The slot (0-based).
    pub slot: usize,
    /// Failures counted within the window.
    pub crashes: u32,
    /// The time from the first to the last of them.
    pub within: Duration,
    /// How the last one ended.
    pub last: Exit,
}

/// A request from a handle to the primary's loop.
#[derive(Debug)]
pub(crate) enum Command {
    Send(u32, Vec<u8>),
    Broadcast(Vec<u8>),
    Disconnect(u32),
    Kill(u32, i32),
    Recycle(u32),
    Reload,
    Scale(usize),
    Stop,
    /// Stop, and SIGKILL every worker now (what a second SIGTERM does).
    StopNow,
}

/// The shared line from any handle into the primary's loop.
#[derive(Clone)]
pub(crate) struct Line {
    pub tx: Sender<Command>,
    pub waker: Arc<Waker>,
    pub max_message: usize,
}

impl Line {
    pub(crate) fn push(&self, c: Command) -> Result<()> {
        self.tx
            .send(c)
            .map_err(|_| Error::new(ErrorKind::NotConnected, "the primary has stopped"))?;
        self.waker
            .wake()
            .map_err(|e| Error::io("cannot wake the primary's loop", e))
    }

    fn check_size(&self, len: usize) -> Result<()> {
        if len > self.max_message {
            return Err(Error::new(
                ErrorKind::MessageTooLarge,
                format!(
                    "message of {len} bytes exceeds the IPC limit of {} bytes (raise it with Cluster::max_message_bytes)",
                    self.max_message
                ),
            ));
        }
        Ok(())
    }
}

pub(crate) struct Shared {
    pub id: u32,
    pub slot: usize,
    pub pid: u32,
    restarts: Restarts,
    state: AtomicU8,
    after_disconnect: AtomicBool,
    cause: AtomicU8,
    line: Line,
}

/// The primary's handle on one worker (Node's `Worker` in the primary). Cheap to clone;
/// usable from any thread.
#[derive(Clone)]
pub struct WorkerHandle(pub(crate) Arc<Shared>);

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("id", &self.id())
            .field("slot", &self.slot())
            .field("pid", &self.pid())
            .field("state", &self.state())
            .finish()
    }
}

impl WorkerHandle {
    pub(crate) fn new(
        id: u32,
        slot: usize,
        pid: u32,
        restarts: Restarts,
        line: Line,
    ) -> WorkerHandle {
        WorkerHandle(Arc::new(Shared {
            id,
            slot,
            pid,
            restarts,
            state: AtomicU8::new(0),
            after_disconnect: AtomicBool::new(false),
            cause: AtomicU8::new(0),
            line,
        }))
    }

    /// The worker's id: 1, 2, 3, ... never reused.
    pub fn id(&self) -> u32 {
        self.0.id
    }

    /// The worker's slot (0-based); a replacement takes its predecessor's slot.
    pub fn slot(&self) -> usize {
        self.0.slot
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.0.pid
    }

    /// Where the worker is in its life.
    pub fn state(&self) -> WorkerState {
        WorkerState::from_u8(self.0.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, s: WorkerState) {
        self.0.state.store(s as u8, Ordering::Release);
    }

    /// Whether the IPC channel is open (Node's `isConnected()`).
    pub fn is_connected(&self) -> bool {
        matches!(self.state(), WorkerState::Online | WorkerState::Listening)
    }

    /// Whether the process has exited (Node's `isDead()`).
    pub fn is_dead(&self) -> bool {
        self.state() == WorkerState::Dead
    }

    /// True only when the worker ended because herd or the user asked it to (disconnect,
    /// kill, reload, scale-down, stop); false after a crash (Node's `exitedAfterDisconnect`).
    pub fn exited_after_disconnect(&self) -> bool {
        self.0.after_disconnect.load(Ordering::Acquire)
    }

    pub(crate) fn mark_asked_to_leave(&self) {
        self.0.after_disconnect.store(true, Ordering::Release);
    }

    /// Why the worker left or is leaving: `None` while it serves and nobody asked it to
    /// go; [`Cause::Crash`] once it ended on its own.
    pub fn cause(&self) -> Option<Cause> {
        Cause::from_u8(self.0.cause.load(Ordering::Acquire))
    }

    /// Records why the worker leaves (the first cause stays).
    pub(crate) fn set_cause(&self, cause: Cause) {
        let _ =
            self.0
                .cause
                .compare_exchange(0, cause.to_u8(), Ordering::AcqRel, Ordering::Acquire);
    }

    /// How often this worker's slot had its worker replaced, by cause, up to this worker's
    /// start (this worker's own start included: a worker started after a crash counts it).
    pub fn restarts(&self) -> Restarts {
        self.0.restarts
    }

    /// Replaces the worker new before old (as a recycling limit does): a new worker starts
    /// in its slot, and this one is disconnected once the new one is ready. Ignored while a
    /// reload, another recycle or a stop is in progress.
    pub fn recycle(&self) {
        let _ = self.0.line.push(Command::Recycle(self.id()));
    }

    /// Sends a message to the worker.
    ///
    /// # Errors
    /// [`ErrorKind::MessageTooLarge`] over the IPC limit; [`ErrorKind::NotConnected`] when
    /// the primary has stopped.
    pub fn send(&self, message: impl Into<Vec<u8>>) -> Result<()> {
        let message = message.into();
        self.0.line.check_size(message.len())?;
        self.0.line.push(Command::Send(self.id(), message))
    }

    /// Graceful stop: the worker stops accepting, finishes what is in flight and exits
    /// (SIGKILL after the cluster's shutdown timeout). Its slot is refilled unless the cluster
    /// is stopping.
    pub fn disconnect(&self) {
        self.mark_asked_to_leave();
        let _ = self.0.line.push(Command::Disconnect(self.id()));
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the worker, without a disconnect.
    pub fn kill(&self, signal: i32) {
        self.mark_asked_to_leave();
        let _ = self.0.line.push(Command::Kill(self.id(), signal));
    }
}

/// A handle on the primary's loop, usable from any thread (Node's `cluster` object in the
/// primary).
#[derive(Clone)]
pub struct PrimaryHandle {
    pub(crate) line: Line,
    pub(crate) workers: Arc<Mutex<Vec<WorkerHandle>>>,
}

impl fmt::Debug for PrimaryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrimaryHandle")
            .field("workers", &self.workers())
            .finish()
    }
}

impl PrimaryHandle {
    /// The live workers (Node's `cluster.workers`), in id order.
    pub fn workers(&self) -> Vec<WorkerHandle> {
        self.workers.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Sends `message` to every connected worker.
    ///
    /// # Errors
    /// As [`WorkerHandle::send`].
    pub fn broadcast(&self, message: impl Into<Vec<u8>>) -> Result<()> {
        let message = message.into();
        self.line.check_size(message.len())?;
        self.line.push(Command::Broadcast(message))
    }

    /// Starts a rolling reload (what SIGHUP does): one slot at a time, a new worker from the
    /// executable now at the path; the old one disconnects once the new one is ready.
    pub fn reload(&self) {
        let _ = self.line.push(Command::Reload);
    }

    /// Changes the number of workers (at least 1).
    pub fn scale(&self, workers: usize) {
        let _ = self.line.push(Command::Scale(workers));
    }

    /// Graceful stop of the whole cluster (what SIGTERM does; Node's `cluster.disconnect()`).
    pub fn stop(&self) {
        let _ = self.line.push(Command::Stop);
    }
}

/// A lifecycle event in the primary, in Node's order for each worker:
/// fork, online, listening, (message...), disconnect, exit.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A worker process was started.
    Fork(WorkerHandle),
    /// The worker connected its IPC channel.
    Online(WorkerHandle),
    /// The worker serves on this (real) address.
    Listening(WorkerHandle, SocketAddr),
    /// The worker sent a message.
    Message(WorkerHandle, Vec<u8>),
    /// The worker's IPC channel closed.
    Disconnect(WorkerHandle),
    /// The worker process ended ([`WorkerHandle::cause`] says why).
    Exit(WorkerHandle, Exit),
    /// The worker's loop has not turned for the run timeout: a replacement is starting in
    /// its slot and the worker is being killed.
    Hung(WorkerHandle, Hang),
    /// A slot crash-looped (see [`Cluster::crash_loop`](crate::Cluster::crash_loop)).
    Failed(SlotFailure),
}
