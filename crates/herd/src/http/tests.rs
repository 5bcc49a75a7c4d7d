//! Table tests of the protocol: request bytes in, response bytes out, no sockets.

use std::time::{Duration, Instant};

use super::{Http, Request, Response};
use crate::protocol::{Connection, Flow, Protocol, Step};

/// Echoes what it understood: `METHOD PATH QUERY BODY`.
fn echo(req: &Request<'_>, res: &mut Response) {
    if req.path() == "/panic" {
        panic!("handler panic (expected by the test)");
    }
    let body = String::from_utf8_lossy(req.body());
    let text = format!(
        "{} {} {} {}",
        req.method(),
        req.path(),
        req.query().unwrap_or("-"),
        body
    );
    res.header("X-Test", "yes").body(text);
}

fn http() -> Http<fn(&Request<'_>, &mut Response)> {
    Http::new(echo as fn(&Request<'_>, &mut Response))
}

/// Feed `input` to a fresh connection in one read.
fn feed(http: &Http<fn(&Request<'_>, &mut Response)>, input: &[u8]) -> (String, Step) {
    let now = Instant::now();
    let mut conn = http.connect(None, now);
    let mut out = Vec::new();
    let step = conn.on_read(input, &mut out, now);
    (String::from_utf8_lossy(&out).into_owned(), step)
}

/// Each bad input, its status, and a closed connection.
macro_rules! bad {
    ($($name:ident: $input:expr => $status:expr;)*) => {$(
        #[test]
        fn $name() {
            let input: Vec<u8> = $input.into();
            let (out, step) = feed(&http(), &input);
            let status_line = format!("HTTP/1.1 {} ", $status);
            assert!(out.starts_with(&status_line), "expected {status_line:?}, got {out:?}");
            assert!(out.contains("\r\nConnection: close\r\n"), "{out:?}");
            assert_eq!(step.flow, Flow::Close);
        }
    )*};
}

bad! {
    malformed_request_line: "GET/ HTTP/1.1\r\n\r\n" => 400;
    header_without_colon: "GET / HTTP/1.1\r\nHost\r\n\r\n" => 400;
    space_before_colon: "GET / HTTP/1.1\r\nHost : x\r\n\r\n" => 400;
    uri_too_long: format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(4200)) => 414;
    uri_too_long_while_incomplete: format!("GET /{}", "a".repeat(4200)) => 414;
    header_section_too_large: format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(9000)) => 431;
    header_section_too_large_while_incomplete: format!("GET / HTTP/1.1\r\nX-Big: {}", "b".repeat(9000)) => 431;
    too_many_headers: format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(65)) => 431;
    content_length_too_large: "POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n" => 413;
    chunked_too_large: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n" => 413;
    content_length_and_chunked: "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" => 400;
    conflicting_content_lengths: "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" => 400;
    content_length_list: "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello" => 400;
    content_length_signed: "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello" => 400;
    content_length_not_a_number: "POST / HTTP/1.1\r\nContent-Length: five\r\n\r\nhello" => 400;
    content_length_overflow: "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n" => 400;
    transfer_encoding_gzip: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n" => 501;
    transfer_encoding_gzip_chunked: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" => 501;
    transfer_encoding_chunked_twice: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" => 400;
    chunk_size_not_hex: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" => 400;
    chunk_size_empty: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n" => 400;
    chunk_data_without_crlf: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" => 400;
    chunk_line_bare_lf: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" => 400;
    http2_preface: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" => 505;
    http_version_2: "GET / HTTP/2.0\r\n\r\n" => 505;
    http_version_1_2: "GET / HTTP/1.2\r\n\r\n" => 505;
    handler_panic: "GET /panic HTTP/1.1\r\n\r\n" => 500;
}

