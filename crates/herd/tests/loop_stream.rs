//! The loop's side of streaming ([`Flow::Stream`]): a protocol hands out a body piece by piece
//! and a file range the loop sends with sendfile(2); pieces are asked for only as the socket
//! drains, so a slow reader never makes the loop hold more than the kernel's buffers and one
//! piece, and a reader that stops is cut off by the write stall timeout.

mod util;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd::event_loop::Config;
use herd::protocol::{Connection, FileRange, Flow, Protocol, Step};
use util::start_protocol;

const PIECE: usize = 64 * 1024;
/// Bytes of the pattern: byte `i` of a response is `i % MODULUS`.
const MODULUS: u64 = 251;

/// Each request `S\n` is answered with `memory` bytes made piece by piece, then `file.len`
/// bytes of `file` by sendfile: `i % 251` for byte `i` of the answer.
struct Streamer {
    memory: u64,
    file: Arc<File>,
    file_len: u64,
    /// Bytes handed to the loop so far, all connections together.
    produced: Arc<AtomicU64>,
}

struct StreamConn {
    memory: u64,
    file: Arc<File>,
    file_len: u64,
    produced: Arc<AtomicU64>,
    /// Position in the current answer; `None` between answers.
    at: Option<u64>,
    /// The file range is due at the next `take_file`.
    file_due: bool,
}

impl Protocol for Streamer {
    type Conn = StreamConn;
    fn connect(&self, _peer: Option<SocketAddr>, _now: Instant) -> StreamConn {
        StreamConn {
            memory: self.memory,
            file: Arc::clone(&self.file),
            file_len: self.file_len,
            produced: Arc::clone(&self.produced),
            at: None,
            file_due: false,
        }
    }
}

impl StreamConn {
    /// The next step of the answer in flight.
    fn next(&mut self, out: &mut Vec<u8>) -> Flow {
        let at = self.at.expect("an answer in flight");
        if at < self.memory {
            let n = (self.memory - at).min(PIECE as u64);
            out.extend((at..at + n).map(|i| (i % MODULUS) as u8));
            self.produced.fetch_add(n, Ordering::SeqCst);
            self.at = Some(at + n);
            return Flow::Stream;
        }
        if at == self.memory && self.file_len > 0 {
            self.file_due = true;
            self.produced.fetch_add(self.file_len, Ordering::SeqCst);
            self.at = Some(at + self.file_len);
            return Flow::Stream;
        }
        self.at = None;
        Flow::Continue
    }
}

impl Connection for StreamConn {
    fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, _now: Instant) -> Step {
        if input.len() < 2 {
            return Step {
                consumed: 0,
                flow: Flow::Continue,
            };
        }
        assert_eq!(&input[..2], b"S\n", "test protocol: bad request");
        self.at = Some(0);
        Step {
            consumed: 2,
            flow: self.next(out),
        }
    }

    fn on_drained(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        match self.next(out) {
            // Over: serve what was pipelined behind it.
            Flow::Continue => self.on_read(input, out, now),
            flow => Step { consumed: 0, flow },
        }
    }

    fn take_file(&mut self) -> Option<FileRange> {
        if !std::mem::take(&mut self.file_due) {
            return None;
        }
        Some(FileRange {
            file: Arc::clone(&self.file),
            offset: 0,
            len: self.file_len,
        })
    }

    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn on_timeout(&mut self, _out: &mut Vec<u8>, _now: Instant) -> Flow {
        Flow::Close
    }

    fn on_drain(&mut self, _out: &mut Vec<u8>) -> Flow {
        if self.at.is_some() {
            Flow::Continue
        } else {
            Flow::Close
        }
    }
}

/// An unlinked temporary file holding the pattern as if it followed `memory` bytes.
fn pattern_file(memory: u64, len: u64) -> File {
    let path = std::env::temp_dir().join(format!(
        "herd-loop-stream-{}-{memory}-{len}",
        std::process::id()
    ));
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("temp file");
    std::fs::remove_file(&path).expect("unlink temp file");
    let bytes: Vec<u8> = (memory..memory + len)
        .map(|i| (i % MODULUS) as u8)
        .collect();
    file.write_all(&bytes).expect("write temp file");
    file
}

fn streamer(memory: u64, file_len: u64) -> (Streamer, Arc<AtomicU64>) {
    let produced = Arc::new(AtomicU64::new(0));
    let streamer = Streamer {
        memory,
        file: Arc::new(pattern_file(memory, file_len)),
        file_len,
        produced: Arc::clone(&produced),
    };
    (streamer, produced)
}

/// A client with a small receive buffer (set before connecting, so the kernel does not grow
/// it): what the server can push ahead of the reader is bounded by the buffers.
fn small_buffer_client(addr: SocketAddr) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), util::TIMEOUT)
        .expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(util::TIMEOUT))
        .expect("timeout");
    stream
}

/// Reads `len` bytes and checks the pattern, starting at position `from` of the answer.
fn read_pattern(stream: &mut std::net::TcpStream, from: u64, len: u64) {
    let mut buf = vec![0; 256 * 1024];
    let mut at = from;
    while at < from + len {
        let want = ((from + len - at) as usize).min(buf.len());
        let n = stream
            .read(&mut buf[..want])
            .unwrap_or_else(|e| panic!("read at {} of {len}: {e}", at - from));
        assert!(n > 0, "EOF at {at} of {}", from + len);
        for (i, &b) in buf[..n].iter().enumerate() {
            let pos = at + i as u64;
            assert_eq!(b, (pos % MODULUS) as u8, "byte {pos}");
        }
        at += n as u64;
    }
}

