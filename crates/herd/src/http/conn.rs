//! One HTTP/1.1 connection: the [`Connection`] that parses requests out of the input, calls the
//! handler and renders the answers.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use httparse::Header;

use super::chunked::{Decoded, Decoder};
use super::deferred::{Done, Slot};
use super::parse::{self, Framing, Head};
use super::request::Params;
use super::response::{self, Persist};
use super::{Error, Handler, Limits, Request, Response};
use crate::protocol::{Connection, FileRange, Flow, Handover, Step};

/// Header slots kept on the stack; a larger `max_headers` parses into a heap array.
const INLINE_HEADERS: usize = 64;

/// A decode buffer larger than this is released after its request.
const KEEP_BODY: usize = 64 * 1024;

/// Where the connection is between requests.
#[derive(Debug, Clone, Copy)]
enum State {
    /// No byte of the next request yet, since then. `fresh`: no request served yet (the header
    /// read timeout applies rather than the keep-alive one).
    Idle { since: Instant, fresh: bool },
    /// Part of a head arrived; the head must be complete by `since + header_read_timeout`
    /// (`since`: the connection's start for its first request, else the first byte).
    Head { since: Instant },
    /// The head is complete and the body is arriving: it started at `start`, the last bytes
    /// came at `last`.
    Body { start: Instant, last: Instant },
}

/// What one pass over the input produced.
enum One {
    /// A request of `len` bytes was answered; `close` ends the connection after it.
    Served { len: usize, close: bool },
    /// The next request is incomplete; its first `len` bytes were taken (a chunked body is
    /// decoded as it arrives, its head kept by the connection).
    Partial { len: usize },
    /// A request of `len` bytes is being answered elsewhere (its handler deferred).
    Deferred { len: usize },
    /// A request of `len` bytes was answered with a file body: the loop sends it next.
    Streamed { len: usize },
}

/// A request whose handler deferred its answer: how to render it when it comes.
struct Waiting {
    slot: Arc<Slot>,
    head_only: bool,
    keep_alive: bool,
    minor_version: u8,
    /// When the request began, for its duration in the metrics.
    started: Instant,
}

/// One HTTP/1.1 connection's state, created by [`Http`](super::Http) for the event loop.
pub struct Conn<H> {
    handler: Arc<H>,
    limits: Limits,
    peer: Option<SocketAddr>,
    state: State,
    /// `100 Continue` was sent for the request being read.
    continued: bool,
    /// The worker is draining: the next answer closes the connection.
    draining: bool,
    response: Response,
    /// Decoded chunked body of the current request.
    body: Vec<u8>,
    /// The head of a request whose chunked body is being decoded (its bytes were consumed);
    /// empty otherwise.
    head: Vec<u8>,
    /// The chunked decoder's state for that body.
    decoder: Decoder,
    /// Body bytes (as sent, encoded) received so far for the request being read.
    received: usize,
    /// How much of an incomplete head was parsed last time: a head only completes with a
    /// LF, so more bytes without one are not parsed again (a head trickled a byte at a time
    /// costs linear time, not quadratic).
    parsed: usize,
    /// The request whose answer is deferred; nothing else is parsed meanwhile.
    waiting: Option<Waiting>,
    /// A response's file body goes out (see [`Flow::Stream`]); nothing else is parsed
    /// meanwhile. `None` on the plain path.
    streaming: Option<Streaming>,
}

/// The file body of the answer being sent.
struct Streaming {
    /// Until the loop takes it ([`Connection::take_file`]).
    file: Option<FileRange>,
    /// Close the connection once it went out.
    close: bool,
}

impl<H: Handler> Conn<H> {
    pub(crate) fn new(
        handler: Arc<H>,
        limits: Limits,
        peer: Option<SocketAddr>,
        now: Instant,
    ) -> Self {
        Conn {
            handler,
            limits,
            peer,
            state: State::Idle {
                since: now,
                fresh: true,
            },
            continued: false,
            draining: false,
            response: Response::new(),
            body: Vec::new(),
            head: Vec::new(),
            decoder: Decoder::default(),
            received: 0,
            parsed: 0,
            waiting: None,
            streaming: None,
        }
    }

