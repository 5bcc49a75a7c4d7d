//! The answer a handler builds, and its rendering onto the connection's output.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::deferred::{Link, Responder, Slot};
use super::file;
use super::stream::{Body, BodySender, Pipe, Source};
use super::upgrade::Start;
use super::{date, status, Request};
use crate::protocol::{Connection, FileRange, Wake};

/// Buffers larger than this are released after the response went out, so that one large
/// response does not make an idle connection expensive.
const KEEP_CAPACITY: usize = 16 * 1024;

/// What the handler answers: status `200`, no headers and an empty body until told otherwise.
///
/// `Date`, `Content-Length` and `Connection` are written by the server: a `Content-Length`,
/// `Transfer-Encoding` or `Date` set here is ignored, and `Connection: close` closes the
/// connection after this response.
///
/// The body is a buffer ([`body`](Self::body)), or is streamed: produced as the socket
/// drains, one window ([`Http::stream_window`](super::Http::stream_window)) at a time,
/// whatever its size ([`stream`](Self::stream), [`chunks`](Self::chunks),
/// [`channel`](Self::channel), [`sse`](Self::sse)); a streamed body replaces the buffer. A
/// streamed body of unknown length is sent chunked to HTTP/1.1 clients, and delimited by the
/// end of the connection for HTTP/1.0 ones; a `HEAD` request gets the head only. Requests
/// pipelined behind a streamed answer wait for its end.
pub struct Response {
    status: u16,
    /// Header lines, each `Name: value\r\n`.
    headers: Vec<u8>,
    body: Vec<u8>,
    /// A body sent from a file (with sendfile(2)) instead of `body`.
    file: Option<FileRange>,
    close: bool,
    /// The connection's way to defer (`None` for a [`Responder`]'s own response).
    pub(crate) link: Option<Link>,
    /// Set by [`Response::defer`]: where the answer will come.
    pub(crate) deferred: Option<Arc<Slot>>,
    /// Set by [`Response::upgrade`]: the protocol that takes the connection over.
    pub(crate) upgrade: Option<Start>,
    /// A streamed body, which replaces `body`.
    pub(crate) stream: Option<Body>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &String::from_utf8_lossy(&self.headers))
            .field("body_len", &self.body.len())
            .field("file", &self.file)
            .field("close", &self.close)
            .field("deferred", &self.deferred.is_some())
            .field("upgrade", &self.upgrade.is_some())
            .field("stream", &self.stream.is_some())
            .finish()
    }
}

/// How the connection continues after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persist {
    /// Keep-alive, HTTP/1.1 (the default needs no header).
    KeepAlive,
    /// Keep-alive asked for by an HTTP/1.0 client: say `Connection: keep-alive`.
    KeepAlive10,
    /// Close after this response: say `Connection: close`.
    Close,
    /// `101 Switching Protocols`: say `Connection: Upgrade`; the connection speaks another
    /// protocol from the next byte on.
    Upgrade,
}

impl Persist {
    /// After an answer that closes the connection or not, to a client of HTTP/1.`minor`.
    pub(crate) fn after(close: bool, minor: u8) -> Persist {
        match (close, minor) {
            (true, _) => Persist::Close,
            (false, 0) => Persist::KeepAlive10,
            (false, _) => Persist::KeepAlive,
        }
    }
}

impl Response {
    pub(crate) fn new() -> Self {
        Response {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            file: None,
            close: false,
            link: None,
            deferred: None,
            upgrade: None,
            stream: None,
        }
    }

    /// Switch protocols: answer `101 Switching Protocols` with `Upgrade: <protocol>` and
    /// `Connection: Upgrade` (plus the headers set here), then serve the connection with the
    /// [`Connection`] that `start` builds. `start` gets the connection's [`Wake`] (`None` only
    /// for a connection made without one, see
    /// [`Protocol::connect_with`](crate::protocol::Protocol::connect_with)), so that other
    /// threads can make the new protocol write. Its first
    /// [`on_read`](Connection::on_read) comes right after the `101` is written, with the bytes
    /// the client sent after this request (often none): it may write a greeting.
    ///
    /// Only a client that asked for it may be switched (RFC 9110 section 7.8: the request's
    /// `Upgrade` header lists `protocol`); checking that is the handler's job (see
    /// [`crate::ws::accept`] for WebSocket). A status set after this call other than `101`
    /// cancels the switch (the response goes out as a plain one). An HTTP/1.0 request cannot
    /// switch (it gets `400`), nor can a request that arrives while the worker drains (it gets
    /// `503`, and the client reconnects to another worker); both close the connection. The
    /// answer of a [`Responder`] switches the same way, when it is sent.
    pub fn upgrade<C, F>(&mut self, protocol: &str, start: F) -> &mut Self
    where
        C: Connection + Send,
        F: FnOnce(Option<Wake>) -> C + Send + 'static,
    {
        self.upgrade = Some(Box::new(move |wake| Box::new(start(wake))));
        self.status(101).header("Upgrade", protocol)
    }

