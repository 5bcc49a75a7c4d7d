//! Shared helpers for the end-to-end tests: start a real cluster process, read its event
//! lines, and always kill and reap everything it started (guards with Drop).
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The path of example `name`, built first with the test's own profile (so a test file run
/// alone, or after a change, never uses a missing or stale example).
pub fn example(name: &str) -> std::path::PathBuf {
    build(&["--example", name], &format!("examples/{name}"))
}

/// The `herd` command (crates/herd-ctl), built first (once per test binary) with the test's
/// own profile.
pub fn herd_cli() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build(&["-p", "herd-ctl", "--bin", "herd"], "herd"))
        .clone()
}

/// Runs `cargo build <what>` with the test's own profile (so a test file run alone, or after
/// a change, never uses a missing or stale binary); returns `target/<profile>/<path>`.
pub fn build(what: &[&str], path: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("tests run from target/<profile>/deps");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet"])
        .args(what);
    // What cargo set for this test's own run (its package's name, version, directory): build
    // scripts that watch those variables (ring's) would see them change and rebuild their
    // crate and everything above it, here and again in the next plain `cargo build`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name == "CARGO_CRATE_NAME"
            || name == "CARGO_PRIMARY_PACKAGE"
        {
            cmd.env_remove(&*name);
        }
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building {what:?} failed: {status}");
    let built = profile_dir.join(path);
    assert!(built.is_file(), "{} was not built", built.display());
    built
}

/// The fixture cluster binary.
pub const FIXTURE: &str = env!("CARGO_BIN_EXE_herd-fixture");

/// A process under test: its stdout lines, its stderr, and every worker pid it reported.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// The stderr reader reached the end of the pipe.
    stderr_done: Arc<std::sync::atomic::AtomicBool>,
    pids: Arc<Mutex<HashSet<i32>>>,
}

/// Extracts `key=value` from an event line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

impl Proc {
    /// Starts `program` with `env` (stdout and stderr captured).
    pub fn start(program: &str, env: &[(&str, &str)], args: &[&str]) -> Proc {
        Self::spawn(Command::new(program).args(args).envs(env.iter().copied()))
    }

    /// Starts a prepared command (stdout and stderr captured).
    pub fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the process under test");
        let pids = Arc::new(Mutex::new(HashSet::new()));
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        let p = pids.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("EV fork") {
                    if let Some(pid) = field(&line, "pid").and_then(|v| v.parse().ok()) {
                        p.lock().unwrap().insert(pid);
                    }
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let e = stderr.clone();
        let stderr_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stderr_done.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
            stderr,
            stderr_done,
            pids,
        }
    }

    /// The primary's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Every worker pid reported so far.
    pub fn worker_pids(&self) -> Vec<i32> {
        self.pids.lock().unwrap().iter().copied().collect()
    }

    /// What the process wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for stderr to contain every one of `needles`; returns stderr.
    pub fn stderr_contains(&self, timeout: Duration, needles: &[&str]) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let err = self.stderr();
            if needles.iter().all(|n| err.contains(n)) || Instant::now() >= deadline {
                return err;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` to the primary.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we started and a valid signal number.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the next line matching `pred` (keeping every line in `seen`).
    pub fn expect(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no matching line within {timeout:?}; seen:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for `n` lines starting with `prefix`.
    pub fn expect_n(&mut self, n: usize, timeout: Duration, prefix: &str) -> Vec<String> {
        (0..n)
            .map(|_| self.expect(timeout, |l| l.starts_with(prefix)))
            .collect()
    }

    /// Waits until a line starting with each of `prefixes` has been seen, in any order.
    pub fn expect_all(&mut self, timeout: Duration, prefixes: &[&str]) {
        let deadline = Instant::now() + timeout;
        for p in prefixes {
            if !self.seen.iter().any(|l| l.starts_with(p)) {
                let left = deadline.saturating_duration_since(Instant::now());
                self.expect(left, |l| l.starts_with(p));
            }
        }
    }

    /// Collects lines for `d` without waiting for any in particular.
    pub fn drain_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
    }

    /// Waits up to `timeout` for the primary to exit, then (up to a second) for the last of
    /// its stderr, so that [`Proc::stderr`] right after holds all it wrote.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                let flushed = Instant::now() + Duration::from_secs(1);
                while !self.stderr_done.load(std::sync::atomic::Ordering::Acquire)
                    && Instant::now() < flushed
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.worker_pids() {
            // SAFETY: kill(2) on a pid this test's cluster reported; harmless if it is gone.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Whether `pid` is still a process (and not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Connects to `addr`, reads everything until the server closes, with timeouts.
pub fn fetch_line(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Sends an HTTP/1.1 GET with `Connection: close` and returns the whole response.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A free TCP port (bound on 0.0.0.0, then released), below the kernel's ephemeral
/// range: a port the kernel picked for `bind(:0)` is also one it gives client sockets as
/// their source port, and the load tests open thousands of those, so a cluster that binds
/// it a moment later could meet EADDRINUSE. Ports are spread by pid and a counter so that
/// test processes running side by side do not try the same ones.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000; // 10000..32000, under the default ephemeral range (32768+)
    let base = std::process::id().wrapping_mul(7_919);
    for _ in 0..1_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + base.wrapping_add(n.wrapping_mul(104_729)) % SPAN) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port between {LOW} and {}", LOW + SPAN)
}

pub const SEC: Duration = Duration::from_secs(1);

impl Proc {
    /// Adds `pids` to the processes killed on drop (for binaries that print no fork lines).
    pub fn adopt(&self, pids: &[i32]) {
        self.pids.lock().unwrap().extend(pids.iter().copied());
    }
}

/// The live children of `pid`, from the parent field of every /proc/<pid>/stat.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // After the `(comm)` field: state, then the parent pid.
        let mut rest = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let state = rest.next();
        let ppid = rest.next().and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) && state != Some("Z") {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

/// One HTTP/1.1 response read off a connection.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `(lower-case name, value)` in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server said `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response framed by `Content-Length` (what herd always sends) from `r`.
pub fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not a status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| std::io::Error::other(format!("bad header line: {l:?}")))?;
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Whether the peer closed `s` (EOF within the read timeout; a reset counts as closed).
pub fn closed_by_peer(r: &mut impl Read) -> bool {
    let mut buf = [0u8; 64];
    match r.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Connects to 127.0.0.1:`port` with a 2 s read timeout, retrying for up to 5 s while the
/// cluster comes up.
pub fn connect_retry(port: u16) -> TcpStream {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                return s;
            }
            Err(e) if Instant::now() >= deadline => panic!("connect to {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
