//! Stopping: once a stop begins and the queues are taken, new connections are refused at
//! once (a load balancer then retries elsewhere), while requests in flight and connections
//! already queued are still served.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use util::*;

/// Connects every 20 ms until the connection is refused (or reset before an answer);
/// returns how long that took, or `None` after `within`.
fn refused_within(addr: SocketAddr, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut kept = Vec::new();
    while start.elapsed() < within {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Some(start.elapsed()),
            Err(e) => panic!("connect: {e}"),
            Ok(s) => kept.push(s),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn start(policy: &str) -> (Proc, SocketAddr) {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_MODE", "http"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_POLICY", policy),
            ("FIX_SHUTDOWN_MS", "8000"),
        ],
        &[],
    );
    let l = c.expect_n(2, 10 * SEC, "EV listening");
    let addr = field(&l[0], "addr").unwrap().parse().unwrap();
    (c, addr)
}

/// A request in flight (its body half sent), a stop, new connections refused promptly, then
/// the request completes and the cluster exits cleanly.
fn refuses_new_connections_while_in_flight_requests_finish(policy: &str) {
    let (mut c, addr) = start(policy);
    let mut a = TcpStream::connect(addr).unwrap();
    a.set_read_timeout(Some(5 * SEC)).unwrap();
    a.write_all(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    c.signal(libc::SIGTERM);
    let took = refused_within(addr, 2 * SEC);
    assert!(
        took.is_some(),
        "{policy}: new connections still queued 2 s into the stop"
    );
    eprintln!("{policy}: refused {took:?} after SIGTERM");
    assert!(
        c.wait(Duration::ZERO).is_none(),
        "the primary waits for the request in flight"
    );
    a.write_all(b"world").unwrap();
    let mut reply = String::new();
    let _ = a.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("POST /a from"),
        "{policy}: {reply:?}"
    );
    let status = c.wait(10 * SEC).expect("exits");
    assert!(status.success(), "{status:?} {}", c.stderr());
}

#[test]
fn reuseport_refuses_new_connections_once_stopping() {
    refuses_new_connections_while_in_flight_requests_finish("reuseport");
}

#[test]
fn shared_refuses_new_connections_once_stopping() {
    refuses_new_connections_while_in_flight_requests_finish("shared");
}

#[test]
fn rr_refuses_new_connections_once_stopping() {
    refuses_new_connections_while_in_flight_requests_finish("rr");
}

#[test]
fn a_connection_queued_when_the_stop_begins_is_served_not_reset() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "http"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_SHUTDOWN_MS", "8000"),
        ],
        &[],
    );
    let l = c.expect(10 * SEC, |l| l.starts_with("EV listening"));
    let addr: SocketAddr = field(&l, "addr").unwrap().parse().unwrap();
    // The worker's loop is busy for 1 s (a request on a connection it accepted earlier, so
    // that nothing else is accepted in the same pass): the stop's disconnect waits on its IPC
    // socket, and a connection made after it waits in the accept queue behind it.
    let mut busy = TcpStream::connect(addr).unwrap();
    busy.set_read_timeout(Some(5 * SEC)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    busy.write_all(b"GET /sleep?ms=1000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let busy = std::thread::spawn(move || {
        let mut out = String::new();
        busy.read_to_string(&mut out).map(|_| out)
    });
    std::thread::sleep(Duration::from_millis(200));
    c.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let queued = http_get(addr, "/queued");
    let busy = busy.join().unwrap();
    assert!(
        busy.as_ref().is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
        "{busy:?}"
    );
    assert!(
        queued
            .as_ref()
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200") && r.contains("GET /queued")),
        "a connection queued when the stop began was lost: {queued:?}"
    );
    let status = c.wait(10 * SEC).expect("exits");
    assert!(status.success(), "{status:?} {}", c.stderr());
}
