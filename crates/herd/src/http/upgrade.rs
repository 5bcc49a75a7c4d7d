//! Protocol upgrades: a handler answers `101 Switching Protocols` with
//! [`Response::upgrade`](super::Response::upgrade), and from the next byte on the connection
//! speaks a protocol of the user's (a [`Connection`]: WebSocket in [`crate::ws`], or any other).
//!
//! The HTTP [`Conn`](super::Conn) keeps serving the socket: once switched, it hands every
//! callback of the event loop to the new protocol, starting with the bytes that came after the
//! request (a client may send them before it sees the `101`). A wrapping protocol (TLS) only
//! sees bytes, so an upgrade works under it unchanged.

use crate::protocol::{Connection, Wake};

/// The protocol that serves a connection after its `101`.
pub(crate) type Upgraded = Box<dyn Connection + Send>;

/// What [`Response::upgrade`](super::Response::upgrade) keeps until the `101` is written:
/// builds the new protocol's state, given the connection's [`Wake`] (if it has one).
pub(crate) type Start = Box<dyn FnOnce(Option<Wake>) -> Upgraded + Send>;

/// Why a requested upgrade did not happen; the connection answers `status` and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The worker is draining: the client should reconnect (to another worker).
    Draining,
    /// An HTTP/1.0 request cannot switch protocols (RFC 9110 section 7.8).
    Http10,
}

impl Refused {
    pub(crate) fn status(self) -> u16 {
        match self {
            Refused::Draining => 503,
            Refused::Http10 => 400,
        }
    }
}

/// Whether the upgrade a handler asked for can go ahead.
pub(crate) fn check(minor_version: u8, draining: bool) -> Result<(), Refused> {
    if minor_version == 0 {
        return Err(Refused::Http10);
    }
    if draining {
        return Err(Refused::Draining);
    }
    Ok(())
}

