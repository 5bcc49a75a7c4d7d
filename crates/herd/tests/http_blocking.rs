//! The blocking pool over real sockets: blocking handlers leave the loop free, a panic answers
//! 500 and the worker lives, a full queue stops reading (back-pressure) and past its limit
//! answers 503 with Retry-After, and the counters say what happened.

mod util;

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use herd::event_loop::Config;
use herd::http::{blocking, BlockingStats, Router};
use herd::{Handler, Http, Request, Response};
use util::{read_reply, roundtrip, start, TIMEOUT};

/// `/gate` blocks its pool thread until the test lets one through; `/panic` panics on the
/// pool; `/` answers on the loop.
fn gated(threads: usize, queue: usize) -> (Http<impl Handler>, mpsc::Sender<()>, BlockingStats) {
    let (open, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let app = Router::new()
        .get("/", |_req: &Request<'_>, res: &mut Response| {
            res.body("fast");
        })
        .get(
            "/gate",
            blocking(move |req: &Request<'_>, res: &mut Response| {
                gate.lock()
                    .unwrap()
                    .recv_timeout(TIMEOUT)
                    .expect("the test opens the gate");
                res.body(format!("passed {}", req.query().unwrap_or("")));
            }),
        )
        .get(
            "/panic",
            blocking(|_req: &Request<'_>, _res: &mut Response| {
                panic!("a blocking handler panics (expected by the test)")
            }),
        );
    let http = Http::new(app)
        .blocking_threads(threads)
        .blocking_queue(queue);
    let stats = http.blocking_stats();
    (http, open, stats)
}

fn send(stream: &mut TcpStream, target: &str) {
    write!(stream, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn silent(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0];
    let quiet = matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    quiet
}

#[test]
fn blocking_handlers_run_on_the_pool_and_leave_the_loop_free() {
    let (http, open, stats) = gated(4, 16);
    let server = start(http, Config::default());
    let mut waiting: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    for (i, s) in waiting.iter_mut().enumerate() {
        send(s, &format!("/gate?{i}"));
    }
    wait_for("three busy threads", || stats.snapshot().busy == 3);
    // All three block their threads; the loop still answers.
    let mut fast = server.connect();
    assert_eq!(
        roundtrip(&mut fast, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").body,
        b"fast"
    );
    for _ in 0..3 {
        open.send(()).unwrap();
    }
    let mut bodies: Vec<String> = waiting
        .iter_mut()
        .map(|s| String::from_utf8(read_reply(s, false).unwrap().body).unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["passed 0", "passed 1", "passed 2"]);
    // The counters move just after the answer is handed over.
    wait_for("the counters to settle", || {
        let snap = stats.snapshot();
        (snap.completed, snap.busy) == (3, 0)
    });
    assert_eq!(stats.snapshot().threads, 3);
}

#[test]
fn a_panic_on_the_pool_answers_500_and_the_worker_lives() {
    let (http, open, stats) = gated(2, 16);
    let server = start(http, Config::default());
    let mut stream = server.connect();
    let reply = roundtrip(&mut stream, "GET /panic HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 500);
    assert!(reply.closes());
    let mut again = server.connect();
    send(&mut again, "/gate?after");
    open.send(()).unwrap();
    assert_eq!(read_reply(&mut again, false).unwrap().body, b"passed after");
    assert_eq!(stats.snapshot().panicked, 1);
}

#[test]
fn a_full_queue_stops_reading_then_sheds_with_503() {
    // One thread, a queue of one: back-pressure from one waiting job, 503 from two.
    let (http, open, stats) = gated(1, 1);
    let server = start(http, Config::default());
    let mut running = server.connect();
    send(&mut running, "/gate?running");
    wait_for("the thread to be busy", || stats.snapshot().busy == 1);
    let mut queued = server.connect();
    send(&mut queued, "/gate?queued");
    wait_for("one queued job", || stats.snapshot().queued == 1);

    // Reading is paused: even a request for the loop waits in the kernel.
    let mut fast = server.connect();
    send(&mut fast, "/");
    let mut parked: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    for (i, s) in parked.iter_mut().enumerate() {
        send(s, &format!("/gate?parked{i}"));
    }
    assert!(
        silent(&mut fast),
        "the loop must not read while the queue is full"
    );

    // One job done: the queued one runs, reading resumes, and what waited is read at once:
    // the fast request is answered, one gated request fits the queue, one more fits up to
    // the limit, the last one is shed.
    open.send(()).unwrap();
    assert_eq!(
        read_reply(&mut running, false).unwrap().body,
        b"passed running"
    );
    assert_eq!(read_reply(&mut fast, false).unwrap().body, b"fast");
    let mut shed = None;
    wait_for("the parked requests to be read", || {
        let s = stats.snapshot();
        s.queued + s.rejected as usize == 3
    });
    for (i, s) in parked.iter_mut().enumerate() {
        if !silent(s) {
            let reply = read_reply(s, false).unwrap();
            assert_eq!(reply.status, 503);
            assert_eq!(reply.header("retry-after"), Some("1"));
            shed = Some(i);
        }
    }
    assert!(shed.is_some(), "one request past the limit is shed");
    assert_eq!(stats.snapshot().rejected, 1);
    // The rest are served in turn.
    for _ in 0..3 {
        open.send(()).unwrap();
    }
    assert_eq!(
        read_reply(&mut queued, false).unwrap().body,
        b"passed queued"
    );
    for (i, s) in parked.iter_mut().enumerate() {
        if Some(i) != shed {
            let reply = read_reply(s, false).unwrap();
            assert_eq!(reply.body, format!("passed parked{i}").as_bytes());
        }
    }
    wait_for("the pool to be idle", || {
        let snap = stats.snapshot();
        (snap.queued, snap.busy) == (0, 0)
    });
    assert!(stats.snapshot().queue_wait_max > Duration::ZERO);
}

#[test]
fn a_drain_waits_for_the_pool() {
    let (http, open, stats) = gated(2, 4);
    let mut server = start(http, Config::default());
    let mut stream = server.connect();
    send(&mut stream, "/gate?draining");
    wait_for("the thread to be busy", || stats.snapshot().busy == 1);
    server.begin_drain();
    assert!(silent(&mut stream));
    open.send(()).unwrap();
    let reply = read_reply(&mut stream, false).unwrap();
    assert_eq!(reply.body, b"passed draining");
    assert!(reply.closes());
    server.stop().expect("the loop returns");
}
