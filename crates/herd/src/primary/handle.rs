//! What the primary's user sees: worker handles, the primary handle, and lifecycle events.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

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

/// A request from a handle to the primary's loop.
#[derive(Debug)]
pub(crate) enum Command {
    Send(u32, Vec<u8>),
    Broadcast(Vec<u8>),
    Disconnect(u32),
    Kill(u32, i32),
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
    state: AtomicU8,
    after_disconnect: AtomicBool,
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
    pub(crate) fn new(id: u32, slot: usize, pid: u32, line: Line) -> WorkerHandle {
        WorkerHandle(Arc::new(Shared {
            id,
            slot,
            pid,
            state: AtomicU8::new(0),
            after_disconnect: AtomicBool::new(false),
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
    /// The worker process ended.
    Exit(WorkerHandle, Exit),
}