    /// Answer later, from any thread: returns the [`Responder`] to fill in and send; what is
    /// set on this response is ignored. The connection reads nothing more until the responder
    /// is sent (or dropped, which answers `500`); the loop serves its other connections
    /// meanwhile.
    ///
    /// # Panics
    /// When called twice for one request, or on a [`Responder`]'s own response (there is no
    /// connection behind it).
    pub fn defer(&mut self) -> Responder {
        assert!(self.deferred.is_none(), "Response::defer called twice");
        let link = self
            .link
            .as_ref()
            .expect("Response::defer: only the response of a request being served can defer");
        let slot = Arc::new(Slot::default());
        self.deferred = Some(Arc::clone(&slot));
        Responder::new(slot, link.wake.clone())
    }

    /// Add a `Set-Cookie` header for `cookie` (built with the `cookie` crate, value
    /// percent-encoded).
    pub fn cookie(&mut self, cookie: &cookie::Cookie<'_>) -> &mut Self {
        let value = cookie.encoded().to_string();
        self.header("Set-Cookie", value)
    }

    /// Serialize `value` as the JSON body, with `Content-Type: application/json` (feature
    /// `serde`). A value that cannot be serialized answers `500`.
    #[cfg(feature = "serde")]
    pub fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        self.body.clear();
        match serde_json::to_writer(&mut self.body, value) {
            Ok(()) => self.header("Content-Type", "application/json"),
            Err(e) => {
                tracing::error!("serializing a JSON response: {e}");
                self.body.clear();
                self.status(500)
            }
        }
    }

    /// Set the status code. A code outside `100..=999` is answered as `500`.
    pub fn status(&mut self, code: u16) -> &mut Self {
        self.status = if (100..=999).contains(&code) {
            code
        } else {
            500
        };
        self
    }

    /// Add a header. A name that is not an HTTP token, or a value holding CR, LF or NUL, is
    /// dropped (it could split the response); see the type's docs for the headers the server
    /// owns.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        if !is_token(name) || value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
            tracing::warn!("dropping invalid response header {name:?}");
            return self;
        }
        if name.eq_ignore_ascii_case("connection") {
            self.close |= has_token(value, "close");
            return self;
        }
        if ["content-length", "transfer-encoding", "date"]
            .iter()
            .any(|own| name.eq_ignore_ascii_case(own))
        {
            return self;
        }
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
        self
    }

    /// Replace the body (and a file body set before).
    pub fn body(&mut self, body: impl AsRef<[u8]>) -> &mut Self {
        self.file = None;
        self.body.clear();
        self.body.extend_from_slice(body.as_ref());
        self
    }

    /// Stream the body from `reader`, chunked (its length is unknown; see
    /// [`stream_sized`](Self::stream_sized)). It is read on the worker's blocking pool
    /// ([`Http::blocking_threads`](super::Http::blocking_threads)), one window at a time, the
    /// next while the last is sent: a read that blocks (a pipe, a socket, a slow disk) stalls
    /// no other connection, and a pool thread is taken only while a read runs, not while a
    /// slow client makes the stream wait. A read error cuts the answer short (the connection
    /// closes before the body's end, so the client sees it incomplete). For bytes already in
    /// memory, [`chunks`](Self::chunks) saves the thread hop.
    pub fn stream(&mut self, reader: impl Read + Send + 'static) -> &mut Self {
        self.stream = Some(Body {
            source: Source::Pipe(Pipe::reader(Box::new(reader))),
            len: None,
            ends_on_drain: false,
        });
        self
    }

    /// As [`stream`](Self::stream), for a body of `len` bytes, sent with `Content-Length`. A
    /// reader that ends early cuts the answer short; bytes past `len` are not sent.
    pub fn stream_sized(&mut self, reader: impl Read + Send + 'static, len: u64) -> &mut Self {
        self.stream(reader);
        if let Some(body) = &mut self.stream {
            body.len = Some(len);
        }
        self
    }

    /// Stream the body from `chunks`, pulled on the event loop's thread as the socket drains
    /// (about one window per pull): for chunks made in memory, where each `next` is cheap
    /// (never one that waits: use [`stream`](Self::stream) or [`channel`](Self::channel)
    /// then). Sent chunked; see [`chunks_sized`](Self::chunks_sized) for a known length.
    pub fn chunks<I>(&mut self, chunks: I) -> &mut Self
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: AsRef<[u8]>,
    {
        let mut chunks = chunks.into_iter();
        let next = move |out: &mut Vec<u8>, until: usize| {
            while out.len() < until {
                match chunks.next() {
                    Some(chunk) => out.extend_from_slice(chunk.as_ref()),
                    None => return false,
                }
            }
            true
        };
        self.stream = Some(Body {
            source: Source::Chunks(Box::new(next)),
            len: None,
            ends_on_drain: false,
        });
        self
    }

    /// As [`chunks`](Self::chunks), for a body of `len` bytes, sent with `Content-Length`.
    pub fn chunks_sized<I>(&mut self, chunks: I, len: u64) -> &mut Self
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: AsRef<[u8]>,
    {
        self.chunks(chunks);
        if let Some(body) = &mut self.stream {
            body.len = Some(len);
        }
        self
    }

    /// Stream the body from other threads: returns the [`BodySender`] to write it with
    /// (clone it for several writers). The body is sent chunked as it comes; it ends when the
    /// last sender is dropped. A sender blocks while the connection's window is full.
    pub fn channel(&mut self) -> BodySender {
        let (sender, pipe) = BodySender::channel();
        self.stream = Some(Body {
            source: Source::Pipe(pipe),
            len: None,
            ends_on_drain: false,
        });
        sender
    }

    /// A stream of server-sent events: [`channel`](Self::channel) with
    /// `Content-Type: text/event-stream` and `Cache-Control: no-cache`; write events with
    /// [`BodySender::send_event`]. When the worker drains (a reload, a scale-down) the stream
    /// ends cleanly after what was sent, and senders get [`Closed`](super::Closed): the
    /// client's `EventSource` reconnects, to a worker that stays.
    pub fn sse(&mut self) -> BodySender {
        self.header("Content-Type", "text/event-stream")
            .header("Cache-Control", "no-cache");
        let sender = self.channel();
        if let Some(body) = &mut self.stream {
            body.ends_on_drain = true;
        }
        sender
    }

    /// The body buffer, to append to (it implements [`std::io::Write`]); it replaces a file
    /// body set before.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        self.file = None;
        &mut self.body
    }

    /// Answer `req` with the file at `path`, as a static file server does: `ETag` and
    /// `Last-Modified`, `304 Not Modified` for a matching `If-None-Match` (or, without it,
    /// `If-Modified-Since`), `412` for a failed `If-Match`/`If-Unmodified-Since`, one byte
    /// range of a `GET` (`206` with `Content-Range`; `416` when no byte of it is in the file;
    /// several ranges are ignored: `200`), `Content-Type` from the extension (`mime_guess`),
    /// and the body sent from the file with sendfile(2), not copied through this process.
    /// A `HEAD` gets the same headers. A missing file is answered `404`, one this process may
    /// not read `403`, anything but a regular file `404`.
    ///
    /// `path` is used as given: to serve a directory to clients, whose paths must not leave
    /// it, use [`StaticDir`](super::StaticDir). Opening the file happens on the calling
    /// thread (a local disk answers in microseconds; a slow network file system would stall
    /// the loop: wrap such a handler in [`blocking`](super::blocking)).
    pub fn file(&mut self, req: &Request<'_>, path: impl AsRef<Path>) -> &mut Self {
        let path = path.as_ref();
        let opened = file::open(path).and_then(|f| Ok((f.metadata()?, f)));
        match opened {
            Ok((meta, f)) => file::serve(req, self, f, &meta, path),
            Err(e) => {
                self.status(file::error_status(&e, path));
            }
        }
        self
    }

    /// Make the body `len` bytes of `file` from `offset`, sent with sendfile(2) (no copy
    /// through this process); no header is added (see [`file`](Self::file) for a whole
    /// static-file answer). The file must hold those bytes when the response goes out: if it
    /// is shorter by then, the connection is closed after what there was (the client sees a
    /// body shorter than its `Content-Length`). It replaces a streamed body set before;
    /// setting [`body`](Self::body) or a streamed body afterwards replaces it.
    pub fn body_file(&mut self, file: impl Into<Arc<File>>, offset: u64, len: u64) -> &mut Self {
        self.body.clear();
        self.stream = None;
        self.file = (len > 0).then(|| FileRange {
            file: file.into(),
            offset,
            len,
        });
        self
    }

    /// The file body, taken out to be sent after [`write`](Self::write)'s output: `None` for
    /// a body in memory, and for a status that has no body (1xx, 204, 304).
    pub(crate) fn take_file(&mut self) -> Option<FileRange> {
        let file = self.file.take()?;
        (!self.bodiless()).then_some(file)
    }

    /// Whether the handler asked to close the connection.
    pub(crate) fn wants_close(&self) -> bool {
        self.close
    }

    /// The status code set so far.
    pub(crate) fn status_code(&self) -> u16 {
        self.status
    }

    /// Back to the initial state, keeping modest buffers for the next request.
    pub(crate) fn reset(&mut self) {
        self.status = 200;
        self.close = false;
        // `None` but for the rare answers that stream, switch or defer: cheap checks.
        self.file = None;
        self.stream = None;
        self.upgrade = None;
        self.deferred = None;
        for buf in [&mut self.headers, &mut self.body] {
            if buf.capacity() > KEEP_CAPACITY {
                *buf = Vec::new();
            } else {
                buf.clear();
            }
        }
    }

    /// Render onto `out`: status line, `Date`, `Content-Length`, the handler's headers,
    /// `Connection` when needed, and the body unless `head_only` (a HEAD request, which gets
    /// the `Content-Length` the GET would have had). A file body is not written: the caller
    /// takes it ([`take_file`](Self::take_file)) and sends it after `out`.
    pub(crate) fn write(&self, out: &mut Vec<u8>, head_only: bool, persist: Persist, now: Instant) {
        write_head(out, self.status, persist, now);
        let bodiless = self.bodiless();
        if !bodiless {
            let len = match &self.file {
                None => self.body.len() as u64,
                Some(file) => file.len,
            };
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.headers);
        out.extend_from_slice(b"\r\n");
        if !(head_only || bodiless) {
            out.extend_from_slice(&self.body);
        }
    }

    /// Render the head of a streamed answer onto `out`: `Content-Length` when `len` is known,
    /// else `Transfer-Encoding: chunked` when `chunked`, else nothing (the end of the
    /// connection delimits the body).
    pub(crate) fn write_stream_head(
        &self,
        out: &mut Vec<u8>,
        len: Option<u64>,
        chunked: bool,
        persist: Persist,
        now: Instant,
    ) {
        write_head(out, self.status, persist, now);
        if let Some(len) = len {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            out.extend_from_slice(b"\r\n");
        } else if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        out.extend_from_slice(&self.headers);
        out.extend_from_slice(b"\r\n");
    }

    /// Whether this status carries no body (1xx, 204, 304).
    pub(crate) fn bodiless(&self) -> bool {
        self.status < 200 || self.status == 204 || self.status == 304
    }
}

/// The status line, `Date` and `Connection` lines.
fn write_head(out: &mut Vec<u8>, status: u16, persist: Persist, now: Instant) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(status::reason(status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    date::append(out, now);
    out.extend_from_slice(match persist {
        Persist::KeepAlive => b"\r\n".as_slice(),
        Persist::KeepAlive10 => b"\r\nConnection: keep-alive\r\n",
        Persist::Close => b"\r\nConnection: close\r\n",
        Persist::Upgrade => b"\r\nConnection: Upgrade\r\n",
    });
}

/// A bodyless answer that ends the connection (an error status).
pub(crate) fn write_error(out: &mut Vec<u8>, status: u16, now: Instant) {
    write_head(out, status, Persist::Close, now);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// RFC 9110 token: one or more tchar.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a comma-separated header value lists `token` (case-insensitively).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}
