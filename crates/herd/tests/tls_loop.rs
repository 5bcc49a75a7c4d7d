//! TLS on a real event loop, in process: a protocol that answers with [`Flow::Stream`] and a
//! file range ([`Connection::take_file`]) works unchanged inside [`herd::tls::Tls`], which
//! reads the range and encrypts it piece by piece (sendfile cannot go through TLS), in order
//! with what the protocol wrote, and serves the request pipelined behind the stream
//! afterwards; a handshake that does not finish is cut off by the handshake timeout.

mod util;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd::event_loop::Config;
use herd::protocol::{Connection, FileRange, Flow, Protocol, Step};
use herd::tls::{Tls, TlsConfig};
use rustls::pki_types::{CertificateDer, ServerName};
use util::start_protocol;

/// Bytes in memory before the file's: byte `i` of an answer is `i % 251`.
const MEMORY: u64 = 100 * 1024;
const MODULUS: u64 = 251;

/// Each `S\n` is answered with `MEMORY` bytes from memory, then `range` bytes of `file`.
struct Files {
    file: Arc<File>,
    range: u64,
}

struct FilesConn {
    file: Arc<File>,
    range: u64,
    file_due: bool,
}

impl Protocol for Files {
    type Conn = FilesConn;
    fn connect(&self, _peer: Option<SocketAddr>, _now: Instant) -> FilesConn {
        FilesConn {
            file: Arc::clone(&self.file),
            range: self.range,
            file_due: false,
        }
    }
}

impl Connection for FilesConn {
    fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, _now: Instant) -> Step {
        if input.len() < 2 {
            return Step {
                consumed: 0,
                flow: Flow::Continue,
            };
        }
        assert_eq!(&input[..2], b"S\n", "test protocol: bad request");
        out.extend((0..MEMORY).map(|i| (i % MODULUS) as u8));
        self.file_due = true;
        Step {
            consumed: 2,
            flow: Flow::Stream,
        }
    }

    fn on_drained(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        self.on_read(input, out, now)
    }

    fn take_file(&mut self) -> Option<FileRange> {
        std::mem::take(&mut self.file_due).then(|| FileRange {
            file: Arc::clone(&self.file),
            offset: 0,
            len: self.range,
        })
    }

    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn on_timeout(&mut self, _out: &mut Vec<u8>, _now: Instant) -> Flow {
        Flow::Close
    }

    fn on_drain(&mut self, _out: &mut Vec<u8>) -> Flow {
        Flow::Close
    }
}

/// An unlinked temporary file of `len` pattern bytes, as if they followed `MEMORY` bytes.
fn pattern_file(len: u64) -> File {
    let path = std::env::temp_dir().join(format!("herd-tls-stream-{}-{len}", std::process::id()));
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("temp file");
    std::fs::remove_file(&path).expect("unlink temp file");
    let bytes: Vec<u8> = (MEMORY..MEMORY + len)
        .map(|i| (i % MODULUS) as u8)
        .collect();
    file.write_all(&bytes).expect("write temp file");
    file
}

/// Serves `Files` inside TLS with a fresh self-signed certificate; returns the server and a
/// client connected to it.
type Client = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn serve(file_len: u64, range: u64) -> (util::Server, Client) {
    let (tls, made) = self_signed();
    let files = Files {
        file: Arc::new(pattern_file(file_len)),
        range,
    };
    let server = start_protocol(Tls::new(files, tls), Config::default());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(made.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = server.connect();
    (server, rustls::StreamOwned::new(conn, sock))
}

fn self_signed() -> (TlsConfig, rcgen::CertifiedKey<rcgen::KeyPair>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let tls = TlsConfig::from_pem(
        made.cert.pem().as_bytes(),
        made.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    (tls, made)
}

/// Reads `len` bytes of an answer and checks the pattern.
fn read_pattern(c: &mut impl Read, len: u64) {
    let mut buf = vec![0; 64 * 1024];
    let mut at = 0;
    while at < len {
        let want = ((len - at) as usize).min(buf.len());
        let n = c
            .read(&mut buf[..want])
            .unwrap_or_else(|e| panic!("read at {at} of {len}: {e}"));
        assert!(n > 0, "EOF at {at} of {len}");
        for (i, &b) in buf[..n].iter().enumerate() {
            assert_eq!(
                b,
                ((at + i as u64) % MODULUS) as u8,
                "byte {}",
                at + i as u64
            );
        }
        at += n as u64;
    }
}

#[test]
fn file_ranges_are_encrypted_in_order_and_pipelining_goes_on() {
    const FILE: u64 = 3 << 20;
    let (server, mut client) = serve(FILE, FILE);
    // Two at once: the second waits while the first streams.
    client.write_all(b"S\nS\n").unwrap();
    read_pattern(&mut client, MEMORY + FILE);
    read_pattern(&mut client, MEMORY + FILE);
    client.write_all(b"S\n").unwrap();
    read_pattern(&mut client, MEMORY + FILE);
    drop(client);
    server.stop().expect("drain");
}

#[test]
fn a_file_shorter_than_its_range_ends_the_connection_without_close_notify() {
    const FILE: u64 = 200 * 1024;
    let (server, mut client) = serve(FILE, FILE + 1000);
    client.write_all(b"S\n").unwrap();
    read_pattern(&mut client, MEMORY + FILE);
    let mut rest = Vec::new();
    let end = client.read_to_end(&mut rest).map_err(|e| e.kind());
    // A cut, which rustls reports as such, not a clean end.
    assert_eq!(
        end,
        Err(std::io::ErrorKind::UnexpectedEof),
        "{} more bytes",
        rest.len()
    );
    server.stop().expect("drain");
}

#[test]
fn a_handshake_that_does_not_finish_is_cut_off() {
    let (tls, _made) = self_signed();
    // The HTTP timeouts are long: only the handshake timeout can end these connections.
    let http = herd::Http::new(|_req: &herd::Request<'_>, res: &mut herd::Response| {
        res.body("hello");
    })
    .header_read_timeout(Duration::from_secs(60))
    .keepalive_timeout(Duration::from_secs(60));
    let config = Config {
        timer_granularity: Duration::from_millis(50),
        ..Config::default()
    };
    let server = start_protocol(
        http.tls(tls.handshake_timeout(Duration::from_millis(300))),
        config,
    );
    // One silent client, one that sends the start of a record and stops.
    let silent = server.connect();
    let mut partial = server.connect();
    partial.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
    let started = Instant::now();
    for mut c in [silent, partial] {
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).map_err(|e| e.kind());
        assert_eq!(n, Ok(0), "closed, not timed out on our side");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    server.stop().expect("drain");
}
