//! One connection as the loop sees it: the socket, the protocol state, and the bytes that could
//! not be handed over (unconsumed input) or written yet (pending output).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::protocol::{Connection, FileRange, Flow, Handover};

/// The loop's shared scratch space: one read buffer and one output buffer for all connections.
pub(super) struct Buffers {
    /// Always `len() == capacity`: reads go straight into it.
    pub(super) read: Vec<u8>,
    /// Where protocols append their output; emptied after every write attempt.
    pub(super) out: Vec<u8>,
}

/// The output buffer is shrunk back to this after a larger response went out.
const OUT_KEEP: usize = 64 * 1024;

/// The most full reads of one connection per readiness: a client that keeps the socket full
/// (a pipelining flood) gets this many buffers' worth of work, then waits for the other
/// connections' turn.
const READ_BUDGET: usize = 4;

/// The most bytes one streaming connection sends per readiness (output and file ranges): a
/// client that reads as fast as the loop writes gets this much, then waits for the other
/// connections' turn. 2 MiB, as nginx's `sendfile_max_chunk`: 1 MiB made a large file cost
/// 40% more sendfile calls and twice the `epoll_wait`s of nginx.
const STREAM_BUDGET: usize = 2 * 1024 * 1024;

/// Whether a connection survived a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Open,
    /// Open, with input probably still waiting in the socket after the read budget ran out:
    /// edge-triggered epoll will not report it again, so the loop must call
    /// [`Socket::on_readable`] again after the other connections' turn.
    Busy,
    Closed,
}

/// What a callback needs from the loop.
pub(super) struct Ctx<'a> {
    pub(super) registry: &'a Registry,
    pub(super) bufs: &'a mut Buffers,
    pub(super) now: Instant,
    pub(super) max_pending_output: usize,
}

pub(super) struct Socket<C> {
    stream: TcpStream,
    token: Token,
    proto: C,
    /// Bytes the protocol left unconsumed; empty (no allocation) between requests.
    input: Vec<u8>,
    /// Bytes a short write left behind; non-empty only while registered for WRITABLE.
    output: Vec<u8>,
    /// The last time pending output was written (or became pending).
    progress: Instant,
    /// Close once `output` is flushed.
    closing: bool,
    /// Reading stopped until `output` drains (backpressure).
    paused: bool,
    /// The peer closed its write half and the protocol chose to stay open.
    eof: bool,
    /// The last read emptied the socket (a short read or WouldBlock) and every byte read was
    /// consumed: closing now leaves nothing unread, so no reset, no lingering read needed.
    drained: bool,
    /// Registered with the poll: a new connection is read once before it is (its request is
    /// usually there already), and one served and closed in that read never is.
    registered: bool,
    /// The fd came from elsewhere (a hand-off): another copy may exist, so deregister
    /// explicitly before closing.
    handed_over: bool,
    /// The protocol is waiting for an answer prepared elsewhere ([`Flow::Wait`]): nothing is
    /// read until it is woken.
    waiting: bool,
    /// Input may have arrived while waiting with no edge left to announce it: read on resume.
    missed: bool,
    /// The protocol streams ([`Flow::Stream`]): the loop sends `output`, then `file`, then
    /// asks for more; nothing is read meanwhile.
    streaming: bool,
    /// The file range of the stream, sent after `output`.
    file: Option<FileRange>,
    /// A wake-up came while a stream was sent: the protocol hears of it at the stream's end
    /// (it may have been the only one for output queued elsewhere).
    woken: bool,
    /// Registered for WRITABLE: while output is pending, and all along a stream (it would
    /// otherwise register and deregister for every piece a slow peer makes wait).
    write_interest: bool,
    /// Tells this connection from a later one that reuses its slab key (see `Wake`).
    pub(super) gen: u64,
}

impl<C: Connection> Socket<C> {
    pub(super) fn new(
        stream: TcpStream,
        token: Token,
        proto: C,
        handed_over: bool,
        now: Instant,
    ) -> Self {
        Socket {
            stream,
            token,
            proto,
            input: Vec::new(),
            output: Vec::new(),
            progress: now,
            closing: false,
            paused: false,
            eof: false,
            drained: false,
            registered: false,
            handed_over,
            waiting: false,
            missed: false,
            streaming: false,
            file: None,
            woken: false,
            write_interest: false,
            gen: 0,
        }
    }