#[test]
fn get_is_answered_with_date_and_length() {
    let (out, step) = feed(&http(), b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{out}");
    assert!(
        out.ends_with("Content-Length: 11\r\nX-Test: yes\r\n\r\nGET /a b=c "),
        "{out}"
    );
    assert_eq!(
        step,
        Step {
            consumed: 32,
            flow: Flow::Continue
        }
    );
}

#[test]
fn content_length_body() {
    let (out, step) = feed(
        &http(),
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(out.ends_with("POST / - hello"), "{out}");
    assert_eq!(step.flow, Flow::Continue);
}

#[test]
fn identical_content_lengths_are_one() {
    let (out, _) = feed(
        &http(),
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
    );
    assert!(out.ends_with("POST / - hello"), "{out}");
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let input = b"POST /up HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
        5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let (out, step) = feed(&http(), input);
    assert!(out.ends_with("POST /up - hello world"), "{out}");
    assert_eq!(
        step,
        Step {
            consumed: input.len(),
            flow: Flow::Continue
        }
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let input = b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\n\r\nGET /4 HT";
    let (out, step) = feed(&http(), input);
    let bodies: Vec<&str> = out
        .split("\r\n\r\n")
        .skip(1)
        .map(|b| b.split("HTTP/1.1").next().unwrap_or(""))
        .collect();
    assert_eq!(bodies, ["GET /1 - ", "POST /2 - hi", "GET /3 - "]);
    assert_eq!(
        step,
        Step {
            consumed: input.len() - 9,
            flow: Flow::Continue
        }
    );
}

#[test]
fn head_has_the_get_length_but_no_body() {
    let (out, _) = feed(&http(), b"HEAD /x HTTP/1.1\r\n\r\n");
    assert!(
        out.ends_with("Content-Length: 10\r\nX-Test: yes\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn http10_closes_unless_keep_alive() {
    let (out, step) = feed(&http(), b"GET / HTTP/1.0\r\n\r\n");
    assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
    assert_eq!(step.flow, Flow::Close);
    let (out, step) = feed(&http(), b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert!(out.contains("\r\nConnection: keep-alive\r\n"), "{out}");
    assert_eq!(step.flow, Flow::Continue);
}

#[test]
fn connection_close_is_honoured_and_ends_the_batch() {
    let (out, step) = feed(
        &http(),
        b"GET /1 HTTP/1.1\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
    );
    assert_eq!(out.matches("HTTP/1.1 200").count(), 1, "{out}");
    assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
    assert_eq!(step.flow, Flow::Close);
}

#[test]
fn partial_head_waits_without_output() {
    let (out, step) = feed(&http(), b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(out, "");
    assert_eq!(
        step,
        Step {
            consumed: 0,
            flow: Flow::Continue
        }
    );
}

#[test]
fn expect_continue_only_when_the_body_is_missing() {
    let head = b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let (out, step) = feed(&http(), head);
    assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(step.consumed, 0);
    let (out, _) = feed(&http(), &[&head[..], b"hello"].concat());
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
}

#[test]
fn header_lookup_is_case_insensitive() {
    let http = Http::new(|req: &Request<'_>, res: &mut Response| {
        let value = req.header("x-name").unwrap_or(b"none").to_vec();
        res.body(value);
    });
    let now = Instant::now();
    let mut conn = http.connect(None, now);
    let mut out = Vec::new();
    conn.on_read(b"GET / HTTP/1.1\r\nX-NAME: v\r\n\r\n", &mut out, now);
    assert!(out.ends_with(b"\r\n\r\nv"));
}

#[test]
fn timeouts_answer_408_only_mid_request() {
    let http = http()
        .header_read_timeout(Duration::from_secs(1))
        .keepalive_timeout(Duration::from_secs(2));
    let start = Instant::now();
    let mut conn = http.connect(None, start);
    let mut out = Vec::new();
    assert_eq!(conn.deadline(), Some(start + Duration::from_secs(1)));
    conn.on_read(b"GET / HTTP/1.1\r\n\r\n", &mut out, start);
    out.clear();
    assert_eq!(conn.deadline(), Some(start + Duration::from_secs(2)));
    assert_eq!(conn.on_timeout(&mut out, start), Flow::Continue);
    assert_eq!(
        conn.on_timeout(&mut out, start + Duration::from_secs(2)),
        Flow::Close
    );
    assert!(
        out.is_empty(),
        "an idle keep-alive connection closes silently"
    );

    let mut conn = http.connect(None, start);
    conn.on_read(b"GET / HT", &mut out, start);
    assert_eq!(
        conn.on_timeout(&mut out, start + Duration::from_secs(1)),
        Flow::Close
    );
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408 Request Timeout\r\n"));
}

#[test]
fn drain_closes_idle_and_finishes_in_flight() {
    let now = Instant::now();
    let http = http();
    let mut out = Vec::new();
    let mut idle = http.connect(None, now);
    idle.on_read(b"GET / HTTP/1.1\r\n\r\n", &mut out, now);
    out.clear();
    assert_eq!(idle.on_drain(&mut out), Flow::Close);
    // A fresh connection's first request may still be on its way: it is awaited (bounded by
    // the header read timeout) and answered with `Connection: close`.
    let mut fresh = http.connect(None, now);
    assert_eq!(fresh.on_drain(&mut out), Flow::Continue);
    let step = fresh.on_read(b"GET / HTTP/1.1\r\n\r\n", &mut out, now);
    assert_eq!(step.flow, Flow::Close);
    assert!(String::from_utf8_lossy(&out).contains("\r\nConnection: close\r\n"));
    out.clear();
    let mut busy = http.connect(None, now);
    busy.on_read(b"GET / HTTP/1.1\r\n", &mut out, now);
    assert_eq!(busy.on_drain(&mut out), Flow::Continue);
    let step = busy.on_read(b"GET / HTTP/1.1\r\n\r\n", &mut out, now);
    assert_eq!(step.flow, Flow::Close);
    assert!(String::from_utf8_lossy(&out).contains("\r\nConnection: close\r\n"));
}
