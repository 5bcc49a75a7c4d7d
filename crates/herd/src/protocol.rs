//! The connection-level protocol layer: bytes in, bytes out.
//!
//! The worker's event loop owns sockets and buffers; a [`Protocol`] turns input bytes into output
//! bytes for one connection at a time. HTTP/1.1 ([`crate::http`]) is one protocol; a raw TCP
//! service (the echo example) is another.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub use crate::event_loop::Wake;

/// What the event loop does with a connection after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep the connection open and wait for more input.
    Continue,
    /// Write out everything already in the output buffer, then close the connection cleanly
    /// (shutdown of the write half, then close).
    Close,
    /// Write out what is in the output buffer, then read nothing more from this connection
    /// until it is woken ([`Wake::wake`] leads to [`Connection::on_wake`]): an answer is being
    /// prepared elsewhere, and the requests behind it wait, so answers stay in order.
    Wait,
    /// Write out what is in the output buffer, then the file range the loop takes with
    /// [`Connection::take_file`] (if any); once all of it has gone to the socket, call
    /// [`Connection::on_drained`] for more. Nothing is read from the connection meanwhile (as
    /// with [`Flow::Wait`]), and the write stall timeout applies. A body produced this way
    /// costs the memory of one piece at a time, however large it is and however slowly the
    /// peer reads.
    Stream,
}

/// A range of an open file that the loop sends with `sendfile(2)` (no copy through user
/// space) after the output buffer: see [`Connection::take_file`].
#[derive(Debug, Clone)]
pub struct FileRange {
    /// The file; shared, so that one open file can serve many connections.
    pub file: Arc<File>,
    /// Where the range starts in the file.
    pub offset: u64,
    /// How many bytes to send. A file shorter than `offset + len` ends the connection (the
    /// peer was promised bytes that cannot come).
    pub len: u64,
}

/// Whether a connection may move to another worker process while its worker drains
/// ([`Connection::handover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// Never: the protocol keeps state the socket and its unread bytes cannot carry (the
    /// default). The drain goes through [`Connection::on_drain`] as before.
    Never,
    /// Not now (an exchange is in flight), but once it is over: the loop asks again after
    /// every callback.
    Later,
    /// Now: nothing is in flight; the socket and the input not consumed yet carry all there
    /// is, and a fresh connection of the same protocol in another worker takes over.
    Now,
}

/// The result of [`Connection::on_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// How many bytes at the front of the input were used; the loop drops them.
    pub consumed: usize,
    /// What to do next.
    pub flow: Flow,
}

/// A factory of connections: one value per worker, shared by all its connections.
///
/// `Send + Sync` so that the same value can serve connections from a pool of threads.
pub trait Protocol: Send + Sync + 'static {
    /// The per-connection state.
    type Conn: Connection;
    /// A new connection was accepted (or handed over by the primary) from `peer`.
    fn connect(&self, peer: Option<SocketAddr>, now: Instant) -> Self::Conn;

    /// As [`connect`](Self::connect), with the handle that wakes this connection from another
    /// thread (for answers prepared elsewhere, see [`Flow::Wait`]). The event loop calls this
    /// one; the default ignores `wake` and calls `connect`.
    fn connect_with(&self, peer: Option<SocketAddr>, now: Instant, wake: Wake) -> Self::Conn {
        let _ = wake;
        self.connect(peer, now)
    }
}

/// One connection's protocol state.
pub trait Connection: 'static {
    /// New bytes arrived. `input` holds every byte not yet consumed (old and new); append what
    /// to send to `out`. Handle every complete request in `input` (pipelining), so that one
    /// write answers a whole batch.
    fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step;

    /// The peer closed its write half; `input` holds what was not consumed. Default: close.
    fn on_eof(&mut self, _input: &[u8], _out: &mut Vec<u8>) -> Flow {
        Flow::Close
    }

    /// The moment this connection times out, if any (a header read timeout while a request is
    /// partly read, a keep-alive idle timeout between requests). The loop checks it
    /// periodically, after every callback.
    fn deadline(&self) -> Option<Instant>;

    /// The deadline passed. Append a last answer if the protocol has one (HTTP: 408) and return
    /// [`Flow::Close`], or [`Flow::Continue`] when the deadline moved.
    fn on_timeout(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow;

    /// The worker started draining: return [`Flow::Close`] when nothing is in flight (the
    /// connection closes at once); otherwise [`Flow::Continue`], finish the request in flight
    /// and close after it (HTTP: answer with `Connection: close`).
    ///
    /// Called twice in a row: once to announce the drain, then again after the input that
    /// was already waiting has been read; only the second verdict counts. It must be
    /// idempotent (write nothing, or the same thing only once).
    fn on_drain(&mut self, out: &mut Vec<u8>) -> Flow;

    /// Whether the connection could move to another worker now. When the worker drains
    /// and its surroundings can hand connections over (a rolling reload, a scale-down: the
    /// primary gives them to a worker that stays), a protocol that answers anything but
    /// [`Handover::Never`] is not told of the drain: its exchanges go on as usual, and the
    /// connection moves, with its unconsumed input, as soon as this says [`Handover::Now`].
    /// The client sees neither a close nor a `Connection: close`.
    ///
    /// Default: [`Handover::Never`].
    fn handover(&self) -> Handover {
        Handover::Never
    }

    /// The connection was woken through its [`Wake`]: after it returned [`Flow::Wait`], or at
    /// any time while it reads (a protocol whose other threads have output for it, e.g. a
    /// WebSocket's messages pushed from elsewhere; a wake-up with nothing new must be
    /// harmless). Not called once the connection is closing. A wake-up that comes while a
    /// stream is sent ([`Flow::Stream`]) is delivered once the stream ends (meanwhile the
    /// stream's producer is asked through [`on_drained`](Self::on_drained) anyway). `input`
    /// holds every byte not yet consumed; as [`on_read`](Self::on_read), append the answer to
    /// `out` and say how much input was used. Return [`Flow::Wait`] again if what it waited for is not there yet.
    /// Default: nothing to do.
    fn on_wake(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        let _ = (input, out, now);
        Step {
            consumed: 0,
            flow: Flow::Continue,
        }
    }

    /// Everything a [`Flow::Stream`] asked to send (the output and any file range) has gone
    /// to the socket. Append the next piece to `out` and return [`Flow::Stream`] again;
    /// [`Flow::Wait`] when the producer (another thread) has nothing yet (it wakes the
    /// connection through its [`Wake`], then [`on_wake`](Self::on_wake) may return
    /// [`Flow::Stream`]); or, once the stream is over, [`Flow::Continue`] or [`Flow::Close`],
    /// after serving what `input` holds (pipelined requests, as [`on_read`](Self::on_read)
    /// would). Default: the stream is over, nothing to serve.
    fn on_drained(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        let _ = (input, out, now);
        Step {
            consumed: 0,
            flow: Flow::Continue,
        }
    }

    /// Asked by the loop once after every callback that returned [`Flow::Stream`] (and only
    /// then): a range of a file to send with `sendfile(2)` after the output buffer, before
    /// [`on_drained`](Self::on_drained) is called. A protocol that cannot let bytes reach
    /// the socket untouched (TLS) reads the range itself into its output instead. Default:
    /// none.
    fn take_file(&mut self) -> Option<FileRange> {
        None
    }
}
