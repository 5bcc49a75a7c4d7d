//! A parsed request, borrowed from the connection's input, and its helpers: path parameters
//! (from a [`Router`](super::Router)), query and form decoding (`form_urlencoded`), cookies
//! (`cookie`), JSON bodies (feature `serde`).

use std::borrow::Cow;
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
    pub(crate) params: Params<'a>,
    /// A body over the limit, offered as a stream (see [`Request::body_reader`]).
    pub(crate) upload: Option<&'a super::upload::Offer>,
}

/// The path parameters a route matched.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Params<'a> {
    #[default]
    None,
    Matched(&'a matchit::Params<'a, 'a>),
    Owned(&'a [(String, String)]),
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

    /// The body as a stream, for a body larger than
    /// [`Http::max_body_bytes`](super::Http::max_body_bytes) when
    /// [`Http::stream_large_bodies`](super::Http::stream_large_bodies) is on (then
    /// [`body`](Self::body) is empty); `None` otherwise, or once taken. A handler that does
    /// not take it gets the request answered `413`, as without streaming. Read it on another
    /// thread (a [`blocking`](super::blocking) handler, or one given the
    /// [`Responder`](super::Responder) of [`Response::defer`](super::Response::defer)): the
    /// connection reads the socket as the reader consumes, one window
    /// ([`Http::stream_window`](super::Http::stream_window)) ahead.
    pub fn body_reader(&self) -> Option<super::BodyReader> {
        self.upload?.take()
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

    /// The path parameter `name` of the route that matched (`/users/{id}` gives `id`), as it
    /// appeared in the path (not percent-decoded). `None` outside a [`Router`](super::Router).
    pub fn param(&self, name: &str) -> Option<&str> {
        match self.params {
            Params::None => None,
            Params::Matched(params) => params.get(name),
            Params::Owned(params) => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
        }
    }

    /// The query's `name=value` pairs, percent- and `+`-decoded (`form_urlencoded`).
    pub fn query_pairs(&self) -> form_urlencoded::Parse<'a> {
        form_urlencoded::parse(self.query().unwrap_or("").as_bytes())
    }

    /// The first query parameter named `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The body's `name=value` pairs when it is `application/x-www-form-urlencoded` (an HTML
    /// form); `None` for another content type.
    pub fn form_pairs(&self) -> Option<form_urlencoded::Parse<'a>> {
        let ct = self.header("content-type")?;
        let essence = ct.split(|&b| b == b';').next()?.trim_ascii();
        essence
            .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
            .then(|| form_urlencoded::parse(self.body))
    }

    /// The cookies the request carries (every `Cookie` header), parsed with the `cookie`
    /// crate; malformed pairs are skipped.
    pub fn cookies(&self) -> impl Iterator<Item = cookie::Cookie<'a>> + '_ {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(cookie::Cookie::split_parse_encoded)
            .filter_map(Result::ok)
    }

    /// The value of the cookie `name`, percent-decoded.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_string())
    }

    /// The body parsed as JSON into `T` (feature `serde`).
    ///
    /// # Errors
    /// A [`BadRequest`](super::BadRequest) that says what was wrong (not JSON, which field,
    /// where); [`BadRequest::answer`](super::BadRequest::answer) turns it into a `400`.
    #[cfg(feature = "serde")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, super::BadRequest> {
        serde_json::from_slice(self.body)
            .map_err(|e| super::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// A request copied out of the connection's buffers, for a handler on another thread.
pub(crate) struct OwnedRequest {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    peer: Option<SocketAddr>,
    params: Vec<(String, String)>,
    /// A streamed body's reader, taken from the connection for the thread.
    upload: super::upload::Offer,
}

impl OwnedRequest {
    pub(crate) fn new(req: &Request<'_>) -> Self {
        let params = match req.params {
            Params::None => Vec::new(),
            Params::Matched(p) => p.iter().map(|(k, v)| (k.into(), v.into())).collect(),
            Params::Owned(p) => p.to_vec(),
        };
        OwnedRequest {
            method: req.method.into(),
            target: req.target.into(),
            minor_version: req.minor_version,
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.into(), h.value.into()))
                .collect(),
            body: req.body.into(),
            peer: req.peer,
            params,
            upload: super::upload::Offer::of(req.body_reader()),
        }
    }

    /// The request again, its header array built in `headers`.
    pub(crate) fn as_request<'a>(
        &'a self,
        headers: &'a mut Vec<httparse::Header<'a>>,
    ) -> Request<'a> {
        headers.extend(
            self.headers
                .iter()
                .map(|(name, value)| httparse::Header { name, value }),
        );
        Request {
            method: &self.method,
            target: &self.target,
            minor_version: self.minor_version,
            headers,
            body: &self.body,
            peer: self.peer,
            params: Params::Owned(&self.params),
            upload: Some(&self.upload),
        }
    }
}

/// Input a handler could not use (e.g. a malformed JSON body): the message says what was
/// wrong, for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl BadRequest {
    /// Answer `400 Bad Request` with the message as a plain-text body.
    pub fn answer(&self, res: &mut super::Response) {
        res.status(400)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(format!("{}\n", self.0));
    }
}

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRequest {}
