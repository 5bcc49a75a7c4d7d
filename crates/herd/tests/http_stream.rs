//! Streamed response bodies over real sockets: iterators, readers (on the pool) and channels
//! arrive whole, chunked or sized or (HTTP/1.0) delimited by the close; HEAD gets the head;
//! a reader that blocks stalls no other connection; a slow client bounds what a producer can
//! push; server-sent events end on a drain; a deferred answer streams; a failing reader cuts
//! the answer short.

mod util;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use herd::event_loop::Config;
use herd::{Handler, Http, Request, Response};
use util::{start, TIMEOUT};

/// Byte `i` of every test body.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

fn pattern_bytes(len: u64) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

/// A reader of `len` pattern bytes, `piece` at most per read.
struct PatternReader {
    at: u64,
    len: u64,
    piece: usize,
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.piece).min((self.len - self.at) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(self.at + i as u64);
        }
        self.at += n as u64;
        Ok(n)
    }
}

const LEN: u64 = 3 << 20;

fn app(gate: Arc<Mutex<Option<mpsc::Receiver<()>>>>, sent: Arc<AtomicU64>) -> Http<impl Handler> {
    Http::new(
        move |req: &Request<'_>, res: &mut Response| match req.path() {
            "/chunks" => {
                let pieces = (0..LEN).step_by(10_000).map(|at| {
                    (at..(at + 10_000).min(LEN))
                        .map(pattern)
                        .collect::<Vec<u8>>()
                });
                res.chunks(pieces);
            }
            "/reader" => {
                res.header("Content-Type", "application/octet-stream")
                    .stream(PatternReader {
                        at: 0,
                        len: LEN,
                        piece: 100_000,
                    });
            }
            "/sized" => {
                res.stream_sized(
                    PatternReader {
                        at: 0,
                        len: LEN,
                        piece: 100_000,
                    },
                    LEN,
                );
            }
            "/gated" => {
                // A reader that blocks until the test opens the gate.
                let gate = gate.lock().unwrap().take().expect("one gated request");
                let mut inner = PatternReader {
                    at: 0,
                    len: 1000,
                    piece: 1000,
                };
                res.stream(ReadFn(move |buf: &mut [u8]| {
                    if inner.at == 0 {
                        let _ = gate.recv_timeout(TIMEOUT);
                    }
                    inner.read(buf)
                }));
            }
            "/failing" => {
                let mut inner = PatternReader {
                    at: 0,
                    len: u64::MAX,
                    piece: 50_000,
                };
                res.stream(ReadFn(move |buf: &mut [u8]| {
                    if inner.at >= 100_000 {
                        return Err(io::Error::other("disk on fire (expected by the test)"));
                    }
                    inner.read(buf)
                }));
            }
            "/flood" => {
                // A producer as fast as the window lets it be, until the client is gone.
                let tx = res.channel();
                let sent = Arc::clone(&sent);
                std::thread::spawn(move || {
                    let piece = vec![7u8; 16 * 1024];
                    while tx.send(&piece).is_ok() {
                        sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
                    }
                    sent.fetch_add(1 << 40, Ordering::SeqCst);
                });
            }
            "/events" => {
                let tx = res.sse();
                let sent = Arc::clone(&sent);
                std::thread::spawn(move || {
                    let mut n = 0;
                    while tx.send_event(Some("tick"), &format!("{n}")).is_ok() {
                        n += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    sent.store(u64::MAX, Ordering::SeqCst);
                });
            }
            "/deferred" => {
                let mut responder = res.defer();
                std::thread::spawn(move || {
                    responder.chunks_sized([b"later ".to_vec(), b"and streamed".to_vec()], 18);
                    responder.send();
                });
            }
            _ => {
                res.body(format!("plain {}", req.path()));
            }
        },
    )
}

struct ReadFn<F>(F);

impl<F: FnMut(&mut [u8]) -> io::Result<usize>> Read for ReadFn<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (self.0)(buf)
    }
}

fn server() -> (util::Server, mpsc::Sender<()>, Arc<AtomicU64>) {
    let (open, gate) = mpsc::channel();
    let sent = Arc::new(AtomicU64::new(0));
    let http = app(Arc::new(Mutex::new(Some(gate))), Arc::clone(&sent)).stream_window(32 * 1024);
    (start(http, Config::default()), open, sent)
}

