//! Streamed response bodies: produced piece by piece as the socket drains ([`Flow::Stream`]
//! in the loop), so a body of any size costs a connection one window of memory.
//!
//! Three sources, for three kinds of producer:
//! - an iterator of chunks ([`Response::chunks`]), pulled on the loop thread: for producers
//!   that compute or copy from memory (each `next` must be cheap);
//! - a reader ([`Response::stream`]), pulled on the worker's blocking pool one window at a
//!   time: a `Read` may block (a pipe, a socket, a slow disk), and that must not stall the
//!   loop. A pool thread is busy only while a read runs, never while a slow client makes the
//!   stream wait; the next window is read while the current one is sent;
//! - a channel ([`Response::channel`], [`Response::sse`]) that other threads write to through
//!   a [`BodySender`]: a long-lived stream (server-sent events, progress, a broadcast).
//!
//! [`Flow::Stream`]: crate::protocol::Flow::Stream
//! [`Response::chunks`]: super::Response::chunks
//! [`Response::stream`]: super::Response::stream
//! [`Response::channel`]: super::Response::channel
//! [`Response::sse`]: super::Response::sse

use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::deferred::Link;
use crate::event_loop::Wake;

/// The window when [`Http::stream_window`](super::Http::stream_window) is not set.
pub(crate) const DEFAULT_WINDOW: usize = 64 * 1024;

/// A body the handler set to be streamed.
pub(crate) struct Body {
    pub(crate) source: Source,
    /// The length, when known in advance (`Content-Length`); else chunked (or, for an
    /// HTTP/1.0 client, the end of the connection).
    pub(crate) len: Option<u64>,
    /// End the stream (cleanly) when the worker drains, so the client reconnects elsewhere.
    pub(crate) ends_on_drain: bool,
}

/// Appends chunks to the buffer until it holds at least the given number of bytes; `false`
/// once the iterator is exhausted.
pub(crate) type NextChunks = Box<dyn FnMut(&mut Vec<u8>, usize) -> bool + Send>;

/// Where the pieces come from.
pub(crate) enum Source {
    /// An iterator, pulled on the loop's thread.
    Chunks(NextChunks),
    /// Filled by a reader on the pool, or by [`BodySender`]s.
    Pipe(Arc<Pipe>),
}

/// A stream's buffer between its producer and the connection.
pub(crate) struct Pipe {
    state: Mutex<PipeState>,
    /// Signalled when the connection took bytes (room in the window), or left.
    room: Condvar,
}

struct PipeState {
    /// Bytes produced, not yet taken by the connection (at most `window`, but one send may
    /// overfill an empty pipe).
    buf: Vec<u8>,
    window: usize,
    /// No more bytes will come (the reader's end, the last sender dropped).
    done: bool,
    /// The producer failed (a read error, [`BodySender::abort`]): the body is cut short.
    failed: bool,
    /// The connection is gone (closed, or a HEAD request): producers stop.
    gone: bool,
    /// The connection ended the stream (a drain): senders are refused.
    ended: bool,
    /// The connection waits for bytes: the next producer wakes it.
    waiting: Option<Wake>,
    /// For a reader body: the reader, while no pool thread holds it.
    reader: Option<Box<dyn Read + Send>>,
    /// A pool thread reads now.
    reading: bool,
    senders: usize,
}

/// What [`Outgoing::fill`] did.
pub(crate) enum Fill {
    /// Bytes were added; more will come.
    More,
    /// Nothing yet: the producer wakes the connection.
    Wait,
    /// The body is complete (its last bytes, and the chunked terminator, were added).
    Done,
    /// The body cannot be completed: close the connection without ending it properly, so
    /// the client sees a truncated answer, not a complete one.
    Failed,
}

/// A streamed response in flight on a connection.
pub(crate) struct Outgoing {
    body: Body,
    chunked: bool,
    /// Bytes still promised by `Content-Length`.
    remaining: Option<u64>,
    /// Close the connection once the body is out.
    pub(crate) close: bool,
    window: usize,
    /// Where reader pieces are read (the connection's pool and wake-up); `None`: read here.
    link: Option<Link>,
}