    /// Let the handler defer through `link` (the connection's wake-up and the blocking pool).
    pub(crate) fn link(&mut self, link: super::deferred::Link) {
        self.response.link = Some(link);
    }

    /// Serve the request at the start of `input`, if it is complete.
    fn one(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<One, Error> {
        let mut inline = [MaybeUninit::<Header<'_>>::uninit(); INLINE_HEADERS];
        let mut heap;
        let storage = if self.limits.max_headers <= INLINE_HEADERS {
            &mut inline[..self.limits.max_headers]
        } else {
            heap = vec![MaybeUninit::uninit(); self.limits.max_headers];
            &mut heap[..]
        };
        // A chunked body in progress: its head was kept, `input` holds only body bytes.
        let saved = std::mem::take(&mut self.head);
        let (source, rest) = if saved.is_empty() {
            (input, None)
        } else {
            (&saved[..], Some(input))
        };
        if rest.is_none()
            && self.parsed > 0
            && self.parsed <= input.len()
            && !input[self.parsed..].contains(&b'\n')
        {
            parse::partial(input, &self.limits)?;
            self.parsed = input.len();
            return Ok(One::Partial { len: 0 });
        }
        let Some(head) = parse::head(source, storage, &self.limits)? else {
            self.parsed = input.len();
            self.reading_head(now);
            return Ok(One::Partial { len: 0 });
        };
        self.parsed = 0;
        let (rest, taken) = match rest {
            Some(rest) => (rest, 0),
            None => (&input[head.len..], head.len),
        };
        // The request's duration runs from its head's first byte (or the read that
        // brought the whole head).
        let started = match self.state {
            State::Head { since } => since,
            _ => now,
        };
        let (body, body_len) = match head.framing {
            Framing::Empty => (&[][..], 0),
            Framing::Length(n) => match rest.get(..n) {
                Some(body) => (body, n),
                None => {
                    self.received = rest.len();
                    self.wait_body(head.expect_continue, out, now);
                    return Ok(One::Partial { len: 0 });
                }
            },
            Framing::Chunked => {
                if taken > 0 {
                    self.body.clear();
                    self.decoder = Decoder::default();
                    self.received = 0;
                }
                match self
                    .decoder
                    .decode(rest, &mut self.body, self.limits.max_body_bytes)?
                {
                    Decoded::Done(n) => (&self.body[..], n),
                    Decoded::Partial => {
                        // Keep the head, take every byte: the encoding is not kept.
                        self.received += rest.len();
                        let expect_continue = head.expect_continue;
                        self.head = if taken > 0 {
                            input[..taken].to_vec()
                        } else {
                            saved
                        };
                        self.wait_body(expect_continue, out, now);
                        return Ok(One::Partial { len: input.len() });
                    }
                }
            }
        };
        let req = Request {
            method: head.method,
            target: head.target,
            minor_version: head.minor_version,
            headers: head.headers,
            body,
            peer: self.peer,
            params: Params::None,
        };
        let res = &mut self.response;
        let handler = &self.handler;
        // What the watchdog names if this handler never returns (a few stores, no syscall).
        crate::heartbeat::enter(head.method, head.target, now);
        let served = panic::catch_unwind(AssertUnwindSafe(|| handler.call(&req, res)));
        crate::heartbeat::leave();
        let deferred = res.deferred.take();
        if let (Ok(()), Some(slot)) = (&served, deferred) {
            self.waiting = Some(Waiting {
                slot,
                head_only: head.method == "HEAD",
                keep_alive: head.keep_alive,
                minor_version: head.minor_version,
                started,
            });
            res.reset();
            self.finish_request(now);
            return Ok(One::Deferred {
                len: taken + body_len,
            });
        }
        let close = if served.is_ok() {
            crate::metrics::local::request(res.status_code(), started);
            let close = !head.keep_alive || self.draining || res.wants_close();
            let persist = match (close, head.minor_version) {
                (true, _) => Persist::Close,
                (false, 0) => Persist::KeepAlive10,
                (false, _) => Persist::KeepAlive,
            };
            let head_only = head.method == "HEAD";
            res.write(out, head_only, persist, now);
            if let Some(file) = res_file(res, head_only) {
                // Its file body goes next (then `on_drained`).
                self.streaming = Some(Streaming {
                    file: Some(file),
                    close,
                });
                res.reset();
                self.finish_request(now);
                return Ok(One::Streamed {
                    len: taken + body_len,
                });
            }
            close
        } else {
            tracing::error!(
                "handler panicked on {} {}; answered 500",
                head.method,
                head.path()
            );
            response::write_error(out, 500, now);
            crate::metrics::local::request(500, started);
            true
        };
        res.reset();
        self.finish_request(now);
        Ok(One::Served {
            len: taken + body_len,
            close,
        })
    }

    /// Back to idle after a request (its answer written or deferred).
    fn finish_request(&mut self, now: Instant) {
        if self.body.capacity() > KEEP_BODY {
            self.body = Vec::new();
        }
        self.continued = false;
        self.state = State::Idle {
            since: now,
            fresh: false,
        };
        self.received = 0;
    }

    /// Render the deferred answer if it came; `None` while it has not.
    fn answer_deferred(&mut self, out: &mut Vec<u8>, now: Instant) -> Option<bool> {
        let done = self.waiting.as_ref()?.slot.take()?;
        let waiting = self.waiting.take()?;
        self.state = State::Idle {
            since: now,
            fresh: false,
        };
        Some(match done {
            Done::Answer(mut res) => {
                crate::metrics::local::request(res.status_code(), waiting.started);
                let close = !waiting.keep_alive || self.draining || res.wants_close();
                let persist = match (close, waiting.minor_version) {
                    (true, _) => Persist::Close,
                    (false, 0) => Persist::KeepAlive10,
                    (false, _) => Persist::KeepAlive,
                };
                res.write(out, waiting.head_only, persist, now);
                self.streaming = res_file(&mut res, waiting.head_only).map(|file| Streaming {
                    file: Some(file),
                    close,
                });
                close
            }
            Done::Dropped => {
                tracing::error!("a deferred response was dropped unanswered; answered 500");
                response::write_error(out, 500, now);
                crate::metrics::local::request(500, waiting.started);
                true
            }
        })
    }

    /// The head is complete, the body is not: ask for it if the client waits to be asked.
    fn wait_body(&mut self, expect_continue: bool, out: &mut Vec<u8>, now: Instant) {
        if expect_continue && !self.continued {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.continued = true;
        }
        let start = match self.state {
            State::Body { start, .. } => start,
            _ => now,
        };
        self.state = State::Body { start, last: now };
    }

    /// Part of a head is here. The header read timeout runs from the connection's start for
    /// its first request (a client that idles, then trickles, is not given the time twice),
    /// and from the first byte of a later one (the idle time before it is the keep-alive
    /// timeout's): nginx's `client_header_timeout` does the same.
    fn reading_head(&mut self, now: Instant) {
        match self.state {
            State::Idle { since, fresh: true } => self.state = State::Head { since },
            State::Idle { fresh: false, .. } => self.state = State::Head { since: now },
            State::Head { .. } | State::Body { .. } => {}
        }
    }
}

/// The file body of `res`, unless the request was a `HEAD`.
fn res_file(res: &mut Response, head_only: bool) -> Option<FileRange> {
    res.take_file().filter(|_| !head_only)
}

impl Head<'_> {
    fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }
}

