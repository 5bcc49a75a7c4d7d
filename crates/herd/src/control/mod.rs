//! The control plane in the primary: a Unix socket (mode 0600) that the `herd` command and
//! scripts talk to (the protocol is below), and the `/metrics` endpoint, both served by one
//! thread of the primary that reaches the primary's loop only through its command channel
//! and reads a shared board of the workers' merged counters.
//!
//! The socket's path: [`crate::Cluster::control_socket`], else env `HERD_SOCKET`, else
//! `herd-<program>.sock` under `$XDG_RUNTIME_DIR` (or `herd-<program>-<uid>.sock` in the
//! temp dir). A lock file next to it (`<path>.lock`, held with flock for the primary's life)
//! tells a live cluster from a stale socket: a stale socket is replaced, a live one is not.
//!
//! # The protocol
//!
//! For the `herd` command and any script: over the primary's Unix
//! socket, each message is a frame of a 4-byte big-endian length `N` (1 ..= 65536) followed
//! by `N` bytes of UTF-8 JSON. A client sends a request and reads one response, and may send
//! another on the same connection.
//!
//! Requests carry the protocol version `v` (this is version 1) and a `cmd`:
//!
//! | request | response (besides `"v": 1, "ok": true`) |
//! |---|---|
//! | `{"v":1,"cmd":"status"}` | `"status"`: the cluster (policy, address, generation, reload, slots) and one entry per worker |
//! | `{"v":1,"cmd":"reload"}` | a rolling reload started |
//! | `{"v":1,"cmd":"reload","wait":true}` | sent when it ended: `"generation"`; or `"ok": false` with the reason it stopped (the old workers kept serving) |
//! | `{"v":1,"cmd":"scale","workers":N}` or `{"v":1,"cmd":"scale","delta":K}` | `"from"`, `"to"` |
//! | `{"v":1,"cmd":"stop"}`, `{"v":1,"cmd":"stop","quick":true}` | the stop began (quick: workers are SIGKILLed now) |
//! | `{"v":1,"cmd":"kill","id":ID}` (optional `"signal"`: `"SIGTERM"` (default), `"SIGKILL"`, a number) | the signal was sent; the slot gets a new worker |
//!
//! A failure is `{"v":1,"ok":false,"error":"what went wrong and what to do"}`. A frame over
//! the limit, or one that is not JSON, gets such an answer and the connection closes; a
//! client that sends nothing for 10 s is closed. None of this ever blocks the primary.

pub(crate) mod proto;
mod server;
mod status;

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::net::{TcpListener, UnixListener};
use mio::{Poll, Waker};
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Board;
use crate::primary::PrimaryHandle;

/// The environment variable naming the control socket (read by `Cluster` and `herd`).
pub const ENV_SOCKET: &str = "HERD_SOCKET";

/// Where the control socket goes, as [`crate::Cluster`] was told.
#[derive(Debug, Clone, Default)]
pub(crate) enum SocketSetting {
    /// The default: env `HERD_SOCKET`, else derived from the program's name.
    #[default]
    Default,
    /// This path.
    Path(PathBuf),
    /// No control socket.
    Off,
}

/// The default socket path for `program` (see the module docs), without `HERD_SOCKET`.
pub fn default_socket_path(program: &str) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(&dir).join(format!("herd-{program}.sock")),
        None => std::env::temp_dir().join(format!(
            "herd-{program}-{}.sock",
            nix::unistd::getuid().as_raw()
        )),
    }
}

/// This program's name, as the default socket path uses it.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "herd".into())
}

