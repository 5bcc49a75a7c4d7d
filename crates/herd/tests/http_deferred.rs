//! Deferred responses over real sockets: the loop serves other connections while an answer is
//! prepared elsewhere, pipelined answers stay in order, a dropped responder answers 500, a
//! client that leaves frees its slot and a stale answer never reaches a newer connection, and
//! a drain waits for deferred work.

mod util;

use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herd::event_loop::Config;
use herd::http::Responder;
use herd::{Handler, Http, Request, Response};
use util::{is_closed, read_reply, roundtrip, start, TIMEOUT};

/// `/defer?id=X` hands its responder (tagged X) to the test; anything else answers at once.
fn deferring() -> (Http<impl Handler>, mpsc::Receiver<(String, Responder)>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let http = Http::new(move |req: &Request<'_>, res: &mut Response| {
        if req.path() == "/defer" {
            let id = req.query_param("id").unwrap_or_default().into_owned();
            let responder = res.defer();
            tx.lock().unwrap().send((id, responder)).unwrap();
        } else {
            res.body(format!("fast {}", req.path()));
        }
    });
    (http, rx)
}

fn next(rx: &mpsc::Receiver<(String, Responder)>) -> (String, Responder) {
    rx.recv_timeout(TIMEOUT).expect("a deferred request")
}

fn answer(mut responder: Responder, body: &str) {
    responder.body(body);
    responder.send();
}

/// Nothing arrives on `stream` for a while.
fn silent(stream: &mut std::net::TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0];
    let quiet = matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    quiet
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn other_connections_are_served_while_an_answer_is_deferred() {
    let (http, rx) = deferring();
    let server = start(http, Config::default());
    let mut slow = server.connect();
    slow.write_all(b"GET /defer?id=a HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (id, responder) = next(&rx);
    assert_eq!(id, "a");
    // The responder is still held: the loop must answer others meanwhile.
    let mut fast = server.connect();
    for _ in 0..3 {
        let reply = roundtrip(&mut fast, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(reply.body, b"fast /x");
    }
    assert!(silent(&mut slow));
    // Completed from another thread.
    std::thread::spawn(move || answer(responder, "late a"))
        .join()
        .unwrap();
    let reply = read_reply(&mut slow, false).unwrap();
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"late a"[..]));
    assert!(!reply.closes());
    // Keep-alive goes on.
    let reply = roundtrip(&mut slow, "GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.body, b"fast /after");
}

#[test]
fn pipelined_requests_behind_a_deferred_one_are_answered_after_it() {
    let (http, rx) = deferring();
    let server = start(http, Config::default());
    let mut stream = server.connect();
    stream
        .write_all(
            b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /defer?id=1 HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /three HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /defer?id=2 HTTP/1.1\r\nHost: t\r\n\r\nGET /fi",
        )
        .unwrap();
    assert_eq!(read_reply(&mut stream, false).unwrap().body, b"fast /one");
    let (id, first) = next(&rx);
    assert_eq!(id, "1");
    assert!(
        silent(&mut stream),
        "nothing may overtake the deferred answer"
    );
    assert!(rx.try_recv().is_err(), "requests behind it wait");
    answer(first, "deferred 1");
    assert_eq!(read_reply(&mut stream, false).unwrap().body, b"deferred 1");
    assert_eq!(read_reply(&mut stream, false).unwrap().body, b"fast /three");
    let (id, second) = next(&rx);
    assert_eq!(id, "2");
    // The rest of the last request arrives while the connection waits.
    stream.write_all(b"ve HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(silent(&mut stream));
    answer(second, "deferred 2");
    assert_eq!(read_reply(&mut stream, false).unwrap().body, b"deferred 2");
    assert_eq!(read_reply(&mut stream, false).unwrap().body, b"fast /five");
}

#[test]
fn a_responder_dropped_unanswered_gives_500() {
    let (http, rx) = deferring();
    let server = start(http, Config::default());
    let mut stream = server.connect();
    stream
        .write_all(b"GET /defer?id=x HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (_, responder) = next(&rx);
    drop(responder);
    let reply = read_reply(&mut stream, false).unwrap();
    assert_eq!(reply.status, 500);
    assert!(reply.closes());
    assert!(is_closed(&mut stream));
}

#[test]
fn a_client_gone_while_waiting_frees_its_slot_and_its_answer_reaches_nobody_else() {
    let (http, rx) = deferring();
    let server = start(http, Config::default());
    let gone = server.connect();
    (&gone)
        .write_all(b"GET /defer?id=gone HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (_, stale) = next(&rx);
    // Reset (SO_LINGER 0): the loop sees the hang-up while the answer is pending.
    socket2::SockRef::from(&gone)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(gone);
    wait_for("the slot to be freed", || {
        server.seen.load.load(Ordering::SeqCst) == 0
    });
    // A new connection takes the same slab key and waits too.
    let mut fresh = server.connect();
    fresh
        .write_all(b"GET /defer?id=fresh HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (id, mine) = next(&rx);
    assert_eq!(id, "fresh");
    answer(stale, "stale answer");
    assert!(
        silent(&mut fresh),
        "the old connection's answer must be dropped"
    );
    answer(mine, "my answer");
    let reply = read_reply(&mut fresh, false).unwrap();
    assert_eq!(reply.body, b"my answer");
}

#[test]
fn a_drain_waits_for_deferred_answers_and_closes_after_them() {
    let (http, rx) = deferring();
    let mut server = start(http, Config::default());
    let mut stream = server.connect();
    stream
        .write_all(b"GET /defer?id=d HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (_, responder) = next(&rx);
    server.begin_drain();
    assert!(
        silent(&mut stream),
        "the connection stays open for its answer"
    );
    answer(responder, "drained");
    let reply = read_reply(&mut stream, false).unwrap();
    assert_eq!(reply.body, b"drained");
    assert!(reply.closes());
    assert!(is_closed(&mut stream));
    server.stop().expect("the loop returns");
}

#[test]
fn a_drain_waits_for_work_of_a_connection_already_gone() {
    let (http, rx) = deferring();
    let config = Config {
        drain_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let mut server = start(http, config);
    let stream = server.connect();
    (&stream)
        .write_all(b"GET /defer?id=d HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (_, responder) = next(&rx);
    stream.shutdown(Shutdown::Both).unwrap();
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    wait_for("the slot to be freed", || {
        server.seen.load.load(Ordering::SeqCst) == 0
    });
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let worker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::SeqCst);
        answer(responder, "nobody");
    });
    server.begin_drain();
    server.stop().expect("the loop returns");
    assert!(
        done.load(Ordering::SeqCst),
        "the loop returned before the deferred work ended"
    );
    worker.join().unwrap();
}
