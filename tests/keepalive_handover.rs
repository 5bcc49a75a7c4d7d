//! Keep-alive connections outlive their worker: when a worker drains for a rolling reload or
//! a scale-down, its idle keep-alive connections (and any bytes of a request it had read) go
//! to a worker that stays, through the primary. Clients here never reconnect: every request
//! goes on the connection they opened first, and a close, a reset or a `Connection: close`
//! counts as a failure.
//! `cargo test --test keepalive_handover -- --nocapture` prints the figures.

mod lost;
mod util;

use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use lost::{example, serial, Hello};
use util::{read_reply, SEC};

/// Concurrent keep-alive clients.
const CLIENTS: usize = 16;

/// What one client saw on its single connection.
#[derive(Debug, Default)]
struct Seen {
    requests: u64,
    /// The first failure, which also ended the client.
    failure: Option<String>,
    /// Every worker id that answered on this connection.
    workers: BTreeSet<String>,
}

/// Clients that each keep one connection and send one request after another on it, until
/// stopped.
struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Seen>>,
}

impl Clients {
    fn start(addr: SocketAddr, n: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || one_connection(addr, &stop))
            })
            .collect();
        Clients { stop, threads }
    }

    fn finish(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Release);
        self.threads
            .drain(..)
            .map(|t| t.join().expect("client thread"))
            .collect()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn one_connection(addr: SocketAddr, stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            seen.failure = Some(format!("connect: {e}"));
            return seen;
        }
    };
    stream.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    while !stop.load(Ordering::Acquire) {
        let reply = w
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .and_then(|()| read_reply(&mut r));
        match reply {
            Ok(reply) if reply.status == 200 && !reply.closes() => {
                seen.requests += 1;
                if let Some(id) = reply.header("x-herd-worker") {
                    seen.workers.insert(id.to_string());
                }
            }
            Ok(reply) => {
                seen.failure = Some(format!(
                    "status {}, connection: {:?}",
                    reply.status,
                    reply.header("connection")
                ));
                break;
            }
            Err(e) => {
                seen.failure = Some(format!("after {} requests: {e}", seen.requests));
                break;
            }
        }
    }
    seen
}

