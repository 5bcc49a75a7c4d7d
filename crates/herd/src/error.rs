//! herd's public error type: one struct with a kind to match on.

use std::fmt;
use std::io;

/// What went wrong, for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An operating-system call failed.
    Io,
    /// A listener could not be created (address in use, permission denied, ...).
    Listen,
    /// A message exceeds the IPC size limit.
    MessageTooLarge,
    /// The worker or primary on the other end is gone.
    NotConnected,
    /// A setting is wrong; the message says which and how to fix it.
    Config,
    /// Workers could not be started; the cluster stopped.
    Start,
    /// The cluster stopped, but not cleanly (workers had to be killed).
    Shutdown,
    /// A slot crash-looped and [`OnCrashLoop::Stop`](crate::OnCrashLoop::Stop) stopped the
    /// cluster.
    CrashLoop,
}

/// herd's error: a kind and a sentence that says what happened.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
    errno: Option<i32>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
            errno: None,
        }
    }

    /// An error whose sentence already names its OS error `errno`.
    pub(crate) fn with_errno(kind: ErrorKind, message: impl Into<String>, errno: i32) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
            errno: Some(errno),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error {
            kind: ErrorKind::Io,
            message: context.into(),
            source: Some(source),
            errno: None,
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The OS error number behind this error, if any (e.g. `EADDRINUSE` for a listen error).
    pub fn raw_os_error(&self) -> Option<i32> {
        self.errno
            .or_else(|| self.source.as_ref().and_then(io::Error::raw_os_error))
    }
}

/// The sentence, as Display writes it: `fn main() -> Result<(), herd::Error>` then prints
/// `Error: <what happened and what to do>` instead of a struct dump.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{}: {}", self.message, s),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.kind {
            ErrorKind::NotConnected => io::ErrorKind::NotConnected,
            ErrorKind::MessageTooLarge => io::ErrorKind::InvalidInput,
            ErrorKind::Config => io::ErrorKind::InvalidInput,
            _ => e
                .source
                .as_ref()
                .map_or(io::ErrorKind::Other, io::Error::kind),
        };
        match e.raw_os_error() {
            Some(code) if e.kind == ErrorKind::Listen => {
                io::Error::new(io::Error::from_raw_os_error(code).kind(), e.to_string())
            }
            _ => io::Error::new(kind, e.to_string()),
        }
    }
}

/// `Result` with herd's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
