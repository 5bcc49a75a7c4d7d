//! Messages between the primary and its workers: both ways, broadcast, the size limit, and
//! a worker that writes garbage on its channel.

mod util;

use util::*;

#[test]
fn message_round_trip_primary_to_worker_and_back() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_PRIMARY", "ping"),
        ],
        &[],
    );
    for _ in 0..2 {
        let m = c.expect(5 * SEC, |l| l.starts_with("EV message"));
        let id = field(&m, "id").unwrap();
        assert_eq!(
            field(&m, "data").unwrap(),
            format!("got:ping:{id}:from:{id}")
        );
    }
}

#[test]
fn worker_to_primary_message() {
    let mut c = Proc::start(FIXTURE, &[("FIX_WORKERS", "1"), ("FIX_MODE", "hello")], &[]);
    let m = c.expect(5 * SEC, |l| l.starts_with("EV message"));
    assert!(m.ends_with("data=hello from 1"), "{m}");
}

#[test]
fn broadcast_reaches_every_worker() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "3"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_PRIMARY", "broadcast"),
        ],
        &[],
    );
    let mut from: Vec<String> = (0..3)
        .map(|_| c.expect(5 * SEC, |l| l.contains("data=got:all:from:")))
        .map(|l| l.rsplit(':').next().unwrap().to_string())
        .collect();
    from.sort();
    assert_eq!(from, ["1", "2", "3"]);
}

#[test]
fn oversized_messages_get_a_clear_error_both_ways() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_MODE", "too-large"),
            ("FIX_PRIMARY", "too-large"),
        ],
        &[],
    );
    let w = c.expect(5 * SEC, |l| l.contains("data=send-error"));
    assert!(
        w.contains("kind=MessageTooLarge") && w.contains("exceeds the IPC limit of 1048576 bytes"),
        "{w}"
    );
    let p = c.expect(5 * SEC, |l| l.starts_with("PRIMARY send-error"));
    assert!(
        p.contains("kind=MessageTooLarge") && p.contains("exceeds the IPC limit"),
        "{p}"
    );
}

#[test]
fn garbage_from_a_worker_never_crashes_the_primary() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_MODE", "garbage"),
            ("FIX_MAX_MESSAGE", "1024"),
            ("FIX_ADDR", "127.0.0.1:0"),
        ],
        &[],
    );
    // The malformed frame and the oversized one are discarded; the stream stays in step.
    let m = c.expect(5 * SEC, |l| l.starts_with("EV message"));
    assert!(m.ends_with("data=still-alive"), "{m}");
    c.expect(5 * SEC, |l| l.starts_with("EV listening"));
    let err = c.stderr_contains(5 * SEC, &["malformed IPC message", "over the limit"]);
    assert!(
        err.contains("malformed IPC message") && err.contains("over the limit"),
        "{err}"
    );
}

#[test]
fn typed_json_messages_round_trip() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_PRIMARY", "json"),
            ("FIX_MODE", "json"),
        ],
        &[],
    );
    let m = c.expect(5 * SEC, |l| l.starts_with("EV message"));
    assert!(
        m.ends_with(r#"data={"id":1,"name":"resize-done","sizes":[128,256]}"#),
        "{m}"
    );
}
