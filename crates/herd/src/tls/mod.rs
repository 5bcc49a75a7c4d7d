//! TLS on the worker's event loop with rustls (feature `tls`): [`Tls`] wraps any
//! [`Protocol`] (HTTP/1.1, or a raw service), so a worker serves HTTPS with the same
//! handlers, keep-alive, pipelining and drains as plain HTTP.
//!
//! ```no_run
//! use herd::tls::TlsConfig;
//! use herd::{Cluster, Request, Response};
//!
//! fn main() -> Result<(), herd::Error> {
//!     // Checked once here: a bad file is one line and a non-zero exit, not failing workers.
//!     TlsConfig::from_pem_files("cert.pem", "key.pem")?;
//!     Cluster::new().workers(2).run(|worker| {
//!         // Read again by every worker, so a reload picks up renewed files.
//!         let tls = TlsConfig::from_pem_files("cert.pem", "key.pem")?;
//!         worker.serve_https("0.0.0.0:8443", tls, |_req: &Request<'_>, res: &mut Response| {
//!             res.body("hello\n");
//!         })
//!     })
//! }
//! ```
//!
//! The handshake and the encryption run on the loop thread, as the rest of the protocol:
//! nothing in the event loop knows TLS is there. A connection's TLS session cannot move to
//! another worker, so a rolling reload closes idle TLS connections (with `close_notify`)
//! where plain HTTP ones are handed over. The crypto provider is `ring`; TLS 1.3 and 1.2
//! with rustls' safe defaults; ALPN `http/1.1`. For other choices build a
//! `rustls::ServerConfig` and use [`TlsConfig::from_rustls`].

mod config;
mod conn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub use config::TlsConfig;
pub use conn::Conn;
/// The rustls crate herd uses, for [`TlsConfig::from_rustls`] and [`Conn::tls`].
pub use rustls;

use crate::protocol::{Protocol, Wake};

/// A [`Protocol`] spoken inside TLS: the inner protocol sees plaintext, the socket
/// ciphertext.
#[derive(Debug)]
pub struct Tls<P> {
    inner: P,
    config: TlsConfig,
    /// Sent, unencrypted, to a client that speaks plain text to this TLS port.
    plain_reply: Option<&'static [u8]>,
}

impl<P: Protocol> Tls<P> {
    /// `inner` spoken inside TLS with `config`.
    pub fn new(inner: P, config: TlsConfig) -> Self {
        Tls {
            inner,
            config,
            plain_reply: None,
        }
    }

    /// What a client that sends plain text to this port (an `http://` URL for an `https://`
    /// service) gets, unencrypted, before the connection closes: a first byte that no TLS
    /// record starts with (an ASCII letter) is taken for that. [`Http::tls`](crate::Http::tls)
    /// sets a `400 Bad Request` saying to use `https://`, as nginx does. Default: nothing,
    /// the connection just closes.
    pub fn plain_reply(mut self, reply: &'static [u8]) -> Self {
        self.plain_reply = Some(reply);
        self
    }

    /// The inner protocol.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    fn session(&self) -> rustls::ServerConnection {
        let mut session = rustls::ServerConnection::new(Arc::clone(&self.config.server))
            .expect("TlsConfig::from_rustls checked that connections start");
        // The loop bounds what waits for the peer (it stops reading); rustls only holds
        // records until the same callback moves them to the loop's output.
        session.set_buffer_limit(None);
        session
    }
}

impl<P: Protocol> Protocol for Tls<P> {
    type Conn = Conn<P::Conn>;

    fn connect(&self, peer: Option<SocketAddr>, now: Instant) -> Self::Conn {
        let inner = self.inner.connect(peer, now);
        Conn::new(
            self.session(),
            inner,
            now + self.config.handshake_timeout,
            self.plain_reply,
        )
    }

    fn connect_with(&self, peer: Option<SocketAddr>, now: Instant, wake: Wake) -> Self::Conn {
        let inner = self.inner.connect_with(peer, now, wake);
        Conn::new(
            self.session(),
            inner,
            now + self.config.handshake_timeout,
            self.plain_reply,
        )
    }
}