/// A response head: status line and headers, lower-cased names.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_head(r: &mut impl BufRead) -> Head {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            return Head { status, headers };
        }
        let (n, v) = l.split_once(':').expect("header");
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// A chunked body; `Err` with what came when the connection ended before the last chunk.
fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return Err(body),
            Ok(_) => {}
        }
        let size = usize::from_str_radix(line.trim_end(), 16).expect("chunk size");
        if size == 0 {
            line.clear();
            r.read_line(&mut line).expect("final CRLF");
            assert_eq!(line, "\r\n");
            return Ok(body);
        }
        let at = body.len();
        body.resize(at + size + 2, 0);
        if r.read_exact(&mut body[at..]).is_err() {
            return Err(body);
        }
        assert_eq!(&body[at + size..], b"\r\n", "chunk end");
        body.truncate(at + size);
    }
}

#[test]
fn iterators_readers_and_sized_readers_arrive_whole() {
    let (server, _gate, _) = server();
    let stream = server.connect();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let expected = pattern_bytes(LEN);
    for path in ["/chunks", "/reader"] {
        write!(w, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let head = read_head(&mut r);
        assert_eq!(head.status, 200);
        assert_eq!(head.get("transfer-encoding"), Some("chunked"), "{path}");
        assert_eq!(head.get("content-length"), None);
        let body = read_chunked(&mut r).expect("complete body");
        assert!(body == expected, "{path}: body differs");
    }
    // Known length; then, on the same connection, a plain request pipelined behind it.
    w.write_all(b"GET /sized HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_head(&mut r);
    assert_eq!(head.get("content-length"), Some(&*LEN.to_string()));
    assert_eq!(head.get("transfer-encoding"), None);
    let mut body = vec![0; LEN as usize];
    r.read_exact(&mut body).unwrap();
    assert!(body == expected, "/sized: body differs");
    let head = read_head(&mut r);
    assert_eq!(head.get("content-length"), Some("12"));
    let mut body = [0; 12];
    r.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"plain /after");

    // A real client decodes it too.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{}/reader", server.addr))
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl: {out:?}");
    assert!(
        out.stdout == expected,
        "curl got {} bytes",
        out.stdout.len()
    );
}

#[test]
fn http10_is_close_delimited_and_head_gets_the_head() {
    let (server, _gate, _) = server();
    let mut c = server.connect();
    c.write_all(b"GET /reader HTTP/1.0\r\n\r\n").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).expect("read to the close");
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding") && !head.contains("content-length"));
    assert!(head.contains("connection: close"));
    assert!(
        all[split..] == pattern_bytes(LEN)[..],
        "HTTP/1.0 body differs"
    );

    let stream = server.connect();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"HEAD /reader HTTP/1.1\r\nHost: t\r\n\r\nHEAD /sized HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_head(&mut r).get("transfer-encoding"), Some("chunked"));
    assert_eq!(
        read_head(&mut r).get("content-length"),
        Some(&*LEN.to_string())
    );
    let head = read_head(&mut r);
    assert_eq!(head.get("content-length"), Some("8"));
    let mut body = [0; 8];
    r.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"plain /x");
}

