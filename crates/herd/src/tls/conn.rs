//! One TLS connection: ciphertext on the loop's side, plaintext on the inner protocol's.
//!
//! Every ciphertext byte the loop hands in is taken by rustls at once; what it decrypts
//! waits in `plain` until the inner protocol consumes it (the loop's own input buffer only
//! ever holds ciphertext, so it stays empty). The inner protocol writes its plaintext
//! answer into the loop's output buffer, and that tail is replaced by its encryption.

use std::io::{BufRead, Write};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use rustls::ServerConnection;

use crate::protocol::{Connection, FileRange, Flow, Handover, Step};

/// How much of a file range is read and encrypted per [`Connection::on_drained`]: sendfile
/// cannot go through TLS, so a file costs one such piece of memory at a time.
const FILE_PIECE: usize = 64 * 1024;

/// The plaintext buffer keeps its allocation between requests up to this size.
const PLAIN_KEEP: usize = 4 * 1024;

/// The per-connection state of [`Tls`](super::Tls): a rustls server connection and the
/// inner protocol's connection.
pub struct Conn<C> {
    tls: ServerConnection,
    inner: C,
    /// Decrypted bytes the inner protocol has not consumed yet.
    plain: Vec<u8>,
    /// The handshake must be over by then; `None` once it is.
    handshake_until: Option<Instant>,
    /// The peer sent `close_notify`: no more plaintext will come.
    peer_closed: bool,
    /// The inner protocol was told of the end of input.
    eof_told: bool,
    /// How many times [`Connection::on_drain`] was called (see there).
    drains: u8,
    /// A file range of the inner protocol's stream ([`Flow::Stream`]), sent piece by piece
    /// through TLS before the inner protocol is asked for more.
    file: Option<FileRange>,
    /// For a client that speaks plain text here (see `Tls::plain_reply`); taken at the first
    /// input.
    plain_reply: Option<&'static [u8]>,
}

impl<C> std::fmt::Debug for Conn<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tls::Conn")
            .field("handshaking", &self.tls.is_handshaking())
            .field("plain", &self.plain.len())
            .finish_non_exhaustive()
    }
}

impl<C: Connection> Conn<C> {
    pub(super) fn new(
        tls: ServerConnection,
        inner: C,
        handshake_until: Instant,
        plain_reply: Option<&'static [u8]>,
    ) -> Self {
        Conn {
            tls,
            inner,
            plain: Vec::new(),
            handshake_until: Some(handshake_until),
            peer_closed: false,
            eof_told: false,
            drains: 0,
            file: None,
            plain_reply,
        }
    }

    /// The rustls connection (negotiated version, cipher suite, ALPN, SNI).
    pub fn tls(&self) -> &ServerConnection {
        &self.tls
    }

    /// The inner protocol's connection.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Takes all of `input` into rustls and decrypts it into `plain`. `Ok(true)` when new
    /// plaintext arrived; `Err` on a TLS error (the alert to send is queued).
    fn decrypt(&mut self, input: &[u8]) -> Result<bool, ()> {
        let before = self.plain.len();
        let mut rest = input;
        while !rest.is_empty() {
            match self.tls.read_tls(&mut rest) {
                // After close_notify rustls takes nothing more; what follows is dropped.
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("TLS input: {e}");
                    return Err(());
                }
            }
            if let Err(e) = self.tls.process_new_packets() {
                tracing::debug!("TLS: {e}");
                return Err(());
            }
            self.take_plaintext();
        }
        if self.handshake_until.is_some() && !self.tls.is_handshaking() {
            self.handshake_until = None;
        }
        Ok(self.plain.len() > before)
    }

    /// Moves what rustls decrypted into `plain`.
    fn take_plaintext(&mut self) {
        let mut reader = self.tls.reader();
        loop {
            match reader.fill_buf() {
                // Empty and no error: the peer's close_notify came.
                Ok([]) => {
                    self.peer_closed = true;
                    return;
                }
                Ok(chunk) => {
                    let n = chunk.len();
                    self.plain.extend_from_slice(chunk);
                    reader.consume(n);
                }
                // WouldBlock: nothing more for now.
                Err(_) => return,
            }
        }
    }

    /// Drops the plaintext the inner protocol consumed.
    fn consume(&mut self, step: Step) -> Flow {
        let n = step.consumed.min(self.plain.len());
        if n < self.plain.len() {
            self.plain.drain(..n);
        } else if self.plain.capacity() > PLAIN_KEEP {
            // After a large request: not kept for an idle connection.
            self.plain = Vec::new();
        } else {
            // Between requests: the next one reuses the allocation.
            self.plain.clear();
        }
        step.flow
    }

    /// After every inner callback: a stream's file range is taken now (the loop asks only
    /// after [`Flow::Stream`], once), to be read and encrypted by `on_drained`.
    fn stream_after(&mut self, flow: Flow) -> Flow {
        if flow == Flow::Stream {
            self.file = self.inner.take_file();
        }
        flow
    }

    /// The next piece of the stream's file range, read into `out` (plaintext, sealed by the
    /// caller). `Err` when the file ended before its range.
    fn file_piece(&mut self, out: &mut Vec<u8>) -> Result<(), ()> {
        let Some(range) = self.file.as_mut() else {
            return Ok(());
        };
        let want = usize::try_from(range.len).map_or(FILE_PIECE, |l| l.min(FILE_PIECE));
        let start = out.len();
        out.resize(start + want, 0);
        let read = loop {
            match range.file.read_at(&mut out[start..], range.offset) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match read {
            Ok(n) if n > 0 => {
                out.truncate(start + n);
                range.offset += n as u64;
                range.len -= n as u64;
                if range.len == 0 {
                    self.file = None;
                }
                Ok(())
            }
            Ok(_) => {
                out.truncate(start);
                tracing::warn!(
                    "the file ended {} bytes before its range; closing",
                    range.len
                );
                Err(())
            }
            Err(e) => {
                out.truncate(start);
                tracing::warn!("reading a file to send: {e}; closing");
                Err(())
            }
        }
    }

    /// After the inner protocol took input: a close_notify that came is its end of input.
    fn eof_after(&mut self, flow: Flow, out: &mut Vec<u8>) -> Flow {
        if self.peer_closed && !self.eof_told && flow == Flow::Continue {
            self.eof_told = true;
            return self.inner.on_eof(&self.plain, out);
        }
        flow
    }

    /// Replaces the inner protocol's plaintext in `out[start..]` with its encryption, plus
    /// whatever rustls has to send (handshake, alerts, and `close_notify` when the
    /// connection closes).
    fn seal(&mut self, out: &mut Vec<u8>, start: usize, flow: Flow) {
        if out.len() > start {
            // The buffer limit is off (see `Tls::connect`): the writer takes it all.
            if let Err(e) = self.tls.writer().write_all(&out[start..]) {
                tracing::debug!("TLS output: {e}");
            }
            out.truncate(start);
        }
        if flow == Flow::Close {
            self.tls.send_close_notify();
        }
        while self.tls.wants_write() {
            // Writing into a Vec cannot fail.
            if self.tls.write_tls(out).is_err() {
                break;
            }
        }
    }
}

