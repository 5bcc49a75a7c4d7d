//! HTTPS end to end: the hello example and the fixture serve TLS (herd::tls, rustls) with a
//! self-signed certificate each test makes (rcgen), checked with real clients: curl, and a
//! rustls client in the test. Keep-alive, pipelining, large bodies both ways, deferred answers,
//! plain HTTP to the TLS port, bad files at start (checked in the primary, or only in the
//! worker: no crash loop), and a reload that serves renewed files.

mod util;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use util::{children_of, example, free_port, read_reply, Proc, Reply, FIXTURE, SEC};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A temporary directory holding `cert.pem` and `key.pem`, removed on drop.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new() -> Certs {
        use std::sync::atomic::AtomicU32;
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herd-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Certs { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Makes a new self-signed certificate for `localhost` and puts it (and its key) in place
    /// with renames, as a certificate renewal does; returns its DER.
    fn issue(&self) -> CertificateDer<'static> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        self.put("cert.pem", made.cert.pem().as_bytes());
        self.put("key.pem", made.signing_key.serialize_pem().as_bytes());
        made.cert.der().clone()
    }

    fn put(&self, name: &str, bytes: &[u8]) {
        let tmp = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.dir.join(name)).unwrap();
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Starts the hello example serving HTTPS with `certs` (two workers); returns it once both
/// workers listen, its workers adopted by the guard.
fn start_hello(certs: &Certs) -> (Proc, u16) {
    let port = free_port();
    let port_s = port.to_string();
    let bin = example("hello");
    let (cert, key) = (certs.cert(), certs.key());
    let env = [
        ("PORT", port_s.as_str()),
        ("WORKERS", "2"),
        ("TLS_CERT", s(&cert)),
        ("TLS_KEY", s(&key)),
    ];
    let mut proc = Proc::start(bin.to_str().unwrap(), &env, &[]);
    for _ in 0..2 {
        proc.expect(10 * SEC, |l| l.contains("worker listening"));
    }
    proc.adopt(&children_of(proc.pid()));
    (proc, port)
}

/// A rustls client trusting `roots`, offering `versions` and ALPN `http/1.1` (and `h2`, as
/// browsers and curl do: the server must pick http/1.1).
fn client(
    roots: &[&CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connects to 127.0.0.1:`port` as `localhost` and completes the handshake.
fn connect(port: u16, config: &Arc<ClientConfig>) -> std::io::Result<BufReader<Tls>> {
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(5 * SEC))?;
    sock.set_write_timeout(Some(5 * SEC))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(BufReader::new(tls))
}

fn get(c: &mut BufReader<Tls>, path: &str) -> std::io::Result<Reply> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    c.get_mut().write_all(req.as_bytes())?;
    c.get_mut().flush()?;
    read_reply(c)
}

#[test]
fn curl_keeps_one_tls_connection_for_several_requests() {
    let certs = Certs::new();
    certs.issue();
    let (_hello, port) = start_hello(&certs);
    let url = format!("https://localhost:{port}/");
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert", s(&certs.cert())])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args([
            "-w",
            "\nconnects=%{num_connects} http=%{http_version} verify=%{ssl_verify_result}\n",
        ])
        .args([&url, &url, &url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("Hello from worker").count(), 3, "{text}");
    let stats: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("connects="))
        .collect();
    assert_eq!(
        stats,
        [
            "connects=1 http=1.1 verify=0",
            "connects=0 http=1.1 verify=0",
            "connects=0 http=1.1 verify=0"
        ],
        "one verified connection, reused: {text}"
    );
    // Without `--http1.1` curl offers h2 first: ALPN must settle on http/1.1.
    let out = Command::new("curl")
        .args(["-sS", "-v", "--cacert", s(&certs.cert())])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1"), &url])
        .output()
        .expect("run curl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
}

#[test]
fn rustls_client_negotiates_http11_pipelines_and_sees_the_certificate() {
    let certs = Certs::new();
    let der = certs.issue();
    let (_hello, port) = start_hello(&certs);
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let mut c = connect(port, &client(&[&der], versions)).unwrap();
        let conn = &c.get_ref().conn;
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(conn.protocol_version(), Some(versions[0].version));
        assert_eq!(
            conn.peer_certificates().map(|c| c[0].clone()),
            Some(der.clone())
        );
        // Three requests in one write: three answers, in order, on the same connection.
        let reqs = "GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(3);
        c.get_mut().write_all(reqs.as_bytes()).unwrap();
        let mut workers = Vec::new();
        for _ in 0..3 {
            let r = read_reply(&mut c).unwrap();
            assert_eq!(r.status, 200);
            assert!(r.text().starts_with("Hello from worker"), "{}", r.text());
            workers.push(r.header("x-herd-worker").unwrap().to_string());
        }
        assert!(workers.iter().all(|w| *w == workers[0]), "{workers:?}");
        // Keep-alive after the batch.
        assert_eq!(get(&mut c, "/").unwrap().status, 200);
    }
}

