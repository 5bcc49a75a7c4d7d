//! Helpers for the herd-rr end-to-end tests: start the fixture under a hand-off policy, and
//! small HTTP clients that report which worker answered.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::util::{free_port, Proc, FIXTURE, SEC};

/// A cluster of the fixture serving HTTP (`FIX_MODE=http`) on 127.0.0.1 with `policy`, plus
/// extra `FIX_*` settings; returns once `workers` workers listen.
pub fn start(policy: &str, workers: usize, extra: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let addr_s = addr.to_string();
    let n = workers.to_string();
    let mut env = vec![
        ("FIX_MODE", "http"),
        ("FIX_ADDR", addr_s.as_str()),
        ("FIX_POLICY", policy),
        ("FIX_WORKERS", n.as_str()),
    ];
    env.extend_from_slice(extra);
    let mut c = Proc::start(FIXTURE, &env, &[]);
    c.expect_n(workers, 20 * SEC, "EV listening");
    (c, addr)
}

/// One answer: the status and the worker that sent it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub worker: u32,
    pub pid: i32,
}

/// Reads one response from `s` (headers, then a Content-Length body).
pub fn read_answer(s: &mut TcpStream) -> std::io::Result<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Answer {
        status,
        worker: header("x-herd-worker")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        pid: header("x-herd-pid")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// Connects to `addr`, from `source` when given (bound before connect).
pub fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(ip) = source {
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    s.connect_timeout(&addr.into(), timeout)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// One request on a new connection (`Connection: close`), from `source` when given.
pub fn get_from(
    addr: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Answer> {
    let mut s = connect(addr, source, timeout)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )?;
    read_answer(&mut s)
}

/// One request on a new connection from 127.0.0.1.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    get_from(addr, None, path, 5 * SEC)
}

/// One request on an open keep-alive connection.
pub fn get_on(s: &mut TcpStream, path: &str) -> std::io::Result<Answer> {
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")?;
    read_answer(s)
}

/// Sends SIGKILL to `pid`.
pub fn sigkill(pid: i32) {
    // SAFETY: kill(2) on a worker pid of a cluster this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}
