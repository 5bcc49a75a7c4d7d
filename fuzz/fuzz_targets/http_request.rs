// RUSTC_BOOTSTRAP=1 cargo fuzz run http_request -- -max_total_time=60      (or: make fuzz)
//! Arbitrary bytes through the HTTP/1.1 protocol's connection, as the event loop would feed
//! them: all at once, and split in two at a point the input chooses (a request arriving over
//! two reads). Asserts no panic escapes, `consumed` stays within the input, and the output,
//! when there is any, starts with a valid status line.
#![no_main]

use std::time::Instant;

use herd::protocol::{Connection, Flow, Protocol};
use herd::{Http, Request, Response};
use libfuzzer_sys::fuzz_target;

fn http() -> Http<impl herd::Handler> {
    Http::new(|req: &Request<'_>, res: &mut Response| {
        res.header("X-Path", req.path()).body(req.body());
    })
    .max_body_bytes(4096)
}

/// `HTTP/1.1 NNN Reason\r\n` with a three-digit code.
fn assert_status_line(out: &[u8]) {
    let line_end = out
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("a status line ends with CRLF");
    let line = std::str::from_utf8(&out[..line_end]).expect("the status line is ASCII");
    let rest = line.strip_prefix("HTTP/1.1 ").expect("HTTP/1.1 status line");
    let (code, reason) = rest.split_at(3.min(rest.len()));
    assert!(
        code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()),
        "status code in {line:?}"
    );
    assert!(reason.starts_with(' '), "reason phrase in {line:?}");
}

/// Feeds `chunks` one after the other, keeping what the connection leaves unconsumed, as the
/// loop does.
fn feed(chunks: &[&[u8]]) {
    let http = http();
    let now = Instant::now();
    let mut conn = http.connect(None, now);
    let mut input = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        input.extend_from_slice(chunk);
        let step = conn.on_read(&input, &mut out, now);
        assert!(step.consumed <= input.len(), "consumed past the input");
        input.drain(..step.consumed);
        if !out.is_empty() {
            assert_status_line(&out);
        }
        if step.flow == Flow::Close {
            return;
        }
    }
    let _ = conn.on_eof(&input, &mut out);
    let _ = conn.on_drain(&mut out);
    if !out.is_empty() {
        assert_status_line(&out);
    }
}

fuzz_target!(|data: &[u8]| {
    feed(&[data]);
    if let Some((&split, rest)) = data.split_first() {
        let at = usize::from(split) % (rest.len() + 1);
        let (a, b) = rest.split_at(at);
        feed(&[a, b]);
    }
});