    /// When the loop must look at this connection again: the write stall limit while output is
    /// pending, else the protocol's deadline.
    pub(super) fn deadline(&self, write_timeout: Duration) -> Option<Instant> {
        if self.output.is_empty() && self.file.is_none() {
            self.proto.deadline()
        } else {
            Some(self.progress + write_timeout)
        }
    }

    /// The socket is readable (or hung up): read until the kernel buffer is drained (or the
    /// read budget is spent: then [`Status::Busy`]), handing each batch to the protocol and
    /// writing its answer.
    pub(super) fn on_readable(&mut self, cx: &mut Ctx<'_>) -> Status {
        if self.waiting || self.streaming {
            self.missed = true;
            if self.streaming && self.output.is_empty() {
                // Called back after a stream spent its budget ([`Status::Busy`]), or input
                // came: go on with the stream (a full socket costs one `EAGAIN`).
                return self.pump(cx);
            }
            return Status::Open;
        }
        let mut budget = READ_BUDGET;
        while !(self.paused || self.closing || self.eof) {
            let n = match (&self.stream).read(&mut cx.bufs.read) {
                Ok(0) => {
                    let flow = self.proto.on_eof(&self.input, &mut cx.bufs.out);
                    self.input = Vec::new();
                    self.eof = true;
                    return self.after(flow, cx);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = self.input.is_empty();
                    return Status::Open;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail("read", &e),
            };
            crate::metrics::local::bytes_in(n);
            let flow = self.feed(n, cx);
            self.drained = n < cx.bufs.read.len() && self.input.is_empty();
            let status = self.after(flow, cx);
            if status == Status::Closed {
                return Status::Closed;
            }
            if self.output.len() > cx.max_pending_output {
                self.paused = true;
            }
            if self.waiting || self.streaming {
                // A full read may have left more in the kernel, with no new edge to come.
                self.missed |= n == cx.bufs.read.len();
                return status;
            }
            // A short read drained the socket: edge-triggered epoll reports new data anew.
            if n < cx.bufs.read.len() {
                break;
            }
            budget -= 1;
            if budget == 0 && !(self.paused || self.closing || self.eof) {
                return Status::Busy;
            }
        }
        Status::Open
    }

    /// Hand the `n` fresh bytes in the read buffer (after any kept input) to the protocol.
    fn feed(&mut self, n: usize, cx: &mut Ctx<'_>) -> Flow {
        let fresh = &cx.bufs.read[..n];
        if self.input.is_empty() {
            let step = self.proto.on_read(fresh, &mut cx.bufs.out, cx.now);
            self.input.extend_from_slice(&fresh[step.consumed.min(n)..]);
            step.flow
        } else {
            self.input.extend_from_slice(fresh);
            let step = self.proto.on_read(&self.input, &mut cx.bufs.out, cx.now);
            self.input.drain(..step.consumed.min(self.input.len()));
            if self.input.is_empty() {
                self.input = Vec::new();
            }
            step.flow
        }
    }

    /// The socket is writable: flush pending output, then resume what waited for it.
    pub(super) fn on_writable(&mut self, cx: &mut Ctx<'_>) -> Status {
        if self.output.is_empty() {
            if self.streaming {
                // A file range waits for room (or a spurious edge: pumping is harmless).
                return self.pump(cx);
            }
            return Status::Open;
        }
        loop {
            match (&self.stream).write(&self.output) {
                Ok(n) if n == self.output.len() => {
                    crate::metrics::local::bytes_out(n);
                    break;
                }
                Ok(n) => {
                    crate::metrics::local::bytes_out(n);
                    self.output.drain(..n);
                    self.progress = cx.now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Status::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail("write", &e),
            }
        }
        self.output = Vec::new();
        self.progress = cx.now;
        if self.streaming {
            return self.pump(cx);
        }
        if let Err(e) = self.read_interest(cx) {
            return self.fail("reregister", &e);
        }
        if self.closing {
            return self.finish(cx);
        }
        if self.paused {
            // Input may be waiting with no new edge to announce it.
            self.paused = false;
            return self.on_readable(cx);
        }
        Status::Open
    }

    /// The connection was woken (an answer prepared elsewhere may be ready): let the protocol
    /// answer from the input kept while waiting (see [`take_missed`](Self::take_missed)). A
    /// connection that did not wait is told too: it may have output from other threads (an
    /// upgraded connection, see [`Connection::on_wake`]).
    pub(super) fn on_wake(&mut self, cx: &mut Ctx<'_>) -> Status {
        if self.closing {
            return Status::Open;
        }
        if self.streaming {
            // A stream being sent asks its producer for more as the socket drains anyway;
            // the protocol is told at the stream's end (an upgraded protocol may have other
            // output, announced by this one wake-up).
            self.woken = true;
            return Status::Open;
        }
        self.waiting = false;
        let step = self.proto.on_wake(&self.input, &mut cx.bufs.out, cx.now);
        self.input.drain(..step.consumed.min(self.input.len()));
        if self.input.is_empty() {
            self.input = Vec::new();
        }
        self.after(step.flow, cx)
    }

    /// Whether the protocol waits for a wake-up (see [`Flow::Wait`]).
    pub(super) fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// After a wake-up: input may wait in the kernel that no edge will announce (the loop
    /// reads it now, or on resume when reading is paused).
    pub(super) fn take_missed(&mut self) -> bool {
        !self.waiting && !self.streaming && !self.closing && std::mem::take(&mut self.missed)
    }

    /// The deadline from [`deadline`](Self::deadline) may have passed.
    pub(super) fn on_timer(&mut self, cx: &mut Ctx<'_>, write_timeout: Duration) -> Status {
        if !self.output.is_empty() || self.file.is_some() {
            if cx.now >= self.progress + write_timeout {
                tracing::debug!("closing a connection whose peer stopped reading");
                return Status::Closed;
            }
            return Status::Open;
        }
        match self.proto.deadline() {
            Some(at) if at <= cx.now => {
                let flow = self.proto.on_timeout(&mut cx.bufs.out, cx.now);
                self.after(flow, cx)
            }
            _ => Status::Open,
        }
    }

    /// The worker is draining. Bytes may be waiting unread (a connection accepted in the same
    /// turn, or one whose readiness is still queued): the protocol learns of the drain first,
    /// so whatever those bytes complete is answered as the last exchange (HTTP: with
    /// `Connection: close`); then they are read, so a request that arrived is answered
    /// instead of its connection closed as idle; then the protocol decides.
    pub(super) fn on_drain(&mut self, cx: &mut Ctx<'_>) -> Status {
        let _ = self.proto.on_drain(&mut cx.bufs.out);
        let read = self.on_readable(cx);
        if read == Status::Closed {
            return Status::Closed;
        }
        let flow = self.proto.on_drain(&mut cx.bufs.out);
        match self.after(flow, cx) {
            Status::Open => read,
            status => status,
        }
    }

    /// Whether this connection can leave the loop now (see [`Handover`]): never while it
    /// is closing anyway, later while output waits for the peer.
    pub(super) fn handover(&self) -> Handover {
        if self.closing || self.eof {
            return Handover::Never;
        }
        match self.proto.handover() {
            // An answer is on its way (deferred or streamed), or output waits for the peer.
            Handover::Now
                if self.waiting || self.streaming || !self.output.is_empty() || self.paused =>
            {
                Handover::Later
            }
            h => h,
        }
    }

    /// Gives the socket up (to another process): off the poll, with the bytes read and not
    /// consumed. The caller sends it on.
    pub(super) fn release(mut self, registry: &Registry) -> (std::net::TcpStream, Vec<u8>) {
        if self.registered {
            // Another copy of the fd will live on: the registration would outlive ours.
            let _ = registry.deregister(&mut self.stream);
        }
        (self.stream.into(), self.input)
    }

    /// A connection given back by a draining worker, with the bytes it had read: the
    /// protocol sees them as if they had just arrived, then the socket is read as usual.
    pub(super) fn on_adopted(&mut self, input: Vec<u8>, cx: &mut Ctx<'_>) -> Status {
        if !input.is_empty() {
            self.input = input;
            let step = self.proto.on_read(&self.input, &mut cx.bufs.out, cx.now);
            self.input.drain(..step.consumed.min(self.input.len()));
            if self.input.is_empty() {
                self.input = Vec::new();
            }
            if self.after(step.flow, cx) == Status::Closed {
                return Status::Closed;
            }
        }
        self.on_readable(cx)
    }

    /// Send what the protocol produced, then act on its verdict.
    fn after(&mut self, flow: Flow, cx: &mut Ctx<'_>) -> Status {
        if self.send(cx) == Status::Closed {
            return Status::Closed;
        }
        match flow {
            Flow::Continue => Status::Open,
            Flow::Wait => {
                self.waiting = true;
                Status::Open
            }
            Flow::Close => {
                self.closing = true;
                if self.output.is_empty() {
                    return self.finish(cx);
                }
                Status::Open
            }
            Flow::Stream => {
                self.streaming = true;
                self.file = self.proto.take_file();
                self.pump(cx)
            }
        }
    }

    /// Drive a stream ([`Flow::Stream`]): send the pending output, then the file range, then
    /// ask the protocol for more, until the socket is full (WRITABLE calls again), the
    /// producer has nothing yet ([`Flow::Wait`]), the stream is over, or this turn's
    /// [`STREAM_BUDGET`] is spent ([`Status::Busy`]: the loop calls again next turn).
    fn pump(&mut self, cx: &mut Ctx<'_>) -> Status {
        let mut budget = STREAM_BUDGET;
        loop {
            if !self.output.is_empty() {
                // `send` registered for WRITABLE.
                return Status::Open;
            }
            if self.file.is_some() {
                match self.send_file(&mut budget, cx) {
                    Ok(true) => self.file = None,
                    // The socket is full: WRITABLE calls again.
                    Ok(false) if budget > 0 => return Status::Open,
                    Ok(false) => return Status::Busy,
                    Err(status) => return status,
                }
            }
            if budget == 0 {
                return Status::Busy;
            }
            let step = self.proto.on_drained(&self.input, &mut cx.bufs.out, cx.now);
            self.input.drain(..step.consumed.min(self.input.len()));
            if self.input.is_empty() {
                self.input = Vec::new();
            }
            budget = budget.saturating_sub(cx.bufs.out.len());
            if step.flow == Flow::Stream {
                if self.send(cx) == Status::Closed {
                    return Status::Closed;
                }
                self.file = self.proto.take_file();
                continue;
            }
            // The loop's part of the stream is over: waiting for the producer, or done.
            self.streaming = false;
            if self.write_interest && self.output.is_empty() && cx.bufs.out.is_empty() {
                if let Err(e) = self.read_interest(cx) {
                    return self.fail("reregister", &e);
                }
            }
            let status = self.after(step.flow, cx);
            if status != Status::Open {
                return status;
            }
            if self.paused && self.output.is_empty() {
                // Reading stopped for the output queued before the stream (back-pressure),
                // and all of it is out: read again (`on_writable`, which would have resumed
                // it, went on with the stream instead).
                self.paused = false;
                self.missed = true;
            }
            if std::mem::take(&mut self.woken) && !self.closing {
                // The wake-up that came during the stream.
                let status = self.on_wake(cx);
                if status != Status::Open || self.streaming {
                    return status;
                }
            }
            if !self.waiting && std::mem::take(&mut self.missed) {
                // Input that arrived meanwhile had no edge left to announce it.
                return Status::Busy;
            }
            return status;
        }
    }

    /// Send the stream's file range with `sendfile(2)`: `Ok(true)` once all of it went,
    /// `Ok(false)` when the socket is full (registered for WRITABLE) or `budget` is spent.
    fn send_file(&mut self, budget: &mut usize, cx: &mut Ctx<'_>) -> Result<bool, Status> {
        let Some(range) = self.file.as_mut() else {
            return Ok(true);
        };
        while range.len > 0 {
            if *budget == 0 {
                return Ok(false);
            }
            let count = usize::try_from(range.len)
                .unwrap_or(usize::MAX)
                .min(*budget);
            let Ok(mut offset) = i64::try_from(range.offset) else {
                tracing::warn!("sendfile: offset {} out of range", range.offset);
                return Err(Status::Closed);
            };
            match nix::sys::sendfile::sendfile64(
                self.stream.as_fd(),
                range.file.as_fd(),
                Some(&mut offset),
                count,
            ) {
                Ok(0) => {
                    tracing::warn!(
                        "sendfile: the file ended {} bytes before its range; closing",
                        range.len
                    );
                    return Err(Status::Closed);
                }
                Ok(n) => {
                    crate::metrics::local::bytes_out(n);
                    range.offset += n as u64;
                    range.len -= n as u64;
                    *budget -= n;
                    self.progress = cx.now;
                }
                Err(nix::errno::Errno::EAGAIN) => {
                    self.progress = cx.now;
                    if let Err(e) = self.want_writable(cx) {
                        return Err(self.fail("register", &e));
                    }
                    return Ok(false);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(self.fail("sendfile", &io::Error::from(e))),
            }
        }
        Ok(true)
    }

    /// Register for WRITABLE (as well as READABLE) unless already.
    fn want_writable(&mut self, cx: &mut Ctx<'_>) -> io::Result<()> {
        if self.write_interest {
            return Ok(());
        }
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self.registered {
            cx.registry
                .reregister(&mut self.stream, self.token, interest)?;
        } else {
            cx.registry
                .register(&mut self.stream, self.token, interest)?;
        }
        self.registered = true;
        self.write_interest = true;
        Ok(())
    }

    /// Back to READABLE only.
    fn read_interest(&mut self, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.write_interest = false;
        cx.registry
            .reregister(&mut self.stream, self.token, Interest::READABLE)
    }

    /// Write the shared output buffer with one write; keep what a short write leaves.
    fn send(&mut self, cx: &mut Ctx<'_>) -> Status {
        let out = &mut cx.bufs.out;
        if out.is_empty() {
            return Status::Open;
        }
        if !self.output.is_empty() {
            // Already waiting for WRITABLE: keep the order.
            self.output.extend_from_slice(out);
            out.clear();
            return Status::Open;
        }
        let written = loop {
            match (&self.stream).write(out) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.clear();
                    return self.fail("write", &e);
                }
            }
        };
        crate::metrics::local::bytes_out(written);
        if written < out.len() {
            self.output.extend_from_slice(&out[written..]);
            self.progress = cx.now;
        }
        out.clear();
        if out.capacity() > OUT_KEEP {
            out.shrink_to(OUT_KEEP);
        }
        if !self.output.is_empty() {
            if let Err(e) = self.want_writable(cx) {
                return self.fail("register", &e);
            }
        }
        Status::Open
    }

    /// Registers for readability unless already registered (see `registered`).
    pub(super) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        if !self.registered {
            registry.register(&mut self.stream, self.token, Interest::READABLE)?;
            self.registered = true;
        }
        Ok(())
    }

