//! The control thread: one mio poll serving the control socket's clients and, when set, the
//! admin HTTP endpoints (`/metrics`, `/readyz`, `/livez`). Running apart from the primary's
//! loop, it can tell when that loop stops turning. Every socket is non-blocking, every client has a deadline and a
//! buffer limit, so garbage, huge frames and silent clients cost a few bytes and get closed;
//! the primary's own loop is only reached through its command channel.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use super::proto::{self, Frame, MAX_FRAME, VERSION};
use crate::metrics::board::{Health, ReloadResult, LIVE_BOUND};
use crate::metrics::Board;
use crate::primary::{Command, PrimaryHandle};

pub(super) const WAKER: Token = Token(0);
const CONTROL: Token = Token(1);
const METRICS: Token = Token(2);
const FIRST_CLIENT: usize = 16;

/// A control client that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(10);
/// An HTTP client must send its request within this.
const HTTP_IDLE: Duration = Duration::from_secs(5);
/// The most clients served at once; more are closed on accept.
const MAX_CLIENTS: usize = 64;
/// The largest HTTP request head.
const MAX_HTTP_HEAD: usize = 8 * 1024;
/// How often a client waiting for a reload is checked.
const WAIT_TICK: Duration = Duration::from_millis(50);

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
}

struct Client {
    stream: Stream,
    http: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    deadline: Option<Instant>,
    /// A `reload --wait` in progress: the answer comes from here.
    waiting: Option<Receiver<ReloadResult>>,
    /// Close once the output is written.
    closing: bool,
}

pub(super) struct Server {
    pub(super) poll: Poll,
    pub(super) control: Option<UnixListener>,
    pub(super) metrics: Option<TcpListener>,
    pub(super) handle: PrimaryHandle,
    pub(super) board: Arc<Board>,
    pub(super) quit: Arc<AtomicBool>,
    clients: HashMap<usize, Client>,
    next: usize,
}

