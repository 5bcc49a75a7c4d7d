//! Nothing lost: rolling reloads, scale-up, a binary upgrade, a kill -9 and a failed reload,
//! each under load (32 clients, a new connection per request) against a real hello cluster.
//! Every scenario prints its figures next to the steady state measured just before:
//! `cargo test --test nothing_lost -- --nocapture`.

mod lost;
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use lost::*;
use util::{alive, http_get, SEC};

const STEADY: Duration = Duration::from_secs(1);

#[test]
fn five_rolling_reloads_in_a_row_lose_nothing() {
    let _serial = serial();
    let mut c = Hello::start(&example("hello"), 2);
    let before = steady(c.addr, STEADY);
    let load = Load::start(c.addr, chunk_for(&before));
    std::thread::sleep(Duration::from_millis(200));
    for i in 1..=5 {
        c.proc.signal(libc::SIGHUP);
        // Finished: every slot's new worker listens and both old ones exited.
        c.wait_count("rolling reload complete", i, 10 * SEC);
        c.wait_count("worker exited", 2 * i, 10 * SEC);
    }
    std::thread::sleep(Duration::from_millis(200));
    let during = load.finish();
    print("5 rolling reloads", &before, &during);
    during.assert_nothing_lost("5 rolling reloads");
    assert_eq!(c.count("worker forked"), 12, "2 + 5 × 2 workers");
    assert!(
        during.workers.contains_key("11") || during.workers.contains_key("12"),
        "the last generation served: {:?}",
        during.workers
    );
}

#[test]
fn scale_up_under_load_loses_nothing() {
    let _serial = serial();
    let mut c = Hello::start(&example("hello"), 2);
    let before = steady(c.addr, STEADY);
    let load = Load::start(c.addr, chunk_for(&before));
    std::thread::sleep(Duration::from_millis(200));
    c.proc.signal(libc::SIGTTIN);
    c.wait_count("worker listening", 3, 5 * SEC);
    c.proc.signal(libc::SIGTTIN);
    c.wait_count("worker listening", 4, 5 * SEC);
    std::thread::sleep(Duration::from_millis(500));
    let during = load.finish();
    print("scale-up 2 -> 4", &before, &during);
    during.assert_nothing_lost("scale-up");
    for id in ["3", "4"] {
        assert!(
            during.workers.get(id).is_some_and(|n| *n > 0),
            "new worker {id} took traffic: {:?}",
            during.workers
        );
    }
}

#[test]
fn a_binary_upgrade_under_load_switches_responses_and_loses_nothing() {
    let _serial = serial();
    let dir = TempDir::new("upgrade");
    let path = dir.0.join("hello");
    std::fs::copy(example("hello"), &path).unwrap();
    let mut c = Hello::start(&path, 2);
    assert!(http_get(c.addr, "/").unwrap().contains("Hello from worker"));
    let before = steady(c.addr, STEADY);
    let load = Load::start(c.addr, chunk_for(&before));
    std::thread::sleep(Duration::from_millis(200));
    replace_file(&path, &example("hello_next"));
    let exe = std::fs::read_link(format!("/proc/{}/exe", c.proc.pid())).unwrap();
    eprintln!("[binary upgrade] the primary's /proc/pid/exe now reads {exe:?}");
    c.proc.signal(libc::SIGHUP);
    c.wait_count("rolling reload complete", 1, 10 * SEC);
    c.wait_count("worker exited", 2, 10 * SEC);
    std::thread::sleep(Duration::from_millis(200));
    let during = load.finish();
    print("binary upgrade", &before, &during);
    during.assert_nothing_lost("binary upgrade");
    for _ in 0..10 {
        let body = http_get(c.addr, "/").unwrap();
        assert!(body.contains("Hello again from worker"), "{body}");
    }
}

#[test]
fn kill_9_of_a_worker_under_load_loses_at_most_its_connections() {
    let _serial = serial();
    let workers = 2;
    let mut c = Hello::start(&example("hello"), workers);
    let before = steady(c.addr, STEADY);
    let load = Load::start(c.addr, chunk_for(&before));
    std::thread::sleep(Duration::from_millis(300));
    let victim = c.pid_of_slot(0);
    // SAFETY: kill(2) on a worker of our cluster.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let waited = c.wait_count("worker listening", workers + 1, 5 * SEC);
    eprintln!(
        "[kill -9] the slot's replacement listened {} ms after the kill",
        waited.as_millis()
    );
    assert!(waited < SEC, "a replacement listens within 1 s: {waited:?}");
    std::thread::sleep(Duration::from_millis(300));
    let during = load.finish();
    print("kill -9 of one worker", &before, &during);
    let bound = (CLIENTS / workers) as u64;
    assert!(
        during.errors.total() <= bound,
        "at most {bound} failures (the connections the dead worker held): {:?}",
        during.errors
    );
    assert_eq!(during.errors.connect, 0, "no connect error");
    assert_eq!(during.errors.timeout, 0, "no timeout");
    assert_eq!(during.sent, during.completed + during.errors.total());
    assert!(during.workers.contains_key("3"), "{:?}", during.workers);
}

#[test]
fn connections_queued_on_a_dead_workers_slot_are_answered_by_its_replacement() {
    let _serial = serial();
    let mut c = Hello::start(&example("hello"), 1);
    let worker = c.pid_of_slot(0);
    // SAFETY: kill(2) on the cluster's only worker: it accepts nothing from here on.
    unsafe { libc::kill(worker, libc::SIGSTOP) };
    let queued: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&c.addr, 2 * SEC).expect("queued by the kernel");
            s.set_read_timeout(Some(5 * SEC)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: as above; SIGKILL ends a stopped process too.
    unsafe { libc::kill(worker, libc::SIGKILL) };
    let killed = Instant::now();
    let mut answered = 0;
    for (i, mut s) in queued.into_iter().enumerate() {
        let mut out = String::new();
        match s.read_to_string(&mut out) {
            Ok(_) if out.starts_with("HTTP/1.1 200") && out.contains("Hello from worker 2 ") => {
                answered += 1
            }
            other => panic!("queued connection {i}: {other:?} {out:?}"),
        }
    }
    eprintln!(
        "[queued on a dead worker] {answered} of 8 queued connections answered with 200 by \
         the replacement, the last {} ms after the kill",
        killed.elapsed().as_millis()
    );
    assert!(!alive(worker));
    c.wait_count("worker listening", 2, 5 * SEC);
}

#[test]
fn a_reload_whose_new_binary_cannot_start_keeps_the_old_workers_serving() {
    let _serial = serial();
    let dir = TempDir::new("broken");
    let path = dir.0.join("hello");
    std::fs::copy(example("hello"), &path).unwrap();
    let mut c = Hello::start(&path, 2);
    let before = steady(c.addr, STEADY);
    let load = Load::start(c.addr, chunk_for(&before));
    std::thread::sleep(Duration::from_millis(200));
    replace_file(&path, std::path::Path::new("/bin/false"));
    c.proc.signal(libc::SIGHUP);
    c.wait_count("reload stopped", 1, 10 * SEC);
    std::thread::sleep(Duration::from_millis(500));
    let during = load.finish();
    print("reload with a broken binary", &before, &during);
    during.assert_nothing_lost("failed reload");
    assert_eq!(
        c.count("worker forked"),
        3,
        "the reload stopped at its first slot"
    );
    assert_eq!(c.count("worker exited"), 0, "no old worker left");
    let ids: Vec<&String> = during.workers.keys().collect();
    assert_eq!(ids, ["1", "2"], "the old workers kept serving");
}
