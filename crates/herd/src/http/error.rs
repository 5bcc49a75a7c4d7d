//! Why a request could not be served: each kind maps to the status the client gets before the
//! connection closes.

/// A request the server refuses; the connection closes after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Error {
    /// Malformed head, invalid or conflicting framing (400).
    BadRequest,
    /// The head was not complete within the header read timeout (408).
    Timeout,
    /// The body exceeds the configured maximum (413).
    BodyTooLarge,
    /// The request target exceeds the configured maximum (414).
    UriTooLong,
    /// The header section is too large or has too many fields (431).
    HeadersTooLarge,
    /// A transfer coding other than `chunked` (501).
    NotImplemented,
    /// Not HTTP/1.0 or HTTP/1.1, e.g. the HTTP/2 preface (505).
    VersionNotSupported,
}

impl Error {
    pub(crate) fn status(self) -> u16 {
        match self {
            Error::BadRequest => 400,
            Error::Timeout => 408,
            Error::BodyTooLarge => 413,
            Error::UriTooLong => 414,
            Error::HeadersTooLarge => 431,
            Error::NotImplemented => 501,
            Error::VersionNotSupported => 505,
        }
    }
}

impl From<httparse::Error> for Error {
    fn from(e: httparse::Error) -> Self {
        match e {
            httparse::Error::TooManyHeaders => Error::HeadersTooLarge,
            httparse::Error::Version => Error::VersionNotSupported,
            _ => Error::BadRequest,
        }
    }
}
