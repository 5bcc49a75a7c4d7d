//! A small threaded std::net HTTP server whose every answer is known, and a tally of what it
//! did, to check herd-load's counts against.
//!
//! Paths:
//! - `/close`: no answer; the server shuts its write half, then reads until the client closes,
//!   counting this request and every one after it as `closed_unanswered`.
//! - `/hang`: no answer, ever; this request and every one after it on the connection count as
//!   `hung_unanswered` (the client must time out).
//! - anything else: answered. Answer `n` (one counter for the whole server) has status 500 when
//!   `n % 10 == 9`, else 200; carries `X-Herd-Worker: PATTERN[n % 4]`; its body is delimited
//!   by Content-Length, chunked coding (`n % 3 == 1`), or, for a request with
//!   `Connection: close`, by the close (`n % 3 == 2`).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The worker header values, by answer number modulo 4.
pub const PATTERN: [&str; 4] = ["a", "a", "b", "c"];

/// What the server did, once every connection ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Requests read, answered or not.
    pub requests: u64,
    /// Answers with status 200.
    pub ok: u64,
    /// Answers with status 500.
    pub status_500: u64,
    /// Requests left unanswered on connections closed by `/close`.
    pub closed_unanswered: u64,
    /// Requests left unanswered on connections stalled by `/hang`.
    pub hung_unanswered: u64,
    /// Answers per worker header value.
    pub workers: BTreeMap<String, u64>,
    /// Source addresses of the accepted connections.
    pub peers: BTreeSet<IpAddr>,
    /// Connections accepted.
    pub connections: u64,
}

impl Tally {
    /// Jain's index over the worker counts.
    pub fn jain(&self) -> f64 {
        let sum: f64 = self.workers.values().map(|&c| c as f64).sum();
        let sum_sq: f64 = self.workers.values().map(|&c| (c as f64).powi(2)).sum();
        sum * sum / (self.workers.len() as f64 * sum_sq)
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    answers: AtomicU64,
    tally: Mutex<Tally>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

/// A running test server; [`TestServer::finish`] (or drop) stops it and joins every thread.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Listens on 127.0.0.1, port chosen by the OS.
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(listener, shared))
        };
        TestServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Stops accepting, waits for every connection to end, and returns the tally.
    pub fn finish(mut self) -> Tally {
        self.stop();
        self.shared.tally.lock().unwrap().clone()
    }

    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(self.addr);
        acceptor.join().expect("acceptor thread");
        let handlers = std::mem::take(&mut *self.shared.handlers.lock().unwrap());
        for h in handlers {
            h.join().expect("handler thread");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        {
            let mut tally = shared.tally.lock().unwrap();
            tally.connections += 1;
            if let Ok(peer) = stream.peer_addr() {
                tally.peers.insert(peer.ip());
            }
        }
        let handler = {
            let shared = shared.clone();
            thread::spawn(move || serve(stream, &shared))
        };
        shared.handlers.lock().unwrap().push(handler);
    }
}

/// What a connection is doing.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Answering,
    /// After `/close`: unanswered requests counted as closed.
    Closed,
    /// After `/hang`: unanswered requests counted as hung.
    Hung,
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut state = State::Answering;
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        let mut out = Vec::new();
        let mut close_after = false;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(len)) = req.parse(&buf) else {
                break;
            };
            let path = req.path.unwrap_or("").to_string();
            let wants_close = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close")
            });
            buf.drain(..len);
            let mut tally = shared.tally.lock().unwrap();
            tally.requests += 1;
            match (state, path.as_str()) {
                (State::Closed, _) | (State::Answering, "/close") => {
                    tally.closed_unanswered += 1;
                    state = State::Closed;
                }
                (State::Hung, _) | (State::Answering, "/hang") => {
                    tally.hung_unanswered += 1;
                    state = State::Hung;
                }
                (State::Answering, _) if close_after => {
                    // Nothing is answered after a `Connection: close` request.
                }
                (State::Answering, _) => {
                    let n = shared.answers.fetch_add(1, Ordering::SeqCst);
                    let status = if n % 10 == 9 { 500 } else { 200 };
                    let worker = PATTERN[(n % 4) as usize];
                    if status == 200 {
                        tally.ok += 1;
                    } else {
                        tally.status_500 += 1;
                    }
                    *tally.workers.entry(worker.to_string()).or_default() += 1;
                    write_answer(&mut out, n, status, worker, wants_close);
                    close_after = wants_close;
                }
            }
        }
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
        if close_after {
            return;
        }
        if state == State::Closed {
            // FIN to the client; keep reading to count what else it sent.
            let _ = stream.shutdown(Shutdown::Write);
        }
    }
}

fn write_answer(out: &mut Vec<u8>, n: u64, status: u16, worker: &str, close: bool) {
    let reason = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    let body = "hello";
    let head = format!("HTTP/1.1 {status} {reason}\r\nX-Herd-Worker: {worker}\r\n");
    out.extend_from_slice(head.as_bytes());
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    match n % 3 {
        1 => {
            out.extend_from_slice(
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
            );
        }
        2 if close => {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body.as_bytes());
        }
        _ => {
            out.extend_from_slice(
                format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
            );
        }
    }
}
