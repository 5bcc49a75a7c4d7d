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
use super::stream::{Body, Fill, Outgoing};
use super::upgrade::{self, Upgraded};
use super::upload::Upload;
use super::{Error, Handler, Limits, Request, Response};
use crate::protocol::{Connection, FileRange, Flow, Handover, Step};

/// Header slots kept on the stack; a larger `max_headers` parses into a heap array.
const INLINE_HEADERS: usize = 64;

/// A decode buffer larger than this is released after its request.
const KEEP_BODY: usize = 64 * 1024;

/// Output past this after a buffered answer (that keeps the connection open) is sent as a
/// stream ([`Flow::Stream`], as a file body): the keep-alive idle time then runs from the
/// moment it has gone out, as nginx's, not from when it was made (a slow reader of a large
/// answer would find its connection closed as soon as it finished reading).
const LARGE_ANSWER: usize = 256 * 1024;

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
    /// A request of `len` bytes switched the connection to another protocol.
    Upgraded { len: usize },
    /// A request of `len` bytes is answered with a streamed body (its head is written).
    Streaming { len: usize },
    /// A request of `len` bytes was answered with a file body (or a large buffered one): the
    /// loop sends it next.
    File { len: usize },
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
    /// After a `101 Switching Protocols`: the protocol that serves the connection now (every
    /// callback goes to it).
    upgraded: Option<Upgraded>,
    /// The streamed body being sent; nothing else is parsed meanwhile.
    outgoing: Option<Box<Outgoing>>,
    /// The request body being streamed to the handler; nothing else is parsed meanwhile.
    upload: Option<Box<Upload>>,
    /// A response's file body goes out (see [`Flow::Stream`]); nothing else is parsed
    /// meanwhile. `None` on the plain path.
    sending: Option<SendingFile>,
}

