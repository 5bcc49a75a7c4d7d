//! Keep-alive, pipelining, bodies, 100-continue and HEAD over real sockets.

mod util;

use std::io::Write;

use herd::event_loop::Config;
use util::{hello, read_reply, roundtrip, start};

#[test]
fn keep_alive_reuses_the_connection() {
    let server = start(hello(), Config::default());
    let mut stream = server.connect();
    for i in 0..3 {
        let reply = roundtrip(
            &mut stream,
            &format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, format!("hello /{i}").as_bytes());
        assert!(!reply.closes());
        assert!(reply.header("date").is_some_and(|d| d.ends_with(" GMT")));
    }
    server.stop().expect("drain");
}

#[test]
fn pipelined_requests_come_back_in_order() {
    let server = start(hello(), Config::default());
    let mut stream = server.connect();
    let batch: String = (0..20)
        .map(|i| format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    stream.write_all(batch.as_bytes()).expect("send");
    for i in 0..20 {
        let reply = read_reply(&mut stream, false).expect("response");
        assert_eq!(reply.body, format!("hello /{i}").as_bytes());
    }
    server.stop().expect("drain");
}

#[test]
fn chunked_body_is_decoded() {
    let server = start(hello(), Config::default());
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nherd",
        )
        .expect("send");
    std::thread::sleep(std::time::Duration::from_millis(50));
    stream
        .write_all(b"\r\n3\r\n ok\r\n0\r\nTrailer: x\r\n\r\n")
        .expect("send");
    let reply = read_reply(&mut stream, false).expect("response");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"herd ok");
    server.stop().expect("drain");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = start(hello(), Config::default());
    let mut stream = server.connect();
    stream
        .write_all(
            b"PUT /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .expect("send");
    let interim = read_reply(&mut stream, true).expect("100 Continue");
    assert_eq!(interim.status, 100);
    stream.write_all(b"data").expect("send");
    let reply = read_reply(&mut stream, false).expect("response");
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"data"[..]));
    server.stop().expect("drain");
}

#[test]
fn head_has_a_length_but_no_body() {
    let server = start(hello(), Config::default());
    let mut stream = server.connect();
    let reply = roundtrip(&mut stream, "HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.header("content-length"), Some("8"));
    // Had a body followed, this would read it instead of the next response.
    let reply = roundtrip(&mut stream, "GET /y HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, &b"hello /y"[..])
    );
    server.stop().expect("drain");
}

#[test]
fn http10_closes_after_the_response() {
    let server = start(hello(), Config::default());
    let mut stream = server.connect();
    let reply = roundtrip(&mut stream, "GET / HTTP/1.0\r\n\r\n");
    assert!(reply.closes());
    assert!(util::is_closed(&mut stream));
    server.stop().expect("drain");
}