impl Pipe {
    fn new(reader: Option<Box<dyn Read + Send>>, senders: usize) -> Arc<Pipe> {
        Arc::new(Pipe {
            state: Mutex::new(PipeState {
                buf: Vec::new(),
                window: DEFAULT_WINDOW,
                done: false,
                failed: false,
                gone: false,
                ended: false,
                waiting: None,
                reader,
                reading: false,
                senders,
            }),
            room: Condvar::new(),
        })
    }

    /// A pipe fed by a reader on the pool.
    pub(crate) fn reader(reader: Box<dyn Read + Send>) -> Arc<Pipe> {
        Pipe::new(Some(reader), 0)
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection is gone, or will take nothing (HEAD): producers stop.
    pub(crate) fn leave(&self) {
        let mut st = self.lock();
        st.gone = true;
        st.reader = None;
        st.buf = Vec::new();
        drop(st);
        self.room.notify_all();
    }
}

impl PipeState {
    /// Wake the connection if it waits for what just happened.
    fn wake(&mut self) {
        if let Some(wake) = self.waiting.take() {
            wake.wake();
        }
    }
}

/// Read one piece of `pipe`'s reader (on a pool thread).
fn read_piece(pipe: &Pipe) {
    let (mut reader, window) = {
        let mut st = pipe.lock();
        match st.reader.take() {
            Some(reader) if !st.gone => (reader, st.window),
            _ => {
                st.reading = false;
                return;
            }
        }
    };
    let mut piece = vec![0; window];
    let read = loop {
        match panic::catch_unwind(AssertUnwindSafe(|| reader.read(&mut piece))) {
            Err(_) => break Err(io::Error::other("the body's reader panicked")),
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(result) => break result,
        }
    };
    let mut st = pipe.lock();
    st.reading = false;
    match read {
        Ok(0) => st.done = true,
        Ok(n) => {
            st.buf.extend_from_slice(&piece[..n]);
            st.reader = Some(reader);
        }
        Err(e) => {
            tracing::warn!("reading a response body: {e}; the answer is cut short");
            st.done = true;
            st.failed = true;
        }
    }
    st.wake();
}

impl Outgoing {
    pub(crate) fn new(
        body: Body,
        chunked: bool,
        close: bool,
        window: usize,
        link: Option<Link>,
    ) -> Self {
        if let Source::Pipe(pipe) = &body.source {
            let mut st = pipe.lock();
            st.window = window;
            drop(st);
            // Senders blocked on the default window may fit now.
            pipe.room.notify_all();
        }
        Outgoing {
            remaining: body.len,
            body,
            chunked,
            close,
            window,
            link,
        }
    }

    /// Append the next piece of the body (framed) to `out`.
    pub(crate) fn fill(&mut self, out: &mut Vec<u8>) -> Fill {
        let start = out.len();
        // Leave room for the chunk's size line, written once the size is known.
        if self.chunked {
            out.extend_from_slice(&[0; CHUNK_HEAD]);
        }
        let data = out.len();
        let ended = match &mut self.body.source {
            Source::Chunks(next) => Ok(!next(out, data + self.window)),
            Source::Pipe(pipe) => {
                let pipe = Arc::clone(pipe);
                match self.pull(&pipe, out) {
                    Some(ended) => ended,
                    None => {
                        out.truncate(start);
                        return Fill::Wait;
                    }
                }
            }
        };
        let mut n = (out.len() - data) as u64;
        if let Some(remaining) = &mut self.remaining {
            if n > *remaining {
                tracing::warn!("a response body is longer than its length; cut at the length");
                out.truncate(data + *remaining as usize);
                n = *remaining;
            }
            *remaining -= n;
        }
        if self.chunked {
            if n == 0 {
                out.truncate(start);
            } else {
                frame_chunk(out, start, n as usize);
            }
        }
        match (ended, self.remaining) {
            (Ok(false), Some(0)) => Fill::Done,
            (Ok(false), _) => Fill::More,
            (Ok(true), Some(left)) if left > 0 => {
                tracing::warn!("a response body ended {left} bytes short of its length");
                Fill::Failed
            }
            (Ok(true), _) => {
                if self.chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                Fill::Done
            }
            (Err(()), _) => Fill::Failed,
        }
    }

