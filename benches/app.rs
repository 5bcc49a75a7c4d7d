//! cargo bench --bench app        (also part of `make bench`)
//!
//! An application workload: herd's sessions example (examples/sessions.rs) against the same
//! service on Node's cluster module (benches/node/sessions.js, ioredis), both with 2 workers
//! and a real `redis-server` on a free port, measured in alternating rounds with herd-load:
//!
//! | cell | load |
//! |---|---|
//! | `GET /` | 64 keep-alive connections (the mean of a run first and a run last) |
//! | `GET /me` | 64 connections, each with a session cookie (one Redis GET per request) |
//! | `GET /slow` | 64 connections on a handler that waits 50 ms (the ceiling is 64 / 50 ms = 1,280 req/s) |
//! | `GET / + 8 /slow` | 64 connections on `/` while 8 more hit `/slow` at the same time |
//!
//! Each server gets a 2 s warm-up on `GET /` first. It prints every round, then the median of each cell and the ratios the issue sets as
//! targets. `HERD_BENCH=quick` (or `-- --quick`): 2 rounds of 3 s cells instead of 4 of 6 s.
//! Needs `redis-server` and `node`; runs `npm install` in benches/node when ioredis is
//! missing. Every process started here is killed on exit, even on a panic.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herd_load::{Config, Mode, Report, Stop, WeightedPath};

const WORKERS: &str = "2";
const CONNECTIONS: usize = 64;
const SLOW_CLIENTS: usize = 8;

/// A child process killed (group and all) and reaped on drop.
struct Guard {
    child: Child,
    name: &'static str,
}

impl Guard {
    fn start(name: &'static str, cmd: &mut Command) -> Guard {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Guard { child, name }
    }

