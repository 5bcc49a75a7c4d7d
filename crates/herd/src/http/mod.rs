//! HTTP/1.1 on top of the event loop: [`Http`] is the [`Protocol`], a [`Handler`] serves each
//! [`Request`] by filling in a [`Response`].
//!
//! Keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`), pipelining (every
//! complete request of a read is answered, in order, with one write), bodies with
//! `Content-Length` or `chunked`, `HEAD`, `Expect: 100-continue`. Bad input is answered with
//! its status and the connection closes: 400 (malformed head, a bare LF line ending, ambiguous
//! framing, a missing, repeated or invalid `Host`), 408 (header read timeout, or a body slower
//! than the minimum rate), 413, 414, 431, 501 (a transfer coding other than chunked), 505. An
//! HTTP/1.0 request with `Transfer-Encoding` is decoded, answered, and its connection closed
//! (RFC 9112 section 6.1).
//!
//! Bodies of any size stream without being held whole: [`Response::stream`] (a reader, read on
//! the pool), [`Response::chunks`] (an iterator, on the loop), [`Response::channel`] and
//! [`Response::sse`] (written from other threads through a [`BodySender`]).
//!
//! Handlers that wait leave the loop: [`blocking`] runs one on the worker's bounded pool,
//! [`Response::defer`] gives a [`Responder`] to answer from any thread. [`Router`] routes by
//! path and method (`matchit`); [`Request`] decodes queries, forms, cookies and (feature
//! `serde`) JSON. [`Response::file`] and [`StaticDir`] serve files (validators, conditional
//! requests, one byte range, sendfile(2)).
//!
//! ```
//! use herd::{Http, Request, Response};
//! use std::time::Duration;
//!
//! let http = Http::new(|req: &Request<'_>, res: &mut Response| {
//!     match req.path() {
//!         "/" => res.body("hello"),
//!         _ => res.status(404).body("not found"),
//!     };
//! })
//! .keepalive_timeout(Duration::from_secs(15))
//! .max_body_bytes(64 * 1024);
//! # let _ = http;
//! ```

mod chunked;
mod conn;
mod date;
mod deferred;
mod error;
mod file;
mod handler;
mod parse;
mod pool;
mod request;
mod response;
mod router;
mod static_dir;
mod status;
mod stream;
#[cfg(test)]
mod tests;
mod upgrade;
mod upload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use conn::Conn;
pub use deferred::Responder;
use error::Error;
pub use handler::Handler;
pub use pool::{blocking, Blocking, BlockingSnapshot, BlockingStats};
pub use request::{BadRequest, Request};
pub(crate) use response::has_token;
pub use response::Response;
pub use router::Router;
pub use static_dir::StaticDir;
pub use stream::{BodySender, Closed, TrySendError};
pub use upload::BodyReader;

use crate::protocol::{Protocol, Wake};
use pool::{Pool, PoolConfig};

/// The limits every connection enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_uri_len: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) min_body_rate: usize,
    pub(crate) stream_window: usize,
    pub(crate) stream_large_bodies: bool,
}

/// The HTTP/1.1 [`Protocol`]: serves every request with a [`Handler`].
#[derive(Debug)]
pub struct Http<H> {
    handler: Arc<H>,
    limits: Limits,
    pool: Arc<Pool>,
    pool_config: PoolConfig,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl<H: Handler> Http<H> {
    /// HTTP/1.1 with `handler` and the default limits.
    pub fn new(handler: H) -> Self {
        Http {
            handler: Arc::new(handler),
            limits: Limits {
                header_read_timeout: Duration::from_secs(10),
                keepalive_timeout: Duration::from_secs(5),
                max_header_bytes: 8 * 1024,
                max_headers: 64,
                max_uri_len: 4 * 1024,
                max_body_bytes: 1024 * 1024,
                min_body_rate: 1024,
                stream_window: stream::DEFAULT_WINDOW,
                stream_large_bodies: false,
            },
            pool: Arc::new(Pool::new(DEFAULT_POOL)),
            pool_config: DEFAULT_POOL,
        }
    }

    /// The most threads of this worker's blocking pool, which runs the handlers marked
    /// [`blocking`] (threads start on demand: a service that never blocks starts none).
    /// While they are all busy, blocking requests queue (see
    /// [`blocking_queue`](Self::blocking_queue)). Default: 64, enough for a worker's share of a
    /// few hundred clients of an endpoint that waits 50 ms on I/O (64 / 50 ms = 1,280 req/s per
    /// worker), at ~1 MiB of address space (not memory) and a few pages of memory per thread.
    pub fn blocking_threads(mut self, threads: usize) -> Self {
        self.pool_config.threads = threads.max(1);
        self.pool = Arc::new(Pool::new(self.pool_config));
        self
    }

    /// How many blocking requests may wait for a pool thread before the worker stops reading
    /// from its connections (back-pressure: new requests wait in the kernel's buffers and
    /// accept queue, which costs this process nothing). Requests already read when twice as
    /// many wait are answered `503 Service Unavailable` with `Retry-After: 1`. Default: 1,024
    /// (about one second of work for the default pool at 50 ms per request, the waiting a
    /// client still tolerates better than an error).
    pub fn blocking_queue(mut self, jobs: usize) -> Self {
        self.pool_config.queue = jobs.max(1);
        self.pool = Arc::new(Pool::new(self.pool_config));
        self
    }

    /// The blocking pool's counters (threads, busy, queue depth, queue wait, refusals,
    /// panics), readable from any thread while the worker serves. Take it before handing
    /// this `Http` to the worker; a later setter on this `Http` starts a new pool.
    pub fn blocking_stats(&self) -> BlockingStats {
        BlockingStats(Arc::clone(&self.pool.stats))
    }

    /// The time a client has to send a complete request head: from the connection's start for
    /// its first request, from the first byte of a later one (the idle time before it is the
    /// [`keepalive_timeout`](Self::keepalive_timeout)'s), as nginx's `client_header_timeout`.
    /// A head still incomplete then is answered `408 Request Timeout`; a new connection that
    /// sent nothing is closed silently. While a body arrives, the same time is allowed between
    /// reads, and is the grace period of [`min_body_rate`](Self::min_body_rate). Default: 10 s.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// How long a keep-alive connection may stay idle between requests before it is closed
    /// (silently). Default: 5 s.
    pub fn keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.limits.keepalive_timeout = timeout;
        self
    }

