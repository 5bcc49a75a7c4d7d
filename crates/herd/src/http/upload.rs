//! Request bodies as a stream (opt-in, [`Http::stream_large_bodies`]): a body larger than
//! `max_body_bytes` is offered to the handler as a [`BodyReader`] as soon as its head has
//! arrived. The loop feeds what it reads from the socket into a window; the handler's thread
//! reads from it; a full window stops the loop reading that socket (the kernel's buffers,
//! then the client, wait), so a body of any size costs one window of memory.
//!
//! The answer may stream while the body still arrives (full duplex): a handler that echoes
//! the body through a [`Response::channel`](super::Response::channel), at once or through
//! its [`Responder`](super::Responder), sends what it read while the client sends the rest.
//! A buffered (or file) answer goes out once the whole body is read.
//!
//! [`Http::stream_large_bodies`]: super::Http::stream_large_bodies

use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Instant;

use crate::event_loop::Wake;

/// What the loop and a [`BodyReader`] share.
pub(crate) struct Inflow {
    state: Mutex<InState>,
    /// Signalled when bytes came, or the body ended.
    data: Condvar,
    /// The loop's thread: reading there would wait for the loop itself.
    loop_thread: ThreadId,
}

struct InState {
    buf: Vec<u8>,
    /// Bytes of `buf` already read.
    at: usize,
    window: usize,
    /// The whole body came.
    done: bool,
    /// The body will not complete (the client left, or was too slow).
    failed: bool,
    /// The reader is gone: the loop reads the rest of the body and drops it.
    gone: bool,
    /// The loop waits for room: the reader wakes it.
    waiting: Option<Wake>,
}

impl Inflow {
    fn lock(&self) -> MutexGuard<'_, InState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The request's offer of its streamed body, taken at most once by
/// [`Request::body_reader`](super::Request::body_reader).
pub(crate) struct Offer(Mutex<Option<BodyReader>>);

impl std::fmt::Debug for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Offer")
    }
}

impl Offer {
    pub(crate) fn take(&self) -> Option<BodyReader> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether the reader was taken.
    fn taken(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// An offer of `reader` (for a request copied to another thread).
    pub(crate) fn of(reader: Option<BodyReader>) -> Offer {
        Offer(Mutex::new(reader))
    }
}

/// The body of a request, streamed: read it on another thread than the event loop's (a
/// [`blocking`](super::blocking) handler, or a thread the handler hands it to with its
/// [`Responder`](super::Responder)). Reading waits for the client's bytes; it returns `Ok(0)`
/// at the body's end, and an error if the client leaves (or stalls past the header read
/// timeout) before it. Dropping it unread makes the connection read the rest and drop it.
pub struct BodyReader {
    inflow: Arc<Inflow>,
    /// The body's length, when the client declared it.
    len: Option<u64>,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl BodyReader {
    /// The body's length as declared (`Content-Length`); `None` for a chunked body.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the body is declared empty (it never is: only bodies over the limit stream).
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let mut st = self.inflow.lock();
        loop {
            let have = st.buf.len() - st.at;
            if have > 0 {
                let n = have.min(out.len());
                out[..n].copy_from_slice(&st.buf[st.at..st.at + n]);
                st.at += n;
                if st.at == st.buf.len() {
                    st.buf.clear();
                    st.at = 0;
                }
                // Half the window is free: let the loop read on while this is consumed.
                if st.buf.len() - st.at <= st.window / 2 {
                    if let Some(wake) = st.waiting.take() {
                        wake.wake();
                    }
                }
                return Ok(n);
            }
            if st.failed {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client left before the end of the request body",
                ));
            }
            if st.done {
                return Ok(0);
            }
            if std::thread::current().id() == self.inflow.loop_thread {
                return Err(io::Error::other(
                    "a streamed request body read on the event loop's thread would wait for \
                     the loop itself: read it in a blocking handler or another thread",
                ));
            }
            st = self.inflow.data.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        let mut st = self.inflow.lock();
        st.gone = true;
        st.buf = Vec::new();
        st.at = 0;
        if let Some(wake) = st.waiting.take() {
            wake.wake();
        }
    }
}

/// The loop's side of a streamed request body.
pub(crate) struct Upload {
    inflow: Arc<Inflow>,
    wake: Wake,
    /// Bytes of a `Content-Length` body still to come; `None` for chunked (the connection's
    /// decoder frames it).
    pub(crate) remaining: Option<u64>,
    /// The last time body bytes came.
    pub(crate) last: Instant,
    /// The reader's window is full: the loop waits for it, not for the client.
    pub(crate) full: bool,
    finished: bool,
    /// The offer made to the handler, to see whether it took the reader.
    offer: Option<Arc<Offer>>,
}

impl Upload {
    /// A streamed body of `len` bytes (`None`: chunked), and the offer of its reader.
    pub(crate) fn new(len: Option<u64>, window: usize, wake: Wake, now: Instant) -> Upload {
        let inflow = Arc::new(Inflow {
            state: Mutex::new(InState {
                buf: Vec::new(),
                at: 0,
                window,
                done: false,
                failed: false,
                gone: false,
                waiting: None,
            }),
            data: Condvar::new(),
            loop_thread: std::thread::current().id(),
        });
        let reader = BodyReader {
            inflow: Arc::clone(&inflow),
            len,
        };
        Upload {
            inflow,
            wake,
            remaining: len,
            last: now,
            full: false,
            finished: false,
            offer: Some(Arc::new(Offer(Mutex::new(Some(reader))))),
        }
    }

    /// The offer to put in the request.
    pub(crate) fn offer(&self) -> Option<Arc<Offer>> {
        self.offer.clone()
    }

    /// After the handler: whether it took the reader (else the offer is withdrawn).
    pub(crate) fn taken(&mut self) -> bool {
        self.offer.take().is_some_and(|offer| offer.taken())
    }

    /// Hand body bytes to the reader; whether the window has room for more (otherwise the
    /// reader wakes the connection when it has).
    pub(crate) fn push(&mut self, bytes: &[u8], now: Instant) -> bool {
        self.last = now;
        let mut st = self.inflow.lock();
        if st.gone {
            return true;
        }
        if st.at > 0 {
            let at = st.at;
            st.buf.drain(..at);
            st.at = 0;
        }
        st.buf.extend_from_slice(bytes);
        if !bytes.is_empty() {
            self.inflow.data.notify_one();
        }
        self.full = st.buf.len() >= st.window;
        if self.full {
            st.waiting = Some(self.wake.clone());
        }
        !self.full
    }

    /// Whether the window has room now (after the reader took some).
    pub(crate) fn has_room(&mut self) -> bool {
        let mut st = self.inflow.lock();
        self.full = !st.gone && st.buf.len() - st.at >= st.window;
        if self.full {
            st.waiting = Some(self.wake.clone());
        }
        !self.full
    }

    /// The whole body came.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
        let mut st = self.inflow.lock();
        st.done = true;
        drop(st);
        self.inflow.data.notify_all();
    }
}

impl Drop for Upload {
    /// A body that did not finish (the client left, a timeout): the reader gets an error.
    fn drop(&mut self) {
        if !self.finished {
            let mut st = self.inflow.lock();
            st.failed = true;
            drop(st);
            self.inflow.data.notify_all();
        }
    }
}
