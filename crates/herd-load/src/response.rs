//! An incremental HTTP/1.1 response reader: status line and headers with httparse, then the
//! body by `Content-Length`, chunked coding, or until the server closes. It never allocates;
//! the body is skipped, not stored.

use httparse::Status;

use crate::workers::WorkerTally;

/// Headers beyond this many make a response malformed.
const MAX_HEADERS: usize = 64;

/// What a complete response said that the generator cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// The status code.
    pub(crate) status: u16,
    /// The interned value of the worker header, if present.
    pub(crate) worker: Option<u32>,
    /// The server will close the connection after this response.
    pub(crate) close: bool,
}

/// The outcome of one [`Reader::parse`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// This many bytes were used; the response is not complete yet.
    More(usize),
    /// This many bytes were used and they complete a response.
    Done(usize, Head),
}

/// A response the reader cannot make sense of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The status line or headers are malformed (httparse's verdict).
    Head(httparse::Error),
    /// A `Content-Length` that is not a number, or two that disagree.
    ContentLength,
    /// A chunk size line that is not hexadecimal, or a chunk not followed by CRLF.
    Chunk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Waiting for the status line and headers.
    Head,
    /// This many body bytes left.
    Length(u64),
    /// Waiting for a chunk size line.
    ChunkSize,
    /// This many bytes of chunk data left.
    ChunkData(u64),
    /// Waiting for the CRLF after chunk data.
    ChunkEnd,
    /// After the last chunk: trailer lines up to an empty line.
    Trailer,
    /// The body ends when the server closes.
    UntilClose,
}

/// One connection's response reader. Feed it the unconsumed input with [`Reader::parse`].
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    body: Body,
    head: Head,
}

impl Reader {
    pub(crate) fn new() -> Reader {
        Reader {
            body: Body::Head,
            head: Head {
                status: 0,
                worker: None,
                close: false,
            },
        }
    }

    /// Forgets any partly read response (the connection is gone).
    pub(crate) fn reset(&mut self) {
        self.body = Body::Head;
    }

