//! The worker's HTTP server end to end, through a real cluster: the hello example answers from
//! real workers, keep-alive and pipelining work across the primary's listeners, bad input gets
//! 400, the policy is chosen from the environment, and SIGTERM drains.

mod util;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use util::{
    children_of, closed_by_peer, connect_retry, example, free_port, read_reply, Proc, Reply,
    FIXTURE, SEC,
};

fn hello_bin() -> PathBuf {
    example("hello")
}

/// Starts the hello example with `WORKERS=2` on a free port; returns it once both workers
/// listen, with their pids adopted by the guard.
fn start_hello(policy: Option<&str>) -> (Proc, u16, Vec<i32>) {
    let port = free_port();
    let port_s = port.to_string();
    let mut env = vec![("PORT", port_s.as_str()), ("WORKERS", "2")];
    if let Some(p) = policy {
        env.push(("POLICY", p));
    }
    let bin = hello_bin();
    let mut proc = Proc::start(bin.to_str().unwrap(), &env, &[]);
    // hello logs to stdout (tracing's default writer).
    for _ in 0..2 {
        proc.expect(5 * SEC, |l| l.contains("worker listening"));
    }
    let workers = children_of(proc.pid());
    proc.adopt(&workers);
    assert_eq!(workers.len(), 2, "the primary's children: {workers:?}");
    (proc, port, workers)
}

/// Starts the fixture in HTTP mode (`FIX_MODE=http`) with two workers; returns it and its port
/// once both workers listen.
fn start_fixture_http(workers: usize) -> (Proc, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let n = workers.to_string();
    let mut proc = Proc::start(
        FIXTURE,
        &[
            ("FIX_MODE", "http"),
            ("FIX_ADDR", &addr),
            ("FIX_WORKERS", &n),
        ],
        &[],
    );
    proc.expect_n(workers, 5 * SEC, "EV listening");
    (proc, port)
}

fn get(s: &mut TcpStream, path: &str) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").expect("send a request");
}

/// Checks a hello reply and returns the `(worker id, pid)` it names.
fn check_hello(reply: &Reply, workers: &[i32]) -> (u32, i32) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    let text = reply.text();
    let rest = text
        .strip_prefix("Hello from worker ")
        .and_then(|r| r.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("unexpected body {text:?}"));
    let (id, pid) = rest.split_once(" (pid ").expect("id and pid");
    let (id, pid): (u32, i32) = (id.parse().unwrap(), pid.parse().unwrap());
    assert_eq!(reply.header("x-herd-worker"), Some(id.to_string().as_str()));
    assert!(
        workers.contains(&pid),
        "pid {pid} is not a worker of {workers:?}"
    );
    (id, pid)
}

