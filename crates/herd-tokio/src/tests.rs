//! The drain as the server sees it, on real sockets (the whole worker under a real primary
//! is tested by the workspace's tests/tokio_adapter.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::listener::Listener;
use crate::shutdown::{Drain, Shutdown};

async fn listener(drain: &Arc<Drain>) -> Listener {
    let inner = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Nothing is handed over here (its sender is gone at once).
    Listener::new(
        inner,
        drain.clone(),
        tokio::sync::mpsc::unbounded_channel().1,
    )
}

fn shutdown(drain: &Arc<Drain>, linger: Duration) -> Shutdown {
    Shutdown {
        drain: drain.clone(),
        linger,
    }
}

#[tokio::test]
async fn a_draining_listener_leaves_queued_connections_in_the_socket() {
    let drain = Drain::new();
    let l = listener(&drain).await;
    let addr = l.local_addr().unwrap();
    let _first = TcpStream::connect(addr).await.unwrap();
    let accepted = timeout(Duration::from_secs(5), l.accept()).await;
    assert!(accepted.expect("accepts before the drain").is_ok());
    drain.begin();
    // Queued in the kernel (the handshake completes without accept), never taken.
    let _queued = TcpStream::connect(addr).await.unwrap();
    assert!(timeout(Duration::from_millis(300), l.accept())
        .await
        .is_err());
    // Still there for another process holding the socket: taken by the inner listener.
    let inner = l.into_inner();
    let taken = timeout(Duration::from_secs(5), inner.accept()).await;
    assert!(taken.expect("the queued connection waited").is_ok());
}

#[tokio::test]
async fn an_accept_in_progress_stops_when_the_drain_begins() {
    let drain = Drain::new();
    let l = Arc::new(listener(&drain).await);
    let addr = l.local_addr().unwrap();
    let waiting = {
        let l = l.clone();
        tokio::spawn(async move { l.accept().await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    drain.begin();
    let _late = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "accepted after the drain began");
    waiting.abort();
}

#[tokio::test]
async fn the_signal_waits_the_linger_only_while_connections_are_open() {
    let drain = Drain::new();
    let l = listener(&drain).await;
    let addr = l.local_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (conn, _) = l.accept().await.unwrap();
    let s = shutdown(&drain, Duration::from_secs(30));
    let signal = tokio::spawn(s.signal());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!signal.is_finished(), "resolved before the drain");
    drain.begin();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!signal.is_finished(), "resolved with a connection open");
    let waiting = tokio::spawn({
        let s = s.clone();
        async move { s.connections_closed().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "a connection is open");
    let closed = Instant::now();
    drop(conn);
    timeout(Duration::from_secs(5), waiting)
        .await
        .expect("connections_closed resolves once the last one closed")
        .unwrap();
    timeout(Duration::from_secs(5), signal)
        .await
        .expect("resolves once the last connection closed")
        .unwrap();
    assert!(closed.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_signal_resolves_at_the_end_of_the_linger() {
    let drain = Drain::new();
    let l = listener(&drain).await;
    let addr = l.local_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (_conn, _) = l.accept().await.unwrap();
    let s = shutdown(&drain, Duration::from_millis(300));
    drain.begin();
    let start = Instant::now();
    timeout(Duration::from_secs(5), s.signal())
        .await
        .expect("resolves after the linger");
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn responses_carry_connection_close_only_while_draining() {
    let drain = Drain::new();
    let s = shutdown(&drain, Duration::ZERO);
    let mut headers = HeaderMap::new();
    assert!(!s.connection_close(&mut headers));
    assert!(headers.get("connection").is_none());
    drain.begin();
    assert!(s.is_draining());
    assert!(s.connection_close(&mut headers));
    assert_eq!(headers.get("connection").unwrap(), "close");
}

#[tokio::test]
async fn handed_over_connections_are_served_with_their_bytes_first_even_while_draining() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let drain = Drain::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let inner = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l = Listener::new(inner, drain.clone(), rx);
    // A connection accepted elsewhere (another worker's socket, in the primary's hands).
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(other.local_addr().unwrap())
        .await
        .unwrap();
    let (taken, _) = other.accept().unwrap();
    drain.begin();
    tx.send((taken, b"GET / HT".to_vec())).unwrap();
    let (mut conn, peer) = timeout(Duration::from_secs(5), l.accept())
        .await
        .expect("a handed-over connection is taken while draining")
        .unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    client.write_all(b"TP/1.1\r\n").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 16 {
        let mut buf = [0u8; 64];
        let n = timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("reads")
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"GET / HTTP/1.1\r\n");
}
