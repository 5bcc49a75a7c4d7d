//! The control plane end to end: a real cluster (the fixture), the real `herd` command on its
//! control socket, real signals, and the `/metrics` endpoint checked by Prometheus' own
//! `promtool` and scraped by a real `prometheus` server.

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::{example, field, free_port, herd_cli, http_get, Proc, FIXTURE, SEC};

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("herd-ctl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of `herd` did.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", self.stdout, self.stderr))
    }
}

/// Runs `herd` with `args` against `socket`; killed after `timeout`.
fn herd(socket: &Path, args: &[&str], timeout: Duration) -> Out {
    let mut cmd = Command::new(herd_cli());
    cmd.arg("--socket").arg(socket).args(args);
    run(&mut cmd, timeout)
}

fn run(cmd: &mut Command, timeout: Duration) -> Out {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run herd");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let code = status.and_then(|s| s.code());
    Out {
        code,
        stdout,
        stderr,
    }
}

fn status(socket: &Path) -> Value {
    let out = herd(socket, &["status", "-j"], 10 * SEC);
    assert_eq!(out.code, Some(0), "herd status failed: {}", out.stderr);
    out.json()
}

/// (id, pid) of every worker `herd status -j` lists, sorted.
fn workers(s: &Value) -> Vec<(u64, u64)> {
    let mut w: Vec<(u64, u64)> = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["id"].as_u64().unwrap(), w["pid"].as_u64().unwrap()))
        .collect();
    w.sort_unstable();
    w
}

/// Polls `f` until it returns `Some`, for up to `timeout`.
fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fixture cluster serving HTTP with its control socket at `dir/h.sock`.
fn http_cluster(dir: &TempDir, extra: &[(&str, &str)]) -> (Proc, PathBuf, SocketAddr) {
    let socket = dir.0.join("h.sock");
    let mut env = vec![
        ("FIX_WORKERS", "2"),
        ("FIX_MODE", "http"),
        ("FIX_ADDR", "127.0.0.1:0"),
        ("FIX_STATS_MS", "200"),
        ("HERD_SOCKET", socket.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    let mut c = Proc::start(FIXTURE, &env, &[]);
    let l = c.expect_n(2, 10 * SEC, "EV listening");
    let addr = field(&l[0], "addr").unwrap().parse().unwrap();
    (c, socket, addr)
}

/// The pid of every live worker, from the fork lines minus the exit lines, by id.
fn forked(c: &Proc) -> Vec<(u64, u64)> {
    let mut live: Vec<(u64, u64)> = Vec::new();
    for l in &c.seen {
        if l.starts_with("EV fork") {
            live.push((
                field(l, "id").unwrap().parse().unwrap(),
                field(l, "pid").unwrap().parse().unwrap(),
            ));
        }
        if l.starts_with("EV exit") {
            let id: u64 = field(l, "id").unwrap().parse().unwrap();
            live.retain(|w| w.0 != id);
        }
    }
    live.sort_unstable();
    live
}

#[test]
fn status_lists_the_right_pids_after_a_reload_and_a_kill_9() {
    let dir = TempDir::new("status");
    let (mut c, socket, _) = http_cluster(&dir, &[]);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is private");

    let s = status(&socket);
    assert_eq!(workers(&s), forked(&c));
    assert_eq!(s["workers"].as_array().unwrap().len(), 2);
    assert_eq!(s["generation"], 0);

    let out = herd(&socket, &["reload", "--wait"], 30 * SEC);
    assert_eq!(
        out.code,
        Some(0),
        "reload --wait: {} {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("generation 1"), "{}", out.stdout);
    // The old workers' exits arrive after the reload completed: wait for them.
    c.expect_n(2, 10 * SEC, "EV exit");
    let s = status(&socket);
    let listed = workers(&s);
    assert_eq!(listed, forked(&c));
    assert_eq!(listed.iter().map(|w| w.0).collect::<Vec<_>>(), vec![3, 4]);
    assert!(s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["generation"] == 1));
    assert_eq!(s["restarts"]["reload"], 2);

    let victim = listed[0].1;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    c.expect(10 * SEC, |l| l.starts_with("EV listening id=5"));
    let s = status(&socket);
    let listed = workers(&s);
    assert_eq!(listed, forked(&c));
    assert!(!listed.iter().any(|w| w.1 == victim));
    assert_eq!(s["restarts"]["crash"], 1, "{s}");
    let replacement = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == 5)
        .unwrap();
    assert_eq!(replacement["restarts"]["crash"], 1, "its slot's restarts");

    // The human table names every worker.
    let out = herd(&socket, &["status"], 10 * SEC);
    assert_eq!(out.code, Some(0));
    for (id, pid) in &listed {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.contains(&pid.to_string())),
            "{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("failed slots: none"), "{}", out.stdout);
}

#[test]
fn reload_wait_fails_with_the_reason_when_the_new_executable_fails() {
    let dir = TempDir::new("reload-fail");
    let socket = dir.0.join("h.sock");
    let marker = dir.0.join("generation");
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_MODE", "crash-new"),
            ("FIX_GENERATION_FILE", marker.to_str().unwrap()),
            ("HERD_SOCKET", socket.to_str().unwrap()),
        ],
        &[],
    );
    c.expect_n(2, 10 * SEC, "EV listening");
    let before = workers(&status(&socket));
    std::fs::write(&marker, b"new").unwrap();
    let out = herd(&socket, &["reload", "--wait"], 30 * SEC);
    assert_eq!(out.code, Some(1), "{} {}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("rolled back") && out.stderr.contains("exited (code 3)"),
        "{}",
        out.stderr
    );
    let _ = std::fs::remove_file(&marker);
    let s = status(&socket);
    assert_eq!(workers(&s), before, "the old workers keep serving");
    assert_eq!(s["last_reload"]["ok"], false);

    // -j gives the same answer as JSON.
    std::fs::write(&marker, b"new").unwrap();
    let out = herd(&socket, &["reload", "--wait", "-j"], 30 * SEC);
    assert_eq!(out.code, Some(1));
    let j = out.json();
    assert_eq!(j["ok"], false);
    assert!(j["error"].as_str().unwrap().contains("exited"), "{j}");
}