impl<H: Handler> Connection for Conn<H> {
    fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        let mut consumed = 0;
        if self.waiting.is_some() {
            return Step {
                consumed,
                flow: Flow::Wait,
            };
        }
        while consumed < input.len() {
            match self.one(&input[consumed..], out, now) {
                Ok(One::Served { len, close }) => {
                    consumed += len;
                    if close {
                        return Step {
                            consumed: input.len(),
                            flow: Flow::Close,
                        };
                    }
                }
                Ok(One::Partial { len }) => {
                    consumed += len;
                    break;
                }
                Ok(One::Deferred { len }) => {
                    return Step {
                        consumed: consumed + len,
                        flow: Flow::Wait,
                    }
                }
                Ok(One::Streamed { len }) => {
                    return Step {
                        consumed: consumed + len,
                        flow: Flow::Stream,
                    }
                }
                Err(e) => {
                    tracing::debug!("bad request: {e:?}");
                    response::write_error(out, e.status(), now);
                    crate::metrics::local::request(e.status(), now);
                    return Step {
                        consumed: input.len(),
                        flow: Flow::Close,
                    };
                }
            }
        }
        Step {
            consumed,
            flow: Flow::Continue,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        if self.waiting.is_some() || self.streaming.is_some() {
            // The handler has the request, or its answer is going out (the loop's write
            // stall limit applies): the client waits for us, not we for it.
            return None;
        }
        let limits = &self.limits;
        Some(match self.state {
            State::Idle { since, fresh: true } => since + limits.header_read_timeout,
            State::Idle {
                since,
                fresh: false,
            } => since + limits.keepalive_timeout,
            State::Head { since } => since + limits.header_read_timeout,
            State::Body { start, last } => {
                let stalled = last + limits.header_read_timeout;
                match limits.min_body_rate {
                    0 => stalled,
                    rate => {
                        let earned = Duration::from_secs_f64(self.received as f64 / rate as f64);
                        stalled.min(start + limits.header_read_timeout + earned)
                    }
                }
            }
        })
    }