/// The control socket and metrics server, running; stops and removes the socket on drop.
pub(crate) struct Control {
    quit: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    socket: Option<(PathBuf, Flock<File>)>,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some((path, lock)) = self.socket.take() {
            let _ = std::fs::remove_file(&path);
            // Removed while still held: a primary starting now makes a fresh one.
            let _ = std::fs::remove_file(lock_path(&path));
            drop(lock);
        }
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Why the socket could not be made.
enum BindError {
    /// Another live primary holds it.
    Live(String),
    Other(String),
}

/// Binds the control socket at `path`, mode 0600, replacing a stale one.
fn bind(path: &Path) -> std::result::Result<(UnixListener, Flock<File>), BindError> {
    let shown = path.display();
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(path))
        .map_err(|e| BindError::Other(format!("cannot create {shown}.lock: {e}")))?;
    let _ = std::fs::set_permissions(lock_path(path), std::fs::Permissions::from_mode(0o600));
    let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        if e == nix::errno::Errno::EWOULDBLOCK {
            BindError::Live(format!(
                "another herd primary is serving the control socket {shown}: stop it, or give \
                 this cluster another path (Cluster::control_socket or env {ENV_SOCKET})"
            ))
        } else {
            BindError::Other(format!("cannot lock {shown}.lock: {e}"))
        }
    })?;
    // We hold the lock: a socket there is a dead primary's, unless something else answers.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(BindError::Live(format!(
            "a process that is not a herd primary listens on {shown}: give this cluster \
             another path (Cluster::control_socket or env {ENV_SOCKET})"
        )));
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!("replaced the stale control socket {shown}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(BindError::Other(format!("cannot replace {shown}: {e}"))),
    }
    // Bound under a temporary name, restricted, then renamed: never reachable with wider
    // permissions.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)
        .and_then(|l| {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&tmp, path)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            BindError::Other(format!("cannot create the control socket {shown}: {e}"))
        })?;
    Ok((UnixListener::from_std(listener), lock))
}

/// Starts the control thread: the control socket as `setting` says (failing to create it is
/// a warning, except that a path set explicitly and held by a live primary is an error), and
/// the metrics endpoint on `metrics` (an error when it cannot listen). `None` when neither
/// is wanted.
pub(crate) fn start(
    setting: &SocketSetting,
    metrics: Option<SocketAddr>,
    handle: PrimaryHandle,
    board: Arc<Board>,
) -> Result<Option<Control>> {
    let (path, explicit) = match setting {
        SocketSetting::Off => (None, false),
        SocketSetting::Path(p) => (Some(p.clone()), true),
        SocketSetting::Default => match std::env::var_os(ENV_SOCKET).filter(|v| !v.is_empty()) {
            Some(p) => (Some(PathBuf::from(p)), true),
            None => (Some(default_socket_path(&program_name())), false),
        },
    };
    let mut socket = None;
    if let Some(path) = path {
        match bind(&path) {
            Ok((l, lock)) => socket = Some((path, l, lock)),
            Err(BindError::Live(why)) if explicit => {
                return Err(Error::new(ErrorKind::Config, why));
            }
            Err(BindError::Live(why) | BindError::Other(why)) => {
                tracing::warn!("{why}; running without a control socket");
            }
        }
    }
    let metrics = match metrics {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    Ok(l)
                })
                .map_err(|e| {
                    Error::io(
                        format!("cannot serve metrics on {addr} (Cluster::metrics_addr)"),
                        e,
                    )
                })?,
        ),
        None => None,
    };
    if socket.is_none() && metrics.is_none() {
        return Ok(None);
    }
    let poll = Poll::new().map_err(|e| Error::io("cannot create the control poller", e))?;
    let waker = Arc::new(
        Waker::new(poll.registry(), server::WAKER)
            .map_err(|e| Error::io("cannot create the control waker", e))?,
    );
    if let Some(m) = &metrics {
        if let Ok(a) = m.local_addr() {
            tracing::info!("metrics on http://{a}/metrics");
        }
    }
    let (control, kept) = match socket {
        Some((path, l, lock)) => {
            tracing::info!("control socket {}", path.display());
            (Some(l), Some((path, lock)))
        }
        None => (None, None),
    };
    let quit = Arc::new(AtomicBool::new(false));
    let server = server::Server::new(
        poll,
        control,
        metrics.map(TcpListener::from_std),
        handle,
        board,
        quit.clone(),
    )
    .map_err(|e| Error::io("cannot register the control sockets", e))?;
    let thread = std::thread::Builder::new()
        .name("herd-control".into())
        .spawn(move || server.run())
        .map_err(|e| Error::io("cannot start the control thread", e))?;
    Ok(Some(Control {
        quit,
        waker,
        thread: Some(thread),
        socket: kept,
    }))
}