#[test]
fn scale_changes_the_worker_count() {
    let dir = TempDir::new("scale");
    let (mut c, socket, _) = http_cluster(&dir, &[]);
    let out = herd(&socket, &["scale", "+2"], 10 * SEC);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    c.expect_n(2, 10 * SEC, "EV listening");
    assert_eq!(workers(&status(&socket)).len(), 4);
    let out = herd(&socket, &["scale", "3", "-j"], 10 * SEC);
    assert_eq!(out.json()["to"], 3);
    c.expect(10 * SEC, |l| l.starts_with("EV exit"));
    let s = status(&socket);
    assert_eq!(workers(&s).len(), 3);
    assert_eq!(s["workers_target"], 3);
    assert_eq!(s["restarts"]["scale"], 1);
    let out = herd(&socket, &["scale", "-5"], 10 * SEC);
    assert_eq!(out.code, Some(1), "below one worker is refused");
    assert!(out.stderr.contains("at least 1"), "{}", out.stderr);
}

#[test]
fn garbage_and_silent_clients_do_not_stop_status() {
    let dir = TempDir::new("garbage");
    let (_c, socket, _) = http_cluster(&dir, &[]);
    // Silent clients: connect, never write.
    let silent: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    // A client that speaks HTTP at it: the length is absurd; it gets an error and a close.
    let mut garbage = UnixStream::connect(&socket).unwrap();
    garbage.set_read_timeout(Some(5 * SEC)).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    garbage.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer[4..]);
    assert!(text.contains("bad frame"), "{text}");
    // A huge frame announced and half sent, left hanging.
    let mut huge = UnixStream::connect(&socket).unwrap();
    huge.write_all(&(u32::MAX).to_be_bytes()).unwrap();
    huge.write_all(&[b'x'; 70_000]).unwrap_or(());
    // A valid frame that is not JSON, and one of an unknown version.
    for (payload, want) in [
        (&b"{not json"[..], "not JSON"),
        (&br#"{"v":9,"cmd":"status"}"#[..], "version 9"),
    ] {
        let mut c = UnixStream::connect(&socket).unwrap();
        c.set_read_timeout(Some(5 * SEC)).unwrap();
        c.write_all(&(payload.len() as u32).to_be_bytes()).unwrap();
        c.write_all(payload).unwrap();
        let mut answer = Vec::new();
        c.read_to_end(&mut answer).unwrap();
        let j: Value = serde_json::from_slice(&answer[4..]).unwrap();
        assert_eq!(j["ok"], false);
        assert!(j["error"].as_str().unwrap().contains(want), "{j}");
    }
    // Two requests in one write: two answers, in order, on the same connection.
    let mut two = UnixStream::connect(&socket).unwrap();
    two.set_read_timeout(Some(5 * SEC)).unwrap();
    let mut frames = Vec::new();
    for cmd in ["status", "nonsense"] {
        let body = format!(r#"{{"v":1,"cmd":"{cmd}"}}"#);
        frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frames.extend_from_slice(body.as_bytes());
    }
    two.write_all(&frames).unwrap();
    for want_ok in [true, false] {
        let mut head = [0u8; 4];
        two.read_exact(&mut head).unwrap();
        let mut body = vec![0; u32::from_be_bytes(head) as usize];
        two.read_exact(&mut body).unwrap();
        let j: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["ok"], want_ok, "{j}");
    }
    // The command is built (or found up to date) before the clock starts: only the
    // primary's answer is timed.
    herd_cli();
    let started = Instant::now();
    let s = status(&socket);
    assert_eq!(s["workers"].as_array().unwrap().len(), 2);
    assert!(
        started.elapsed() < 5 * SEC,
        "status took {:?} with silent clients connected",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn a_live_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    let dir = TempDir::new("steal");
    let socket = dir.0.join("h.sock");
    // A stale socket: bound, then its owner went away without removing it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let (_a, socket, _) = http_cluster(&dir, &[]);
    assert_eq!(status(&socket)["workers"].as_array().unwrap().len(), 2);
    let mut b = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("HERD_SOCKET", socket.to_str().unwrap()),
        ],
        &[],
    );
    let code = b.wait(10 * SEC).expect("the second cluster exits");
    assert!(!code.success());
    let err = b.stderr();
    assert!(
        err.contains(socket.to_str().unwrap()) && err.contains("another herd primary"),
        "{err}"
    );
    // The first cluster still answers on it.
    assert_eq!(status(&socket)["workers"].as_array().unwrap().len(), 2);

    // Something else listening at a path is not taken over either.
    let other = dir.0.join("other.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&other).unwrap();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("HERD_SOCKET", other.to_str().unwrap()),
        ],
        &[],
    );
    assert!(!c.wait(10 * SEC).expect("it exits").success());
    assert!(c.stderr().contains("not a herd primary"), "{}", c.stderr());
}

