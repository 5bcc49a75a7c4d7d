//! Shared helpers: a loop serving `Http` on a thread over 127.0.0.1:0, stopped by a drain over
//! a Unix socket pair, and a small blocking HTTP client with timeouts on every socket.
#![allow(dead_code)] // Each test file uses its own subset.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use herd::event_loop::{self, Config, Hooks, Inbound};
use herd::{Handler, Http};

/// Nothing in a test waits longer than this.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Hooks over one end of a Unix socket pair: `d` means Disconnect (drain), `c` means take the
/// streams queued on `handed`, EOF means Closed. `took` and `load` are recorded in `seen`.
struct ControlHooks {
    sock: UnixStream,
    handed: mpsc::Receiver<TcpStream>,
    seen: Arc<Seen>,
}

/// What the loop reported through its hooks.
#[derive(Default)]
pub struct Seen {
    /// The sum of `took(n)`.
    pub took: AtomicUsize,
    /// The last `load(open)`.
    pub load: AtomicUsize,
}

impl Hooks for ControlHooks {
    fn fd(&self) -> Option<RawFd> {
        Some(self.sock.as_raw_fd())
    }

    fn read(&mut self, inbound: &mut Vec<Inbound>) -> io::Result<()> {
        let mut buf = [0; 16];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    inbound.push(Inbound::Closed);
                    return Ok(());
                }
                Ok(n) => {
                    for &byte in &buf[..n] {
                        inbound.push(match byte {
                            b'c' => Inbound::Connections(self.handed.try_iter().collect()),
                            _ => Inbound::Disconnect,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn serving(&mut self, _addrs: &[SocketAddr]) {}

    fn took(&mut self, n: usize) {
        self.seen.took.fetch_add(n, Ordering::SeqCst);
    }

    fn load(&mut self, open: usize) {
        self.seen.load.store(open, Ordering::SeqCst);
    }
}

/// A loop serving on a thread; dropping it drains it and joins the thread.
pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    control: UnixStream,
    handed: mpsc::Sender<TcpStream>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Start `http` on 127.0.0.1:0 with `config`.
pub fn start<H: Handler>(http: Http<H>, config: Config) -> Server {
    start_protocol(http, config)
}

/// Start any `protocol` on 127.0.0.1:0 with `config`.
pub fn start_protocol<P: herd::protocol::Protocol>(protocol: P, config: Config) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let (control, theirs) = UnixStream::pair().expect("socketpair");
    theirs.set_nonblocking(true).expect("nonblocking");
    let (handed, receiver) = mpsc::channel();
    let seen = Arc::new(Seen::default());
    let mut hooks = ControlHooks {
        sock: theirs,
        handed: receiver,
        seen: Arc::clone(&seen),
    };
    let thread = thread::spawn(move || {
        event_loop::run(vec![listener], Arc::new(protocol), &config, &mut hooks)
    });
    Server {
        addr,
        seen,
        control,
        handed,
        thread: Some(thread),
    }
}

impl Server {
    /// A connection to the server, with read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, TIMEOUT).expect("connect");
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(TIMEOUT))
            .expect("write timeout");
        stream
    }

    /// Hand `stream` to the loop as [`Inbound::Connections`] (as a hand-off policy would).
    pub fn hand_over(&mut self, stream: TcpStream) {
        self.handed.send(stream).expect("loop gone");
        self.control.write_all(b"c").expect("control write");
    }

    /// Tell the loop to drain, without waiting for it.
    pub fn begin_drain(&mut self) {
        self.control.write_all(b"d").expect("control write");
    }

    /// Drain (unless the loop already returned) and wait at most [`TIMEOUT`] for the loop to
    /// return; its result.
    pub fn stop(mut self) -> io::Result<()> {
        let _ = self.control.write_all(b"d");
        self.join()
    }

    fn join(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let deadline = std::time::Instant::now() + TIMEOUT;
        while !thread.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the loop did not return after a drain"
            );
            thread::sleep(Duration::from_millis(5));
        }
        thread.join().expect("loop thread panicked")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.control.write_all(b"d");
            let result = self.join();
            if !thread::panicking() {
                result.expect("loop returned an error");
            }
        }
    }
}

/// One response as read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Read one response; `head_only` for the answer to a HEAD request (no body follows).
pub fn read_reply(stream: &mut TcpStream, head_only: bool) -> io::Result<Reply> {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).map_err(|_| io::ErrorKind::InvalidData)?;
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or(io::ErrorKind::InvalidData)?;
    let mut reply = Reply {
        status,
        head,
        body: Vec::new(),
    };
    let length: usize = reply
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if !head_only {
        reply.body = vec![0; length];
        stream.read_exact(&mut reply.body)?;
    }
    Ok(reply)
}

/// Send `request` and read its response.
pub fn roundtrip(stream: &mut TcpStream, request: &str) -> Reply {
    stream.write_all(request.as_bytes()).expect("send");
    read_reply(stream, request.starts_with("HEAD ")).expect("response")
}

/// Whether the peer closed the connection (EOF, or a reset), rather than sending more or
/// staying silent until the timeout.
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    }
}

/// A handler that answers `hello`, or the request body for POST/PUT, and panics on `/panic`.
pub fn hello() -> Http<impl Handler> {
    Http::new(|req: &herd::Request<'_>, res: &mut herd::Response| {
        match (req.method(), req.path()) {
            (_, "/panic") => panic!("handler panic (expected by the test)"),
            ("POST" | "PUT", _) => res.body(req.body()),
            _ => res.body(format!("hello {}", req.path())),
        };
    })
}