    /// Take what the pipe holds into `out`: `Some(Ok(ended))`, `Some(Err(()))` when the
    /// producer failed, `None` when there is nothing yet (the connection is woken later).
    fn pull(&mut self, pipe: &Arc<Pipe>, out: &mut Vec<u8>) -> Option<Result<bool, ()>> {
        loop {
            let mut st = pipe.lock();
            let took = !st.buf.is_empty();
            out.extend_from_slice(&st.buf);
            st.buf.clear();
            if st.buf.capacity() > self.window {
                st.buf = Vec::new();
            }
            if took {
                pipe.room.notify_all();
            }
            if st.failed {
                return Some(Err(()));
            }
            // Read the next piece of a reader while this one is sent.
            let read = st.reader.is_some() && !st.reading && !st.done;
            st.reading |= read;
            let ended = (st.done || st.ended) && !read;
            if !took && !ended {
                // Set before the read starts: its end wakes the connection.
                st.waiting = self.link.as_ref().map(|l| l.wake.clone());
            }
            drop(st);
            if read {
                match &self.link {
                    Some(link) => {
                        let pipe = Arc::clone(pipe);
                        link.pool
                            .spawn(Box::new(move || read_piece(&pipe)), &link.wake);
                    }
                    // No pool to read on (a connection without a loop): read here.
                    None => {
                        read_piece(pipe);
                        if !took {
                            continue;
                        }
                    }
                }
            }
            return (took || ended).then_some(Ok(ended));
        }
    }

    /// The worker drains: a stream that ends on drain (server-sent events) takes what was
    /// sent and ends; its connection is woken if it waits. Whether the stream ends.
    pub(crate) fn end_on_drain(&mut self) -> bool {
        if !self.body.ends_on_drain {
            return false;
        }
        if let Source::Pipe(pipe) = &self.body.source {
            let mut st = pipe.lock();
            st.ended = true;
            st.wake();
            drop(st);
            pipe.room.notify_all();
        }
        true
    }
}

impl Drop for Body {
    /// The body is dropped unsent (a HEAD request, a closed connection, a handler that
    /// deferred or panicked): its producers stop.
    fn drop(&mut self) {
        if let Source::Pipe(pipe) = &self.source {
            pipe.leave();
        }
    }
}

/// Room for a chunk's size line: 16 hex digits and CRLF.
const CHUNK_HEAD: usize = 18;

/// Turn the `CHUNK_HEAD` bytes reserved at `start` and the `n` data bytes after them into
/// a chunk: size line, data, CRLF.
fn frame_chunk(out: &mut Vec<u8>, start: usize, n: usize) {
    let mut digits = [0u8; CHUNK_HEAD];
    let hex = format_hex(n, &mut digits);
    let line = hex.len() + 2;
    // Drop the unused part of the reserved room (a copy within the buffer: one memmove).
    out.drain(start..start + CHUNK_HEAD - line);
    out[start..start + hex.len()].copy_from_slice(hex);
    out[start + hex.len()..start + line].copy_from_slice(b"\r\n");
    out.extend_from_slice(b"\r\n");
}

/// `n` in lowercase hex, in `buf`.
fn format_hex(mut n: usize, buf: &mut [u8; CHUNK_HEAD]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The writing end of a streamed body ([`Response::channel`](super::Response::channel),
/// [`Response::sse`](super::Response::sse)), to use from other threads.
///
/// Like `std::sync::mpsc::SyncSender`: [`send`](Self::send) blocks while the connection's
/// window is full (the client reads slower than the sender writes), so memory stays bounded;
/// [`try_send`](Self::try_send) never blocks. Clones write to the same body; the body ends
/// (properly, with its last chunk) when the last sender is dropped, or is cut short by
/// [`abort`](Self::abort). Once the client is gone (or the worker drained a server-sent
/// event stream), sending fails with [`Closed`]: stop producing.
///
/// Do not [`send`](Self::send) on the event loop's thread (in a handler): a full window
/// would wait for the loop, which waits for the handler. Use [`try_send`](Self::try_send)
/// there, or hand the sender to another thread.
pub struct BodySender {
    pipe: Arc<Pipe>,
}

/// The body's connection is gone (or the stream was ended by a drain): nothing sent will
/// reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the response body's connection is gone")
    }
}

impl std::error::Error for Closed {}

/// Why [`BodySender::try_send`] did not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySendError {
    /// The window is full: try again later (nothing was sent).
    Full,
    /// See [`Closed`].
    Closed,
}

