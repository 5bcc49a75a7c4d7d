//! The chat example end to end: WebSocket clients on different workers, every message to
//! every client through the primary, sticky dispatch, a reload that closes with 1001, and the
//! handshakes that are refused.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};
use util::*;

/// One chat client: its socket and the worker that greeted it.
struct Client {
    ws: WebSocket<TcpStream>,
    worker: u32,
}

/// Connects a client to `/ws` from `from` (an address of 127.0.0.0/8; port 0), and reads its
/// greeting, which must name the worker the `101` named.
fn join(port: u16, from: [u8; 4]) -> Client {
    let deadline = Instant::now() + 10 * SEC;
    let stream = loop {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        socket
            .bind(&SocketAddr::from((from, 0)).into())
            .expect("bind the client's address");
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        match socket.connect_timeout(&to.into(), SEC) {
            Ok(()) => break TcpStream::from(socket),
            Err(e) if Instant::now() >= deadline => panic!("connect to {to}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    stream.set_read_timeout(Some(5 * SEC)).unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut ws, response) = tungstenite::client(url.as_str(), stream).expect("the handshake");
    let worker: u32 = response
        .headers()
        .get("x-herd-worker")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("the 101 names the worker");
    let greeting = text(&mut ws).expect("a greeting");
    assert!(
        greeting.starts_with(&format!("hello from worker {worker} ")),
        "{greeting:?} (the 101 said worker {worker})"
    );
    Client { ws, worker }
}

/// The next text message, or `None` when none comes within the read timeout.
fn text(ws: &mut WebSocket<TcpStream>) -> Option<String> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(frame)) => panic!("closed unexpectedly: {frame:?}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) => panic!("reading a chat message: {e}"),
        }
    }
}

/// Starts the chat example and waits for its workers.
fn chat(port: u16, workers: usize, policy: &str) -> Proc {
    let mut c = Proc::start(
        example("chat").to_str().unwrap(),
        &[
            ("PORT", &port.to_string()),
            ("WORKERS", &workers.to_string()),
            ("POLICY", policy),
        ],
        &[],
    );
    for _ in 0..workers {
        c.expect(30 * SEC, |l| l.contains("worker listening"));
    }
    c
}

/// Clients until both workers have at least two (the kernel spreads connections by hash).
fn clients_on_two_workers(port: u16) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..64 {
        let per = |w: u32| clients.iter().filter(|c| c.worker == w).count();
        let workers: std::collections::BTreeSet<u32> = clients.iter().map(|c| c.worker).collect();
        if workers.len() >= 2 && workers.iter().all(|&w| per(w) >= 2) {
            break;
        }
        let client = join(port, [127, 0, 0, 1]);
        // Keep the spread even: at most three per worker.
        if per(client.worker) < 3 {
            clients.push(client);
        }
    }
    let workers: std::collections::BTreeSet<u32> = clients.iter().map(|c| c.worker).collect();
    assert!(workers.len() >= 2, "64 connections all went to {workers:?}");
    clients
}

/// Every client sends one message; every client must receive all of them, exactly once, and
/// in the same order as every other client (the primary orders them).
fn everyone_hears_everything(clients: &mut [Client], round: &str) {
    let sent: Vec<String> = (0..clients.len())
        .map(|i| {
            format!(
                "{round}: message {i} from a client of worker {}",
                clients[i].worker
            )
        })
        .collect();
    for (client, message) in clients.iter_mut().zip(&sent) {
        client.ws.send(Message::text(message.as_str())).unwrap();
    }
    let mut orders = Vec::new();
    for client in clients.iter_mut() {
        let mut got = Vec::new();
        for _ in 0..sent.len() {
            match text(&mut client.ws) {
                Some(t) => got.push(t),
                None => panic!(
                    "a client of worker {} got only {got:?} of {sent:?}",
                    client.worker
                ),
            }
        }
        let mut sorted = got.clone();
        sorted.sort();
        let mut expected = sent.clone();
        expected.sort();
        assert_eq!(sorted, expected, "a client of worker {}", client.worker);
        orders.push(got);
    }
    // Nothing more (no duplicate) arrives.
    for client in clients.iter_mut() {
        client
            .ws
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(text(&mut client.ws), None, "worker {}", client.worker);
        client.ws.get_ref().set_read_timeout(Some(5 * SEC)).unwrap();
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "clients saw different orders: {orders:#?}"
    );
}

