//! One WebSocket connection after its `101`: a [`Connection`] that runs `tungstenite`'s
//! protocol state over the loop's buffers (input slices in, the output buffer out) and calls
//! the [`WsHandler`].

use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Error as WsError;

use super::sender::{Outgoing, Shared};
use super::{Config, Message, WsHandler, WsSender};
use crate::protocol::{Connection, Flow, Step, Wake};

/// How much input `tungstenite` takes per read, and its buffer's size per connection.
const READ_CHUNK: usize = 8 * 1024;

/// The most bytes of a close reason (a control frame's payload is at most 125 bytes).
const MAX_REASON: usize = 123;

/// `tungstenite`'s stream, over memory: reads take from this turn's input (and say
/// `WouldBlock` when it is used up), writes append to the loop's output buffer.
struct Io<'i, 'o> {
    input: &'i [u8],
    out: &'o mut Vec<u8>,
}

impl Read for Io<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Io<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The protocol state a [`Ws`] writes through.
struct Core {
    ctx: WebSocketContext,
    shared: Arc<Shared>,
    close_timeout: Duration,
    /// The server sent a close frame: the client has until then to answer.
    closing: Option<Instant>,
}

impl Core {
    /// Write one message; `false` once the connection is closing or over.
    fn write(&mut self, out: &mut Vec<u8>, message: tungstenite::Message) -> bool {
        let mut io = Io { input: &[], out };
        self.ctx.write(&mut io, message).is_ok()
    }

    /// Send a close frame (once), and give the client [`Config::close_timeout`] to answer.
    fn close(&mut self, out: &mut Vec<u8>, code: u16, reason: &str, now: Instant) -> bool {
        if !self.ctx.can_write() {
            return false;
        }
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason[..end].into(),
        };
        let mut io = Io { input: &[], out };
        let _ = self.ctx.close(&mut io, Some(frame));
        self.closing = Some(now + self.close_timeout);
        true
    }

    /// Write what other threads pushed.
    fn drain_queue(&mut self, out: &mut Vec<u8>, now: Instant) {
        for message in self.shared.take() {
            match message {
                Outgoing::Text(text) => self.write(out, tungstenite::Message::text(text)),
                Outgoing::Binary(data) => self.write(out, tungstenite::Message::binary(data)),
                Outgoing::Close(code, reason) => self.close(out, code, &reason, now),
            };
        }
    }

    /// Write what `tungstenite` still holds (a pong, a close reply).
    fn flush(&mut self, out: &mut Vec<u8>) {
        let mut io = Io { input: &[], out };
        let _ = self.ctx.flush(&mut io);
    }
}

/// A WebSocket connection as its [`WsHandler`] sees it during a callback: what it sends here
/// goes out with the loop's next write, in order.
pub struct Ws<'a> {
    core: &'a mut Core,
    out: &'a mut Vec<u8>,
    now: Instant,
}

impl std::fmt::Debug for Ws<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ws")
            .field("closing", &self.core.closing.is_some())
            .finish()
    }
}

impl Ws<'_> {
    /// Send a text message. `false` (and nothing is sent) once the connection is closing.
    pub fn send_text(&mut self, text: &str) -> bool {
        self.core.write(self.out, tungstenite::Message::text(text))
    }

    /// Send a binary message. `false` (and nothing is sent) once the connection is closing.
    pub fn send_binary(&mut self, data: &[u8]) -> bool {
        self.core
            .write(self.out, tungstenite::Message::binary(data.to_vec()))
    }

    /// Start the close handshake with `code` (e.g. `1000`, normal closure) and `reason` (at
    /// most 123 bytes, cut at a character boundary): nothing more is sent; the socket closes
    /// when the client answers, or after [`Config::close_timeout`]. `false` if it was already
    /// closing.
    pub fn close(&mut self, code: u16, reason: &str) -> bool {
        self.core.close(self.out, code, reason, self.now)
    }

    /// A handle for sending to this connection from other threads (or from other
    /// connections' callbacks).
    pub fn sender(&self) -> WsSender {
        WsSender::new(Arc::clone(&self.core.shared))
    }
}

/// The [`Connection`] that serves a WebSocket after its `101`.
pub(super) struct Session<H: WsHandler> {
    core: Core,
    handler: H,
    opened: bool,
    /// The close handshake's code and reason as the peer sent them.
    peer_close: Option<(u16, String)>,
    /// [`WsHandler::on_close`] was called.
    ended: bool,
}

impl<H: WsHandler> Session<H> {
    pub(super) fn new(handler: H, wake: Option<Wake>, config: Config) -> Self {
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(READ_CHUNK)
            // Frames go straight to the loop's output buffer, written once per turn.
            .write_buffer_size(0)
            .max_message_size(Some(config.max_message_bytes))
            .max_frame_size(Some(config.max_message_bytes));
        Session {
            core: Core {
                ctx: WebSocketContext::new(Role::Server, Some(ws_config)),
                shared: Shared::new(wake),
                close_timeout: config.close_timeout,
                closing: None,
            },
            handler,
            opened: false,
            peer_close: None,
            ended: false,
        }
    }