/// The handler asked to switch with `start` and answered `res`: write the `101` and build the
/// new protocol's state, or, when the switch cannot happen, answer the refusal (the connection
/// then closes: `None`). The request began at `started` (for the metrics).
#[allow(clippy::too_many_arguments)]
pub(crate) fn switch(
    start: Start,
    res: &super::Response,
    minor_version: u8,
    draining: bool,
    wake: Option<Wake>,
    out: &mut Vec<u8>,
    now: std::time::Instant,
    started: std::time::Instant,
) -> Option<Upgraded> {
    match check(minor_version, draining) {
        Ok(()) => {
            crate::metrics::local::request(101, started);
            res.write(out, false, super::response::Persist::Upgrade, now);
            Some(start(wake))
        }
        Err(refused) => {
            tracing::debug!("not switching protocols: {refused:?}");
            crate::metrics::local::request(refused.status(), started);
            super::response::write_error(out, refused.status(), now);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::http::{Http, Request, Response};
    use crate::protocol::{Connection, Flow, Handover, Protocol, Step};

    /// After the switch: a greeting, then every byte echoed in upper case.
    struct Shout {
        greeted: bool,
    }

    impl Connection for Shout {
        fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, _now: Instant) -> Step {
            if !std::mem::replace(&mut self.greeted, true) {
                out.extend_from_slice(b"hi;");
            }
            out.extend(input.iter().map(u8::to_ascii_uppercase));
            Step {
                consumed: input.len(),
                flow: Flow::Continue,
            }
        }
        fn on_eof(&mut self, _input: &[u8], out: &mut Vec<u8>) -> Flow {
            out.extend_from_slice(b";bye");
            Flow::Close
        }
        fn deadline(&self) -> Option<Instant> {
            None
        }
        fn on_timeout(&mut self, _out: &mut Vec<u8>, _now: Instant) -> Flow {
            Flow::Close
        }
        fn on_drain(&mut self, out: &mut Vec<u8>) -> Flow {
            out.extend_from_slice(b";drain");
            Flow::Close
        }
    }

    /// `/shout` switches to [`Shout`]; `/cancel` asks to, then answers 403 instead.
    fn handler(req: &Request<'_>, res: &mut Response) {
        match req.path() {
            "/shout" => {
                res.upgrade("shout", |_wake| Shout { greeted: false })
                    .header("X-Extra", "1");
            }
            "/cancel" => {
                res.upgrade("shout", |_wake| Shout { greeted: false });
                res.status(403).body("no");
            }
            _ => {
                res.body("plain");
            }
        }
    }

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn after_101_every_callback_goes_to_the_new_protocol() {
        let http = Http::new(handler);
        let now = Instant::now();
        let mut conn = http.connect(None, now);
        let mut out = Vec::new();
        // The client's first bytes of the new protocol came with the request.
        let input =
            b"GET /shout HTTP/1.1\r\nHost: t\r\nUpgrade: shout\r\nConnection: Upgrade\r\n\r\nabc";
        let step = conn.on_read(input, &mut out, now);
        assert_eq!(step.consumed, input.len());
        assert_eq!(step.flow, Flow::Continue);
        let out_text = text(&out);
        assert!(
            out_text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{out_text:?}"
        );
        assert!(
            out_text.contains("\r\nConnection: Upgrade\r\n"),
            "{out_text:?}"
        );
        assert!(out_text.contains("\r\nUpgrade: shout\r\n"), "{out_text:?}");
        assert!(out_text.contains("\r\nX-Extra: 1\r\n"), "{out_text:?}");
        assert!(!out_text.contains("Content-Length"), "{out_text:?}");
        assert!(out_text.ends_with("\r\n\r\nhi;ABC"), "{out_text:?}");
        assert_eq!(conn.handover(), Handover::Never);
        assert_eq!(conn.deadline(), None);
        // What looks like HTTP is not parsed any more.
        out.clear();
        let step = conn.on_read(b"get / http/1.1\r\n\r\n", &mut out, now);
        assert_eq!(step.consumed, 18);
        assert_eq!(text(&out), "GET / HTTP/1.1\r\n\r\n");
        out.clear();
        assert_eq!(conn.on_eof(&[], &mut out), Flow::Close);
        assert_eq!(text(&out), ";bye");
        out.clear();
        assert_eq!(conn.on_drain(&mut out), Flow::Close);
        assert_eq!(text(&out), ";drain");
    }

    #[test]
    fn the_new_protocol_starts_even_without_bytes_behind_the_request() {
        let http = Http::new(handler);
        let now = Instant::now();
        let mut conn = http.connect(None, now);
        let mut out = Vec::new();
        let input = b"GET /shout HTTP/1.1\r\nHost: t\r\nUpgrade: shout\r\n\r\n";
        let step = conn.on_read(input, &mut out, now);
        assert_eq!(step.consumed, input.len());
        assert!(text(&out).ends_with("\r\n\r\nhi;"), "{:?}", text(&out));
    }

    #[test]
    fn a_status_other_than_101_cancels_the_switch() {
        let http = Http::new(handler);
        let now = Instant::now();
        let mut conn = http.connect(None, now);
        let mut out = Vec::new();
        let input = b"GET /cancel HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
        let step = conn.on_read(input, &mut out, now);
        assert_eq!(step.consumed, input.len());
        assert_eq!(step.flow, Flow::Continue);
        let out_text = text(&out);
        assert!(
            out_text.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{out_text:?}"
        );
        assert!(out_text.ends_with("\r\n\r\nplain"), "{out_text:?}");
        assert_eq!(conn.handover(), Handover::Now);
    }

    #[test]
    fn http10_and_draining_refuse_the_switch_and_close() {
        let http = Http::new(handler);
        let now = Instant::now();
        let mut conn = http.connect(None, now);
        let mut out = Vec::new();
        let step = conn.on_read(b"GET /shout HTTP/1.0\r\n\r\nabc", &mut out, now);
        assert_eq!(step.flow, Flow::Close);
        assert!(text(&out).starts_with("HTTP/1.1 400 "), "{:?}", text(&out));
        assert!(!text(&out).contains("ABC"));

        let mut conn = http.connect(None, now);
        out.clear();
        assert_eq!(conn.on_drain(&mut out), Flow::Continue);
        let step = conn.on_read(b"GET /shout HTTP/1.1\r\nHost: t\r\n\r\nabc", &mut out, now);
        assert_eq!(step.flow, Flow::Close);
        assert!(text(&out).starts_with("HTTP/1.1 503 "), "{:?}", text(&out));
        assert!(text(&out).contains("\r\nConnection: close\r\n"));
    }
}