#[test]
fn large_bodies_and_deferred_answers_cross_tls() {
    let certs = Certs::new();
    let der = certs.issue();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (cert, key) = (certs.cert(), certs.key());
    let mut fixture = Proc::start(
        FIXTURE,
        &[
            ("FIX_MODE", "http"),
            ("FIX_ADDR", &addr),
            ("FIX_WORKERS", "1"),
            ("FIX_TLS_CERT", s(&cert)),
            ("FIX_TLS_KEY", s(&key)),
        ],
        &[],
    );
    fixture.expect(10 * SEC, |l| l.starts_with("EV listening"));
    let mut c = connect(port, &client(&[&der], &[&rustls::version::TLS13])).unwrap();

    // 768 KiB in: the request body arrives in many records and reads.
    let body = vec![b'x'; 768 << 10];
    let head = format!(
        "POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.get_mut().write_all(head.as_bytes()).unwrap();
    c.get_mut().write_all(&body).unwrap();
    let r = read_reply(&mut c).unwrap();
    assert_eq!((r.status, r.text()), (200, format!("{}\n", body.len())));

    // An answer from another thread, with a pipelined request behind it: both, in order.
    let reqs = "GET /defer?ms=100 HTTP/1.1\r\nHost: localhost\r\n\r\n\
                GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n";
    c.get_mut().write_all(reqs.as_bytes()).unwrap();
    assert_eq!(read_reply(&mut c).unwrap().text(), "deferred 100\n");
    assert!(read_reply(&mut c)
        .unwrap()
        .text()
        .starts_with("GET /after from"));

    // 3 MiB out (many records, short writes, WRITABLE), the last answer: every byte in
    // place, then the server closes with close_notify, a clean TLS end, not a truncation.
    // (Last, because the keep-alive timer starts when an answer is made, not when a slow
    // reader has taken it all.)
    let req = "GET /big?kb=3072 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    c.get_mut().write_all(req.as_bytes()).unwrap();
    let r = read_reply(&mut c).unwrap();
    assert_eq!((r.status, r.body.len()), (200, 3 << 20));
    assert!(r.closes());
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 251) as u8));
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).map_err(|e| e.kind()), Ok(0));
}

#[test]
fn plain_http_to_the_tls_port_gets_a_plain_400_and_the_worker_lives() {
    let certs = Certs::new();
    let der = certs.issue();
    let (hello, port) = start_hello(&certs);
    let workers = children_of(hello.pid());
    for _ in 0..3 {
        // A plain request: a plain 400 that says what to do, then the close.
        let mut sock = util::connect_retry(port);
        sock.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut r = BufReader::new(&mut sock);
        let reply = read_reply(&mut r).unwrap();
        assert_eq!(reply.status, 400);
        assert!(reply.closes());
        assert!(reply.text().contains("use an https://"), "{}", reply.text());
        assert!(util::closed_by_peer(&mut sock));
        // Curl's view of it.
        let out = Command::new("curl")
            .args(["-sS", &format!("http://127.0.0.1:{port}/")])
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("This port speaks HTTPS"), "{text}");
        // Bytes that are neither: closed (a TLS alert at most), never an HTTP answer.
        let mut sock = util::connect_retry(port);
        sock.write_all(&[0x01; 64]).unwrap();
        let mut got = Vec::new();
        let _ = sock.read_to_end(&mut got);
        assert!(!got.starts_with(b"HTTP/"), "{got:?}");
    }
    let mut c = connect(port, &client(&[&der], &[&rustls::version::TLS13])).unwrap();
    assert_eq!(get(&mut c, "/").unwrap().status, 200);
    assert_eq!(
        children_of(hello.pid()),
        workers,
        "no worker died or restarted"
    );
}

