//! Upgrades and WebSocket on a real event loop (in this process, real sockets): a protocol of
//! the test's own after a `101`, woken from another thread while it reads; WebSocket echo,
//! ping, close handshake, message limit, pushes from other threads, and the drain's `1001`.

mod util;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herd::event_loop::{self, Config, Hooks, Inbound};
use herd::protocol::{Connection, Flow, Step, Wake};
use herd::ws::{self, Message, Ws, WsHandler, WsSender};
use herd::{Handler, Http, Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use util::{read_reply, SEC};

/// The loop's surroundings: a byte on the control socket drains the loop, its end stops it.
struct Control(UnixStream);

impl Hooks for Control {
    fn fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }
    fn read(&mut self, inbound: &mut Vec<Inbound>) -> std::io::Result<()> {
        let mut buf = [0u8; 16];
        loop {
            match (&self.0).read(&mut buf) {
                Ok(0) => {
                    inbound.push(Inbound::Closed);
                    return Ok(());
                }
                Ok(_) => inbound.push(Inbound::Disconnect),
                Err(e) => return Err(e),
            }
        }
    }
    fn serving(&mut self, _addrs: &[SocketAddr]) {}
}

/// An event loop serving `handler` on a thread; stopped and joined on drop.
struct Server {
    addr: SocketAddr,
    control: Option<UnixStream>,
    exited: Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(handler: impl Handler, config: Config) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (control, theirs) = UnixStream::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let (tx, exited) = channel();
        let thread = std::thread::spawn(move || {
            let served = event_loop::run(
                vec![listener],
                Arc::new(Http::new(handler)),
                &config,
                &mut Control(theirs),
            );
            served.expect("the loop");
            let _ = tx.send(());
        });
        Server {
            addr,
            control: Some(control),
            exited,
            thread: Some(thread),
        }
    }

    /// Start draining, as a worker told to leave.
    fn drain(&self) {
        self.control.as_ref().unwrap().write_all(b"d").unwrap();
    }

    /// Whether the loop returned within `timeout`.
    fn exits_within(&self, timeout: Duration) -> bool {
        self.exited.recv_timeout(timeout).is_ok()
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(5 * SEC)).unwrap();
        s
    }

    fn ws(&self) -> tungstenite::WebSocket<TcpStream> {
        let url = format!("ws://{}/ws", self.addr);
        tungstenite::client(url.as_str(), self.connect())
            .expect("the handshake")
            .0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.control.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// After the switch: every byte back in upper case, and whatever another thread pushed.
struct Shout {
    pushed: Arc<Mutex<Vec<u8>>>,
}

impl Connection for Shout {
    fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, _now: Instant) -> Step {
        out.extend(input.iter().map(u8::to_ascii_uppercase));
        Step {
            consumed: input.len(),
            flow: Flow::Continue,
        }
    }
    fn deadline(&self) -> Option<Instant> {
        None
    }
    fn on_timeout(&mut self, _out: &mut Vec<u8>, _now: Instant) -> Flow {
        Flow::Close
    }
    fn on_drain(&mut self, _out: &mut Vec<u8>) -> Flow {
        Flow::Close
    }
    fn on_wake(&mut self, _input: &[u8], out: &mut Vec<u8>, _now: Instant) -> Step {
        out.append(&mut self.pushed.lock().unwrap());
        Step {
            consumed: 0,
            flow: Flow::Continue,
        }
    }
}