#[test]
fn streams_pieces_and_a_file_as_the_reader_drains() {
    const MEMORY: u64 = 12 << 20;
    const FILE: u64 = 12 << 20;
    let (streamer, produced) = streamer(MEMORY, FILE);
    let server = start_protocol(streamer, Config::default());
    let mut client = small_buffer_client(server.addr);
    // Two requests at once: the second waits in the loop's input while the first streams.
    client.write_all(b"S\nS\n").expect("send");

    // A slow reader: take 1 MiB, then stop for a while.
    read_pattern(&mut client, 0, 1 << 20);
    std::thread::sleep(Duration::from_millis(500));
    let ahead = produced.load(Ordering::SeqCst) - (1 << 20);
    // Kernel buffers (4 MiB send at most, 64 KiB receive) and one piece; generous.
    assert!(
        ahead < 12 << 20,
        "the loop made {ahead} bytes more than the reader took"
    );

    read_pattern(&mut client, 1 << 20, MEMORY + FILE - (1 << 20));
    read_pattern(&mut client, 0, MEMORY + FILE);
    assert_eq!(produced.load(Ordering::SeqCst), 2 * (MEMORY + FILE));

    // The connection is back to reading requests.
    client.write_all(b"S\n").expect("send");
    read_pattern(&mut client, 0, MEMORY + FILE);
    drop(client);
    server.stop().expect("drain");
}

#[test]
fn a_reader_that_stops_is_cut_off_by_the_write_stall_timeout() {
    // Most of the answer is the file: the stall happens while sendfile waits.
    const MEMORY: u64 = 64 * 1024;
    const FILE: u64 = 32 << 20;
    let (streamer, _produced) = streamer(MEMORY, FILE);
    let config = Config {
        write_timeout: Duration::from_millis(300),
        timer_granularity: Duration::from_millis(50),
        ..Config::default()
    };
    let server = start_protocol(streamer, config);
    let mut client = small_buffer_client(server.addr);
    client.write_all(b"S\n").expect("send");
    std::thread::sleep(Duration::from_millis(1500));
    // The loop gave up: what the buffers held arrives, then the end, well before the whole.
    let mut got = 0u64;
    let mut buf = vec![0; 256 * 1024];
    let end = loop {
        match client.read(&mut buf) {
            Ok(0) => break "eof",
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!("read after {got} bytes: {e}"),
        }
    };
    assert!(
        got < MEMORY + FILE,
        "the whole answer came ({got} bytes, then {end})"
    );
    server.stop().expect("drain");
}

/// Streams `memory` pattern bytes for each `S\n`, and writes what other threads queue (a
/// WebSocket's pushed messages, say) when woken: a queue that wakes the connection only for
/// its first item, so a lost wake-up loses the message.
struct Pusher {
    memory: u64,
    queue: Arc<std::sync::Mutex<(Vec<u8>, Option<herd::event_loop::Wake>)>>,
}

struct PushConn {
    inner: StreamConn,
    queue: Arc<std::sync::Mutex<(Vec<u8>, Option<herd::event_loop::Wake>)>>,
}

impl Protocol for Pusher {
    type Conn = PushConn;
    fn connect(&self, _peer: Option<SocketAddr>, _now: Instant) -> PushConn {
        unreachable!("the loop connects with a wake-up")
    }
    fn connect_with(
        &self,
        _peer: Option<SocketAddr>,
        _now: Instant,
        wake: herd::event_loop::Wake,
    ) -> PushConn {
        self.queue.lock().unwrap().1 = Some(wake);
        PushConn {
            inner: StreamConn {
                memory: self.memory,
                file: Arc::new(pattern_file(0, 0)),
                file_len: 0,
                produced: Arc::new(AtomicU64::new(0)),
                at: None,
                file_due: false,
            },
            queue: Arc::clone(&self.queue),
        }
    }
}

impl Connection for PushConn {
    fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        self.inner.on_read(input, out, now)
    }
    fn on_drained(&mut self, input: &[u8], out: &mut Vec<u8>, now: Instant) -> Step {
        self.inner.on_drained(input, out, now)
    }
    fn on_wake(&mut self, _input: &[u8], out: &mut Vec<u8>, _now: Instant) -> Step {
        out.append(&mut self.queue.lock().unwrap().0);
        Step {
            consumed: 0,
            flow: Flow::Continue,
        }
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

#[test]
fn a_wake_up_that_comes_during_a_stream_is_served_after_it() {
    const MEMORY: u64 = 8 << 20;
    let queue = Arc::new(std::sync::Mutex::new((Vec::new(), None)));
    let pusher = Pusher {
        memory: MEMORY,
        queue: Arc::clone(&queue),
    };
    let server = start_protocol(pusher, Config::default());
    let mut client = small_buffer_client(server.addr);
    client.write_all(b"S\n").unwrap();
    // The stream fills the client's buffer: it is still being sent when a message is
    // queued (and its one wake-up sent).
    std::thread::sleep(Duration::from_millis(200));
    {
        let mut q = queue.lock().unwrap();
        q.0.extend_from_slice(b"message");
        q.1.as_ref().expect("connected").wake();
    }
    read_pattern(&mut client, 0, MEMORY);
    let mut message = [0; 7];
    client.read_exact(&mut message).expect("the queued message");
    assert_eq!(&message, b"message");
}