#[test]
fn every_message_reaches_every_client_on_every_worker_and_a_reload_moves_them() {
    let port = free_port();
    let mut c = chat(port, 2, "reuseport");
    let mut clients = clients_on_two_workers(port);
    everyone_hears_everything(&mut clients, "first");

    // A reload replaces both workers: each client is told 1001 (going away).
    let old: Vec<u32> = clients.iter().map(|c| c.worker).collect();
    c.signal(libc::SIGHUP);
    for client in &mut clients {
        client
            .ws
            .get_ref()
            .set_read_timeout(Some(30 * SEC))
            .unwrap();
        let frame = match client.ws.read() {
            Ok(Message::Close(frame)) => frame,
            Ok(other) => panic!("expected a close frame, got {other:?}"),
            Err(e) => panic!("a client of worker {} saw {e}", client.worker),
        };
        let frame = frame.expect("a close code");
        assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
        // The client answers; the server then closes the socket.
        loop {
            match client.ws.read() {
                Err(tungstenite::Error::ConnectionClosed) => break,
                Ok(_) => {}
                Err(e) => panic!("finishing the close handshake: {e}"),
            }
        }
    }
    // The clients come back, to the new workers, and the chat goes on.
    let max_old = old.iter().copied().max().unwrap();
    let mut back: Vec<Client> = (0..clients.len())
        .map(|_| join(port, [127, 0, 0, 1]))
        .collect();
    for client in &back {
        assert!(
            client.worker > max_old,
            "reconnected to old worker {}",
            client.worker
        );
    }
    everyone_hears_everything(&mut back, "after the reload");
    c.signal(libc::SIGTERM);
    let status = c.wait(20 * SEC).expect("the primary exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sticky_dispatch_keeps_a_client_address_on_one_worker() {
    let port = free_port();
    let _c = chat(port, 2, "rr-sticky");
    for last in 1..=4u8 {
        let from = [127, 0, 0, last];
        let mut clients: Vec<Client> = (0..3).map(|_| join(port, from)).collect();
        let first = clients[0].worker;
        assert!(
            clients.iter().all(|c| c.worker == first),
            "clients from {from:?} went to workers {:?}",
            clients.iter().map(|c| c.worker).collect::<Vec<_>>()
        );
        everyone_hears_everything(&mut clients, &format!("from {from:?}"));
    }
}

#[test]
fn bad_handshakes_are_refused_and_the_page_uses_the_socket() {
    let port = free_port();
    let _c = chat(port, 1, "reuseport");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let page = http_get(addr, "/").unwrap();
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    assert!(page.contains("new WebSocket("), "{page}");
    assert!(page.contains("/ws\""), "{page}");

    let ask = |extra: &str| {
        let mut s = connect_retry(port);
        s.set_read_timeout(Some(5 * SEC)).unwrap();
        write!(s, "GET /ws HTTP/1.1\r\nHost: t\r\n{extra}\r\n").unwrap();
        let mut r = std::io::BufReader::new(s);
        read_reply(&mut r).expect("an answer")
    };
    let handshake = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    // Not asking for WebSocket at all: 426, saying what would do.
    let reply = ask("");
    assert_eq!(reply.status, 426, "{}", reply.text());
    assert_eq!(reply.header("upgrade"), Some("websocket"));
    // A key that is not 16 bytes of base64, or none.
    for key in ["Sec-WebSocket-Key: c2hvcnQ=\r\n", ""] {
        let reply = ask(&format!("{handshake}{key}"));
        assert_eq!(reply.status, 400, "{key:?}: {}", reply.text());
    }
    // No `Connection: Upgrade`.
    let reply = ask(
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    // Another version: 426 with the one spoken here.
    let reply = ask(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    assert_eq!(reply.status, 426, "{}", reply.text());
    assert_eq!(reply.header("sec-websocket-version"), Some("13"));

    // The RFC's own example key gets the RFC's accept key, then the greeting as a text frame.
    let mut s = connect_retry(port);
    s.set_read_timeout(Some(5 * SEC)).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: t\r\n{handshake}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut r = std::io::BufReader::new(s);
    let reply = read_reply(&mut r).expect("a 101");
    assert_eq!(reply.status, 101, "{}", reply.text());
    assert_eq!(
        reply.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let mut frame = [0u8; 2];
    r.read_exact(&mut frame).unwrap();
    assert_eq!(frame[0], 0x81, "a final text frame");
    let mut greeting = vec![0u8; usize::from(frame[1])];
    r.read_exact(&mut greeting).unwrap();
    assert!(
        greeting.starts_with(b"hello from worker 1 "),
        "{greeting:?}"
    );
}

#[test]
fn curl_gets_switched_and_greeted_instead_of_hanging() {
    let port = free_port();
    let _c = chat(port, 1, "reuseport");
    connect_retry(port);
    // curl 7.x does not speak WebSocket, but sends the handshake and prints what comes back;
    // it stays connected until its --max-time (exit 28), as a WebSocket client would.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", "-N", "--max-time", "2"])
        .args(["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"])
        .args(["-H", "Sec-WebSocket-Version: 13"])
        .args(["-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])
        .arg(format!("http://127.0.0.1:{port}/ws"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("hello from worker 1 "), "{text:?}");
}
