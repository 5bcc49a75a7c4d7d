//! The request head: httparse for the syntax, then the limits and the framing rules that keep
//! requests from being smuggled (RFC 9112 section 6).

use std::mem::MaybeUninit;

use httparse::{Header, Status};

use super::response::has_token;
use super::{Error, Limits};

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A complete, valid request head.
#[derive(Debug)]
pub(crate) struct Head<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) minor_version: u8,
    pub(crate) headers: &'a [Header<'a>],
    /// Bytes of the head, up to and including the empty line.
    pub(crate) len: usize,
    pub(crate) framing: Framing,
    /// Whether the connection may stay open after the answer.
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue` from an HTTP/1.1 client.
    pub(crate) expect_continue: bool,
}

/// Parse the head at the start of `input` into `storage`; `Ok(None)` while it is incomplete.
///
/// # Errors
///
/// The [`Error`] the client is answered with.
pub(crate) fn head<'a>(
    input: &'a [u8],
    storage: &'a mut [MaybeUninit<Header<'a>>],
    limits: &Limits,
) -> Result<Option<Head<'a>>, Error> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(input, storage)? {
        Status::Complete(len) => len,
        Status::Partial => {
            partial(input, limits)?;
            return Ok(None);
        }
    };
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(Error::BadRequest);
    };
    if target.len() > limits.max_uri_len {
        return Err(Error::UriTooLong);
    }
    if len > limits.max_header_bytes {
        return Err(Error::HeadersTooLarge);
    }
    // httparse takes a bare LF for a line ending; a proxy in front may not, and the two would
    // frame the stream differently (a hidden `Content-Length`, a smuggled request).
    if has_bare_lf(&input[..len]) {
        return Err(Error::BadRequest);
    }
    let headers: &'a [Header<'a>] = req.headers;
    let fields = Fields::scan(headers)?;
    // RFC 9112 section 3.2: exactly one valid Host in HTTP/1.1; at most one in HTTP/1.0.
    if fields.hosts > 1 || (fields.hosts == 0 && minor_version == 1) {
        return Err(Error::BadRequest);
    }
    let framing = match (fields.length, fields.chunked) {
        (Some(_), true) => return Err(Error::BadRequest),
        (Some(n), false) if n > 0 => Framing::Length(n),
        (_, true) => Framing::Chunked,
        _ => Framing::Empty,
    };
    if let Framing::Length(n) = framing {
        if n > limits.max_body_bytes && !limits.stream_large_bodies {
            return Err(Error::BodyTooLarge);
        }
    }
    // RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing;
    // it is processed, then the connection closes.
    let keep_alive = !fields.close
        && (minor_version == 1 || fields.keep_alive)
        && !(minor_version == 0 && fields.chunked);
    Ok(Some(Head {
        method,
        target,
        minor_version,
        headers,
        len,
        framing,
        keep_alive,
        expect_continue: minor_version == 1 && fields.expect_continue,
    }))
}

/// The limits an incomplete head must already keep.
///
/// # Errors
///
/// [`Error::UriTooLong`] while the request line is longer than a target may be,
/// [`Error::HeadersTooLarge`] once the head is larger than the limit.
pub(crate) fn partial(input: &[u8], limits: &Limits) -> Result<(), Error> {
    // The request line must end within the target's limit (plus method and version).
    let line_max = limits.max_uri_len.saturating_add(32);
    if input.len() > line_max && !input[..=line_max].contains(&b'\n') {
        return Err(Error::UriTooLong);
    }
    if input.len() > limits.max_header_bytes {
        return Err(Error::HeadersTooLarge);
    }
    Ok(())
}

/// What the head's fields say about framing and the connection.
#[derive(Default)]
struct Fields {
    length: Option<usize>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    /// How many Host fields (each valid).
    hosts: usize,
}

impl Fields {
    fn scan(headers: &[Header<'_>]) -> Result<Self, Error> {
        let mut fields = Fields::default();
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = content_length(h.value)?;
                if fields.length.is_some_and(|seen| seen != n) {
                    return Err(Error::BadRequest);
                }
                fields.length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                for coding in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if !coding.eq_ignore_ascii_case(b"chunked") {
                        return Err(if coding.is_empty() {
                            Error::BadRequest
                        } else {
                            Error::NotImplemented
                        });
                    }
                    if fields.chunked {
                        return Err(Error::BadRequest);
                    }
                    fields.chunked = true;
                }
            } else if name.eq_ignore_ascii_case("host") {
                if !valid_host(h.value) {
                    return Err(Error::BadRequest);
                }
                fields.hosts += 1;
            } else if name.eq_ignore_ascii_case("connection") {
                fields.close |= has_token(h.value, "close");
                fields.keep_alive |= has_token(h.value, "keep-alive");
            } else if name.eq_ignore_ascii_case("expect") {
                fields.expect_continue |=
                    h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
        }
        Ok(fields)
    }
}

/// `Content-Length = 1*DIGIT`, nothing else (no sign, no list, no spaces inside).
fn content_length(value: &[u8]) -> Result<usize, Error> {
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadRequest);
    }
    Ok(value.iter().fold(0, |n, &d| n * 10 + usize::from(d - b'0')))
}

/// Whether a line of `head` ends with a LF not preceded by a CR. Only the LFs are looked at,
/// found with `memchr` (SIMD): this runs on every request, where a byte-by-byte look-behind
/// costs several instructions per byte of the head.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// [`HOST_CHAR`]: not allowed in a host.
const NO: u8 = 0;
/// [`HOST_CHAR`]: allowed in a reg-name or IPv4 address (unreserved, pct-encoded's `%`,
/// sub-delims), and so in an IP literal too.
const REG_NAME: u8 = 1;
/// [`HOST_CHAR`]: allowed only inside an IP literal (`[...]`).
const IP_LITERAL: u8 = 2;

/// Which bytes a host may hold (RFC 3986 section 3.2.2), one lookup per byte: this runs on
/// every request.
static HOST_CHAR: [u8; 256] = {
    let mut t = [NO; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = REG_NAME;
        }
        b += 1;
    }
    let extra = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = REG_NAME;
        i += 1;
    }
    t[b':' as usize] = IP_LITERAL;
    t
};

/// `Host = uri-host [ ":" port ]` (RFC 9110 section 7.2, RFC 3986 section 3.2.2), not empty:
/// an origin server has no use for the empty Host of a target without authority, and nginx
/// refuses it too.
fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &literal[..end];
        if inside.is_empty() || !inside.iter().all(|&b| HOST_CHAR[usize::from(b)] != NO) {
            return false;
        }
        (&value[..end + 2], &literal[end + 1..])
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let host = &value[..end];
        if !host.iter().all(|&b| HOST_CHAR[usize::from(b)] == REG_NAME) {
            return false;
        }
        (host, &value[end..])
    };
    !host.is_empty()
        && match port.strip_prefix(b":") {
            Some(digits) => digits.iter().all(u8::is_ascii_digit),
            None => port.is_empty(),
        }
}