#[test]
fn hello_answers_from_the_real_workers() {
    let (_hello, port, workers) = start_hello(None);
    let mut seen: HashMap<u32, i32> = HashMap::new();
    for _ in 0..40 {
        let mut s = connect_retry(port);
        write!(s, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut r = BufReader::new(s);
        let reply = read_reply(&mut r).expect("a reply");
        assert!(reply.closes());
        let (id, pid) = check_hello(&reply, &workers);
        assert_eq!(*seen.entry(id).or_insert(pid), pid, "one pid per worker id");
        assert!(closed_by_peer(&mut r));
    }
    // 40 connections spread by the 4-tuple hash: both workers answer (all on one: 2^-39).
    assert_eq!(seen.len(), 2, "answered by {seen:?}");
}

#[test]
fn keep_alive_reuses_one_connection() {
    let (_hello, port, workers) = start_hello(None);
    let s = connect_retry(port);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut first = None;
    for _ in 0..5 {
        get(&mut w, "/");
        let reply = read_reply(&mut r).expect("a reply on the same connection");
        assert!(!reply.closes());
        let who = check_hello(&reply, &workers);
        assert_eq!(*first.get_or_insert(who), who, "one connection, one worker");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_fixture, port) = start_fixture_http(2);
    let mut s = connect_retry(port);
    let batch: String = (0..20)
        .map(|i| format!("GET /p{i} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    s.write_all(batch.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut worker = None;
    for i in 0..20 {
        let reply = read_reply(&mut r).expect("every pipelined request answered");
        assert_eq!(reply.status, 200);
        let text = reply.text();
        let (head, id) = text.trim_end().split_once(" from ").expect("fixture body");
        assert_eq!(head, format!("GET /p{i}"), "answer {i} out of order");
        assert_eq!(*worker.get_or_insert(id.to_string()), id);
    }
}

#[test]
fn malformed_request_gets_400_and_the_connection_closes() {
    let (_hello, port, _workers) = start_hello(None);
    let mut s = connect_retry(port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let reply = read_reply(&mut r).expect("a 400");
    assert_eq!(reply.status, 400);
    assert!(reply.closes());
    assert!(closed_by_peer(&mut r));
}

#[test]
fn shared_policy_serves() {
    let (_hello, port, workers) = start_hello(Some("shared"));
    let mut s = connect_retry(port);
    get(&mut s, "/");
    let reply = read_reply(&mut BufReader::new(s)).expect("a reply");
    check_hello(&reply, &workers);
}

#[test]
fn bogus_policy_exits_nonzero_with_one_line() {
    let port = free_port().to_string();
    let bin = hello_bin();
    let mut hello = Proc::start(
        bin.to_str().unwrap(),
        &[("PORT", &port), ("WORKERS", "2"), ("POLICY", "bogus")],
        &[],
    );
    let status = hello.wait(5 * SEC).expect("exits at once");
    assert!(!status.success(), "{status:?}");
    // Let the stderr reader catch up with the exited process.
    let err = hello.stderr_contains(SEC, &["\n"]);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got {err:?}");
    assert!(
        lines[0].contains("POLICY=bogus") && lines[0].contains("use one of reuseport, shared"),
        "names the fix: {err:?}"
    );
}

/// SIGTERM to the primary while a slow request is in flight (its body still arriving; the
/// handler then sleeps): the request is answered `200` with `Connection: close`, idle
/// keep-alive connections are closed, and the primary exits 0.
#[test]
fn sigterm_drains_in_flight_requests_and_closes_idle_ones() {
    // One worker: its idle connections closing proves it drained before the body completes.
    let (mut fixture, port) = start_fixture_http(1);
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut s = connect_retry(port);
        get(&mut s, "/");
        let mut r = BufReader::new(s);
        let reply = read_reply(&mut r).expect("a reply");
        assert!(!reply.closes());
        idle.push(r);
    }
    let mut busy = connect_retry(port);
    busy.write_all(b"POST /sleep?ms=300 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nsl")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let started = Instant::now();
    fixture.signal(libc::SIGTERM);
    for r in &mut idle {
        assert!(
            closed_by_peer(r),
            "an idle keep-alive connection stays open"
        );
    }
    busy.write_all(b"ow")
        .expect("the in-flight request is still read");
    let mut r = BufReader::new(busy);
    let reply = read_reply(&mut r).expect("the in-flight request is answered");
    assert_eq!(reply.status, 200);
    assert!(reply.text().starts_with("POST /sleep?ms=300 from "));
    assert!(reply.closes(), "answered with Connection: close: {reply:?}");
    assert!(closed_by_peer(&mut r));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "slept first"
    );
    let status = fixture.wait(5 * SEC).expect("the primary exits");
    assert_eq!(status.code(), Some(0));
}

/// SIGTERM while a handler is already running (the whole request arrived): the handler
/// finishes and the client gets its `200` before the connection closes.
#[test]
fn sigterm_lets_a_running_handler_finish() {
    let (mut fixture, port) = start_fixture_http(2);
    let mut busy = connect_retry(port);
    get(&mut busy, "/sleep?ms=400");
    std::thread::sleep(Duration::from_millis(100));
    fixture.signal(libc::SIGTERM);
    let mut r = BufReader::new(busy);
    let reply = read_reply(&mut r).expect("the running request is answered");
    assert_eq!(reply.status, 200);
    assert!(reply.text().starts_with("GET /sleep?ms=400 from "));
    assert!(closed_by_peer(&mut r));
    let status = fixture.wait(5 * SEC).expect("the primary exits");
    assert_eq!(status.code(), Some(0));
}