/// Runs hello with `env` and expects a quick exit with status 1 and one line on stderr that
/// contains every one of `needles`.
fn fails_at_start(env: &[(&str, &str)], needles: &[&str]) {
    let port = free_port().to_string();
    let bin = example("hello");
    let mut env = env.to_vec();
    env.extend([("PORT", port.as_str()), ("WORKERS", "2")]);
    let mut proc = Proc::start(bin.to_str().unwrap(), &env, &[]);
    let status = proc.wait(10 * SEC).expect("hello exits on its own");
    let err = proc.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("hello: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} in {err}");
    }
    proc.drain_for(Duration::from_millis(100));
    assert!(
        !proc.seen.iter().any(|l| l.contains("worker listening")),
        "no worker started: {:?}",
        proc.seen
    );
}

#[test]
fn bad_tls_files_stop_the_start_with_one_line() {
    let certs = Certs::new();
    certs.issue();
    let missing = certs.dir.join("missing.pem");
    let (cert, key) = (certs.cert(), certs.key());
    fails_at_start(
        &[("TLS_CERT", s(&missing)), ("TLS_KEY", s(&key))],
        &[s(&missing), "cannot read", "No such file"],
    );
    fails_at_start(&[("TLS_CERT", s(&cert))], &["TLS_KEY is not", "set both"]);
    // A key where the certificate should be, and a certificate where the key should be.
    fails_at_start(
        &[("TLS_CERT", s(&key)), ("TLS_KEY", s(&key))],
        &[s(&key), "no certificate"],
    );
    fails_at_start(
        &[("TLS_CERT", s(&cert)), ("TLS_KEY", s(&cert))],
        &[s(&cert), "no private key"],
    );
    // Another certificate's key.
    let other = Certs::new();
    other.issue();
    let other_key = other.key();
    fails_at_start(
        &[("TLS_CERT", s(&cert)), ("TLS_KEY", s(&other_key))],
        &[s(&other_key), "does not fit the certificate"],
    );
}

/// A library user who loads the certificate in the worker (as the docs recommend) and
/// returns the error with `?`, without checking in the primary: the workers exit with
/// EX_CONFIG (78) and the start stops at once, with the worker's line and one line from the
/// primary, instead of restarting the workers with backoff forever.
#[test]
fn a_bad_certificate_path_loaded_in_the_worker_stops_the_start_without_restarts() {
    let certs = Certs::new();
    certs.issue();
    let missing = certs.dir.join("missing.pem");
    let addr = format!("127.0.0.1:{}", free_port());
    let key = certs.key();
    let started = Instant::now();
    let mut fixture = Proc::start(
        FIXTURE,
        &[
            ("FIX_MODE", "http"),
            ("FIX_ADDR", &addr),
            ("FIX_WORKERS", "2"),
            // No tracing subscriber: the plain stderr lines of the README's snippet.
            ("FIX_NO_LOG", "1"),
            // A crash loop would restart within the test's time many times over.
            ("FIX_BACKOFF_MS", "50"),
            ("FIX_TLS_CERT", s(&missing)),
            ("FIX_TLS_KEY", s(&key)),
        ],
        &[],
    );
    let status = fixture.wait(8 * SEC);
    fixture.drain_for(Duration::from_millis(100));
    let err = fixture.stderr();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running after 8 s (restarting?); stdout:\n{}\nstderr:\n{err}",
            fixture.seen.join("\n")
        )
    });
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(started.elapsed() < 8 * SEC);
    // The primary's last line names the failed boot and says it does not restart.
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("herd-fixture: worker ")
            && last.contains("failed to boot (configuration error, exit 78)")
            && last.contains("not restarting"),
        "{err}"
    );
    // Each worker said what is wrong, once: the file and why.
    let why: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("herd worker ") && l.contains(s(&missing)))
        .collect();
    assert!((1..=2).contains(&why.len()), "{err}");
    assert!(why.iter().all(|l| l.contains("No such file")), "{err}");
    // Two workers were started, none restarted; those that failed exited 78.
    let forks = fixture
        .seen
        .iter()
        .filter(|l| l.starts_with("EV fork"))
        .count();
    assert_eq!(forks, 2, "{:?}\n{err}", fixture.seen);
    let exits: Vec<&String> = fixture
        .seen
        .iter()
        .filter(|l| l.starts_with("EV exit"))
        .collect();
    assert_eq!(exits.len(), 2, "{:?}", fixture.seen);
    assert!(
        exits.iter().any(|l| l.contains("code=78")),
        "{:?}",
        fixture.seen
    );
}