#[test]
fn a_reader_that_blocks_stalls_no_other_connection() {
    let (server, gate, _) = server();
    let stream = server.connect();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"GET /gated HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_head(&mut r).status, 200);
    // Its reader blocks on a pool thread; the loop answers others meanwhile.
    let mut other = server.connect();
    let reply = util::roundtrip(&mut other, "GET /y HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.body, b"plain /y");
    gate.send(()).unwrap();
    let body = read_chunked(&mut r).expect("complete body");
    assert!(body == pattern_bytes(1000));
}

#[test]
fn a_slow_client_bounds_what_a_producer_can_push() {
    let (server, _gate, sent) = server();
    // A small receive buffer, set before connecting (the kernel then does not grow it).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"GET /flood HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_head(&mut r);
    let mut got = vec![0; 256 * 1024];
    r.read_exact(&mut got).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pushed = sent.load(Ordering::SeqCst);
    // Window (32 KiB) twice, kernel buffers (4 MiB send at most, 64 KiB receive); generous.
    assert!(
        pushed < (256 << 10) + (8 << 20),
        "the producer pushed {pushed} bytes while the client read 256 KiB"
    );
    // The client leaves: the producer learns it.
    drop((w, r));
    let deadline = Instant::now() + TIMEOUT;
    while sent.load(Ordering::SeqCst) < 1 << 40 {
        assert!(
            Instant::now() < deadline,
            "the producer never saw the close"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn server_sent_events_end_cleanly_on_a_drain() {
    let (mut server, _gate, sent) = server();
    let stream = server.connect();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_head(&mut r);
    assert_eq!(head.get("content-type"), Some("text/event-stream"));
    assert_eq!(head.get("transfer-encoding"), Some("chunked"));
    // A few events arrive as they are sent...
    let mut line = String::new();
    let mut events = 0;
    while events < 3 {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.starts_with("event: tick") {
            events += 1;
        }
    }
    // ... until the worker drains: the stream ends with its last chunk, the connection
    // closes, and the producer is told.
    server.begin_drain();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("read to the close");
    assert!(
        rest.ends_with(b"\r\n0\r\n\r\n"),
        "no proper end: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let deadline = Instant::now() + TIMEOUT;
    while sent.load(Ordering::SeqCst) != u64::MAX {
        assert!(Instant::now() < deadline, "the producer was never told");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.stop().expect("drain");
}

#[test]
fn deferred_answers_stream_and_failing_readers_cut_short() {
    let (server, _gate, _) = server();
    let stream = server.connect();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(
        b"GET /deferred HTTP/1.1\r\nHost: t\r\n\r\nGET /failing HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut r);
    assert_eq!(head.get("content-length"), Some("18"));
    let mut body = [0; 18];
    r.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"later and streamed");
    // The reader fails after 100 KB: no last chunk, the connection closes.
    assert_eq!(read_head(&mut r).status, 200);
    let cut = read_chunked(&mut r).expect_err("a truncated body");
    assert!(
        cut.len() >= 100_000 && cut.len() < 200_000,
        "{} bytes",
        cut.len()
    );
}

/// A body of `len` bytes read by its `Content-Length`.
fn read_sized(r: &mut impl BufRead) -> (Head, Vec<u8>) {
    let head = read_head(r);
    let len = head
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("body");
    (head, body)
}

/// A client with a small receive buffer (set before connecting, so that the kernel does not
/// grow it): large answers cannot all fit in the kernel's buffers.
fn small_buffer_client(server: &util::Server) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    socket
        .connect_timeout(&server.addr.into(), TIMEOUT)
        .expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Answers too large for the socket stop the loop reading (back-pressure); a streamed answer
/// behind them must not leave it stopped: requests sent after it are answered.
#[test]
fn reading_resumes_after_a_stream_that_followed_large_answers() {
    // Below the size sent as a stream (256 KiB), many of them.
    const BIG: usize = 200 * 1024;
    const COUNT: usize = 40;
    let http = Http::new(|req: &Request<'_>, res: &mut Response| match req.path() {
        "/big" => {
            res.body(vec![b'b'; BIG]);
        }
        "/chunks" => {
            // Longer than the window: still in flight after the first piece.
            res.chunks((0..100).map(|_| vec![b'c'; 10_000]));
        }
        _ => {
            res.body("small");
        }
    });
    let config = Config {
        max_pending_output: 64 * 1024,
        ..Config::default()
    };
    let server = start(http, config);
    let stream = small_buffer_client(&server);
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut requests = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(COUNT);
    requests.push_str("GET /chunks HTTP/1.1\r\nHost: t\r\n\r\n");
    w.write_all(requests.as_bytes()).unwrap();
    // Read nothing yet: the answers fill the socket, the loop stops reading...
    std::thread::sleep(Duration::from_millis(300));
    // ... so this is read only once they are out.
    w.write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    for _ in 0..COUNT {
        let (head, body) = read_sized(&mut r);
        assert!(head.status == 200 && body.len() == BIG);
    }
    let head = read_head(&mut r);
    assert_eq!(head.get("transfer-encoding"), Some("chunked"));
    let chunks = read_chunked(&mut r).expect("the whole stream");
    assert_eq!(chunks.len(), 1_000_000);
    let (_, small) = read_sized(&mut r);
    assert_eq!(
        small, b"small",
        "the request sent during the stream is answered"
    );
    server.stop().expect("drain");
}

/// The keep-alive timeout runs from the end of a streamed answer, not from its start: a
/// stream that lasts longer than it leaves its connection open for the next request.
#[test]
fn keep_alive_time_counts_from_the_end_of_a_stream() {
    let http = Http::new(|req: &Request<'_>, res: &mut Response| match req.path() {
        "/slow" => {
            let tx = res.channel();
            std::thread::spawn(move || {
                for i in 0..6 {
                    std::thread::sleep(Duration::from_millis(200));
                    if tx.send(format!("piece {i}\n")).is_err() {
                        return;
                    }
                }
            });
        }
        _ => {
            res.body("small");
        }
    })
    .keepalive_timeout(Duration::from_millis(500));
    let server = start(http, Config::default());
    let stream = server.connect();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let head = read_head(&mut r);
    assert_eq!(head.status, 200);
    let body = read_chunked(&mut r).expect("the whole stream");
    assert!(body.ends_with(b"piece 5\n"));
    assert!(started.elapsed() > Duration::from_millis(500));
    // Well within the keep-alive timeout of the stream's end.
    std::thread::sleep(Duration::from_millis(100));
    w.write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (head, small) = read_sized(&mut r);
    assert!(head.status == 200 && small == b"small");
    server.stop().expect("drain");
}

/// A deferred answer that starts server-sent events after the worker began draining: the
/// stream ends at once (as one in flight when the drain began does), and the worker exits
/// long before its drain timeout.
#[test]
fn server_sent_events_answered_during_a_drain_end_at_once() {
    let (open, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(Some(gate));
    let http = Http::new(move |_req: &Request<'_>, res: &mut Response| {
        let gate = gate.lock().unwrap().take().expect("one request");
        let mut responder = res.defer();
        std::thread::spawn(move || {
            let _ = gate.recv_timeout(TIMEOUT);
            let tx = responder.sse();
            responder.send();
            let until = Instant::now() + 2 * TIMEOUT;
            while Instant::now() < until && tx.send_event(Some("tick"), "x").is_ok() {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    });
    let mut server = start(http, Config::default());
    let stream = server.connect();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.begin_drain();
    std::thread::sleep(Duration::from_millis(200));
    open.send(()).unwrap();
    let opened = Instant::now();
    let head = read_head(&mut r);
    assert_eq!(head.get("content-type"), Some("text/event-stream"));
    read_chunked(&mut r).expect("the stream ends properly");
    // The producer would go on for twice as long.
    assert!(
        opened.elapsed() < TIMEOUT,
        "the stream did not end on the drain"
    );
    server.stop().expect("drain");
}

/// The same for a large buffered answer read slowly: the idle time runs from the moment it
/// has gone out (to the kernel, as nginx's), not from when it was made.
#[test]
fn keep_alive_time_counts_from_the_end_of_a_large_answer_read_slowly() {
    // More than the kernel's buffers hold: the last of it goes out only once the client
    // read a good part of it.
    const BIG: usize = 8 << 20;
    const SLOW: usize = 2 << 20;
    let http = Http::new(|req: &Request<'_>, res: &mut Response| match req.path() {
        "/big" => {
            res.body(vec![b'b'; BIG]);
        }
        _ => {
            res.body("small");
        }
    })
    .keepalive_timeout(Duration::from_secs(1));
    let server = start(http, Config::default());
    let stream = small_buffer_client(&server);
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    w.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let head = read_head(&mut r);
    assert_eq!(head.get("content-length"), Some(BIG.to_string().as_str()));
    let mut left = BIG;
    let mut buf = vec![0; 64 * 1024];
    while left > 0 {
        // The first 2 MiB in about 1.3 s (past the keep-alive timeout), the rest at once.
        if BIG - left < SLOW {
            std::thread::sleep(Duration::from_millis(40));
        }
        let n = r.read(&mut buf[..left.min(64 * 1024)]).expect("body");
        assert!(n > 0, "closed with {left} bytes left");
        left -= n;
    }
    assert!(started.elapsed() > Duration::from_millis(1200));
    std::thread::sleep(Duration::from_millis(100));
    w.write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (head, small) = read_sized(&mut r);
    assert!(head.status == 200 && small == b"small");
    server.stop().expect("drain");
}