    fn stop(mut self) {
        let pid = self.child.id() as i32;
        // SIGTERM to the primary: both servers drain their workers.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // The whole process group: a primary and its workers.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        if let Err(e) = self.child.wait() {
            eprintln!("app bench: reaping {}: {e}", self.name);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One GET on a fresh connection: (status, headers, body).
fn get(port: u16, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    BufReader::new(s).read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// The cookie value `sid` from a login response's head.
fn login(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, head, body) = get(port, "/login?user=bench");
        if status == 200 {
            return head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("set-cookie").then_some(v.trim())
                })
                .and_then(|v| v.strip_prefix("sid="))
                .and_then(|v| v.split(';').next())
                .expect("a sid cookie")
                .to_string();
        }
        assert!(Instant::now() < deadline, "login failed: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn load(port: u16, path: &str, conns: usize, secs: Duration, cookie: Option<&str>) -> Report {
    let mut config = Config::new(SocketAddr::from(([127, 0, 0, 1], port)));
    config.paths = vec![WeightedPath::new(path, 1)];
    config.connections = conns;
    config.threads = 1;
    config.mode = Mode::KeepAlive;
    config.stop = Stop::Duration(secs);
    if let Some(sid) = cookie {
        config.headers = vec![("Cookie".into(), format!("sid={sid}"))];
    }
    herd_load::run(&config).expect("herd-load")
}

/// One cell's figures.
#[derive(Clone, Copy, Default)]
struct Cell {
    rps: f64,
    p99_us: u64,
    errors: u64,
}

impl Cell {
    fn of(r: &Report) -> Cell {
        Cell {
            rps: r.requests_per_sec,
            p99_us: r.latency.p99_us,
            errors: r.errors.total(),
        }
    }
}

const CELLS: [&str; 4] = ["GET /", "GET /me", "GET /slow", "GET / + 8 /slow"];

/// The four cells against the server on `port`.
fn measure(port: u16, secs: Duration) -> [Cell; 4] {
    let sid = login(port);
    let (status, _, body) = get(port, "/me");
    assert_eq!(status, 401, "/me without a cookie: {body}");
    // Warm-up (Node's JIT, every worker up, caches), not counted.
    load(port, "/", CONNECTIONS, Duration::from_secs(2), None);
    let hello_before = Cell::of(&load(port, "/", CONNECTIONS, secs, None));
    let me = Cell::of(&load(port, "/me", CONNECTIONS, secs, Some(&sid)));
    let slow = Cell::of(&load(port, "/slow", CONNECTIONS, secs, None));
    let background = std::thread::spawn(move || {
        load(
            port,
            "/slow",
            SLOW_CLIENTS,
            secs + Duration::from_millis(500),
            None,
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let mixed = Cell::of(&load(port, "/", CONNECTIONS, secs, None));
    let slow_bg = background.join().expect("background load");
    assert!(slow_bg.completed > 0, "the slow clients got no answer");
    // `GET /` alone again, right after the mixed cell: the machine is shared, so the baseline
    // is the mean of a run before and a run after.
    let hello_after = Cell::of(&load(port, "/", CONNECTIONS, secs, None));
    let hello = Cell {
        rps: (hello_before.rps + hello_after.rps) / 2.0,
        p99_us: (hello_before.p99_us + hello_after.p99_us) / 2,
        errors: hello_before.errors + hello_after.errors,
    };
    [hello, me, slow, mixed]
}

fn start_herd(exe: &Path, port: u16, redis: &str) -> Guard {
    Guard::start(
        "herd sessions",
        Command::new(exe)
            .env("PORT", port.to_string())
            .env("WORKERS", WORKERS)
            .env("REDIS_URL", redis)
            .env("RUST_LOG", "warn"),
    )
}

fn start_node(script: &Path, port: u16, redis: &str) -> Guard {
    Guard::start(
        "node sessions",
        Command::new("node")
            .arg(script)
            .env("PORT", port.to_string())
            .env("WORKERS", WORKERS)
            .env("REDIS_URL", redis),
    )
}

fn build_example(root: &Path) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "--release", "--quiet", "--example", "sessions"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the sessions example failed");
    root.join("target/release/examples/sessions")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn fmt_rps(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_us(us: u64) -> String {
    if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("HERD_BENCH").is_ok_and(|v| v == "quick");
    let (rounds, secs) = if quick {
        (2, Duration::from_secs(3))
    } else {
        (4, Duration::from_secs(6))
    };
    for tool in ["redis-server", "node", "npm"] {
        if !have(tool) {
            eprintln!(
                "app bench: {tool} is not installed (apt-get install redis-server nodejs npm)"
            );
            std::process::exit(1);
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let node_dir = root.join("benches/node");
    if !node_dir.join("node_modules/ioredis").is_dir() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&node_dir)
            .status()
            .expect("npm");
        assert!(status.success(), "npm install in benches/node failed");
    }
    let exe = build_example(&root);

    let redis_port = free_port();
    let _redis = Guard::start(
        "redis-server",
        Command::new("redis-server").args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
    );
    wait_port(redis_port, "redis-server");
    let redis_url = format!("redis://127.0.0.1:{redis_port}");

    println!(
        "app bench: sessions example, herd vs Node cluster, {WORKERS} workers each, {CONNECTIONS} connections, {} s cells, {rounds} alternating rounds",
        secs.as_secs()
    );
    let mut results: Vec<(&str, [Cell; 4])> = Vec::new();
    for round in 0..rounds {
        let order: [&str; 2] = if round % 2 == 0 {
            ["herd", "node"]
        } else {
            ["node", "herd"]
        };
        for server in order {
            let port = free_port();
            let guard = if server == "herd" {
                start_herd(&exe, port, &redis_url)
            } else {
                start_node(&node_dir.join("sessions.js"), port, &redis_url)
            };
            wait_port(port, server);
            let cells = measure(port, secs);
            guard.stop();
            print!("round {} {server:>4}:", round + 1);
            for (name, c) in CELLS.iter().zip(&cells) {
                print!(
                    "  {name} {} req/s p99 {}{}",
                    fmt_rps(c.rps),
                    fmt_us(c.p99_us),
                    if c.errors > 0 {
                        format!(" ({} errors)", c.errors)
                    } else {
                        String::new()
                    }
                );
            }
            println!();
            let _ = std::io::stdout().flush();
            results.push((server, cells));
        }
    }

    let med = |server: &str, i: usize, f: fn(&Cell) -> f64| {
        median(
            results
                .iter()
                .filter(|(s, _)| *s == server)
                .map(|(_, c)| f(&c[i]))
                .collect(),
        )
    };
    let rps = |c: &Cell| c.rps;
    let p99 = |c: &Cell| c.p99_us as f64;
    println!();
    println!("| endpoint | herd req/s | herd p99 | Node req/s | Node p99 | herd/Node |");
    println!("|---|--:|--:|--:|--:|--:|");
    for (i, name) in CELLS.iter().enumerate() {
        println!(
            "| {name} | {} | {} | {} | {} | {:.2}× |",
            fmt_rps(med("herd", i, rps)),
            fmt_us(med("herd", i, p99) as u64),
            fmt_rps(med("node", i, rps)),
            fmt_us(med("node", i, p99) as u64),
            med("herd", i, rps) / med("node", i, rps)
        );
    }
    println!("(medians over {rounds} rounds)");
    println!();
    let slow_ratio = med("herd", 2, rps) / med("node", 2, rps);
    let me_ratio = med("herd", 1, rps) / med("node", 1, rps);
    let keep = med("herd", 3, rps) / med("herd", 0, rps);
    let p99_growth = med("herd", 3, p99) / med("herd", 0, p99);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "target /slow >= 0.95x Node: {slow_ratio:.2}x ({})",
        verdict(slow_ratio >= 0.95)
    );
    println!(
        "target GET / with 8 /slow clients keeps >= 0.8x its req/s: {keep:.2}x ({})",
        verdict(keep >= 0.8)
    );
    println!(
        "target GET / p99 with 8 /slow clients <= 2x: {p99_growth:.2}x ({})",
        verdict(p99_growth <= 2.0)
    );
    println!(
        "target /me >= 2x Node: {me_ratio:.2}x ({})",
        verdict(me_ratio >= 2.0)
    );
}
