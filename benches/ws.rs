//! make measure-ws        (or: cargo bench --bench ws [-- --quick]; HERD_BENCH=quick)
//!
//! WebSocket echo, messages per second: herd's ws_echo example (examples/ws_echo.rs, the
//! connections served on each worker's event loop) against a tokio-tungstenite echo server
//! (this program, started again as the server: tokio's multi-threaded runtime, the
//! `read.forward(write)` echo of tokio-tungstenite's own example), both with 2 workers
//! (processes for herd, runtime threads for tokio), in alternating rounds with the same
//! client: `CONNECTIONS` blocking tungstenite clients (a thread each) that each send a window
//! of `WINDOW` text messages of `SIZE` bytes, then read the window's echoes, and again.
//! Client and servers share the machine's CPUs: compare the two columns of one run.
//!
//! Prints every round, then the medians and herd/tokio. Full: 5 rounds of 5 s per server;
//! quick (`-- --quick` or `HERD_BENCH=quick`): 3 rounds of 2 s. `HERD_BENCH_ROUNDS`,
//! `HERD_BENCH_SECS`, `WS_CONNECTIONS` (64), `WS_WINDOW` (16), `WS_SIZE` (32) override.
//! Every process started here is killed on exit, even on a panic.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::Message;

const WORKERS: usize = 2;
/// Set in the environment of this program started as the tokio server: the port to serve.
const SERVE_TOKIO: &str = "WS_BENCH_TOKIO_PORT";

fn main() -> ExitCode {
    if let Ok(port) = std::env::var(SERVE_TOKIO) {
        return tokio_echo(port.parse().expect("a port"));
    }
    // `cargo test --all-targets` runs this binary without --bench: no benchmark then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("ws: a benchmark; run it with `make measure-ws` (cargo bench --bench ws)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The peer: tokio-tungstenite's echo server (its examples/echo-server.rs, minus logging).
fn tokio_echo(port: u16) -> ExitCode {
    use futures_util::{StreamExt, TryStreamExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_io()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (write, read) = ws.split();
                let _ = read
                    .try_filter(|msg| std::future::ready(msg.is_text() || msg.is_binary()))
                    .forward(write)
                    .await;
            });
        }
    });
    ExitCode::SUCCESS
}

/// A child process killed and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first: a herd primary stops its workers; then make sure.
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `port` accepts a WebSocket handshake at `/ws`.
fn wait_ready(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            let url = format!("ws://127.0.0.1:{port}/ws");
            if tungstenite::client(url.as_str(), stream).is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("nothing answers WebSocket on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The load: how many clients, their window, the message size.
#[derive(Clone, Copy)]
struct Load {
    connections: usize,
    window: usize,
    size: usize,
}

/// Echoed messages per second against `port` for `secs` (after connecting every client).
fn measure(port: u16, load: Load, secs: f64) -> Result<f64, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let url = format!("ws://{addr}/ws");
    let mut sockets = Vec::new();
    for _ in 0..load.connections {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let (ws, _) = tungstenite::client(url.as_str(), stream)
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        sockets.push(ws);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let text = "x".repeat(load.size);
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let (stop, counting, echoed) = (stop.clone(), counting.clone(), echoed.clone());
            let text = text.clone();
            std::thread::spawn(move || -> Result<(), String> {
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..load.window {
                        ws.write(Message::text(text.as_str()))
                            .map_err(|e| e.to_string())?;
                    }
                    ws.flush().map_err(|e| e.to_string())?;
                    let mut back = 0;
                    while back < load.window {
                        match ws.read().map_err(|e| e.to_string())? {
                            Message::Text(t) if t.len() == load.size => back += 1,
                            Message::Text(t) => return Err(format!("{} bytes came back", t.len())),
                            _ => {}
                        }
                    }
                    if counting.load(Ordering::Relaxed) {
                        echoed.fetch_add(load.window as u64, Ordering::Relaxed);
                    }
                }
                let _ = ws.close(None);
                let _ = ws.flush();
                Ok(())
            })
        })
        .collect();
    // A short settling time, then the measured window.
    std::thread::sleep(Duration::from_millis(300));
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let n = echoed.load(Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "a client thread panicked")??;
    }
    Ok(n as f64 / elapsed)
}

fn build_example(root: &Path) -> Result<PathBuf, String> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "--release", "--quiet", "--example", "ws_echo"])
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release --example ws_echo: {status}"));
    }
    Ok(root.join("target/release/examples/ws_echo"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run() -> Result<(), String> {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("HERD_BENCH").is_ok_and(|v| v == "quick");
    let (rounds, secs) = if quick { (3, 2.0) } else { (5, 5.0) };
    let rounds: usize = env_number("HERD_BENCH_ROUNDS", rounds)?;
    let secs: f64 = env_number("HERD_BENCH_SECS", secs)?;
    let load = Load {
        connections: env_number("WS_CONNECTIONS", 64)?,
        window: env_number("WS_WINDOW", 16)?,
        size: env_number("WS_SIZE", 32)?,
    };
    if rounds == 0 || secs <= 0.0 || load.connections == 0 || load.window == 0 {
        return Err("rounds, seconds, connections and window must be above 0".into());
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let herd_exe = build_example(&root)?;
    let (herd_port, tokio_port) = (free_port(), free_port());
    let _herd = Guard(
        Command::new(&herd_exe)
            .env("PORT", herd_port.to_string())
            .env("WORKERS", WORKERS.to_string())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", herd_exe.display()))?,
    );
    let this = std::env::current_exe().map_err(|e| e.to_string())?;
    let _tokio = Guard(
        Command::new(this)
            .env(SERVE_TOKIO, tokio_port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("start the tokio server: {e}"))?,
    );
    wait_ready(herd_port)?;
    wait_ready(tokio_port)?;
    println!(
        "ws bench: echo of {}-byte text messages, {} connections x window {}, {WORKERS} workers each, {secs} s per cell, {rounds} alternating rounds",
        load.size, load.connections, load.window
    );
    // Warm-up, one short cell each.
    measure(herd_port, load, 1.0)?;
    measure(tokio_port, load, 1.0)?;
    let (mut herd, mut tokio) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Alternate which goes first.
        let order = if round % 2 == 1 {
            [("herd", herd_port), ("tokio", tokio_port)]
        } else {
            [("tokio", tokio_port), ("herd", herd_port)]
        };
        for (name, port) in order {
            let rate = measure(port, load, secs)?;
            println!("round {round}: {name:<6} {rate:>12.0} msgs/s");
            if name == "herd" {
                herd.push(rate);
            } else {
                tokio.push(rate);
            }
        }
    }
    let (h, t) = (median(herd), median(tokio));
    println!("| server | msgs/s (median) |");
    println!("|---|---|");
    println!("| herd ws_echo | {h:.0} |");
    println!("| tokio-tungstenite echo | {t:.0} |");
    println!("herd / tokio-tungstenite: {:.2}", h / t);
    Ok(())
}
