//! One client connection: connect, write requests, read and count responses, fail and start
//! over.
//!
//! Every request a connection claims ends in exactly one place: a completed response, one
//! error kind, returned to the budget (the server announced a close before answering it), or
//! abandoned when a duration-bound run ends.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Mode;
use crate::generator::Ctx;
use crate::response::{Head, Progress, Reader};
use crate::sys;

/// Room for responses read at once; a response head must fit in it.
const READ_BUF: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No socket.
    Idle,
    /// Connect started, not finished.
    Connecting,
    /// Connected: requests go out, responses come in.
    Open,
}

/// Why a connection is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Reset,
    Timeout,
    Parse,
}

pub(crate) struct Conn {
    token: Token,
    source: Option<IpAddr>,
    stream: Option<TcpStream>,
    phase: Phase,
    /// Requests claimed while connecting, written once connected.
    claimed: usize,
    /// When the current connect started.
    connect_start: Instant,
    /// The send time of each request written and not answered yet, oldest first.
    in_flight: VecDeque<Instant>,
    write_buf: Vec<u8>,
    written: usize,
    read_buf: Box<[u8]>,
    read_len: usize,
    reader: Reader,
}

impl Conn {
    pub(crate) fn new(token: Token, source: Option<IpAddr>, depth: usize) -> Conn {
        Conn {
            token,
            source,
            stream: None,
            phase: Phase::Idle,
            claimed: 0,
            connect_start: Instant::now(),
            in_flight: VecDeque::with_capacity(depth),
            write_buf: Vec::with_capacity(256 * depth),
            written: 0,
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            read_len: 0,
            reader: Reader::new(),
        }
    }

    /// Requests this connection holds that have not ended (claimed or in flight).
    pub(crate) fn pending(&self) -> usize {
        self.claimed + self.in_flight.len()
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
    }