/// Asserts no client failed and every connection was served by at least `min_workers`
/// workers (it moved); prints the figures.
fn check(what: &str, seen: &[Seen], min_workers: usize) {
    let requests: u64 = seen.iter().map(|s| s.requests).sum();
    let failed: Vec<&String> = seen.iter().filter_map(|s| s.failure.as_ref()).collect();
    let moved = seen
        .iter()
        .filter(|s| s.workers.len() >= min_workers)
        .count();
    eprintln!(
        "[{what}] {} keep-alive connections, {requests} requests, {} failed, {moved} served by >= {min_workers} workers",
        seen.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{what}: clients failed: {failed:?}");
    assert_eq!(
        moved,
        seen.len(),
        "{what}: every connection moved to the new workers: {:?}",
        seen.iter().map(|s| &s.workers).collect::<Vec<_>>()
    );
}

#[test]
fn three_reloads_under_keepalive_load_close_no_connection() {
    let _serial = serial();
    let mut c = Hello::start(&example("hello"), 2);
    let clients = Clients::start(c.addr, CLIENTS);
    std::thread::sleep(Duration::from_millis(300));
    for i in 1..=3 {
        c.proc.signal(libc::SIGHUP);
        c.wait_count("rolling reload complete", i, 10 * SEC);
        c.wait_count("worker exited", 2 * i, 10 * SEC);
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = clients.finish();
    // 4 generations of 2 workers: each connection met at least one worker of each.
    check("3 reloads", &seen, 4);
    assert_eq!(c.count("worker died"), 0, "no worker was killed");
}

#[test]
fn a_reload_under_round_robin_dispatch_closes_no_connection() {
    let _serial = serial();
    let mut c = Hello::start_with(&example("hello"), 2, &[("POLICY", "rr")]);
    let clients = Clients::start(c.addr, CLIENTS);
    std::thread::sleep(Duration::from_millis(300));
    c.proc.signal(libc::SIGHUP);
    c.wait_count("rolling reload complete", 1, 10 * SEC);
    c.wait_count("worker exited", 2, 10 * SEC);
    std::thread::sleep(Duration::from_millis(200));
    let seen = clients.finish();
    check("reload, herd-rr", &seen, 2);
}

#[test]
fn scale_down_moves_keepalive_connections_to_the_workers_that_stay() {
    let _serial = serial();
    let mut c = Hello::start(&example("hello"), 3);
    let clients = Clients::start(c.addr, CLIENTS);
    std::thread::sleep(Duration::from_millis(300));
    c.proc.signal(libc::SIGTTOU);
    c.wait_count("slot removed", 1, 10 * SEC);
    c.proc.signal(libc::SIGTTOU);
    c.wait_count("slot removed", 2, 10 * SEC);
    std::thread::sleep(Duration::from_millis(300));
    let seen = clients.finish();
    let requests: u64 = seen.iter().map(|s| s.requests).sum();
    let failed: Vec<&String> = seen.iter().filter_map(|s| s.failure.as_ref()).collect();
    eprintln!(
        "[scale-down 3 -> 1] {CLIENTS} keep-alive connections, {requests} requests, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "clients failed: {failed:?}");
    // Only worker 1 (slot 0) is left: every connection ends up there, and those that began
    // on a removed worker moved without noticing.
    let survivor = "1".to_string();
    let moved = seen
        .iter()
        .filter(|s| s.workers.len() > 1 && s.workers.contains(&survivor))
        .count();
    assert!(moved > 0, "some connection moved: {seen:?}");
    let mut s = TcpStream::connect(c.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let reply = read_reply(&mut BufReader::new(s)).unwrap();
    assert_eq!(reply.header("x-herd-worker"), Some("1"));
}

#[test]
fn a_request_half_read_by_the_old_worker_is_finished_by_the_new_one() {
    let _serial = serial();
    let mut c = Hello::start(&example("hello"), 1);
    let stream = TcpStream::connect(c.addr).unwrap();
    stream.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let first = read_reply(&mut r).unwrap();
    assert_eq!(first.header("x-herd-worker"), Some("1"));
    // Half a head: the old worker reads it (and keeps it, unconsumed) before the reload.
    w.write_all(b"GET /again HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    c.proc.signal(libc::SIGHUP);
    c.wait_count("rolling reload complete", 1, 10 * SEC);
    c.wait_count("worker exited", 1, 10 * SEC);
    w.write_all(b"st: t\r\n\r\n").unwrap();
    let second = read_reply(&mut r).unwrap();
    assert_eq!(second.status, 200);
    assert!(!second.closes(), "{second:?}");
    assert_eq!(
        second.header("x-herd-worker"),
        Some("2"),
        "the new worker answered the request the old one had half read"
    );
}

#[test]
fn a_request_on_the_blocking_pool_during_a_reload_is_answered_then_its_connection_moves() {
    let _serial = serial();
    // /slow runs on the blocking pool; Redis is not needed for it.
    let mut c = Hello::start_with(
        &example("sessions"),
        1,
        &[("REDIS_URL", "redis://127.0.0.1:1")],
    );
    let stream = TcpStream::connect(c.addr).unwrap();
    stream.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"GET /slow?ms=400 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    c.proc.signal(libc::SIGHUP);
    let slow = read_reply(&mut r).unwrap();
    assert_eq!(slow.status, 200);
    assert!(!slow.closes(), "answered without a close: {slow:?}");
    assert_eq!(slow.header("x-herd-worker"), Some("1"));
    c.wait_count("rolling reload complete", 1, 10 * SEC);
    c.wait_count("worker exited", 1, 10 * SEC);
    w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let next = read_reply(&mut r).unwrap();
    assert_eq!(next.status, 200);
    assert_eq!(
        next.header("x-herd-worker"),
        Some("2"),
        "the same connection, now served by the new worker"
    );
}
