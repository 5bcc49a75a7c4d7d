//! One HTTP/1.1 connection: the [`Connection`] that parses requests out of the input, calls the
//! handler and renders the answers.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use httparse::Header;

use super::chunked::{self, Decoded};
use super::deferred::{Done, Slot};
use super::parse::{self, Framing, Head};
use super::request::Params;
use super::response::{self, Persist};
use super::{Error, Handler, Limits, Request, Response};
use crate::protocol::{Connection, Flow, Step};

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
    /// Part of a head arrived; the head must be complete by `since + header_read_timeout`.
    Head { since: Instant },
    /// The head is complete and the body is arriving; the last bytes came at `since`.
    Body { since: Instant },
}

/// What one pass over the input produced.
enum One {
    /// A request of `len` bytes was answered; `close` ends the connection after it.
    Served { len: usize, close: bool },
    /// The next request is incomplete.
    Partial,
    /// A request of `len` bytes is being answered elsewhere (its handler deferred).
    Deferred { len: usize },
}

/// A request whose handler deferred its answer: how to render it when it comes.
struct Waiting {
    slot: Arc<Slot>,
    head_only: bool,
    keep_alive: bool,
    minor_version: u8,
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
    /// The request whose answer is deferred; nothing else is parsed meanwhile.
    waiting: Option<Waiting>,
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
            waiting: None,
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
        let Some(head) = parse::head(input, storage, &self.limits)? else {
            self.reading_head(now);
            return Ok(One::Partial);
        };
        let rest = &input[head.len..];
        let (body, body_len) = match head.framing {
            Framing::Empty => (&[][..], 0),
            Framing::Length(n) => match rest.get(..n) {
                Some(body) => (body, n),
                None => return Ok(self.wait_body(&head, out, now)),
            },
            Framing::Chunked => {
                self.body.clear();
                match chunked::decode(rest, &mut self.body, self.limits.max_body_bytes)? {
                    Decoded::Done(n) => (&self.body[..], n),
                    Decoded::Partial => return Ok(self.wait_body(&head, out, now)),
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
        let served = panic::catch_unwind(AssertUnwindSafe(|| handler.call(&req, res)));
        let deferred = res.deferred.take();
        if let (Ok(()), Some(slot)) = (&served, deferred) {
            self.waiting = Some(Waiting {
                slot,
                head_only: head.method == "HEAD",
                keep_alive: head.keep_alive,
                minor_version: head.minor_version,
            });
            res.reset();
            self.finish_request(now);
            return Ok(One::Deferred {
                len: head.len + body_len,
            });
        }
        let close = if served.is_ok() {
            let close = !head.keep_alive || self.draining || res.wants_close();
            let persist = match (close, head.minor_version) {
                (true, _) => Persist::Close,
                (false, 0) => Persist::KeepAlive10,
                (false, _) => Persist::KeepAlive,
            };
            res.write(out, head.method == "HEAD", persist, now);
            close
        } else {
            tracing::error!(
                "handler panicked on {} {}; answered 500",
                head.method,
                head.path()
            );
            response::write_error(out, 500, now);
            true
        };
        res.reset();
        self.finish_request(now);
        Ok(One::Served {
            len: head.len + body_len,
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
            Done::Answer(res) => {
                let close = !waiting.keep_alive || self.draining || res.wants_close();
                let persist = match (close, waiting.minor_version) {
                    (true, _) => Persist::Close,
                    (false, 0) => Persist::KeepAlive10,
                    (false, _) => Persist::KeepAlive,
                };
                res.write(out, waiting.head_only, persist, now);
                close
            }
            Done::Dropped => {
                tracing::error!("a deferred response was dropped unanswered; answered 500");
                response::write_error(out, 500, now);
                true
            }
        })
    }

    /// The head is complete, the body is not: ask for it if the client waits to be asked.
    fn wait_body(&mut self, head: &Head<'_>, out: &mut Vec<u8>, now: Instant) -> One {
        if head.expect_continue && !self.continued {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.continued = true;
        }
        self.state = State::Body { since: now };
        One::Partial
    }

    /// Part of a head is here: the header read timeout runs from its first byte.
    fn reading_head(&mut self, now: Instant) {
        if let State::Idle { .. } = self.state {
            self.state = State::Head { since: now };
        }
    }
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
                Ok(One::Partial) => break,
                Ok(One::Deferred { len }) => {
                    return Step {
                        consumed: consumed + len,
                        flow: Flow::Wait,
                    }
                }
                Err(e) => {
                    tracing::debug!("bad request: {e:?}");
                    response::write_error(out, e.status(), now);
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
        if self.waiting.is_some() {
            // The handler has the request; the client waits for us, not we for it.
            return None;
        }
        let limits = &self.limits;
        Some(match self.state {
            State::Idle { since, fresh: true } => since + limits.header_read_timeout,
            State::Idle {
                since,
                fresh: false,
            } => since + limits.keepalive_timeout,
            State::Head { since } | State::Body { since } => since + limits.header_read_timeout,
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
        if self.waiting.is_some() {
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

    fn on_wake(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        match self.answer_deferred(out, now) {
            None if self.waiting.is_some() => Step {
                consumed: 0,
                flow: Flow::Wait,
            },
            Some(true) => Step {
                consumed: input.len(),
                flow: Flow::Close,
            },
            // Answered (or nothing was deferred): serve what was pipelined behind it.
            _ => self.on_read(input, out, now),
        }
    }
}