#[test]
fn reload_serves_renewed_certificate_and_loses_no_request() {
    let certs = Certs::new();
    let old = certs.issue();
    let (hello, port) = start_hello(&certs);
    let before = children_of(hello.pid());

    // Two clients run across the reload, trusting both certificates: one opens a connection
    // per request, one keeps its connection and opens a new one when the server closes it.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let new_cert = certs.issue_later();
    let trust = client(&[&old, &new_cert.der], &[&rustls::version::TLS13]);
    let fresh = {
        let (stop, served, trust) = (stop.clone(), served.clone(), trust.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match connect(port, &trust).and_then(|mut c| get(&mut c, "/")) {
                    Ok(r) if r.status == 200 => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            failures
        })
    };
    let kept = {
        let (stop, served, trust) = (stop.clone(), served.clone(), trust.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut c: Option<BufReader<Tls>> = None;
            while !stop.load(Ordering::Relaxed) {
                let reused = c.is_some();
                let conn = match c.take() {
                    Some(c) => Ok(c),
                    None => connect(port, &trust),
                };
                match conn.and_then(|mut c| get(&mut c, "/").map(|r| (c, r))) {
                    Ok((conn, r)) if r.status == 200 => {
                        served.fetch_add(1, Ordering::Relaxed);
                        if !r.closes() {
                            c = Some(conn);
                        }
                    }
                    // A kept connection the draining server closed as the request went
                    // out (RFC 9112 9.3.1: a client retries that on a new connection).
                    Err(_) if reused => continue,
                    other => failures.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            failures
        })
    };
    // An idle keep-alive connection, which the old worker closes as it drains.
    let mut idle = connect(port, &trust).unwrap();
    assert_eq!(get(&mut idle, "/").unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(300));
    new_cert.put(&certs);
    hello.signal(libc::SIGHUP);

    // New connections see the new certificate once the new workers serve.
    let deadline = Instant::now() + 30 * SEC;
    let check = client(&[&old, &new_cert.der], &[&rustls::version::TLS13]);
    loop {
        let c = connect(port, &check).unwrap();
        let served_cert = c.get_ref().conn.peer_certificates().unwrap()[0].clone();
        let now = children_of(hello.pid());
        if served_cert == new_cert.der && now.iter().all(|p| !before.contains(p)) {
            hello.adopt(&now);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload did not finish: workers {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Closed with close_notify: a clean end of the TLS session, not a truncation.
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).map_err(|e| e.kind()), Ok(0));
    // Every new connection now gets the new certificate.
    for _ in 0..5 {
        let mut c = connect(port, &check).unwrap();
        assert_eq!(
            c.get_ref().conn.peer_certificates().unwrap()[0],
            new_cert.der
        );
        assert_eq!(get(&mut c, "/").unwrap().status, 200);
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = [fresh, kept]
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(served.load(Ordering::Relaxed) > 20, "the clients ran");
}

/// A certificate made now and put in place later.
struct Pending {
    der: CertificateDer<'static>,
    cert: String,
    key: String,
}

impl Pending {
    fn put(&self, certs: &Certs) {
        certs.put("key.pem", self.key.as_bytes());
        certs.put("cert.pem", self.cert.as_bytes());
    }
}

impl Certs {
    fn issue_later(&self) -> Pending {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        Pending {
            der: made.cert.der().clone(),
            cert: made.cert.pem(),
            key: made.signing_key.serialize_pem(),
        }
    }
}

#[test]
fn a_reload_with_a_broken_certificate_stops_and_the_old_workers_serve_on() {
    let certs = Certs::new();
    let der = certs.issue();
    let (mut hello, port) = start_hello(&certs);
    let before = children_of(hello.pid());
    certs.put("cert.pem", b"not a certificate\n");
    hello.signal(libc::SIGHUP);
    hello.expect(10 * SEC, |l| l.contains("reload stopped"));
    // Not restarted again and again: one try, then the old workers go on.
    hello.drain_for(Duration::from_millis(500));
    assert_eq!(children_of(hello.pid()), before);
    // The new worker's one line (hello logs to stdout) names the file and what is wrong.
    let why: Vec<&String> = hello
        .seen
        .iter()
        .filter(|l| l.contains("no certificate in it"))
        .collect();
    assert_eq!(why.len(), 1, "{:?}", hello.seen);
    assert!(why[0].contains(s(&certs.cert())), "{}", why[0]);
    let mut c = connect(port, &client(&[&der], &[&rustls::version::TLS13])).unwrap();
    assert_eq!(get(&mut c, "/").unwrap().status, 200);
}