impl Server {
    pub(super) fn new(
        poll: Poll,
        control: Option<UnixListener>,
        metrics: Option<TcpListener>,
        handle: PrimaryHandle,
        board: Arc<Board>,
        quit: Arc<AtomicBool>,
    ) -> io::Result<Server> {
        let mut s = Server {
            poll,
            control,
            metrics,
            handle,
            board,
            quit,
            clients: HashMap::new(),
            next: FIRST_CLIENT,
        };
        if let Some(l) = s.control.as_mut() {
            s.poll.registry().register(l, CONTROL, Interest::READABLE)?;
        }
        if let Some(l) = s.metrics.as_mut() {
            s.poll.registry().register(l, METRICS, Interest::READABLE)?;
        }
        Ok(s)
    }

    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(64);
        while !self.quit.load(Ordering::Acquire) {
            let now = Instant::now();
            let mut wake = self.clients.values().filter_map(|c| c.deadline).min();
            if self.clients.values().any(|c| c.waiting.is_some()) {
                wake = Some(wake.map_or(now + WAIT_TICK, |w| w.min(now + WAIT_TICK)));
            }
            let timeout = wake.map(|w| w.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("the control thread's poll failed: {e}");
                    return;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    CONTROL => self.accept_control(),
                    METRICS => self.accept_metrics(),
                    Token(t) => self.ready(t),
                }
            }
            self.check_waits();
            self.expire();
        }
    }

    fn add(&mut self, mut stream: Stream, http: bool) {
        if self.clients.len() >= MAX_CLIENTS {
            tracing::warn!("control: too many clients; closing a new one");
            return;
        }
        let token = self.next;
        self.next += 1;
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(stream.source(), Token(token), interest)
            .is_err()
        {
            return;
        }
        let idle = if http { HTTP_IDLE } else { IDLE };
        self.clients.insert(
            token,
            Client {
                stream,
                http,
                input: Vec::new(),
                output: Vec::new(),
                deadline: Some(Instant::now() + idle),
                waiting: None,
                closing: false,
            },
        );
    }

    fn accept_control(&mut self) {
        loop {
            let Some(l) = self.control.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((s, _)) => self.add(Stream::Unix(s), false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    return;
                }
            }
        }
    }

    fn accept_metrics(&mut self) {
        loop {
            let Some(l) = self.metrics.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((s, _)) => self.add(Stream::Tcp(s), true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("metrics accept: {e}");
                    return;
                }
            }
        }
    }

    fn ready(&mut self, token: usize) {
        let Some(mut c) = self.clients.remove(&token) else {
            return;
        };
        if self.serve(&mut c) {
            self.clients.insert(token, c);
        } else {
            let _ = self.poll.registry().deregister(c.stream.source());
        }
    }

    /// Reads, answers and writes what it can; false when the client is done.
    fn serve(&mut self, c: &mut Client) -> bool {
        let mut buf = [0u8; 4096];
        let mut eof = false;
        // Whatever is already buffered first (a reload wait just ended), then the socket.
        self.answer(c);
        // A client waiting for a reload is not read past one frame's worth: the rest stays
        // in the kernel until its answer is out (this function runs again then).
        while !c.closing && c.input.len() <= MAX_FRAME + 4 {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    c.input.extend_from_slice(&buf[..n]);
                    self.answer(c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if !flush(c) {
            return false;
        }
        if c.closing && c.output.is_empty() {
            return false;
        }
        // A client that closed its side is done once nothing is owed to it.
        !(eof && c.waiting.is_none() && c.output.is_empty())
    }

    fn answer(&mut self, c: &mut Client) {
        if c.http {
            self.http(c);
        } else {
            self.requests(c);
        }
    }

    /// Answers every whole request in the client's input (not while a reload is awaited).
    fn requests(&mut self, c: &mut Client) {
        while c.waiting.is_none() && !c.closing {
            match proto::peek(&c.input) {
                Frame::Partial => return,
                Frame::Bad(len) => {
                    proto::frame(
                        &proto::error(format!(
                            "bad frame (length {len}): a frame is a 4-byte big-endian length \
                             (1..={MAX_FRAME}) and that many bytes of JSON"
                        )),
                        &mut c.output,
                    );
                    c.input.clear();
                    c.closing = true;
                    return;
                }
                Frame::Whole(len) => {
                    let payload: Vec<u8> = c.input.drain(..4 + len).skip(4).collect();
                    c.deadline = Some(Instant::now() + IDLE);
                    match proto::parse(&payload) {
                        Ok(req) => self.command(&req, c),
                        Err(answer) => {
                            proto::frame(&answer, &mut c.output);
                            c.closing = true;
                        }
                    }
                }
            }
        }
    }

    fn command(&mut self, req: &Value, c: &mut Client) {
        let ok = |mut extra: Value| {
            extra["v"] = VERSION.into();
            extra["ok"] = true.into();
            extra
        };
        let answer = match req["cmd"].as_str().unwrap_or_default() {
            "status" => ok(json!({"status": super::status::status(&self.board.view())})),
            "reload" => {
                if req["wait"].as_bool() == Some(true) {
                    c.waiting = Some(self.board.wait_reload());
                    c.deadline = None;
                    self.handle.reload();
                    return;
                }
                self.handle.reload();
                ok(json!({}))
            }
            "scale" => {
                let from = self.board.view().target;
                let to = match (req["workers"].as_u64(), req["delta"].as_i64()) {
                    (Some(n), _) => Some(n as i64),
                    (None, Some(d)) => Some(from as i64 + d),
                    _ => None,
                };
                match to {
                    Some(n) if n >= 1 => {
                        self.handle.scale(n as usize);
                        ok(json!({"from": from, "to": n}))
                    }
                    Some(n) => proto::error(format!(
                        "cannot scale to {n} workers: a cluster keeps at least 1 (use stop to end it)"
                    )),
                    None => proto::error("scale needs \"workers\": N or \"delta\": K"),
                }
            }
            "stop" => {
                let cmd = if req["quick"].as_bool() == Some(true) {
                    Command::StopNow
                } else {
                    Command::Stop
                };
                match self.handle.line.push(cmd) {
                    Ok(()) => ok(json!({})),
                    Err(e) => proto::error(e.to_string()),
                }
            }
            "kill" => self.kill(req),
            other => proto::error(format!(
                "unknown command {other:?}: one of status, reload, scale, stop, kill"
            )),
        };
        proto::frame(&answer, &mut c.output);
    }

    fn kill(&self, req: &Value) -> Value {
        let Some(id) = req["id"].as_u64() else {
            return proto::error("kill needs \"id\": a worker id (herd status lists them)");
        };
        let signal = match &req["signal"] {
            Value::Null => Ok(libc::SIGTERM),
            Value::Number(n) => n.as_i64().map(|n| n as i32).ok_or(()),
            Value::String(s) => {
                let name = s.to_ascii_uppercase();
                let name = if name.starts_with("SIG") {
                    name
                } else {
                    format!("SIG{name}")
                };
                name.parse::<nix::sys::signal::Signal>()
                    .map(|s| s as i32)
                    .map_err(|_| ())
            }
            _ => Err(()),
        };
        let Ok(signal) = signal else {
            return proto::error(format!(
                "unknown signal {}: use a name (TERM, KILL, ...) or a number",
                req["signal"]
            ));
        };
        match self
            .handle
            .workers()
            .into_iter()
            .find(|w| u64::from(w.id()) == id)
        {
            Some(w) => {
                w.kill(signal);
                json!({"v": VERSION, "ok": true, "id": id, "pid": w.pid(), "signal": signal})
            }
            None => proto::error(format!(
                "no live worker has id {id}: `herd status` lists the workers"
            )),
        }
    }

    /// Answers `GET /metrics`, `/readyz` and `/livez` (and `HEAD` of each; anything else:
    /// 404) and closes.
    fn http(&mut self, c: &mut Client) {
        if c.closing {
            return;
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let mut head_only = false;
        let (status, body, ctype) = match req.parse(&c.input) {
            Ok(httparse::Status::Complete(_)) => {
                let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
                head_only = req.method == Some("HEAD");
                match (req.method, path) {
                    (Some("GET" | "HEAD"), "/metrics") => (
                        "200 OK",
                        crate::metrics::prom::render(&self.board.view()),
                        "text/plain; version=0.0.4; charset=utf-8",
                    ),
                    (Some("GET" | "HEAD"), "/readyz") => {
                        let (status, body) = readyz(&self.board.health());
                        (status, body, "text/plain")
                    }
                    (Some("GET" | "HEAD"), "/livez") => {
                        let (status, body) = livez(&self.board.health());
                        (status, body, "text/plain")
                    }
                    (Some("GET" | "HEAD"), _) => (
                        "404 Not Found",
                        "served here: /metrics, /readyz, /livez\n".to_string(),
                        "text/plain",
                    ),
                    _ => (
                        "405 Method Not Allowed",
                        "GET or HEAD /metrics, /readyz, /livez\n".to_string(),
                        "text/plain",
                    ),
                }
            }
            Ok(httparse::Status::Partial) if c.input.len() <= MAX_HTTP_HEAD => return,
            _ => ("400 Bad Request", String::new(), "text/plain"),
        };
        c.output.extend_from_slice(
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        if !head_only {
            c.output.extend_from_slice(body.as_bytes());
        }
        c.input.clear();
        c.closing = true;
    }

    /// Answers the clients whose reload ended.
    fn check_waits(&mut self) {
        let mut done = Vec::new();
        for (t, c) in self.clients.iter_mut() {
            let Some(rx) = &c.waiting else { continue };
            let answer = match rx.try_recv() {
                Ok(Ok(())) => {
                    json!({"v": VERSION, "ok": true, "generation": self.board.view().generation})
                }
                Ok(Err(why)) => proto::error(format!("the reload stopped and rolled back: {why}")),
                Err(TryRecvError::Empty) => continue,
                Err(TryRecvError::Disconnected) => proto::error("the cluster stopped"),
            };
            c.waiting = None;
            c.deadline = Some(Instant::now() + IDLE);
            proto::frame(&answer, &mut c.output);
            done.push(*t);
        }
        for t in done {
            self.ready(t);
        }
    }

    /// Closes the clients past their deadline.
    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            if let Some(mut c) = self.clients.remove(&t) {
                tracing::debug!("control: closing a client that sent nothing in time");
                let _ = self.poll.registry().deregister(c.stream.source());
            }
        }
    }
}

/// Writes what the client is owed; false on a write error.
fn flush(c: &mut Client) -> bool {
    while !c.output.is_empty() {
        match c.stream.write(&c.output) {
            Ok(0) => return false,
            Ok(n) => {
                c.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// `/readyz`: 200 when every slot has a ready worker, no slot crash-loops and the cluster is
/// not stopping (nor in its shutdown delay); else 503 and one line saying why.
fn readyz(h: &Health) -> (&'static str, String) {
    match &h.unready {
        None => ("200 OK", "ready\n".into()),
        Some(why) => ("503 Service Unavailable", format!("not ready: {why}\n")),
    }
}

/// `/livez`: 200 while the primary's loop turns; 503 when it has not for [`LIVE_BOUND`].
fn livez(h: &Health) -> (&'static str, String) {
    match h.since_turn {
        Some(d) if d <= LIVE_BOUND => ("200 OK", "alive\n".into()),
        Some(d) => (
            "503 Service Unavailable",
            format!(
                "not alive: the primary's loop has not turned for {:.1} s\n",
                d.as_secs_f64()
            ),
        ),
        None => (
            "503 Service Unavailable",
            "not alive: the primary's loop has not started\n".into(),
        ),
    }
}
