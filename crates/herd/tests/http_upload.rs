//! Request bodies as a stream (`Http::stream_large_bodies`): a body over `max_body_bytes`
//! reaches a handler that takes its reader whole (Content-Length and chunked, from curl and a
//! raw client), pipelined requests behind it are answered, a handler that does not opt in
//! still answers 413, and a reader that stops reading stops the client (back-pressure)
//! instead of filling the worker's memory.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herd::event_loop::Config;
use herd::http::{blocking, Router};
use herd::{Http, Request, Response};
use util::{start, TIMEOUT};

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
const FNV: u64 = 0xcbf2_9ce4_8422_2325;

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

/// Reads the streamed body (or the buffered one) and answers `<len> <hash>`.
fn hash_body(req: &Request<'_>, res: &mut Response) {
    let (mut len, mut hash) = (0u64, FNV);
    match req.body_reader() {
        Some(mut reader) => {
            let mut buf = vec![0; 50_000];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        len += n as u64;
                        hash = fnv(hash, &buf[..n]);
                    }
                    Err(e) => {
                        res.status(400).body(format!("{e}"));
                        return;
                    }
                }
            }
        }
        None => {
            len = req.body().len() as u64;
            hash = fnv(hash, req.body());
        }
    }
    res.body(format!("{len} {hash:x}"));
}

fn server(stalled: Arc<AtomicBool>) -> util::Server {
    let app = Router::new()
        .post("/hash", blocking(hash_body))
        .post(
            "/stall",
            blocking(move |req: &Request<'_>, res: &mut Response| {
                // Read nothing while the test holds the gate.
                while stalled.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                hash_body(req, res);
            }),
        )
        .post("/deferred", |req: &Request<'_>, res: &mut Response| {
            let reader = req.body_reader();
            let mut responder = res.defer();
            std::thread::spawn(move || {
                let mut n = 0;
                if let Some(mut reader) = reader {
                    n = std::io::copy(&mut reader, &mut std::io::sink()).unwrap_or(0);
                }
                responder.body(format!("{n}"));
                responder.send();
            });
        })
        .post("/refuse", |_req: &Request<'_>, res: &mut Response| {
            res.body("never seen");
        })
        .get("/", |_req: &Request<'_>, res: &mut Response| {
            res.body("plain");
        });
    let http = Http::new(app)
        .max_body_bytes(64 * 1024)
        .stream_large_bodies(true)
        .stream_window(64 * 1024);
    start(http, Config::default())
}

fn read_answer(r: &mut impl BufRead) -> (u16, String) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line[9..12].parse().unwrap();
    let mut len = 0;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

#[test]
fn large_bodies_stream_to_handlers_that_take_them() {
    let server = server(Arc::new(AtomicBool::new(false)));
    let data = body(8 << 20);
    let expected = format!("{} {:x}", data.len(), fnv(FNV, &data));
    let dir = std::env::temp_dir().join(format!("herd-upload-{}", std::process::id()));
    std::fs::write(&dir, &data).unwrap();
    let file = format!("@{}", dir.display());
    let url = format!("http://{}/hash", server.addr);
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--data-binary", &file])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Content-Length, then chunked (with Expect: 100-continue, as curl sends it).
    let by_length = curl(&[]);
    let chunked = curl(&["-H", "Transfer-Encoding: chunked"]);
    let _ = std::fs::remove_file(&dir);
    assert_eq!(by_length, expected);
    assert_eq!(chunked, expected);

    // A raw client: a deferred handler, and requests pipelined behind the body.
    let stream = server.connect();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || {
            write!(
                w,
                "POST /deferred HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                data.len()
            )
            .unwrap();
            w.write_all(&data).unwrap();
            w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            w
        })
    };
    assert_eq!(read_answer(&mut r), (200, data.len().to_string()));
    assert_eq!(read_answer(&mut r), (200, "plain".to_string()));
    // Small bodies are still buffered (and hashed the same).
    let mut w = writer.join().unwrap();
    w.write_all(b"POST /hash HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    assert_eq!(
        read_answer(&mut r),
        (200, format!("3 {:x}", fnv(FNV, b"abc")))
    );
}

