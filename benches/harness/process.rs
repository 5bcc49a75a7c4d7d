//! A server process started by the harness: in its own process group, its stdout lines and
//! stderr collected, and the whole group killed and reaped on drop (also on panic, and on
//! Ctrl-C through [`cleanup`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cleanup;

/// How a start ended.
#[derive(Debug)]
pub enum Ready {
    /// Serving: every expected worker listens and `GET /` answers 200.
    Up,
    /// The program exited with status 2: it does not know what it was asked to run (an
    /// unknown policy); the text is its stderr.
    Unavailable(String),
    /// Anything else: exited otherwise, or not serving in time.
    Failed(String),
}

/// A running server process and its process group.
pub struct Server {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Where it serves (always on 127.0.0.1).
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `cmd` in a new process group, as a server that will listen on `addr`.
    pub fn spawn(cmd: &mut Command, addr: SocketAddr) -> io::Result<Server> {
        cleanup::install();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: prctl(2) is async-signal-safe and touches nothing of the parent; it makes the
        // server die with the thread that started it, should the harness be killed outright.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        cleanup::register(child.id() as i32);
        let (tx, lines) = channel();
        let out = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                if s.len() < 64 * 1024 {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Ok(Server {
            child,
            lines,
            stderr,
            addr,
        })
    }

    /// Waits up to `timeout` for `listening` lines on stdout (one per worker; `0` when the
    /// server prints none) and then for `GET /` to answer 200.
    pub fn wait_ready(&mut self, listening: usize, timeout: Duration) -> Ready {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        while seen < listening {
            if let Some(r) = self.exited() {
                return r;
            }
            match self.lines.recv_timeout(Duration::from_millis(20)) {
                Ok(line) if line.starts_with("listening") => seen += 1,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
            }
            if Instant::now() >= deadline {
                return Ready::Failed(format!("{seen} of {listening} workers listening in time"));
            }
        }
        loop {
            if let Some(r) = self.exited() {
                return r;
            }
            if probe(self.addr) {
                return Ready::Up;
            }
            if Instant::now() >= deadline {
                return Ready::Failed(format!("GET / on {} did not answer 200 in time", self.addr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The worker that used the most CPU so far (user + system time): the one serving the most,
    /// so that killing it is felt whatever the policy.
    pub fn busiest_worker(&self) -> Option<i32> {
        let ppid = self.child.id() as i32;
        procs()
            .filter(|p| p.ppid == ppid && p.state != 'Z')
            .max_by_key(|p| p.cpu_ticks)
            .map(|p| p.pid)
    }

    /// The CPU time the server has used so far, in clock ticks ([`ticks_per_sec`]): user +
    /// system time of its primary and of every live worker, plus the primary's reaped
    /// children (cutime + cstime), so that a worker that died or was replaced still counts.
    /// A worker that dies between the reads of one call may count twice or not at all: one
    /// worker's time, at most once per cell.
    pub fn cpu_ticks(&self) -> u64 {
        let primary = self.child.id() as i32;
        procs()
            .filter(|p| p.pid == primary || p.ppid == primary)
            .map(|p| p.cpu_ticks + p.children_ticks)
            .sum()
    }

    /// What it wrote on stderr so far, on one line.
    pub fn stderr_line(&self) -> String {
        let s = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn exited(&mut self) -> Option<Ready> {
        let status = self.child.try_wait().ok()??;
        // Give the stderr reader a moment to take the last line.
        std::thread::sleep(Duration::from_millis(30));
        let why = self.stderr_line();
        Some(match status.code() {
            Some(2) => Ready::Unavailable(why),
            _ => Ready::Failed(format!("exited with {status}: {why}")),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        let group: Vec<i32> = procs().filter(|p| p.pgrp == pgid).map(|p| p.pid).collect();
        // SAFETY: kill(2) on the process group this server was started in (its pid).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        cleanup::unregister(pgid);
        // The workers, orphaned, become this process's children (it is a subreaper): reap them.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut left: Vec<i32> = group.into_iter().filter(|&p| p != pgid).collect();
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|&pid| {
                // SAFETY: waitpid(2) on one pid of the server's group, without blocking.
                let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                r == 0 || (r < 0 && std::path::Path::new(&format!("/proc/{pid}")).exists())
            });
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Whether `GET /` on `addr` answers 200.
fn probe(addr: SocketAddr) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    attempt().unwrap_or(false)
}

/// One line of /proc/<pid>/stat, the fields the harness needs.
struct Proc {
    pid: i32,
    state: char,
    ppid: i32,
    pgrp: i32,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// cutime + cstime: the reaped children's utime + stime, in clock ticks.
    children_ticks: u64,
}

/// Every process on the machine (those that vanish while read are skipped).
fn procs() -> impl Iterator<Item = Proc> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
            let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
            let state = rest.next()?.chars().next()?;
            let ppid = rest.next()?.parse().ok()?;
            let pgrp = rest.next()?.parse().ok()?;
            // Fields 14 to 17 (utime, stime, cutime, cstime); `rest` now starts at field 6.
            let mut times = rest.skip(8).map(|f| f.parse::<u64>().ok());
            let mut next = || times.next().flatten();
            let (utime, stime, cutime, cstime) = (next()?, next()?, next()?, next()?);
            Some(Proc {
                pid,
                state,
                ppid,
                pgrp,
                cpu_ticks: utime + stime,
                children_ticks: cutime + cstime,
            })
        })
}

/// Clock ticks per second, the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf(3) with a valid name reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