#[test]
fn a_protocol_of_its_own_serves_the_connection_after_101_and_is_woken_while_it_reads() {
    let (wakes_tx, wakes) = channel::<(Wake, Arc<Mutex<Vec<u8>>>)>();
    let wakes_tx = Mutex::new(wakes_tx);
    let server = Server::start(
        move |req: &Request<'_>, res: &mut Response| {
            if req.path() != "/shout" {
                res.body("plain\n");
                return;
            }
            let pushed = Arc::new(Mutex::new(Vec::new()));
            let tx = wakes_tx.lock().unwrap().clone();
            res.upgrade("shout", move |wake| {
                tx.send((wake.expect("the loop gives a Wake"), Arc::clone(&pushed)))
                    .unwrap();
                Shout { pushed }
            });
        },
        Config::default(),
    );
    let mut s = server.connect();
    // The first bytes of the new protocol travel with the request.
    s.write_all(
        b"GET /shout HTTP/1.1\r\nHost: t\r\nUpgrade: shout\r\nConnection: Upgrade\r\n\r\nabc",
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let reply = read_reply(&mut r).unwrap();
    assert_eq!(reply.status, 101);
    assert_eq!(reply.header("upgrade"), Some("shout"));
    assert_eq!(reply.header("connection"), Some("Upgrade"));
    let mut got = [0u8; 3];
    r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ABC");
    // Another thread pushes while the connection is reading (it never returned Wait).
    let (wake, pushed) = wakes.recv_timeout(5 * SEC).unwrap();
    std::thread::spawn(move || {
        pushed.lock().unwrap().extend_from_slice(b"tick");
        wake.wake();
    })
    .join()
    .unwrap();
    let mut got = [0u8; 4];
    r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"tick");
    // What looks like HTTP is the new protocol's input now.
    s.write_all(b"get / http/1.1\r\n\r\n").unwrap();
    let mut got = [0u8; 18];
    r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
}

/// Echoes, reports its closing code, and hands out its sender.
struct Echo {
    closed: Sender<(u16, String)>,
    senders: Sender<WsSender>,
}

impl WsHandler for Echo {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        let _ = self.senders.send(ws.sender());
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, msg: Message<'_>) {
        match msg {
            Message::Text("close please") => ws.close(4000, "as you wish"),
            Message::Text("panic") => panic!("a handler panic (expected by the test)"),
            Message::Text(text) => ws.send_text(text),
            Message::Binary(data) => ws.send_binary(data),
        };
    }
    fn on_close(&mut self, code: u16, reason: &str) {
        let _ = self.closed.send((code, reason.to_string()));
    }
}

/// A WebSocket echo server with a 1 KiB message limit and a 500 ms close timeout.
fn echo_server() -> (Server, Receiver<(u16, String)>, Receiver<WsSender>) {
    let (closed_tx, closed) = channel();
    let (senders_tx, senders) = channel();
    let (closed_tx, senders_tx) = (Mutex::new(closed_tx), Mutex::new(senders_tx));
    let config = ws::Config::new()
        .max_message_bytes(1024)
        .close_timeout(Duration::from_millis(500));
    let server = Server::start(
        move |req: &Request<'_>, res: &mut Response| {
            let echo = Echo {
                closed: closed_tx.lock().unwrap().clone(),
                senders: senders_tx.lock().unwrap().clone(),
            };
            let _ = config.accept(req, res, echo);
        },
        Config {
            drain_timeout: 20 * SEC,
            ..Config::default()
        },
    );
    (server, closed, senders)
}

/// Reads until a close frame; returns it.
fn close_frame(ws: &mut tungstenite::WebSocket<TcpStream>) -> CloseFrame {
    maybe_close_frame(ws).expect("a close code")
}

/// Reads until a close frame; returns it (`None`: it had no code).
fn maybe_close_frame(ws: &mut tungstenite::WebSocket<TcpStream>) -> Option<CloseFrame> {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => return frame,
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}

/// Whether the server closed the TCP connection (EOF or reset within the read timeout).
fn socket_closed(ws: &mut tungstenite::WebSocket<TcpStream>) -> bool {
    util::closed_by_peer(ws.get_mut())
}