#[test]
fn the_command_says_which_socket_it_tried_and_how_to_set_it() {
    let dir = TempDir::new("nobody");
    let socket = dir.0.join("none.sock");
    let out = herd(&socket, &["status"], 10 * SEC);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(socket.to_str().unwrap())
            && out.stderr.contains("--socket")
            && out.stderr.contains("HERD_SOCKET"),
        "{}",
        out.stderr
    );
}

/// The request total `/metrics` reports.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .reduce(|a, b| a + b)
}

fn scrape(addr: SocketAddr) -> String {
    let r = http_get(addr, "/metrics").unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    r.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[test]
fn metrics_are_valid_and_the_total_survives_a_kill_9() {
    let dir = TempDir::new("metrics");
    let maddr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (mut c, _socket, addr) = http_cluster(&dir, &[("FIX_METRICS_ADDR", &maddr.to_string())]);
    const N: usize = 60;
    for i in 0..N {
        let r = http_get(addr, if i % 10 == 0 { "/sleep?ms=2" } else { "/" }).unwrap();
        assert!(r.starts_with("HTTP/1.1 200"));
    }
    let text = eventually(10 * SEC, "every request counted", || {
        let t = scrape(maddr);
        (metric(&t, "herd_requests_total") == Some(N as f64)).then_some(t)
    });
    // Prometheus' own checker accepts it.
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus: apt-get install prometheus)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        metric(&text, "herd_request_duration_seconds_count"),
        Some(N as f64)
    );
    assert_eq!(metric(&text, "herd_slot_requests_total"), Some(N as f64));
    assert!(metric(&text, "herd_received_bytes_total").unwrap() > 0.0);
    assert!(
        text.contains("herd_listen_queue_backlog{slot=\"0\""),
        "{text}"
    );

    // kill -9 a worker: the total does not go back.
    let victim: i32 = c
        .seen
        .iter()
        .find(|l| l.starts_with("EV fork id=1"))
        .and_then(|l| field(l, "pid"))
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    c.expect(10 * SEC, |l| l.starts_with("EV listening id=3"));
    let text = scrape(maddr);
    assert_eq!(
        metric(&text, "herd_requests_total"),
        Some(N as f64),
        "{text}"
    );
    assert_eq!(
        metric(&text, "herd_restarts_total{reason=\"crash\"}"),
        Some(1.0)
    );
    for _ in 0..10 {
        http_get(addr, "/").unwrap();
    }
    eventually(10 * SEC, "the new requests on top", || {
        (metric(&scrape(maddr), "herd_requests_total") == Some((N + 10) as f64)).then_some(())
    });
}

