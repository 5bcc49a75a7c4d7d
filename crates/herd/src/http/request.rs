//! A parsed request, borrowed from the connection's input.

use std::net::SocketAddr;

/// One HTTP request. It borrows the connection's read buffer (and, for a chunked body, the
/// connection's decode buffer), so it lives only as long as [`Handler::call`](super::Handler::call).
#[derive(Debug)]
pub struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) minor_version: u8,
    pub(crate) headers: &'a [httparse::Header<'a>],
    pub(crate) body: &'a [u8],
    pub(crate) peer: Option<SocketAddr>,
}

impl<'a> Request<'a> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target as sent, path and query (e.g. `/search?q=herd`).
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path: the target without its query (e.g. `/search`).
    pub fn path(&self) -> &'a str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    /// The query: what follows the first `?` of the target, if there is one (e.g. `q=herd`).
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The minor version: `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// The value of the first header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every header as `(name, value)`, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The body (empty when there is none); a chunked body arrives decoded.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The peer's address, when the connection knows it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}
