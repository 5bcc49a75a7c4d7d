// cargo run --release --example stream
//! Streamed bodies: a cluster of HTTP workers on 0.0.0.0:8000 whose answers can be of any
//! size at the memory cost of one window per connection (benches/measure_stream.sh measures
//! it). Environment: `PORT` (default 8000), `WORKERS` (default: the CPUs available).
//!
//! - `GET /` answers `hello` (a plain buffered answer);
//! - `GET /bytes?n=N` streams N bytes made in memory on the loop (`Response::chunks_sized`);
//! - `GET /reader?n=N` streams N bytes from a `Read`, read on the blocking pool, chunked
//!   (`Response::stream`);
//! - `GET /buffered?n=N` builds N bytes whole in memory first (what streaming avoids);
//! - `GET /events` sends a server-sent event every second until the client leaves (or the
//!   worker drains: `EventSource` then reconnects to another one);
//! - `POST /upload` reads a body of any size (over 1 MiB: as a stream, see
//!   `Http::stream_large_bodies`) and answers how many bytes came and their FNV-1a hash.
//!
//! Limits: `n` is capped at 64 GiB; SIGTERM/Ctrl-C stop gracefully.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use herd::{Cluster, Http, Request, Response};

#[path = "support/env.rs"]
mod env;
#[path = "support/logging.rs"]
mod logging;

/// One piece of every in-memory body.
static PIECE: [u8; 64 * 1024] = [b'x'; 64 * 1024];

fn main() -> ExitCode {
    logging::main("stream", "info", run)
}

fn run() -> Result<(), String> {
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::workers()?;
    Cluster::new()
        .workers(workers)
        .run(move |mut worker| {
            let listener = worker.bind(("0.0.0.0", port))?;
            let http = Http::new(serve).stream_large_bodies(true);
            worker.serve([listener], http)
        })
        .map_err(|e| e.to_string())
}

fn serve(req: &Request<'_>, res: &mut Response) {
    let n = || -> u64 {
        req.query_param("n")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1 << 20)
            .min(64 << 30)
    };
    match (req.method(), req.path()) {
        ("GET", "/bytes") => {
            let n = n();
            let pieces = (0..n.div_ceil(PIECE.len() as u64)).map(move |i| {
                let left = n - i * PIECE.len() as u64;
                &PIECE[..left.min(PIECE.len() as u64) as usize]
            });
            res.chunks_sized(pieces, n);
        }
        ("GET", "/reader") => {
            res.stream(std::io::repeat(b'x').take(n()));
        }
        ("GET", "/buffered") => {
            res.body(vec![b'x'; n() as usize]);
        }
        ("GET", "/events") => {
            let events = res.sse();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while events.send_event(Some("tick"), &n.to_string()).is_ok() {
                    n += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
        ("POST", "/upload") => upload(req, res),
        _ => {
            res.header("Content-Type", "text/plain").body("hello\n");
        }
    }
}

/// Counts and hashes the body on the blocking pool, as it arrives.
fn upload(req: &Request<'_>, res: &mut Response) {
    let Some(mut body) = req.body_reader() else {
        // Small enough to have been read whole.
        let (len, hash) = fnv(req.body());
        res.body(format!("{len} bytes, fnv1a {hash:016x}\n"));
        return;
    };
    let mut responder = res.defer();
    std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        let (mut len, mut hash) = (0u64, FNV_OFFSET);
        loop {
            match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    len += n as u64;
                    hash = fnv_update(hash, &buf[..n]);
                }
                Err(e) => {
                    responder.status(400).body(format!("upload failed: {e}\n"));
                    responder.send();
                    return;
                }
            }
        }
        responder.body(format!("{len} bytes, fnv1a {hash:016x}\n"));
        responder.send();
    });
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_update(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn fnv(bytes: &[u8]) -> (u64, u64) {
    (bytes.len() as u64, fnv_update(FNV_OFFSET, bytes))
}