#[test]
fn echo_ping_and_the_close_handshake() {
    let (server, closed, _senders) = echo_server();
    let mut ws = server.ws();
    ws.send(tungstenite::Message::text("héllo")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("héllo"));
    ws.send(tungstenite::Message::binary(vec![0u8, 1, 255]))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        tungstenite::Message::binary(vec![0u8, 1, 255])
    );
    ws.send(tungstenite::Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        tungstenite::Message::Pong(b"are you there".to_vec().into())
    );
    // The client closes: the server answers with the same code and closes the socket.
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    let frame = close_frame(&mut ws);
    assert_eq!(frame.code, CloseCode::Normal);
    assert!(matches!(
        ws.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
    assert_eq!(
        closed.recv_timeout(5 * SEC).unwrap(),
        (1000, "bye".to_string())
    );

    // The handler closes: the client answers, the socket closes.
    let mut ws = server.ws();
    ws.send(tungstenite::Message::text("close please")).unwrap();
    let frame = close_frame(&mut ws);
    assert_eq!(u16::from(frame.code), 4000);
    assert_eq!(frame.reason.as_str(), "as you wish");
    assert!(matches!(
        ws.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
    assert!(socket_closed(&mut ws));
    assert_eq!(closed.recv_timeout(5 * SEC).unwrap().0, 4000);
}

#[test]
fn a_handler_panic_closes_its_connection_with_1011_and_the_loop_serves_on() {
    let (server, closed, _senders) = echo_server();
    let mut ws = server.ws();
    ws.send(tungstenite::Message::text("panic")).unwrap();
    assert_eq!(close_frame(&mut ws).code, CloseCode::Error);
    assert!(socket_closed(&mut ws));
    assert_eq!(closed.recv_timeout(5 * SEC).unwrap().0, 1011);
    let mut ws = server.ws();
    ws.send(tungstenite::Message::text("still there?")).unwrap();
    assert_eq!(
        ws.read().unwrap(),
        tungstenite::Message::text("still there?")
    );
}

#[test]
fn a_message_over_the_limit_closes_with_1009() {
    let (server, closed, _senders) = echo_server();
    let mut ws = server.ws();
    ws.send(tungstenite::Message::text("x".repeat(1024)))
        .unwrap();
    assert_eq!(ws.read().unwrap().len(), 1024);
    ws.send(tungstenite::Message::text("x".repeat(1025)))
        .unwrap();
    let frame = close_frame(&mut ws);
    assert_eq!(frame.code, CloseCode::Size, "{frame:?}");
    assert!(socket_closed(&mut ws));
    assert_eq!(closed.recv_timeout(5 * SEC).unwrap().0, 1009);
}

#[test]
fn a_sender_pushes_from_another_thread_until_the_connection_is_over() {
    let (server, closed, senders) = echo_server();
    let mut ws = server.ws();
    let sender = senders.recv_timeout(5 * SEC).unwrap();
    let pusher = {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for i in 0..100 {
                assert!(sender.send_text(format!("push {i}")));
            }
        })
    };
    pusher.join().unwrap();
    for i in 0..100 {
        assert_eq!(
            ws.read().unwrap(),
            tungstenite::Message::text(format!("push {i}"))
        );
    }
    assert!(sender.is_open());
    ws.close(None).unwrap();
    assert_eq!(maybe_close_frame(&mut ws), None);
    assert_eq!(closed.recv_timeout(5 * SEC).unwrap().0, 1005);
    assert!(!sender.is_open());
    assert!(!sender.send_text("too late"));
}

#[test]
fn a_drain_closes_with_1001_and_gives_up_on_a_client_that_does_not_answer() {
    let (server, closed, _senders) = echo_server();
    let mut polite = server.ws();
    let mut silent = server.ws();
    // Both are open (an echo each) before the drain.
    for ws in [&mut polite, &mut silent] {
        ws.send(tungstenite::Message::text("before")).unwrap();
        assert_eq!(ws.read().unwrap(), tungstenite::Message::text("before"));
    }
    let started = Instant::now();
    server.drain();
    // The silent client reads the close frame off the wire itself, and never answers.
    let mut raw = silent.get_ref().try_clone().unwrap();
    let mut head = [0u8; 2];
    raw.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    let mut payload = vec![0u8; usize::from(head[1])];
    raw.read_exact(&mut payload).unwrap();
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    // The polite one answers and is closed at once.
    assert_eq!(close_frame(&mut polite).code, CloseCode::Away);
    assert!(matches!(
        polite.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
    // The silent one is closed after the close timeout, and the loop is done long before its
    // drain timeout (20 s).
    assert!(util::closed_by_peer(&mut raw));
    assert!(server.exits_within(10 * SEC), "the loop did not finish");
    assert!(started.elapsed() < 10 * SEC);
    let mut codes = vec![
        closed.recv_timeout(SEC).unwrap().0,
        closed.recv_timeout(SEC).unwrap().0,
    ];
    codes.sort();
    // The polite client's answer carries no code (tungstenite echoes ours: 1001); the silent
    // one's ends abnormally.
    assert_eq!(codes, vec![1001, 1006]);
}