    /// Opens a connection for a newly claimed request; nothing happens when the budget is
    /// spent or the run is stopping.
    pub(crate) fn start(&mut self, ctx: &mut Ctx<'_>, registry: &Registry) {
        if self.phase != Phase::Idle || ctx.claim(1) == 0 {
            return;
        }
        self.claimed = 1;
        self.connect_start = Instant::now();
        match connect(ctx.config.addr, self.source) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                match registry.register(&mut stream, self.token, interest) {
                    Ok(()) => {
                        self.stream = Some(stream);
                        self.phase = Phase::Connecting;
                    }
                    Err(_) => self.fail(Failure::Connect, ctx),
                }
            }
            Err(_) => self.fail(Failure::Connect, ctx),
        }
    }

    /// Handles readiness of this connection's socket.
    pub(crate) fn on_event(&mut self, event: &Event, ctx: &mut Ctx<'_>) {
        if self.phase == Phase::Connecting {
            if event.is_error() || event.is_write_closed() {
                return self.fail(Failure::Connect, ctx);
            }
            if !event.is_writable() {
                return;
            }
            self.on_connected(ctx);
        }
        if self.phase != Phase::Open {
            return;
        }
        if event.is_writable() && self.written < self.write_buf.len() && !self.flush(ctx) {
            return;
        }
        let closing = event.is_read_closed() || event.is_error();
        if event.is_readable() || closing {
            self.on_readable(closing, ctx);
        }
    }

    /// Fails the connection if its oldest request (or its connect) is older than the timeout.
    pub(crate) fn check_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let timeout = ctx.config.timeout;
        match self.phase {
            Phase::Connecting if now.duration_since(self.connect_start) >= timeout => {
                self.fail(Failure::Connect, ctx)
            }
            Phase::Open => {
                if let Some(&oldest) = self.in_flight.front() {
                    if now.duration_since(oldest) >= timeout {
                        self.fail(Failure::Timeout, ctx);
                    }
                }
            }
            _ => {}
        }
    }

    /// Claims requests up to the depth and writes them together with anything already
    /// buffered, in one write, if the connection is open.
    pub(crate) fn refill(&mut self, ctx: &mut Ctx<'_>) {
        if self.phase != Phase::Open {
            return;
        }
        if ctx.mode != Mode::Close {
            let n = ctx.claim(ctx.depth - self.in_flight.len());
            if n > 0 {
                let now = Instant::now();
                for _ in 0..n {
                    ctx.requests.push(&mut ctx.rng, &mut self.write_buf);
                    self.in_flight.push_back(now);
                }
            }
        }
        if self.written < self.write_buf.len() {
            self.flush(ctx);
        }
    }

    /// Drops the socket, counting what it still held as abandoned (the run is over).
    pub(crate) fn abandon(&mut self, ctx: &mut Ctx<'_>) {
        ctx.stats.abandoned += self.pending() as u64;
        self.claimed = 0;
        self.in_flight.clear();
        self.close_socket();
    }

    fn on_connected(&mut self, ctx: &mut Ctx<'_>) {
        self.phase = Phase::Open;
        let claimed = std::mem::take(&mut self.claimed);
        // In close mode the latency includes the connect.
        let sent = if ctx.mode == Mode::Close {
            self.connect_start
        } else {
            Instant::now()
        };
        for _ in 0..claimed {
            ctx.requests.push(&mut ctx.rng, &mut self.write_buf);
            self.in_flight.push_back(sent);
        }
        // Tops a pipeline up to its depth and writes everything at once.
        self.refill(ctx);
    }

    /// Writes what is buffered. Returns false when the connection failed.
    fn flush(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        while self.written < self.write_buf.len() {
            match stream.write(&self.write_buf[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.fail(Failure::Reset, ctx);
                    return false;
                }
            }
        }
        self.write_buf.clear();
        self.written = 0;
        true
    }

    /// Reads until the socket is drained, handling every complete response, then tops the
    /// pipeline up with one write. `closing`: the peer's FIN (or an error) is already known,
    /// so read on to the end of the stream, since no later event will announce it.
    fn on_readable(&mut self, closing: bool, ctx: &mut Ctx<'_>) {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let room = self.read_buf.len() - self.read_len;
            if room == 0 {
                // A response head larger than the buffer.
                return self.fail(Failure::Parse, ctx);
            }
            match stream.read(&mut self.read_buf[self.read_len..]) {
                Ok(0) => return self.on_eof(ctx),
                Ok(n) => {
                    self.read_len += n;
                    if !self.handle_responses(ctx) {
                        return;
                    }
                    // A short read drained the socket: with edge-triggered readiness, bytes
                    // (or a FIN) arriving later raise a new event.
                    if n < room && !closing {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(Failure::Reset, ctx),
            }
        }
        self.refill(ctx);
    }

    /// Parses and counts the complete responses in the read buffer. Returns false when the
    /// connection was closed on the way.
    fn handle_responses(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let mut pos = 0;
        let header = ctx.config.worker_header.as_str();
        loop {
            let input = &self.read_buf[pos..self.read_len];
            match self.reader.parse(input, header, &mut ctx.stats.workers) {
                Ok(Progress::More(n)) => {
                    pos += n;
                    break;
                }
                Ok(Progress::Done(n, head)) => {
                    pos += n;
                    if !self.on_response(head, ctx) {
                        return false;
                    }
                    if head.close || ctx.mode == Mode::Close {
                        self.close_gracefully(ctx);
                        return false;
                    }
                }
                Err(_) => {
                    self.fail(Failure::Parse, ctx);
                    return false;
                }
            }
        }
        self.read_buf.copy_within(pos..self.read_len, 0);
        self.read_len -= pos;
        true
    }

    /// Counts one complete response. Returns false (and fails the connection) for a response
    /// nothing asked for.
    fn on_response(&mut self, head: Head, ctx: &mut Ctx<'_>) -> bool {
        let Some(sent) = self.in_flight.pop_front() else {
            self.fail(Failure::Parse, ctx);
            return false;
        };
        ctx.stats.workers.count(head.worker);
        if (200..300).contains(&head.status) {
            ctx.stats.record(sent.elapsed());
        } else {
            ctx.stats.errors.bad_status += 1;
        }
        true
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(head) = self.reader.on_eof() {
            if !self.on_response(head, ctx) {
                return;
            }
        }
        if self.in_flight.is_empty() {
            // An idle keep-alive connection closed by the server: not an error.
            self.close_socket();
            ctx.restart(self.token);
        } else {
            self.fail(Failure::Reset, ctx);
        }
    }

    /// The server said it closes after the last response: requests written after it will not
    /// be answered, so they go back to the budget to be sent again on a new connection.
    fn close_gracefully(&mut self, ctx: &mut Ctx<'_>) {
        ctx.unclaim(self.in_flight.len());
        self.in_flight.clear();
        self.close_socket();
        ctx.restart(self.token);
    }

    /// Counts what the connection held as failed, closes it, and asks for a new one.
    fn fail(&mut self, failure: Failure, ctx: &mut Ctx<'_>) {
        let errors = &mut ctx.stats.errors;
        let held = self.pending() as u64;
        match failure {
            Failure::Connect => errors.connect += held,
            Failure::Reset => errors.reset += held,
            Failure::Timeout => errors.timeout += held,
            Failure::Parse => {
                // The response being read is malformed; the ones behind it never arrive.
                errors.parse += held.min(1);
                errors.reset += held.saturating_sub(1);
            }
        }
        self.claimed = 0;
        self.in_flight.clear();
        self.close_socket();
        ctx.restart(self.token);
    }

    fn close_socket(&mut self) {
        // Closing the fd also removes it from the poll.
        self.stream = None;
        self.phase = Phase::Idle;
        self.write_buf.clear();
        self.written = 0;
        self.read_len = 0;
        self.reader.reset();
    }
}

/// Starts a non-blocking connect to `addr`, from `source` if given.
fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        if ip.is_ipv4() {
            sys::bind_address_no_port(&socket)?;
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