    /// The largest request head (request line and header fields) accepted; a larger one is
    /// answered `431 Request Header Fields Too Large`. Default: 8 KiB.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_header_bytes = bytes;
        self
    }

    /// The most header fields accepted; more are answered `431`. Default: 64.
    pub fn max_headers(mut self, count: usize) -> Self {
        self.limits.max_headers = count;
        self
    }

    /// The longest request target accepted; a longer one is answered `414 URI Too Long`.
    /// Default: 4 KiB (within the 8 KiB head limit).
    pub fn max_uri_len(mut self, bytes: usize) -> Self {
        self.limits.max_uri_len = bytes;
        self
    }

    /// The largest request body accepted (`Content-Length` or decoded chunked data); a larger
    /// one is answered `413 Content Too Large` before it is read. A chunked body is decoded as
    /// it arrives and only its data is kept; its encoding may add at most 16 KiB of chunk
    /// extensions and 8 KiB of trailers (more is answered 400 and 431). Default: 1 MiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_body_bytes = bytes;
        self
    }

    /// The slowest a request body may arrive, in bytes (as sent) per second averaged from the
    /// end of its head, after a grace period of one
    /// [`header_read_timeout`](Self::header_read_timeout): a body must have arrived by
    /// `header_read_timeout + received / rate` after its head, else it is answered
    /// `408 Request Timeout` and the connection closes. This ends a body trickled at a byte a
    /// second without cutting off slow but real uploads. `0` turns the rate off (then only
    /// a pause of `header_read_timeout` between reads ends a body). Default: 1024 bytes/s.
    pub fn min_body_rate(mut self, bytes_per_second: usize) -> Self {
        self.limits.min_body_rate = bytes_per_second;
        self
    }

    /// The window of a streamed response body ([`Response::stream`], [`Response::chunks`],
    /// [`Response::channel`]): the most bytes produced ahead of what the socket took. The
    /// body's memory per connection is about twice this (the piece being sent and the one
    /// produced meanwhile), however large the body and however slow the client; larger
    /// windows mean fewer writes (and pool reads) per byte. Default: 64 KiB.
    pub fn stream_window(mut self, bytes: usize) -> Self {
        self.limits.stream_window = bytes.max(1);
        self
    }

    /// Offer request bodies larger than [`max_body_bytes`](Self::max_body_bytes) to the
    /// handler as a stream ([`Request::body_reader`]) instead of answering `413`: the handler
    /// is called as soon as the head has arrived, with an empty [`Request::body`]; one that
    /// takes the reader gets the body as the client sends it, one window
    /// ([`stream_window`](Self::stream_window)) ahead of what it read, whatever its size (no
    /// limit applies: the handler decides); one that does not still answers `413`.
    /// `Content-Length` and chunked bodies alike; `Expect: 100-continue` is answered before
    /// the handler runs. Default: off.
    pub fn stream_large_bodies(mut self, on: bool) -> Self {
        self.limits.stream_large_bodies = on;
        self
    }

    /// HTTPS: this HTTP spoken inside TLS with `config` (feature `tls`; see [`crate::tls`]).
    /// A plain `http://` request to it is answered `400 Bad Request` (unencrypted, saying to
    /// use `https://`) and its connection closed.
    #[cfg(feature = "tls")]
    pub fn tls(self, config: crate::tls::TlsConfig) -> crate::tls::Tls<Self> {
        crate::tls::Tls::new(self, config).plain_reply(PLAIN_ON_TLS)
    }
}

/// The answer to a plain HTTP request sent to an HTTPS port (see [`Http::tls`]).
#[cfg(feature = "tls")]
const PLAIN_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 49\r\nConnection: close\r\n\r\n\
This port speaks HTTPS: use an https:// address.\n";

/// See [`Http::blocking_threads`] and [`Http::blocking_queue`].
const DEFAULT_POOL: PoolConfig = PoolConfig {
    threads: 64,
    queue: 1024,
};

impl<H: Handler> Protocol for Http<H> {
    type Conn = Conn<H>;

    fn connect(&self, peer: Option<SocketAddr>, now: Instant) -> Conn<H> {
        Conn::new(Arc::clone(&self.handler), self.limits, peer, now)
    }

    fn connect_with(&self, peer: Option<SocketAddr>, now: Instant, wake: Wake) -> Conn<H> {
        let mut conn = self.connect(peer, now);
        conn.link(deferred::Link {
            wake,
            pool: Arc::clone(&self.pool),
        });
        conn
    }
}
