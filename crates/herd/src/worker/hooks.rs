//! The event loop's view of the IPC channel: disconnect requests and handed-over connections
//! go to the loop, user messages to the worker's callback, and the loop's news (listening,
//! acknowledgements, load) back to the primary.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::{OnMessage, WorkerEvent, WorkerSender};
use crate::event_loop::{Hooks, Inbound};
use crate::ipc::{Channel, Received, ToPrimary, ToWorker};

/// The least time between two load reports.
const LOAD_EVERY: Duration = Duration::from_millis(20);

pub(super) struct WorkerHooks {
    pub(super) channel: Channel,
    pub(super) sender: WorkerSender,
    pub(super) on_message: Option<OnMessage>,
    pub(super) early: Vec<WorkerEvent>,
    pub(super) early_conns: Vec<TcpStream>,
    pub(super) report_load: bool,
    pub(super) last_load: Option<(Instant, usize)>,
    /// The addresses this worker serves (its own listeners and hand-off addresses alike).
    pub(super) announce: Vec<SocketAddr>,
}

impl WorkerHooks {
    fn message(&mut self, m: &[u8]) {
        match self.on_message.as_mut() {
            Some(f) => f(m),
            None => tracing::debug!("message from the primary with no on_message callback"),
        }
    }
}

impl Hooks for WorkerHooks {
    fn fd(&self) -> Option<RawFd> {
        Some(self.channel.raw_fd())
    }

    fn read(&mut self, inbound: &mut Vec<Inbound>) -> io::Result<()> {
        for ev in std::mem::take(&mut self.early) {
            match ev {
                WorkerEvent::Message(m) => self.message(&m),
                WorkerEvent::Disconnect => inbound.push(Inbound::Disconnect),
            }
        }
        if !self.early_conns.is_empty() {
            inbound.push(Inbound::Connections(std::mem::take(&mut self.early_conns)));
        }
        let open = self.channel.fill()?;
        while let Some(r) = self.channel.next::<ToWorker>() {
            match r {
                Received::Message(ToWorker::Message(m), _) => self.message(&m),
                Received::Message(ToWorker::Disconnect, _) => inbound.push(Inbound::Disconnect),
                Received::Message(ToWorker::Connections(_), fds) => {
                    let streams = fds.into_iter().map(TcpStream::from);
                    // Frames read together are registered and acknowledged together.
                    match inbound.last_mut() {
                        Some(Inbound::Connections(v)) => v.extend(streams),
                        _ => inbound.push(Inbound::Connections(streams.collect())),
                    }
                }
                other => tracing::debug!("ignored IPC message: {other:?}"),
            }
        }
        if !open {
            inbound.push(Inbound::Closed);
        }
        Ok(())
    }

    fn serving(&mut self, _loop_addrs: &[SocketAddr]) {
        for a in &self.announce {
            let _ = self.sender.frame(&ToPrimary::Listening {
                addr: a.to_string(),
            });
        }
    }

    fn took(&mut self, n: usize) {
        let _ = self.sender.frame(&ToPrimary::Took(n as u32));
        // The dispatcher now counts these as open until a report says otherwise: the next
        // report must not be skipped for repeating the last one (e.g. 0 again after they
        // closed), only throttled.
        if let Some((_, last)) = self.last_load.as_mut() {
            *last = usize::MAX;
        }
    }

    fn load(&mut self, open: usize) {
        if !self.report_load {
            return;
        }
        let now = Instant::now();
        if let Some((at, last)) = self.last_load {
            if last == open || now.duration_since(at) < LOAD_EVERY && open != 0 {
                return;
            }
        }
        self.last_load = Some((now, open));
        let _ = self.sender.frame(&ToPrimary::Load(open as u32));
    }
}
