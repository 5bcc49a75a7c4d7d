//! The server's side of the opening handshake (RFC 6455 section 4.2.1): what a request must
//! say to be switched to WebSocket.

use crate::http::has_token;
use crate::{Request, Response};

/// Why a request is not a WebSocket handshake; [`crate::ws::accept`] answers it with
/// [`status`](Self::status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeError {
    status: u16,
    reason: &'static str,
}

impl HandshakeError {
    /// The status the request was answered with: `426` (no WebSocket asked for, or another
    /// version) or `400`.
    pub fn status(&self) -> u16 {
        self.status
    }

    pub(super) fn answer(&self, res: &mut Response) {
        res.status(self.status)
            .header("Content-Type", "text/plain")
            .body(self.reason);
        if self.status == 426 {
            res.header("Upgrade", "websocket")
                .header("Sec-WebSocket-Version", "13");
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebSocket handshake refused ({}): {}",
            self.status, self.reason
        )
    }
}

impl std::error::Error for HandshakeError {}

const fn refuse(status: u16, reason: &'static str) -> HandshakeError {
    HandshakeError { status, reason }
}

/// The request's `Sec-WebSocket-Key` if it is a valid handshake.
pub(super) fn check<'a>(req: &Request<'a>) -> Result<&'a [u8], HandshakeError> {
    let lists = |name: &str, token: &str| req.header(name).is_some_and(|v| has_token(v, token));
    if !lists("upgrade", "websocket") {
        return Err(refuse(
            426,
            "this resource speaks WebSocket: ask with Upgrade: websocket\n",
        ));
    }
    if req.method() != "GET" {
        return Err(refuse(400, "a WebSocket handshake is a GET request\n"));
    }
    if req.minor_version() == 0 {
        return Err(refuse(400, "a WebSocket handshake needs HTTP/1.1\n"));
    }
    if !lists("connection", "upgrade") {
        return Err(refuse(
            400,
            "a WebSocket handshake says Connection: Upgrade\n",
        ));
    }
    if req.header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(refuse(426, "this server speaks WebSocket version 13\n"));
    }
    match req.header("sec-websocket-key").map(<[u8]>::trim_ascii) {
        Some(key) if is_key(key) => Ok(key),
        _ => Err(refuse(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 section 4.1)\n",
        )),
    }
}

/// 16 bytes in base64: 22 characters of the alphabet, the last one carrying no stray bits,
/// then `==`.
fn is_key(key: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let Some(last) = key
        .get(21)
        .and_then(|c| ALPHABET.iter().position(|a| a == c))
    else {
        return false;
    };
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|c| ALPHABET.contains(c))
        && last & 0b1111 == 0
}

#[cfg(test)]
mod tests {
    use super::is_key;

    #[test]
    fn keys() {
        assert!(is_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_key(b"dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!is_key(b"dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(!is_key(b"short"));
    }
}
