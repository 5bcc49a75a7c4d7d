//! Draining on Disconnect: in-flight requests finish with `Connection: close`, idle keep-alive
//! connections close, a request already waiting in a socket and a connection's first request
//! still on its way are answered, the loop returns.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use herd::event_loop::Config;
use util::{hello, is_closed, read_reply, roundtrip, start};

#[test]
fn drain_finishes_in_flight_closes_idle_and_returns() {
    let mut server = start(hello(), Config::default());
    let addr = server.addr;
    let mut idle = server.connect();
    assert_eq!(
        roundtrip(&mut idle, "GET /idle HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    let mut busy = server.connect();
    busy.write_all(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nsl")
        .expect("send");
    std::thread::sleep(Duration::from_millis(50));

    server.begin_drain();
    assert!(is_closed(&mut idle), "the idle connection must close");
    std::thread::sleep(Duration::from_millis(50));
    busy.write_all(b"ow").expect("send the rest");
    let reply = read_reply(&mut busy, false).expect("the in-flight request is answered");
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"slow"[..]));
    assert!(reply.closes());
    assert!(is_closed(&mut busy));
    server.stop().expect("the loop returns Ok");
    // The loop held the only copy of the listener: it is closed now.
    assert!(TcpStream::connect_timeout(&addr, util::TIMEOUT).is_err());
}

#[test]
fn drain_gives_up_at_the_drain_timeout() {
    let config = Config {
        drain_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let server = start(hello(), config);
    let mut stuck = server.connect();
    stuck
        .write_all(b"GET /never-finished HTTP/1.1\r\nHost: t\r\n")
        .expect("send");
    std::thread::sleep(Duration::from_millis(50));
    let started = std::time::Instant::now();
    server.stop().expect("the loop returns Ok");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(is_closed(&mut stuck));
}

#[test]
fn drain_answers_a_connection_whose_first_request_comes_after_it() {
    let mut server = start(hello(), Config::default());
    // Accepted before the drain, its request not sent yet: a client of a reloading worker.
    let mut fresh = server.connect();
    std::thread::sleep(Duration::from_millis(50));
    server.begin_drain();
    std::thread::sleep(Duration::from_millis(50));
    fresh
        .write_all(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let reply = read_reply(&mut fresh, false).expect("the first request is answered");
    assert_eq!(reply.status, 200);
    assert!(reply.closes());
    assert!(is_closed(&mut fresh));
    server.stop().expect("the loop returns Ok");
}

#[test]
fn drain_answers_a_handed_over_connection_whose_request_is_pending() {
    let mut server = start(hello(), Config::default());
    let side = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(side.local_addr().unwrap()).expect("connect");
    client
        .set_read_timeout(Some(util::TIMEOUT))
        .expect("read timeout");
    client
        .write_all(b"GET /pending HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let (accepted, _) = side.accept().expect("accept");
    // The hand-off and the drain reach the loop together: the request is already waiting in
    // the socket when the drain looks at the connection.
    server.hand_over(accepted);
    server.begin_drain();
    let reply = read_reply(&mut client, false).expect("the pending request is answered");
    assert_eq!(reply.status, 200);
    assert!(is_closed(&mut client));
    server.stop().expect("the loop returns Ok");
}