    fn on_timeout(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow {
        if self.deadline().is_some_and(|at| at > now) {
            return Flow::Continue;
        }
        if let State::Head { .. } | State::Body { .. } = self.state {
            response::write_error(out, Error::Timeout.status(), now);
        }
        Flow::Close
    }

    fn on_drain(&mut self, _out: &mut Vec<u8>) -> Flow {
        self.draining = true;
        if self.waiting.is_some() || self.streaming.is_some() {
            // A request in flight: its answer closes the connection.
            return Flow::Continue;
        }
        // A fresh connection was accepted for a request that may still be on its way (the
        // client connected just before a reload): wait for it, as for a request in flight,
        // bounded by the header read timeout. Only a connection idle between requests closes.
        match self.state {
            // Between requests: the client knows a keep-alive connection may close.
            State::Idle { fresh: false, .. } => Flow::Close,
            // Accepted (or handed over) but its first request not read yet: closing it now
            // would reset a request the client already sent. It gets its answer (with
            // `Connection: close`), bounded by the header read timeout.
            State::Idle { fresh: true, .. } | State::Head { .. } | State::Body { .. } => {
                Flow::Continue
            }
        }
    }

    fn handover(&self) -> Handover {
        if self.waiting.is_some() || self.streaming.is_some() {
            // Its answer comes to this process: deliver it here first.
            return Handover::Later;
        }
        match self.state {
            // Between requests, or a head still arriving (its bytes are unconsumed input, so
            // they travel with the socket): a worker of the same handler takes over.
            State::Idle { .. } | State::Head { .. } => Handover::Now,
            // A body is on its way (or `100 Continue` was sent for it): finish this request
            // here first.
            State::Body { .. } => Handover::Later,
        }
    }

    fn on_wake(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        match self.answer_deferred(out, now) {
            None if self.waiting.is_some() => Step {
                consumed: 0,
                flow: Flow::Wait,
            },
            // Its file body goes next; then `on_drained` closes or serves what is pipelined.
            Some(_) if self.streaming.is_some() => Step {
                consumed: 0,
                flow: Flow::Stream,
            },
            Some(true) => Step {
                consumed: input.len(),
                flow: Flow::Close,
            },
            // Answered (or nothing was deferred): serve what was pipelined behind it.
            _ => self.on_read(input, out, now),
        }
    }

    fn take_file(&mut self) -> Option<FileRange> {
        self.streaming.as_mut()?.file.take()
    }

    fn on_drained(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        let Some(streaming) = self.streaming.take() else {
            return Step {
                consumed: 0,
                flow: Flow::Continue,
            };
        };
        // The keep-alive idle time runs from the end of the answer.
        self.state = State::Idle {
            since: now,
            fresh: false,
        };
        if streaming.close || self.draining {
            return Step {
                consumed: input.len(),
                flow: Flow::Close,
            };
        }
        self.on_read(input, out, now)
    }
}
