//! The sessions example against a real `redis-server` (Debian's, started here on a free
//! port): a session created on one worker is read on another, `/slow` runs on the blocking
//! pool, and with Redis down `/me` answers 503 saying so within the client's timeouts, the
//! fast routes keep working and nothing panics; with Redis back, sessions work again.

mod util;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::*;

/// A `redis-server` on `port`, without persistence; killed on drop.
fn redis(port: u16) -> Proc {
    let p = port.to_string();
    let server = Proc::start(
        "redis-server",
        &[],
        &[
            "--port",
            &p,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    let deadline = Instant::now() + 5 * SEC;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// One request on a fresh connection.
fn get(port: u16, path: &str, cookie: Option<&str>) -> Reply {
    let mut s = connect_retry(port);
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: sid={c}\r\n"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n{cookie}\r\n").unwrap();
    read_reply(&mut BufReader::new(s)).expect("a response")
}

#[test]
fn sessions_live_in_redis_and_outlive_the_worker_that_made_them() {
    let redis_port = free_port();
    let mut store = Some(redis(redis_port));
    let port = free_port();
    let url = format!("redis://127.0.0.1:{redis_port}");
    let app = Proc::start(
        example("sessions").to_str().unwrap(),
        &[
            ("PORT", &port.to_string()),
            ("WORKERS", "2"),
            ("REDIS_URL", &url),
        ],
        &[],
    );
    assert_eq!(get(port, "/", None).status, 200);
    app.adopt(&children_of(app.pid()));

    let login = get(port, "/login?user=alice%20b", None);
    assert_eq!(login.status, 200, "{}", login.text());
    let maker = login.header("x-herd-worker").unwrap().to_string();
    let set_cookie = login.header("set-cookie").expect("a session cookie");
    let sid = set_cookie
        .strip_prefix("sid=")
        .and_then(|v| v.split(';').next())
        .expect("sid=...")
        .to_string();

    // New connections land on either worker: find one served by the other.
    let mut other = None;
    for _ in 0..200 {
        let me = get(port, "/me", Some(&sid));
        assert_eq!((me.status, me.text()), (200, "alice b\n".to_string()));
        if me.header("x-herd-worker") != Some(maker.as_str()) {
            other = me.header("x-herd-worker").map(str::to_string);
            break;
        }
    }
    assert!(other.is_some(), "no request reached the second worker");

    assert_eq!(get(port, "/me", None).status, 401);
    assert_eq!(
        get(port, "/me", Some("0123456789abcdef0123456789abcdef")).status,
        401
    );
    let slow = get(port, "/slow?ms=100", None);
    assert_eq!(
        (slow.status, slow.text()),
        (200, "waited 100 ms\n".to_string())
    );

    // Redis goes away: a 503 that says so, in bounded time, and the rest still works.
    drop(store.take());
    for _ in 0..4 {
        let started = Instant::now();
        let me = get(port, "/me", Some(&sid));
        assert_eq!(me.status, 503, "{}", me.text());
        assert!(
            me.text().contains("session store unavailable: redis"),
            "{}",
            me.text()
        );
        assert_eq!(me.header("retry-after"), Some("1"));
        assert!(
            started.elapsed() < 3 * SEC,
            "the 503 took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(get(port, "/login?user=carol", None).status, 503);
    assert_eq!(get(port, "/", None).status, 200);

    // Redis is back (empty): new sessions work again without a restart.
    let _store = redis(redis_port);
    let login = get(port, "/login?user=dave", None);
    assert_eq!(login.status, 200, "{}", login.text());
    let sid = login
        .header("set-cookie")
        .and_then(|c| c.strip_prefix("sid="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    assert_eq!(get(port, "/me", Some(&sid)).text(), "dave\n");
    assert!(!app.stderr().contains("panicked"), "{}", app.stderr());
    app.signal(libc::SIGTERM);
    let mut app = app;
    assert!(app.wait(10 * SEC).is_some_and(|s| s.success()));
}