#[test]
fn handlers_that_do_not_opt_in_answer_413() {
    let server = server(Arc::new(AtomicBool::new(false)));
    let mut c = server.connect();
    c.write_all(b"POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(c);
    let (status, _) = read_answer(&mut r);
    assert_eq!(status, 413);
}

#[test]
fn a_reader_that_stops_stops_the_client() {
    let stalled = Arc::new(AtomicBool::new(true));
    let server = server(Arc::clone(&stalled));
    const LEN: usize = 96 << 20;
    let stream = server.connect();
    stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    write!(
        w,
        "POST /stall HTTP/1.1\r\nHost: t\r\nContent-Length: {LEN}\r\n\r\n"
    )
    .unwrap();
    // The handler reads nothing: the client gets stuck well before the end (the window, a
    // read buffer and the kernel's buffers hold the rest), instead of the worker taking it all.
    let piece = vec![1u8; 256 * 1024];
    let mut sent = 0;
    while sent < LEN {
        match w.write(&piece[..piece.len().min(LEN - sent)]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(
        sent < LEN / 2,
        "the client sent {sent} of {LEN} bytes to a handler that reads nothing"
    );
    // The handler reads again: everything arrives.
    stalled.store(false, Ordering::SeqCst);
    w.set_write_timeout(Some(TIMEOUT)).unwrap();
    while sent < LEN {
        let n = w.write(&piece[..piece.len().min(LEN - sent)]).unwrap();
        sent += n;
    }
    let mut r = BufReader::new(stream);
    let (status, answer) = read_answer(&mut r);
    assert_eq!(status, 200);
    assert!(answer.starts_with(&format!("{LEN} ")), "{answer}");
}

/// A chunked body off `r` (the test's echo answers are chunked).
fn read_chunked(r: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).expect("chunk size") > 0, "cut short");
        let size = usize::from_str_radix(line.trim_end(), 16).expect("chunk size");
        let at = body.len();
        body.resize(at + size + 2, 0);
        r.read_exact(&mut body[at..]).expect("chunk");
        assert_eq!(&body[at + size..], b"\r\n", "chunk end");
        body.truncate(at + size);
        if size == 0 {
            return body;
        }
    }
}

/// Full duplex: the handler streams the request body back as it reads it (through a
/// channel), answering at once or through a `Responder`; the client sends and reads at the
/// same time. Neither side may wait for the other's end: 4 MiB is far more than the windows
/// and the socket buffers hold.
#[test]
fn a_streamed_body_echoed_through_a_streamed_answer_flows_both_ways() {
    fn echo(mut reader: herd::http::BodyReader, tx: herd::http::BodySender) {
        let mut buf = vec![0; 20_000];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(&buf[..n]).is_err() {
                break;
            }
        }
    }
    let app = Router::new()
        .post("/echo", |req: &Request<'_>, res: &mut Response| {
            let reader = req.body_reader().expect("a streamed body");
            let tx = res.channel();
            std::thread::spawn(move || echo(reader, tx));
        })
        .post("/echo-later", |req: &Request<'_>, res: &mut Response| {
            let reader = req.body_reader().expect("a streamed body");
            let mut responder = res.defer();
            std::thread::spawn(move || {
                let tx = responder.channel();
                responder.send();
                echo(reader, tx);
            });
        })
        .get("/", |_req: &Request<'_>, res: &mut Response| {
            res.body("plain");
        });
    let http = Http::new(app)
        .max_body_bytes(64 * 1024)
        .stream_large_bodies(true)
        .stream_window(64 * 1024);
    let server = start(http, Config::default());
    let data = body(4 << 20);
    for (path, chunked) in [("/echo", false), ("/echo-later", false), ("/echo", true)] {
        let s = server.connect();
        let writer = {
            let mut w = s.try_clone().unwrap();
            let data = data.clone();
            let framing = match chunked {
                true => "Transfer-Encoding: chunked".to_string(),
                false => format!("Content-Length: {}", data.len()),
            };
            let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n");
            std::thread::spawn(move || {
                w.write_all(head.as_bytes())?;
                if chunked {
                    for piece in data.chunks(100_000) {
                        w.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                        w.write_all(piece)?;
                        w.write_all(b"\r\n")?;
                    }
                    w.write_all(b"0\r\n\r\n")?;
                } else {
                    w.write_all(&data)?;
                }
                w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            })
        };
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).expect("status line");
        assert!(line.starts_with("HTTP/1.1 200 "), "{path}: {line}");
        while line != "\r\n" {
            line.clear();
            r.read_line(&mut line).expect("header line");
        }
        let echoed = read_chunked(&mut r);
        assert!(
            echoed == data,
            "{path}: {} of {} bytes echoed",
            echoed.len(),
            data.len()
        );
        assert_eq!(read_answer(&mut r), (200, "plain".to_string()), "{path}");
        writer.join().unwrap().expect("the whole body was sent");
    }
    server.stop().expect("the loop returns");
}

/// A handler that answers at once (a large buffered answer) and reads the body on another
/// thread: the body is read on while the answer waits for a client that reads it only once
/// it has sent the whole body.
#[test]
fn a_large_answer_given_at_once_lets_the_body_come_first() {
    const ANSWER: usize = 4 << 20;
    let app = Router::new().post("/", |req: &Request<'_>, res: &mut Response| {
        let mut reader = req.body_reader().expect("a streamed body");
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        res.body(vec![b'a'; ANSWER]);
    });
    let http = Http::new(app)
        .max_body_bytes(64 * 1024)
        .stream_large_bodies(true);
    let server = start(http, Config::default());
    // A small receive buffer (set before connecting): the answer cannot wait whole in the
    // kernel's buffers.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    socket
        .connect_timeout(&server.addr.into(), TIMEOUT)
        .expect("connect");
    let mut s: std::net::TcpStream = socket.into();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    let data = body(8 << 20);
    s.write_all(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&data)
        .expect("the body is read before the answer");
    let mut r = BufReader::new(s);
    let (status, text) = read_answer(&mut r);
    assert!(status == 200 && text.len() == ANSWER);
}
