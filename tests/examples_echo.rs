//! The echo example: a raw-TCP protocol over the cluster's event loop, end to end.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use util::*;

#[test]
fn echo_returns_every_byte_from_every_worker_and_stops_cleanly() {
    let port = free_port();
    let mut c = Proc::start(
        example("echo").to_str().unwrap(),
        &[("PORT", &port.to_string()), ("WORKERS", "2")],
        &[],
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut conns = Vec::new();
    for i in 0..20 {
        let mut s = connect_retry(port);
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let msg = format!("line {i} \u{e9}\u{1f980}\n");
        s.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
        conns.push(s);
    }
    // A large write comes back whole, however the loop splits it.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let big = big.clone();
        std::thread::spawn(move || w.write_all(&big))
    };
    let mut back = vec![0u8; big.len()];
    s.read_exact(&mut back).unwrap();
    writer.join().unwrap().unwrap();
    assert!(back == big, "a 1 MB echo came back altered");
    // SIGTERM drains: open connections are closed, the primary exits 0.
    c.signal(libc::SIGTERM);
    let status = c.wait(10 * SEC).expect("the primary exits");
    assert!(status.success(), "{status:?}");
    for mut s in conns {
        assert!(
            closed_by_peer(&mut s),
            "an echo connection stayed open after the drain"
        );
    }
}

#[test]
fn the_examples_log_without_colour_codes_into_a_pipe() {
    let port = free_port();
    let mut c = Proc::start(
        example("echo").to_str().unwrap(),
        &[("PORT", &port.to_string()), ("WORKERS", "1")],
        &[],
    );
    let line = c.expect(10 * SEC, |l| l.contains("worker listening"));
    assert!(!line.contains('\x1b'), "{line:?}");
    assert!(c.seen.iter().all(|l| !l.contains('\x1b')), "{:?}", c.seen);
}