impl<C: Connection> Connection for Conn<C> {
    fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        if let Some(reply) = self.plain_reply.take() {
            // A TLS record starts with its content type (20 to 24), never with a letter.
            if input.first().is_some_and(u8::is_ascii_alphabetic) {
                tracing::debug!("plain text on a TLS port; answered and closed");
                out.extend_from_slice(reply);
                return Step {
                    consumed: input.len(),
                    flow: Flow::Close,
                };
            }
        }
        let start = out.len();
        let flow = match self.decrypt(input) {
            Err(()) => Flow::Close,
            Ok(fresh) => {
                let flow = if fresh {
                    let step = self.inner.on_read(&self.plain, out, now);
                    let flow = self.consume(step);
                    self.stream_after(flow)
                } else {
                    Flow::Continue
                };
                self.eof_after(flow, out)
            }
        };
        self.seal(out, start, flow);
        Step {
            consumed: input.len(),
            flow,
        }
    }

    fn on_eof(&mut self, _input: &[u8], out: &mut Vec<u8>) -> Flow {
        if self.tls.is_handshaking() {
            return Flow::Close;
        }
        let start = out.len();
        self.eof_told = true;
        let flow = self.inner.on_eof(&self.plain, out);
        let flow = self.stream_after(flow);
        self.seal(out, start, flow);
        flow
    }

    fn deadline(&self) -> Option<Instant> {
        let inner = self.inner.deadline();
        match self.handshake_until {
            Some(h) => Some(inner.map_or(h, |d| d.min(h))),
            None => inner,
        }
    }

    fn on_timeout(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow {
        if self.handshake_until.is_some_and(|h| h <= now) {
            tracing::debug!("closing a connection whose TLS handshake took too long");
            return Flow::Close;
        }
        let start = out.len();
        let flow = self.inner.on_timeout(out, now);
        let flow = self.stream_after(flow);
        self.seal(out, start, flow);
        flow
    }

    fn on_drain(&mut self, out: &mut Vec<u8>) -> Flow {
        // The loop asks twice and only the second verdict counts: close_notify goes with
        // that one, never ahead of an answer the first call left room for.
        self.drains = self.drains.saturating_add(1);
        let start = out.len();
        let flow = self.inner.on_drain(out);
        let flow = self.stream_after(flow);
        let notify = if self.drains >= 2 {
            flow
        } else {
            Flow::Continue
        };
        self.seal(out, start, notify);
        flow
    }

    /// Never: the TLS session's keys and sequence numbers cannot move with the socket.
    fn handover(&self) -> Handover {
        Handover::Never
    }

    fn on_wake(&mut self, _input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        let start = out.len();
        let step = self.inner.on_wake(&self.plain, out, now);
        let flow = self.consume(step);
        let flow = self.stream_after(flow);
        let flow = self.eof_after(flow, out);
        self.seal(out, start, flow);
        Step { consumed: 0, flow }
    }

    fn on_drained(&mut self, _input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        let start = out.len();
        if self.file.is_some() {
            let flow = match self.file_piece(out) {
                Ok(()) => Flow::Stream,
                // The peer was promised bytes that cannot come: no close_notify, so that the
                // cut is not taken for a clean end.
                Err(()) => {
                    self.seal(out, start, Flow::Continue);
                    return Step {
                        consumed: 0,
                        flow: Flow::Close,
                    };
                }
            };
            self.seal(out, start, flow);
            return Step { consumed: 0, flow };
        }
        let step = self.inner.on_drained(&self.plain, out, now);
        let flow = self.consume(step);
        let flow = self.stream_after(flow);
        let flow = self.eof_after(flow, out);
        self.seal(out, start, flow);
        Step { consumed: 0, flow }
    }

    /// Never a range: sendfile cannot go through TLS. The inner protocol's ranges are read
    /// and encrypted piece by piece instead (see `on_drained`).
    fn take_file(&mut self) -> Option<FileRange> {
        None
    }
}
