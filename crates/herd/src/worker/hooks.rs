//! The event loop's view of the IPC channel: disconnect requests and handed-over connections
//! go to the loop, user messages to the worker's callback, and the loop's news (listening,
//! acknowledgements, load) back to the primary.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, RawFd};
use std::time::{Duration, Instant};

use super::{OnMessage, WorkerEvent, WorkerSender};
use crate::event_loop::{Hooks, Inbound};
use crate::ipc::{Channel, Received, ToPrimary, ToWorker};
use crate::primary::MAX_FDS_PER_FRAME;

/// The least time between two load reports.
const LOAD_EVERY: Duration = Duration::from_millis(20);

pub(super) struct WorkerHooks {
    pub(super) channel: Channel,
    pub(super) sender: WorkerSender,
    pub(super) on_message: Option<OnMessage>,
    pub(super) early: Vec<WorkerEvent>,
    pub(super) early_conns: Vec<TcpStream>,
    pub(super) early_adopted: Vec<(TcpStream, Vec<u8>)>,
    /// The primary's last disconnect request asked for idle connections back.
    pub(super) hand_back: bool,
    pub(super) report_load: bool,
    pub(super) last_load: Option<(Instant, usize)>,
    /// The addresses this worker serves (its own listeners and hand-off addresses alike).
    pub(super) announce: Vec<SocketAddr>,
    /// How often to ship the metric counters, and when next; `None`: not counting.
    pub(super) stats_every: Option<Duration>,
    pub(super) next_stats: Option<Instant>,
    /// Open connections at the last turn, for the final snapshot.
    pub(super) open: usize,
}

impl WorkerHooks {
    /// Ships this thread's metric counters to the primary (a few hundred bytes).
    pub(super) fn send_stats(&mut self, open: usize) {
        if self.stats_every.is_some() {
            let snap = crate::metrics::local::snapshot(open);
            let _ = self.sender.frame(&ToPrimary::Stats(snap));
        }
    }
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
                // `stash` keeps connections apart (below); these arms keep the match whole.
                WorkerEvent::Connections(c) => inbound.push(Inbound::Connections(c)),
                WorkerEvent::Adopted(c) => inbound.push(Inbound::Adopt(c)),
            }
        }
        if !self.early_conns.is_empty() {
            inbound.push(Inbound::Connections(std::mem::take(&mut self.early_conns)));
        }
        if !self.early_adopted.is_empty() {
            inbound.push(Inbound::Adopt(std::mem::take(&mut self.early_adopted)));
        }
        let open = self.channel.fill()?;
        while let Some(r) = self.channel.next::<ToWorker>() {
            match r {
                Received::Message(ToWorker::Message(m), _) => self.message(&m),
                Received::Message(ToWorker::Disconnect { hand_back }, _) => {
                    self.hand_back = hand_back;
                    inbound.push(Inbound::Disconnect);
                }
                Received::Message(ToWorker::Adopt(inputs), fds) => {
                    let conns = fds.into_iter().map(TcpStream::from).zip(inputs).collect();
                    inbound.push(Inbound::Adopt(conns));
                }
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

    fn can_hand_back(&self) -> bool {
        self.hand_back
    }

    fn hand_back(&mut self, mut conns: Vec<(TcpStream, Vec<u8>)>) -> io::Result<()> {
        // Frames stay well under the IPC limit (the primary discards larger ones, fds and
        // all) and under the kernel's limit of fds per message. A connection whose unread
        // bytes alone would not fit closes here instead (a head that large is an abuse).
        let budget = self.sender.max_message() / 2;
        conns.retain(|(_, input)| input.len() + 4 <= budget);
        let mut rest = conns.as_slice();
        while !rest.is_empty() {
            let mut bytes = 0;
            let n = rest
                .iter()
                .take(MAX_FDS_PER_FRAME)
                .take_while(|(_, input)| {
                    bytes += input.len() + 4;
                    bytes <= budget
                })
                .count();
            let (batch, after) = rest.split_at(n);
            rest = after;
            let inputs = batch.iter().map(|(_, input)| input.clone()).collect();
            let fds: Vec<_> = batch.iter().map(|(s, _)| s.as_fd()).collect();
            self.sender
                .frame_with(&ToPrimary::HandBack(inputs), &fds)
                .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e.to_string()))?;
        }
        Ok(())
    }

    fn tick_at(&self) -> Option<Instant> {
        self.next_stats
    }

    fn tick(&mut self, now: Instant, open: usize) {
        self.send_stats(open);
        self.next_stats = self.stats_every.map(|every| now + every);
    }

    fn load(&mut self, open: usize) {
        self.open = open;
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
