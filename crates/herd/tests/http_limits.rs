//! Limits over real sockets: header read timeout (slowloris), connection cap, bad input,
//! handler panics.

mod util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use herd::event_loop::Config;
use util::{hello, is_closed, read_reply, roundtrip, start};

fn fast_timers() -> Config {
    Config {
        timer_granularity: Duration::from_millis(10),
        ..Config::default()
    }
}

#[test]
fn slowloris_gets_408_at_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let server = start(hello().header_read_timeout(timeout), fast_timers());
    let mut stream = server.connect();
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .expect("send");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(50));
        stream.write_all(b"X-Slow: 1\r\n").expect("send");
    }
    let reply = read_reply(&mut stream, false).expect("408");
    let waited = started.elapsed();
    assert_eq!(reply.status, 408);
    assert!(reply.closes());
    assert!(
        waited >= timeout && waited < timeout * 3,
        "answered after {waited:?}"
    );
    assert!(is_closed(&mut stream));
    server.stop().expect("drain");
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let config = Config {
        max_connections: 1,
        ..fast_timers()
    };
    let server = start(hello(), config);
    let mut first = server.connect();
    assert_eq!(
        roundtrip(&mut first, "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );

    let mut second = server.connect();
    second
        .write_all(b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut byte = [0];
    let waiting = second
        .read(&mut byte)
        .expect_err("the second connection must wait");
    assert!(matches!(
        waiting.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));

    drop(first);
    second
        .set_read_timeout(Some(util::TIMEOUT))
        .expect("timeout");
    let reply = read_reply(&mut second, false).expect("served once the first closed");
    assert_eq!(reply.body, b"hello /2");
    server.stop().expect("drain");
}

#[test]
fn a_panicking_handler_answers_500_and_the_worker_lives_on() {
    let server = start(hello(), Config::default());
    let mut stream = server.connect();
    let reply = roundtrip(&mut stream, "GET /panic HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 500);
    assert!(reply.closes());
    assert!(is_closed(&mut stream));

    let mut again = server.connect();
    assert_eq!(
        roundtrip(&mut again, "GET /after HTTP/1.1\r\nHost: t\r\n\r\n").body,
        b"hello /after"
    );
    server.stop().expect("drain");
}

#[test]
fn bad_input_is_answered_and_closed() {
    let cases: [(&[u8], u16); 5] = [
        (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9999999\r\n\r\nabc",
            413,
        ),
    ];
    let server = start(hello(), Config::default());
    for (input, status) in cases {
        let mut stream = server.connect();
        stream.write_all(input).expect("send");
        let reply = read_reply(&mut stream, false).expect("response");
        assert_eq!(
            reply.status,
            status,
            "for {:?}",
            String::from_utf8_lossy(input)
        );
        assert!(reply.closes());
        assert!(is_closed(&mut stream));
    }
    let mut stream = server.connect();
    stream
        .write_all(format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(5000)).as_bytes())
        .expect("send");
    assert_eq!(
        read_reply(&mut stream, false).expect("response").status,
        414
    );
    server.stop().expect("drain");
}

#[test]
fn idle_keep_alive_connections_close_silently() {
    let server = start(
        hello().keepalive_timeout(Duration::from_millis(200)),
        fast_timers(),
    );
    let mut stream = server.connect();
    assert_eq!(
        roundtrip(&mut stream, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    let started = Instant::now();
    assert!(is_closed(&mut stream));
    assert!(started.elapsed() >= Duration::from_millis(150));
    server.stop().expect("drain");
}
