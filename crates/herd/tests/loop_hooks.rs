//! The loop's side of the hooks: connections handed over by the primary are served and
//! acknowledged, and the open count is reported.

mod util;

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herd::event_loop::Config;
use util::{hello, roundtrip, start};

/// Waits until the loop has reported `open` connections.
fn wait_for_load(server: &util::Server, open: usize) {
    let deadline = Instant::now() + util::TIMEOUT;
    while server.seen.load.load(Ordering::SeqCst) != open {
        assert!(Instant::now() < deadline, "load never became {open}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn handed_over_connections_are_served_and_acknowledged() {
    let mut server = start(hello(), Config::default());
    // Play the primary: accept elsewhere and pass the accepted socket on.
    let elsewhere = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client =
        std::net::TcpStream::connect(elsewhere.local_addr().expect("addr")).expect("connect");
    client
        .set_read_timeout(Some(util::TIMEOUT))
        .expect("timeout");
    let (accepted, _) = elsewhere.accept().expect("accept");
    server.hand_over(accepted);

    let reply = roundtrip(&mut client, "GET /handed HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.body, b"hello /handed");
    assert_eq!(server.seen.took.load(Ordering::SeqCst), 1);
    // The load report ends the loop iteration that may already have answered: wait for it.
    wait_for_load(&server, 1);
    drop(client);
    wait_for_load(&server, 0);
    server.stop().expect("drain");
}