    /// Reads as far as `buf` allows, up to the end of one response. Interim (1xx) responses
    /// are skipped. Worker header values are interned in `workers`.
    pub(crate) fn parse(
        &mut self,
        buf: &[u8],
        worker_header: &str,
        workers: &mut WorkerTally,
    ) -> Result<Progress, ParseError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.body {
                Body::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut response = httparse::Response::new(&mut headers);
                    match response.parse(rest).map_err(ParseError::Head)? {
                        Status::Partial => return Ok(Progress::More(pos)),
                        Status::Complete(n) => {
                            pos += n;
                            self.body = self.read_head(&response, worker_header, workers)?;
                        }
                    }
                }
                Body::Length(left) | Body::ChunkData(left) => {
                    let take = left.min(rest.len() as u64);
                    pos += take as usize;
                    let left = left - take;
                    let chunked = matches!(self.body, Body::ChunkData(_));
                    self.body = match (left, chunked) {
                        (0, false) => return Ok(self.done(pos)),
                        (0, true) => Body::ChunkEnd,
                        (left, false) => Body::Length(left),
                        (left, true) => Body::ChunkData(left),
                    };
                    if left > 0 {
                        return Ok(Progress::More(pos));
                    }
                }
                Body::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(Status::Partial) => return Ok(Progress::More(pos)),
                    Ok(Status::Complete((n, 0))) => {
                        pos += n;
                        self.body = Body::Trailer;
                    }
                    Ok(Status::Complete((n, size))) => {
                        pos += n;
                        self.body = Body::ChunkData(size);
                    }
                    Err(_) => return Err(ParseError::Chunk),
                },
                Body::ChunkEnd => {
                    if rest.len() < 2 {
                        return Ok(Progress::More(pos));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ParseError::Chunk);
                    }
                    pos += 2;
                    self.body = Body::ChunkSize;
                }
                Body::Trailer => match rest.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => return Ok(self.done(pos + 2)),
                    Some(line) => pos += line + 2,
                    None => return Ok(Progress::More(pos)),
                },
                Body::UntilClose => return Ok(Progress::More(buf.len())),
            }
        }
    }

    /// The server closed the connection. Returns the response this completes, if the body was
    /// delimited by the close.
    pub(crate) fn on_eof(&mut self) -> Option<Head> {
        if self.body == Body::UntilClose {
            self.body = Body::Head;
            Some(self.head)
        } else {
            None
        }
    }

    fn done(&mut self, consumed: usize) -> Progress {
        self.body = Body::Head;
        Progress::Done(consumed, self.head)
    }

    /// Takes what matters from a parsed head and says how the body is delimited.
    fn read_head(
        &mut self,
        response: &httparse::Response<'_, '_>,
        worker_header: &str,
        workers: &mut WorkerTally,
    ) -> Result<Body, ParseError> {
        let status = response.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            return Ok(Body::Head);
        }
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = response.version == Some(0);
        let mut worker = None;
        for h in response.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_decimal(h.value).ok_or(ParseError::ContentLength)?;
                if length.is_some_and(|m| m != n) {
                    return Err(ParseError::ContentLength);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            } else if name.eq_ignore_ascii_case(worker_header) {
                worker = Some(workers.intern(h.value));
            }
        }
        let body = if status == 204 || status == 304 {
            Body::Length(0)
        } else if chunked {
            Body::ChunkSize
        } else if let Some(n) = length {
            Body::Length(n)
        } else {
            close = true;
            Body::UntilClose
        };
        self.head = Head {
            status,
            worker,
            close,
        };
        Ok(body)
    }
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The last comma-separated token of a header value, trimmed.
fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or(value)
        .trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, the way reads would deliver it, and returns the
    /// completed heads, the bytes left over, and the first error.
    fn feed(input: &[u8], step: usize) -> (Vec<Head>, usize, Option<ParseError>) {
        let mut reader = Reader::new();
        let mut workers = WorkerTally::default();
        let mut buf = Vec::new();
        let mut heads = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match reader.parse(&buf, "x-herd-worker", &mut workers) {
                    Ok(Progress::More(n)) => {
                        buf.drain(..n);
                        break;
                    }
                    Ok(Progress::Done(n, head)) => {
                        buf.drain(..n);
                        heads.push(head);
                    }
                    Err(e) => return (heads, buf.len(), Some(e)),
                }
            }
        }
        if let Some(head) = reader.on_eof() {
            heads.push(head);
        }
        (heads, buf.len(), None)
    }

    fn head(status: u16, worker: Option<u32>, close: bool) -> Head {
        Head {
            status,
            worker,
            close,
        }
    }

    /// Input, expected heads, expected leftover, expected error.
    type Case<'a> = (&'a [u8], &'a [Head], usize, Option<ParseError>);

    /// Each case fed whole and byte by byte.
    #[test]
    fn table() {
        let cases: &[Case<'_>] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Herd-Worker: a\r\n\r\nhello",
                &[head(200, Some(0), false)],
                0,
                None,
            ),
            (
                b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
                &[head(500, None, false), head(204, None, false)],
                0,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                  5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n",
                &[head(200, None, false)],
                0,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close",
                &[head(200, None, true)],
                0,
                None,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
                &[head(200, None, true)],
                0,
                None,
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
                &[head(200, None, false)],
                0,
                None,
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
                &[head(201, None, false)],
                0,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                &[],
                0,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                &[],
                0,
                Some(ParseError::ContentLength),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                &[],
                0,
                Some(ParseError::Chunk),
            ),
            (
                b"garbage\r\n\r\n",
                &[],
                0,
                Some(ParseError::Head(httparse::Error::Version)),
            ),
        ];
        for (i, (input, heads, left, error)) in cases.iter().enumerate() {
            for step in [input.len().max(1), 1] {
                let (got, got_left, got_error) = feed(input, step);
                assert_eq!(got, *heads, "case {i} step {step}");
                assert_eq!(got_error, *error, "case {i} step {step}");
                if error.is_none() {
                    assert_eq!(got_left, *left, "case {i} step {step}");
                }
            }
        }
    }
}
