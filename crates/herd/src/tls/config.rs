//! What every TLS connection of a worker shares: the certificate, its key, the protocol
//! versions and ALPN, loaded once when the worker starts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::error::{Error, ErrorKind, Result};

/// A server's TLS settings: a certificate chain, its private key, and how connections
/// negotiate (TLS 1.3 and 1.2, ALPN `http/1.1`, the `ring` crypto provider).
///
/// Load it in the worker, where it serves (then a rolling reload's new workers read renewed
/// certificate files), and also once in the primary before the cluster starts, so that a
/// missing or broken file is one line and a non-zero exit instead of workers failing one
/// after another.
///
/// ```no_run
/// # fn main() -> Result<(), herd::Error> {
/// let tls = herd::tls::TlsConfig::from_pem_files("cert.pem", "key.pem")?;
/// # let _ = tls;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(super) server: Arc<ServerConfig>,
    pub(super) handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.server.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// See [`TlsConfig::handshake_timeout`].
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsConfig {
    /// Reads a PEM certificate chain (the server's certificate first, then any intermediates)
    /// and a PEM private key (PKCS#8, PKCS#1 or SEC1), as nginx's `ssl_certificate` and
    /// `ssl_certificate_key`. ALPN offers `http/1.1`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] with one sentence naming the file and what is wrong with it: it
    /// cannot be read, holds no certificate or no key, is not valid PEM, or the key does not
    /// belong to the certificate.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<TlsConfig> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let read = |what: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("TLS {what} {}: cannot read it: {e}", path.display()),
                )
            })
        };
        let certs = read("certificate", cert)?;
        let keys = read("key", key)?;
        Self::load(&certs, &keys).map_err(|(file, why)| {
            let path = match file {
                File::Cert => cert,
                File::Key => key,
            };
            let what = match file {
                File::Cert => "certificate",
                File::Key => "key",
            };
            Error::new(
                ErrorKind::Config,
                format!("TLS {what} {}: {why}", path.display()),
            )
        })
    }

    /// As [`from_pem_files`](Self::from_pem_files), from PEM text in memory.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] as [`from_pem_files`](Self::from_pem_files).
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<TlsConfig> {
        Self::load(cert, key).map_err(|(file, why)| {
            let what = match file {
                File::Cert => "certificate",
                File::Key => "key",
            };
            Error::new(ErrorKind::Config, format!("TLS {what}: {why}"))
        })
    }

    /// A configuration made with rustls itself (other certificate resolvers, client
    /// authentication, session tickets, other ALPN protocols, another crypto provider).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when rustls refuses to start a connection with it (an invalid
    /// `max_fragment_size`).
    pub fn from_rustls(config: Arc<ServerConfig>) -> Result<TlsConfig> {
        // The one check rustls makes when a connection starts: made here once, so that
        // connections cannot fail to start later.
        rustls::ServerConnection::new(Arc::clone(&config))
            .map_err(|e| Error::new(ErrorKind::Config, format!("TLS configuration: {e}")))?;
        Ok(TlsConfig {
            server: config,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// The time a new connection has to complete its TLS handshake; a connection still
    /// handshaking then is closed. Default: 10 s (the same as
    /// [`Http::header_read_timeout`](crate::Http::header_read_timeout), which also bounds the
    /// time to a first request).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration connections use.
    pub fn rustls(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    fn load(cert: &[u8], key: &[u8]) -> std::result::Result<TlsConfig, (File, String)> {
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| (File::Cert, pem_error(&e, "certificate")))?;
        if chain.is_empty() {
            return Err((
                File::Cert,
                "no certificate in it (expected a PEM `BEGIN CERTIFICATE` block)".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| (File::Key, pem_error(&e, "private key")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| (File::Cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| (File::Key, format!("does not fit the certificate: {e}")))?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConfig::from_rustls(Arc::new(server)).map_err(|e| (File::Cert, e.to_string()))
    }
}

/// Which of the two files an error is about.
#[derive(Clone, Copy)]
enum File {
    Cert,
    Key,
}

fn pem_error(e: &pem::Error, what: &str) -> String {
    match e {
        pem::Error::NoItemsFound => format!(
            "no {what} in it (expected a PEM `BEGIN {}` block)",
            if what == "certificate" {
                "CERTIFICATE"
            } else {
                "PRIVATE KEY"
            }
        ),
        e => format!("not valid PEM: {e}"),
    }
}
