//! Recycling with real processes and load: `max_requests` under a new-connection-per-request
//! load recycles every worker several times, one at a time, with no failed request;
//! `max_rss` recycles the worker that leaks and no other.

#[allow(unused_imports)] // its re-export of `example` serves other tests
mod lost;
mod util;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use util::*;

fn http_cluster(extra: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let mut env = vec![
        ("FIX_WORKERS", "2"),
        ("FIX_MODE", "http"),
        ("FIX_ADDR", "127.0.0.1:0"),
    ];
    env.extend_from_slice(extra);
    let mut c = Proc::start(FIXTURE, &env, &[]);
    let l = c.expect_n(2, 10 * SEC, "EV listening");
    let addr = field(&l[0], "addr").unwrap().parse().unwrap();
    (c, addr)
}

/// `(slot, id)` of every worker that left by `cause`, in order.
fn exits(c: &Proc, cause: &str) -> Vec<(String, String)> {
    c.seen
        .iter()
        .filter(|l| l.starts_with("EV exit") && field(l, "cause") == Some(cause))
        .map(|l| {
            (
                field(l, "slot").unwrap().to_string(),
                field(l, "id").unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn max_requests_recycles_every_worker_several_times_under_load_losing_nothing() {
    let _serial = lost::serial();
    let (mut c, addr) = http_cluster(&[("FIX_MAX_REQUESTS", "400,200")]);
    let load = lost::Load::start(addr, 500);
    let started = Instant::now();
    // Until both slots were recycled three times (or 30 s, then the assertion says).
    while started.elapsed() < 30 * SEC {
        c.drain_for(Duration::from_millis(200));
        let done = exits(&c, "recycle");
        let per_slot = |s: &str| done.iter().filter(|(slot, _)| slot == s).count();
        if per_slot("0") >= 3 && per_slot("1") >= 3 {
            break;
        }
    }
    let totals = load.finish();
    c.drain_for(Duration::from_millis(300));
    let done = exits(&c, "recycle");
    eprintln!(
        "max_requests 400 (+0..200): {} recycles in {:.1} s under load; {} requests sent, {} answered, {} failed ({:?})",
        done.len(),
        totals.elapsed.as_secs_f64(),
        totals.sent,
        totals.completed,
        totals.errors.total(),
        totals.errors
    );
    totals.assert_nothing_lost("recycling under load");
    for slot in ["0", "1"] {
        let n = done.iter().filter(|(s, _)| s == slot).count();
        assert!(n >= 3, "slot {slot} recycled {n} times: {done:?}");
    }
    // One slot at a time: a recycle's new worker is forked only after the previous one's
    // listens (so two workers never recycle at the same moment, whatever their limits).
    let events: Vec<&String> = c
        .seen
        .iter()
        .filter(|l| l.starts_with("EV fork") || l.starts_with("EV listening"))
        .collect();
    let mut waiting: Option<String> = None;
    for l in events
        .iter()
        .skip_while(|l| !l.starts_with("EV listening id=2 "))
    {
        let id = field(l, "id").unwrap().to_string();
        if l.starts_with("EV fork") {
            assert!(
                waiting.is_none(),
                "worker {id} forked while worker {waiting:?} was not listening yet"
            );
            waiting = Some(id);
        } else if waiting.as_deref() == Some(id.as_str()) {
            waiting = None;
        }
    }
    // None of them was killed: each drained and exited cleanly.
    for l in c.seen.iter().filter(|l| l.starts_with("EV exit")) {
        assert_eq!(field(l, "code"), Some("0"), "{l}");
    }
}

#[test]
fn max_rss_recycles_the_worker_that_grows_and_no_other() {
    let (mut c, addr) = http_cluster(&[("FIX_MAX_RSS_MB", "96")]);
    // One keep-alive connection, so every request reaches the same worker.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut leaker = None;
    for _ in 0..14 {
        write!(s, "GET /leak?mb=8 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let reply = read_reply(&mut r).unwrap();
        assert_eq!(reply.status, 200);
        let id = reply.header("x-herd-worker").unwrap().to_string();
        leaker.get_or_insert(id);
    }
    let leaker = leaker.unwrap();
    let exit = c.expect(10 * SEC, |l| l.starts_with("EV exit"));
    assert_eq!(field(&exit, "id"), Some(leaker.as_str()), "{exit}");
    assert_eq!(field(&exit, "cause"), Some("recycle"), "{exit}");
    assert_eq!(
        field(&exit, "code"),
        Some("0"),
        "drained, not killed: {exit}"
    );
    let err = c.stderr();
    assert!(
        err.contains(&format!("recycling worker {leaker} (pid"))
            && err.contains("MiB (limit 96 MiB)"),
        "{err}"
    );
    // The other worker stays (sampled a few more times).
    c.drain_for(3 * SEC);
    assert_eq!(exits(&c, "recycle").len(), 1, "{:?}", c.seen);
    // The keep-alive connection moved to the new worker and still works.
    write!(s, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let reply = read_reply(&mut r).unwrap();
    assert_eq!(reply.status, 200);
    assert_ne!(reply.header("x-herd-worker"), Some(leaker.as_str()));
}