impl std::fmt::Debug for BodySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySender").finish_non_exhaustive()
    }
}

impl BodySender {
    /// A new channel body and its first sender.
    pub(crate) fn channel() -> (BodySender, Arc<Pipe>) {
        let pipe = Pipe::new(None, 1);
        (
            BodySender {
                pipe: Arc::clone(&pipe),
            },
            pipe,
        )
    }

    /// Send `data`, waiting while the window is full (a piece larger than the window goes
    /// in window-sized parts, each waiting for room).
    ///
    /// # Errors
    /// [`Closed`] when the client is gone: what was not sent yet is dropped.
    pub fn send(&self, data: impl AsRef<[u8]>) -> Result<(), Closed> {
        let mut data = data.as_ref();
        let mut st = self.pipe.lock();
        loop {
            if st.gone || st.ended {
                return Err(Closed);
            }
            let room = st.window.saturating_sub(st.buf.len());
            if room > 0 {
                let n = room.min(data.len());
                st.buf.extend_from_slice(&data[..n]);
                data = &data[n..];
                st.wake();
                if data.is_empty() {
                    return Ok(());
                }
            }
            st = self.pipe.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Send `data` if the window has room for all of it (or is empty), without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`] (nothing sent), or [`TrySendError::Closed`] when the client is
    /// gone.
    pub fn try_send(&self, data: impl AsRef<[u8]>) -> Result<(), TrySendError> {
        let data = data.as_ref();
        let mut st = self.pipe.lock();
        if st.gone || st.ended {
            return Err(TrySendError::Closed);
        }
        if !st.buf.is_empty() && st.buf.len() + data.len() > st.window {
            return Err(TrySendError::Full);
        }
        st.buf.extend_from_slice(data);
        st.wake();
        Ok(())
    }

    /// Send one server-sent event: an `event:` line when `event` is given, one `data:` line
    /// per line of `data`, and the blank line that ends the event. Waits as
    /// [`send`](Self::send).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_event(&self, event: Option<&str>, data: &str) -> Result<(), Closed> {
        let mut text = String::with_capacity(data.len() + 16);
        if let Some(event) = event {
            text.push_str("event: ");
            text.push_str(event.lines().next().unwrap_or(""));
            text.push('\n');
        }
        for line in data.split('\n') {
            text.push_str("data: ");
            text.push_str(line.strip_suffix('\r').unwrap_or(line));
            text.push('\n');
        }
        text.push('\n');
        self.send(text)
    }

    /// Whether the client is gone (or the stream was ended by a drain): sending would fail.
    pub fn is_closed(&self) -> bool {
        let st = self.pipe.lock();
        st.gone || st.ended
    }

    /// End the body as failed: the connection closes without the body's proper end, so the
    /// client knows the answer is incomplete (instead of taking it for the whole).
    pub fn abort(self) {
        let mut st = self.pipe.lock();
        st.failed = true;
        st.done = true;
        st.wake();
    }
}

impl Clone for BodySender {
    fn clone(&self) -> Self {
        self.pipe.lock().senders += 1;
        BodySender {
            pipe: Arc::clone(&self.pipe),
        }
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        let mut st = self.pipe.lock();
        st.senders -= 1;
        if st.senders == 0 {
            st.done = true;
            st.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_framed_in_place() {
        for n in [1usize, 15, 16, 255, 4096, 65536] {
            let mut out = b"xx".to_vec();
            out.extend_from_slice(&[0; CHUNK_HEAD]);
            out.extend(std::iter::repeat_n(b'a', n));
            frame_chunk(&mut out, 2, n);
            let expected = format!("xx{n:x}\r\n{}\r\n", "a".repeat(n));
            assert_eq!(out, expected.as_bytes());
        }
    }
}