/// A real Prometheus server scraping the cluster, with its own config and data dir.
#[test]
fn prometheus_scrapes_the_request_total() {
    let dir = TempDir::new("prometheus");
    let maddr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (_c, _socket, addr) = http_cluster(&dir, &[("FIX_METRICS_ADDR", &maddr.to_string())]);
    const N: usize = 25;
    for _ in 0..N {
        http_get(addr, "/").unwrap();
    }
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: herd\n    \
             static_configs:\n      - targets: ['{maddr}']\n"
        ),
    )
    .unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let data = dir.0.join("data");
    let prom = Proc::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={web}"))
            .current_dir(&dir.0),
    );
    let query = "/api/v1/query?query=sum(herd_requests_total)";
    let value = eventually(60 * SEC, "Prometheus to scrape the total", || {
        let r = http_get(web, query).ok()?;
        let body = &r[r.find('{')?..];
        let j: Value = serde_json::from_str(body.trim_end_matches(|c| c != '}')).ok()?;
        let v = j["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()?;
        (v == N as f64).then_some(v)
    });
    assert_eq!(value, N as f64);
    let up = http_get(web, "/api/v1/query?query=up").unwrap();
    assert!(up.contains("\"1\""), "the target is up: {up}");
    drop(prom);
}

#[test]
fn kill_top_and_stop() {
    let dir = TempDir::new("kill-stop");
    let (mut c, socket, _) = http_cluster(&dir, &[]);
    let out = herd(&socket, &["kill", "1"], 10 * SEC);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let exit = c.expect(10 * SEC, |l| l.starts_with("EV exit id=1"));
    assert_eq!(field(&exit, "signal"), Some("15"), "SIGTERM by default");
    c.expect(10 * SEC, |l| l.starts_with("EV listening id=3"));
    let out = herd(&socket, &["kill", "2", "--signal", "KILL", "-j"], 10 * SEC);
    assert_eq!(out.json()["signal"], 9);
    c.expect(10 * SEC, |l| l.starts_with("EV listening id=4"));
    let s = status(&socket);
    assert_eq!(s["restarts"]["kill"], 2, "{s}");
    assert_eq!(s["restarts"]["crash"], 0, "{s}");
    assert_eq!(workers(&s), forked(&c));

    // `herd top` redraws in place until interrupted.
    let out = herd(&socket, &["top"], Duration::from_millis(2500));
    assert_eq!(out.code, None, "top runs until stopped");
    assert!(
        out.stdout.matches("\x1b[H\x1b[2J").count() >= 2,
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("failed slots: none"));

    let out = herd(&socket, &["stop"], 10 * SEC);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let status = c.wait(20 * SEC).expect("the primary stops");
    assert!(status.success(), "{}", c.stderr());
    assert!(!socket.exists(), "the socket is removed at exit");
}

/// What scripts outside the repo rely on: `HERD_SOCKET=/x/h.sock hello`, then
/// `HERD_SOCKET=/x/h.sock herd status -j`; and hello's `METRICS_ADDR`.
#[test]
fn hello_honours_herd_socket_and_metrics_addr() {
    let dir = TempDir::new("hello");
    let socket = dir.0.join("h.sock");
    let port = free_port();
    let maddr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let c = Proc::start(
        example("hello").to_str().unwrap(),
        &[
            ("PORT", &port.to_string()),
            ("WORKERS", "2"),
            ("HERD_SOCKET", socket.to_str().unwrap()),
            ("METRICS_ADDR", &maddr.to_string()),
        ],
        &[],
    );
    let s = eventually(20 * SEC, "hello's two workers in herd status", || {
        let out = run(
            Command::new(herd_cli())
                .args(["status", "-j"])
                .env("HERD_SOCKET", &socket),
            10 * SEC,
        );
        let j: Value = serde_json::from_str(&out.stdout).ok()?;
        (j["workers"].as_array()?.len() == 2).then_some(j)
    });
    let pids: Vec<i32> = workers(&s).iter().map(|w| w.1 as i32).collect();
    c.adopt(&pids);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..5 {
        assert!(http_get(addr, "/").unwrap().starts_with("HTTP/1.1 200"));
    }
    eventually(10 * SEC, "hello's requests in its metrics", || {
        (metric(&scrape(maddr), "herd_requests_total{class=\"2xx\"}") == Some(5.0)).then_some(())
    });
}

#[test]
fn stop_quick_kills_the_workers_now() {
    let dir = TempDir::new("quick");
    // Workers that would take 60 s to drain a request in flight.
    let (mut c, socket, addr) = http_cluster(&dir, &[("FIX_SHUTDOWN_MS", "60000")]);
    let pids: Vec<i32> = workers(&status(&socket))
        .iter()
        .map(|w| w.1 as i32)
        .collect();
    let slow = std::thread::spawn(move || http_get(addr, "/sleep?ms=30000"));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let out = herd(&socket, &["stop", "--quick"], 10 * SEC);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    c.wait(10 * SEC).expect("the primary stops at once");
    assert!(started.elapsed() < 10 * SEC);
    for pid in pids {
        assert!(!util::alive(pid), "worker {pid} was killed");
    }
    let _ = slow.join();
}