/// The file body of the answer being sent (or a large buffered answer, see [`LARGE_ANSWER`]).
struct SendingFile {
    /// Until the loop takes it ([`Connection::take_file`]); `None` for a buffered answer.
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
            upgraded: None,
            outgoing: None,
            upload: None,
            sending: None,
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
        // A body over the limit, streamed to the handler (see `Http::stream_large_bodies`).
        let mut large = None;
        let (body, body_len) = match head.framing {
            Framing::Empty => (&[][..], 0),
            Framing::Length(n) if n > self.limits.max_body_bytes => {
                large = Some(self.upload_for(Some(n as u64), now)?);
                (&[][..], 0)
            }
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
                let max = self.limits.max_body_bytes;
                // Streaming large bodies: decode past the limit (by one read at most), then
                // hand what came to the handler's reader.
                let limit = if self.limits.stream_large_bodies {
                    usize::MAX
                } else {
                    max
                };
                let decoded = self.decoder.decode(rest, &mut self.body, limit)?;
                if self.body.len() > max {
                    let mut upload = self.upload_for(None, now)?;
                    upload.push(&self.body, now);
                    self.body.clear();
                    let len = match decoded {
                        Decoded::Done(n) => {
                            upload.finish();
                            n
                        }
                        Decoded::Partial => rest.len(),
                    };
                    large = Some(upload);
                    (&[][..], len)
                } else {
                    match decoded {
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
            }
        };
        let offer = large.as_ref().and_then(|u| u.offer());
        let req = Request {
            method: head.method,
            target: head.target,
            minor_version: head.minor_version,
            headers: head.headers,
            body,
            peer: self.peer,
            params: Params::None,
            upload: offer.as_deref(),
        };
        let res = &mut self.response;
        let handler = &self.handler;
        // What the watchdog names if this handler never returns (a few stores, no syscall).
        crate::heartbeat::enter(head.method, head.target, now);
        let served = panic::catch_unwind(AssertUnwindSafe(|| handler.call(&req, res)));
        crate::heartbeat::leave();
        if let Some(mut upload) = large {
            if served.is_ok() && upload.taken() {
                if head.expect_continue && !self.continued {
                    // Before the final answer, which may come at once.
                    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                self.upload = Some(Box::new(upload));
            } else {
                // The handler did not opt in: too large, as without streaming.
                res.reset();
                return Err(Error::BodyTooLarge);
            }
        }
        let deferred = res.deferred.take();
        let switch = res.upgrade.take();
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
        if let Some(start) = switch.filter(|_| served.is_ok() && res.status_code() == 101) {
            let wake = res.link.as_ref().map(|link| link.wake.clone());
            let (minor, draining) = (head.minor_version, self.draining);
            let switched = upgrade::switch(start, res, minor, draining, wake, out, now, started);
            res.reset();
            self.finish_request(now);
            let len = taken + body_len;
            return Ok(match switched {
                Some(upgraded) => {
                    self.upgraded = Some(upgraded);
                    One::Upgraded { len }
                }
                None => One::Served { len, close: true },
            });
        }
        let close = if served.is_ok() {
            crate::metrics::local::request(res.status_code(), started);
            let close = !head.keep_alive || self.draining || res.wants_close();
            let persist = Persist::after(close, head.minor_version);
            if let Some(body) = res.stream.take() {
                let head_only = head.method == "HEAD";
                let head_alone =
                    self.start_stream(body, head_only, head.minor_version, persist, out, now);
                self.response.reset();
                self.finish_request(now);
                let len = taken + body_len;
                return Ok(match head_alone {
                    None => One::Streaming { len },
                    Some(close) => One::Served { len, close },
                });
            }
            let head_only = head.method == "HEAD";
            let start = out.len();
            res.write(out, head_only, persist, now);
            if let Some(file) = res_file(res, head_only) {
                // Its file body goes next (then `on_drained`).
                self.sending = Some(SendingFile {
                    file: Some(file),
                    close,
                });
                res.reset();
                self.finish_request(now);
                return Ok(One::File {
                    len: taken + body_len,
                });
            }
            if !close && out.len() - start > LARGE_ANSWER && self.upload.is_none() {
                // The idle time runs from when it has gone out (`on_drained`). Not while a
                // streamed body still comes: it is read on while the answer waits for the
                // client (who may read only once it has sent it).
                self.sending = Some(SendingFile { file: None, close });
                res.reset();
                self.finish_request(now);
                return Ok(One::File {
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

    /// A streamed request body of `len` bytes (`None`: chunked), or 413 when it cannot be.
    fn upload_for(&self, len: Option<u64>, now: Instant) -> Result<Upload, Error> {
        match &self.response.link {
            Some(link) if self.limits.stream_large_bodies => Ok(Upload::new(
                len,
                self.limits.stream_window,
                link.wake.clone(),
                now,
            )),
            _ => Err(Error::BodyTooLarge),
        }
    }

    /// Feed `input` (body bytes) to the streamed request body; once it is complete, serve
    /// what follows it.
    fn feed_upload(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        if self.upload.is_some() && self.waiting.as_ref().is_some_and(|w| w.slot.streams()) {
            // A streamed answer came while the body still arrives (the handler echoes it,
            // say): it starts now, and both go on at once; the handler may wait for the
            // client to read before it reads more.
            match self.answer_deferred(out, now) {
                _ if self.outgoing.is_some() => return self.duplex(input, out, now),
                // A head alone (HEAD) that closes the connection.
                Some(true) => {
                    return Step {
                        consumed: input.len(),
                        flow: Flow::Close,
                    }
                }
                _ => {}
            }
        }
        let Some(upload) = self.upload.as_mut() else {
            return self.on_read(input, out, now);
        };
        if upload.full && !upload.has_room() {
            return Step {
                consumed: 0,
                flow: Flow::Wait,
            };
        }
        let (consumed, done) = match upload.remaining {
            Some(left) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                upload.push(&input[..take], now);
                upload.remaining = Some(left - take as u64);
                (take, left == take as u64)
            }
            None => {
                // Decode into the (otherwise unused) body buffer, then hand it over.
                let mut data = std::mem::take(&mut self.body);
                data.clear();
                let decoded = self.decoder.decode(input, &mut data, usize::MAX);
                upload.push(&data, now);
                data.clear();
                self.body = data;
                match decoded {
                    Ok(Decoded::Done(n)) => (n, true),
                    Ok(Decoded::Partial) => (input.len(), false),
                    Err(e) => {
                        tracing::debug!("bad request body: {e:?}");
                        self.upload = None;
                        response::write_error(out, e.status(), now);
                        return Step {
                            consumed: input.len(),
                            flow: Flow::Close,
                        };
                    }
                }
            }
        };
        if !done {
            let flow = if upload.full {
                Flow::Wait
            } else {
                Flow::Continue
            };
            return Step { consumed, flow };
        }
        upload.finish();
        self.upload = None;
        self.state = State::Idle {
            since: now,
            fresh: false,
        };
        if self.waiting.is_some() {
            // The handler answers later; or it did already (its wake-up found the connection
            // reading, so it is not announced again).
            match self.answer_deferred(out, now) {
                None => {
                    return Step {
                        consumed,
                        flow: Flow::Wait,
                    }
                }
                // A file body: the loop sends it, then `on_drained` closes or serves what
                // follows (checked first: an answer that closes still has its file to send).
                Some(_) if self.sending.is_some() => {
                    return Step {
                        consumed,
                        flow: Flow::Stream,
                    }
                }
                Some(true) => {
                    return Step {
                        consumed: input.len(),
                        flow: Flow::Close,
                    }
                }
                Some(false) if self.outgoing.is_some() => {
                    let step = self.on_drained(&input[consumed..], out, now);
                    return Step {
                        consumed: consumed + step.consumed,
                        flow: step.flow,
                    };
                }
                Some(false) => {}
            }
        }
        let rest = self.on_read(&input[consumed..], out, now);
        Step {
            consumed: consumed + rest.consumed,
            flow: rest.flow,
        }
    }

    /// Full duplex: a streamed answer goes out while the streamed request body still comes.
    /// The answer's next piece first; when its producer has nothing yet (it wakes the
    /// connection) or the answer is over, the body takes the input.
    fn duplex(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        match self.next_piece(out, now) {
            Flow::Stream => Step {
                consumed: 0,
                flow: Flow::Stream,
            },
            Flow::Close => Step {
                consumed: input.len(),
                flow: Flow::Close,
            },
            Flow::Wait | Flow::Continue => self.feed_upload(input, out, now),
        }
    }

    /// Write the head of the answer in `self.response` with a streamed `body`. `None` when
    /// the body follows (`self.outgoing` holds it); for a head alone (HEAD, a bodiless
    /// status), whether the connection closes after it.
    fn start_stream(
        &mut self,
        body: Body,
        head_only: bool,
        minor_version: u8,
        persist: Persist,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> Option<bool> {
        let res = &self.response;
        let len = body.len;
        // Unknown length: chunked for HTTP/1.1, the connection's end for HTTP/1.0.
        let chunked = len.is_none() && minor_version > 0;
        let persist = if len.is_none() && !chunked {
            Persist::Close
        } else {
            persist
        };
        if head_only || res.bodiless() {
            res.write_stream_head(out, len, chunked && !res.bodiless(), persist, now);
            // Dropping the body stops its producers.
            return Some(persist == Persist::Close);
        }
        res.write_stream_head(out, len, chunked, persist, now);
        let mut outgoing = Outgoing::new(
            body,
            chunked,
            persist == Persist::Close,
            self.limits.stream_window,
            self.response.link.clone(),
        );
        if self.draining {
            // Answered after the drain began (deferred): server-sent events end at once,
            // as those in flight when it began did (`on_drain`).
            outgoing.end_on_drain();
        }
        self.outgoing = Some(Box::new(outgoing));
        None
    }

    /// The next piece of the streamed body onto `out`, and what the loop does next.
    fn next_piece(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow {
        let Some(outgoing) = self.outgoing.as_mut() else {
            return Flow::Continue;
        };
        match outgoing.fill(out) {
            Fill::More => Flow::Stream,
            Fill::Wait => Flow::Wait,
            Fill::Done => {
                let close = outgoing.close || self.draining;
                self.outgoing = None;
                // The keep-alive idle time runs from the end of the answer (a stream may
                // last longer than the keep-alive timeout).
                self.state = State::Idle {
                    since: now,
                    fresh: false,
                };
                if close {
                    Flow::Close
                } else {
                    Flow::Continue
                }
            }
            Fill::Failed => {
                self.outgoing = None;
                Flow::Close
            }
        }
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
            Done::Answer(mut res) if res.upgrade.is_some() && res.status_code() == 101 => {
                let start = res.upgrade.take()?;
                let wake = self.response.link.as_ref().map(|link| link.wake.clone());
                let minor = waiting.minor_version;
                let started = waiting.started;
                let switched =
                    upgrade::switch(start, &res, minor, self.draining, wake, out, now, started);
                // Switched: the input behind the request goes to the new protocol (on_read).
                self.upgraded = switched;
                self.upgraded.is_none()
            }
            Done::Answer(mut res) => {
                crate::metrics::local::request(res.status_code(), waiting.started);
                let close = !waiting.keep_alive || self.draining || res.wants_close();
                let persist = Persist::after(close, waiting.minor_version);
                if let Some(body) = res.stream.take() {
                    // The answer goes through `self.response` (where streaming starts from).
                    let link = self.response.link.take();
                    self.response = res;
                    self.response.link = link;
                    let min = waiting.minor_version;
                    let head_alone =
                        self.start_stream(body, waiting.head_only, min, persist, out, now);
                    self.response.reset();
                    // A stream decides at its end; a head alone closes now if it must.
                    return Some(head_alone.unwrap_or(false));
                }
                let start = out.len();
                res.write(out, waiting.head_only, persist, now);
                // A file body, or a large answer: the loop sends it, then `on_drained`.
                self.sending = res_file(&mut res, waiting.head_only)
                    .map(Some)
                    .or_else(|| (!close && out.len() - start > LARGE_ANSWER).then_some(None))
                    .map(|file| SendingFile { file, close });
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
        if let Some(upgraded) = &mut self.upgraded {
            return upgraded.on_read(input, out, now);
        }
        if self.upload.is_some() {
            return self.feed_upload(input, out, now);
        }
        let mut consumed = 0;
        if self.waiting.is_some() || self.outgoing.is_some() || self.sending.is_some() {
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
                    consumed += len;
                    if self.upload.is_none() {
                        return Step {
                            consumed,
                            flow: Flow::Wait,
                        };
                    }
                }
                Ok(One::Streaming { len }) => {
                    consumed += len;
                    if self.upload.is_some() {
                        // The handler reads the body and streams its answer: both go on.
                        let step = self.duplex(&input[consumed..], out, now);
                        return Step {
                            consumed: consumed + step.consumed,
                            flow: step.flow,
                        };
                    }
                    match self.next_piece(out, now) {
                        // Over already (a short body): serve what follows.
                        Flow::Continue => {}
                        Flow::Close => {
                            return Step {
                                consumed: input.len(),
                                flow: Flow::Close,
                            }
                        }
                        flow => return Step { consumed, flow },
                    }
                }
                Ok(One::Upgraded { len }) => {
                    // The new protocol's first input: what followed the request (maybe
                    // nothing); it may write a greeting right after the 101.
                    consumed += len;
                    let step = self.on_read(&input[consumed..], out, now);
                    return Step {
                        consumed: consumed + step.consumed,
                        flow: step.flow,
                    };
                }
                Ok(One::File { len }) => {
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
            if self.upload.is_some() {
                // The handler took the body's reader: feed it what is here.
                let step = self.feed_upload(&input[consumed..], out, now);
                return Step {
                    consumed: consumed + step.consumed,
                    flow: step.flow,
                };
            }
        }
        Step {
            consumed,
            flow: Flow::Continue,
        }
    }

    fn on_eof(&mut self, input: &[u8], out: &mut Vec<u8>) -> Flow {
        match &mut self.upgraded {
            Some(upgraded) => upgraded.on_eof(input, out),
            None => Flow::Close,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        if let Some(upgraded) = &self.upgraded {
            return upgraded.deadline();
        }
        if let Some(upload) = &self.upload {
            // Waiting for the handler to read is not the client's fault.
            return (!upload.full).then(|| upload.last + self.limits.header_read_timeout);
        }
        if self.waiting.is_some() || self.outgoing.is_some() || self.sending.is_some() {
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
        if let Some(upgraded) = &mut self.upgraded {
            return upgraded.on_timeout(out, now);
        }
        if self.deadline().is_some_and(|at| at > now) {
            return Flow::Continue;
        }
        if let State::Head { .. } | State::Body { .. } = self.state {
            response::write_error(out, Error::Timeout.status(), now);
        }
        Flow::Close
    }

    fn on_drain(&mut self, out: &mut Vec<u8>) -> Flow {
        if let Some(upgraded) = &mut self.upgraded {
            return upgraded.on_drain(out);
        }
        self.draining = true;
        if let Some(outgoing) = &mut self.outgoing {
            // A body in flight is finished (server-sent events end now), then the
            // connection closes.
            outgoing.end_on_drain();
            return Flow::Continue;
        }
        if self.upload.is_some() {
            // A body on its way to the handler: finish it, answer, then close.
            return Flow::Continue;
        }
        if self.waiting.is_some() || self.sending.is_some() {
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
        if self.upgraded.is_some() {
            // Another protocol's state: it cannot travel with the socket.
            return Handover::Never;
        }
        if self.waiting.is_some()
            || self.outgoing.is_some()
            || self.upload.is_some()
            || self.sending.is_some()
        {
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
        if let Some(upgraded) = &mut self.upgraded {
            return upgraded.on_wake(input, out, now);
        }
        if self.upload.is_some() {
            if self.outgoing.is_some() {
                // Full duplex: the answer's producer has more, or the handler read some of
                // the body (room again).
                return self.duplex(input, out, now);
            }
            // The handler read some of the body (room again), or its answer came early (a
            // streamed one starts now, any other goes out once the body is read).
            return self.feed_upload(input, out, now);
        }
        if self.outgoing.is_some() {
            // The body's producer has more (or ended).
            return self.on_drained(input, out, now);
        }
        if self.waiting.is_none() {
            // Nothing was deferred: nothing to do.
            return Step {
                consumed: 0,
                flow: Flow::Continue,
            };
        }
        match self.answer_deferred(out, now) {
            None if self.waiting.is_some() => Step {
                consumed: 0,
                flow: Flow::Wait,
            },
            // Its file body goes next; then `on_drained` closes or serves what is pipelined.
            Some(_) if self.sending.is_some() => Step {
                consumed: 0,
                flow: Flow::Stream,
            },
            Some(true) => Step {
                consumed: input.len(),
                flow: Flow::Close,
            },
            // A streamed answer: its first piece.
            _ if self.outgoing.is_some() => self.on_drained(input, out, now),
            // Answered: serve what was pipelined behind it (or, when the answer switched
            // protocols, hand it to the new one).
            _ => self.on_read(input, out, now),
        }
    }

    fn take_file(&mut self) -> Option<FileRange> {
        if let Some(upgraded) = &mut self.upgraded {
            // An upgraded protocol may stream files too.
            return upgraded.take_file();
        }
        self.sending.as_mut()?.file.take()
    }

    fn on_drained(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        if let Some(upgraded) = &mut self.upgraded {
            return upgraded.on_drained(input, out, now);
        }
        if let Some(sending) = self.sending.take() {
            // A file body (or a large answer) went out; the keep-alive idle time runs from the
            // end of the answer.
            self.state = State::Idle {
                since: now,
                fresh: false,
            };
            if sending.close || self.draining {
                return Step {
                    consumed: input.len(),
                    flow: Flow::Close,
                };
            }
            return self.on_read(input, out, now);
        }
        if self.upload.is_some() {
            // Full duplex: the request body still comes while the answer streams.
            return self.duplex(input, out, now);
        }
        match self.next_piece(out, now) {
            // The body is over: serve what was pipelined behind it.
            Flow::Continue => self.on_read(input, out, now),
            Flow::Close => Step {
                consumed: input.len(),
                flow: Flow::Close,
            },
            flow => Step { consumed: 0, flow },
        }
    }
}
