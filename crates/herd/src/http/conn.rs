//! One HTTP/1.1 connection: the [`Connection`] that parses requests out of the input, calls the
//! handler and renders the answers.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use httparse::Header;

use super::chunked::{self, Decoded};
use super::parse::{self, Framing, Head};
use super::response::{self, Persist};
use super::{Error, Handler, Limits, Request, Response};
use crate::protocol::{Connection, Flow, Handover, Step};

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
        }
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
        };
        let res = &mut self.response;
        let handler = &self.handler;
        // What the watchdog names if this handler never returns (a few stores, no syscall).
        crate::heartbeat::enter(head.method, head.target, now);
        let served = panic::catch_unwind(AssertUnwindSafe(|| handler.call(&req, res)));
        crate::heartbeat::leave();
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
        if self.body.capacity() > KEEP_BODY {
            self.body = Vec::new();
        }
        self.continued = false;
        self.state = State::Idle {
            since: now,
            fresh: false,
        };
        Ok(One::Served {
            len: head.len + body_len,
            close,
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
        match self.state {
            // Between requests, or a head still arriving (its bytes are unconsumed input, so
            // they travel with the socket): a worker of the same handler takes over.
            State::Idle { .. } | State::Head { .. } => Handover::Now,
            // A body is on its way (or `100 Continue` was sent for it): finish this request
            // here first.
            State::Body { .. } => Handover::Later,
        }
    }
}
