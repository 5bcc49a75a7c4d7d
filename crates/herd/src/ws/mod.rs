//! WebSocket (RFC 6455) on the worker's event loop: no thread per socket.
//!
//! An HTTP handler accepts the handshake with [`accept`] (or [`Config::accept`]) and gives a
//! [`WsHandler`] for the connection; after the `101` the connection's frames are decoded and
//! encoded by `tungstenite` over the loop's buffers, and the handler is called on the loop's
//! thread for every message. [`Ws`] answers from inside a callback; a [`WsSender`] (cheap to
//! clone, `Send`) pushes messages from anywhere else, e.g. from the worker's
//! [`on_message`](crate::Worker::on_message) to broadcast what the primary sends.
//!
//! Pings are answered, the close handshake is done for the handler, oversized messages close
//! the connection with `1009`, invalid UTF-8 with `1007`, protocol errors with `1002`. When the
//! worker drains (a reload, a scale-down, a stop), every WebSocket is closed with `1001`
//! (going away), so that clients reconnect, to the new worker; the socket closes when the
//! client answers, or after [`Config::close_timeout`].
//!
//! ```no_run
//! use herd::ws::{self, Message, Ws, WsHandler};
//! use herd::{Http, Request, Response};
//!
//! struct Echo;
//!
//! impl WsHandler for Echo {
//!     fn on_message(&mut self, ws: &mut Ws<'_>, msg: Message<'_>) {
//!         match msg {
//!             Message::Text(text) => ws.send_text(text),
//!             Message::Binary(data) => ws.send_binary(data),
//!         };
//!     }
//! }
//!
//! let http = Http::new(|req: &Request<'_>, res: &mut Response| {
//!     if req.path() == "/ws" {
//!         // A bad handshake was answered (400 or 426); nothing else to do.
//!         let _ = ws::accept(req, res, Echo);
//!     } else {
//!         res.body("hello");
//!     }
//! });
//! # let _ = http;
//! ```

mod handshake;
mod sender;
mod session;

use std::time::Duration;

pub use handshake::HandshakeError;
pub use sender::WsSender;
pub use session::Ws;

use crate::{Request, Response};

/// A message of the application: text (valid UTF-8) or binary. Control frames (ping, pong,
/// close) are handled by the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// One WebSocket connection's application: called on the worker's loop thread, in order,
/// never concurrently. A callback must not block (every connection of the loop waits).
pub trait WsHandler: Send + 'static {
    /// The handshake is done; the first callback, before any message. `ws` may send (a
    /// greeting) and give out a [`WsSender`] ([`Ws::sender`]) for other threads. Default:
    /// nothing.
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        let _ = ws;
    }

    /// A complete message arrived (fragments are joined).
    fn on_message(&mut self, ws: &mut Ws<'_>, msg: Message<'_>);

    /// The connection is over: the close handshake ended (`code` is the peer's, `1005` when
    /// it gave none), or the connection failed (`1006`: the peer vanished or the server gave
    /// up on it; or the code the server closed it with on bad input). Called exactly once, also
    /// when the worker drops the connection. Default: nothing.
    fn on_close(&mut self, code: u16, reason: &str) {
        let _ = (code, reason);
    }
}

/// How WebSocket connections behave; [`accept`] uses the defaults.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    max_message_bytes: usize,
    close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_bytes: 1024 * 1024,
            close_timeout: Duration::from_secs(3),
        }
    }
}

impl Config {
    /// The defaults (see each setter).
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest message accepted (after joining its fragments); a larger one closes the
    /// connection with `1009` (message too big). Default: 1 MiB (as
    /// [`Http::max_body_bytes`](crate::Http::max_body_bytes)).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes.max(1);
        self
    }

    /// How long the server waits for the client's answer after it sent a close frame (the
    /// handler's [`Ws::close`], a [`WsSender::close`], or the worker's drain with `1001`)
    /// before it closes the socket anyway. Default: 3 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Accept the WebSocket handshake of `req` and serve the connection with `handler` after
    /// the `101 Switching Protocols` (RFC 6455 section 4.2): the request must be a `GET` of
    /// HTTP/1.1 or later with `Upgrade: websocket`, `Connection: upgrade`, a
    /// `Sec-WebSocket-Key` of 16 base64-encoded bytes and `Sec-WebSocket-Version: 13`.
    /// Headers may still be added to `res` afterwards (e.g. `Sec-WebSocket-Protocol` for the
    /// subprotocol chosen from the request's list).
    ///
    /// # Errors
    /// A request that is not a valid WebSocket handshake: `res` is then set to the answer
    /// (`426 Upgrade Required` for a request that did not ask for WebSocket or asked for
    /// another version, with the `Upgrade` or `Sec-WebSocket-Version` header that says what
    /// would do; `400 Bad Request` otherwise) and `handler` is dropped.
    pub fn accept<H: WsHandler>(
        self,
        req: &Request<'_>,
        res: &mut Response,
        handler: H,
    ) -> Result<(), HandshakeError> {
        let key = match handshake::check(req) {
            Ok(key) => key,
            Err(e) => {
                e.answer(res);
                return Err(e);
            }
        };
        let accept_key = tungstenite::handshake::derive_accept_key(key);
        res.upgrade("websocket", move |wake| {
            session::Session::new(handler, wake, self)
        })
        .header("Sec-WebSocket-Accept", accept_key);
        Ok(())
    }
}

/// [`Config::accept`] with the default [`Config`].
///
/// # Errors
/// As [`Config::accept`].
pub fn accept<H: WsHandler>(
    req: &Request<'_>,
    res: &mut Response,
    handler: H,
) -> Result<(), HandshakeError> {
    Config::default().accept(req, res, handler)
}