    fn ws<'a>(core: &'a mut Core, out: &'a mut Vec<u8>, now: Instant) -> Ws<'a> {
        Ws { core, out, now }
    }

    /// The connection is over: tell the handler (once) and refuse further pushes.
    fn end(&mut self, code: u16, reason: &str) -> Flow {
        if !self.ended {
            self.ended = true;
            self.core.shared.close();
            let handler = &mut self.handler;
            if panic::catch_unwind(AssertUnwindSafe(|| handler.on_close(code, reason))).is_err() {
                tracing::error!("a WebSocket handler panicked in on_close");
            }
        }
        Flow::Close
    }

    /// Run a callback of the handler; a panic closes the connection with `1011` (the worker
    /// lives on, as when an HTTP handler panics).
    fn call(
        &mut self,
        out: &mut Vec<u8>,
        now: Instant,
        f: impl FnOnce(&mut H, &mut Ws<'_>),
    ) -> Option<Flow> {
        let handler = &mut self.handler;
        let mut ws = Self::ws(&mut self.core, out, now);
        if panic::catch_unwind(AssertUnwindSafe(|| f(handler, &mut ws))).is_ok() {
            return None;
        }
        tracing::error!("a WebSocket handler panicked; closing its connection with 1011");
        self.core.close(out, 1011, "server error", now);
        Some(self.end(1011, "server error"))
    }

    /// Decode and dispatch every message in `input`, then write what is pending.
    fn serve(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Flow {
        if self.ended {
            return Flow::Close;
        }
        if !self.opened {
            self.opened = true;
            if let Some(flow) = self.call(out, now, |h, ws| h.on_open(ws)) {
                return flow;
            }
        }
        let mut rest = input;
        loop {
            let mut io = Io { input: rest, out };
            let read = self.core.ctx.read(&mut io);
            rest = io.input;
            let message = match read {
                Ok(message) => message,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    let (code, reason) = self.peer_close.take().unwrap_or((1005, String::new()));
                    return self.end(code, &reason);
                }
                Err(e) => return self.fail(&e, out, now),
            };
            let called = match message {
                tungstenite::Message::Text(text) => {
                    self.call(out, now, |h, ws| h.on_message(ws, Message::Text(&text)))
                }
                tungstenite::Message::Binary(data) => {
                    self.call(out, now, |h, ws| h.on_message(ws, Message::Binary(&data)))
                }
                tungstenite::Message::Close(frame) => {
                    self.peer_close = Some(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_string())
                    }));
                    None
                }
                // Pings are answered by tungstenite; pongs need nothing.
                _ => None,
            };
            if let Some(flow) = called {
                return flow;
            }
        }
        self.after(out, now)
    }

    /// Write what other threads pushed and what tungstenite holds.
    fn after(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow {
        self.core.drain_queue(out, now);
        self.core.flush(out);
        Flow::Continue
    }

    /// Bad input: close with the code that says why, without waiting for an answer.
    fn fail(&mut self, e: &WsError, out: &mut Vec<u8>, now: Instant) -> Flow {
        let code = match e {
            WsError::Capacity(_) => 1009,
            WsError::Utf8(_) => 1007,
            WsError::Protocol(_) => 1002,
            _ => 1011,
        };
        tracing::debug!("closing a WebSocket with {code}: {e}");
        let reason = match code {
            1009 => "message too big",
            1007 => "invalid UTF-8",
            1002 => "protocol error",
            _ => "server error",
        };
        self.core.close(out, code, reason, now);
        self.end(code, reason)
    }
}

impl<H: WsHandler> Connection for Session<H> {
    fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        Step {
            consumed: input.len(),
            flow: self.serve(input, out, now),
        }
    }

    fn on_eof(&mut self, _input: &[u8], _out: &mut Vec<u8>) -> Flow {
        // The client went away without (finishing) the close handshake.
        self.end(1006, "")
    }

    fn deadline(&self) -> Option<Instant> {
        self.core.closing
    }

    fn on_timeout(&mut self, _out: &mut Vec<u8>, now: Instant) -> Flow {
        match self.core.closing {
            Some(at) if at <= now => self.end(1006, "no answer to the close frame"),
            _ => Flow::Continue,
        }
    }

    fn on_drain(&mut self, out: &mut Vec<u8>) -> Flow {
        if self.ended {
            return Flow::Close;
        }
        // Idempotent: the second call finds the close frame sent.
        self.core
            .close(out, 1001, "server going away", Instant::now());
        Flow::Continue
    }

    fn on_wake(&mut self, _input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        let flow = if self.ended {
            Flow::Close
        } else {
            self.after(out, now)
        };
        Step { consumed: 0, flow }
    }
}

impl<H: WsHandler> Drop for Session<H> {
    fn drop(&mut self) {
        // The loop let go of the connection (a write failed, the drain timed out, ...).
        self.end(1006, "");
    }
}