    /// Close cleanly: the output is out; send FIN, then take what the peer already sent so that
    /// closing with unread data does not turn into a reset that could destroy the answer.
    fn finish(&mut self, cx: &mut Ctx<'_>) -> Status {
        // Nothing unread: close() alone sends the FIN (the common `Connection: close` case).
        if self.eof || self.drained {
            return Status::Closed;
        }
        // Unread input would make close() send a reset that can destroy the answer in
        // flight: send the FIN first, then read what is there before closing.
        let _ = self.stream.shutdown(Shutdown::Write);
        if !self.eof {
            while let Ok(n) = (&self.stream).read(&mut cx.bufs.read) {
                if n < cx.bufs.read.len() {
                    break;
                }
            }
        }
        Status::Closed
    }

    fn fail(&self, op: &str, e: &io::Error) -> Status {
        if is_client_error(e) {
            tracing::debug!("{op}: {e}");
        } else {
            tracing::warn!("{op}: {e}");
        }
        Status::Closed
    }

    /// Release the socket: deregister when another copy of the fd may exist, then close.
    pub(super) fn close(mut self, registry: &Registry) {
        if self.handed_over && self.registered {
            let _ = registry.deregister(&mut self.stream);
        }
    }
}

/// Errors that a peer causes by going away; not worth a log line above `debug`.
pub(super) fn is_client_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::TimedOut
    )
}
