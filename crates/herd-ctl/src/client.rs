//! Finding the control socket and talking to it: frames of a 4-byte big-endian length and
//! that many bytes of JSON, each request carrying the protocol version.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// The protocol version this command speaks.
const VERSION: u64 = 1;
/// The largest answer accepted.
const MAX_FRAME: usize = 16 << 20;

pub(crate) struct Client {
    stream: UnixStream,
    path: PathBuf,
}

/// The directories a cluster's default socket goes in.
fn default_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(std::env::temp_dir());
    dirs
}

/// The live `herd-*.sock` sockets of this user in the default directories.
fn discover() -> Vec<PathBuf> {
    // Our uid: the owner of our own /proc entry.
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let mut found = Vec::new();
    for dir in default_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("herd-") && name.ends_with(".sock")) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !meta.file_type().is_socket() || Some(meta.uid()) != me {
                continue;
            }
            if UnixStream::connect(e.path()).is_ok() {
                found.push(e.path());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

impl Client {
    /// Connects to `socket`, else env HERD_SOCKET, else the one live default socket.
    pub(crate) fn connect(socket: Option<&str>) -> Result<Client, String> {
        let (path, from) = match socket {
            Some(p) => (PathBuf::from(p), "--socket"),
            None => match std::env::var("HERD_SOCKET").ok().filter(|v| !v.is_empty()) {
                Some(p) => (PathBuf::from(p), "HERD_SOCKET"),
                None => {
                    let found = discover();
                    match found.as_slice() {
                        [one] => (one.clone(), "the only live herd-*.sock"),
                        [] => {
                            let dirs: Vec<String> = default_dirs()
                                .iter()
                                .map(|d| d.display().to_string())
                                .collect();
                            return Err(format!(
                                "no running herd cluster found: looked for herd-*.sock in {}. \
                                 Start one, or name its socket with --socket PATH or env \
                                 HERD_SOCKET (a cluster's socket is set with \
                                 Cluster::control_socket or HERD_SOCKET)",
                                dirs.join(" and ")
                            ));
                        }
                        many => {
                            let names: Vec<String> =
                                many.iter().map(|p| p.display().to_string()).collect();
                            return Err(format!(
                                "several herd clusters are running: choose one with --socket \
                                 PATH or env HERD_SOCKET: {}",
                                names.join(", ")
                            ));
                        }
                    }
                }
            },
        };
        let stream = UnixStream::connect(&path).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "no such socket: is the cluster running, and is this its path?"
                }
                std::io::ErrorKind::ConnectionRefused => {
                    "nothing listens there (a stale socket of a stopped cluster?)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied: the socket is mode 0600, run as the cluster's user"
                }
                _ => "",
            };
            format!(
                "cannot connect to the control socket {} (from {from}): {e}. {hint} Set the \
                 path with --socket PATH or env HERD_SOCKET",
                path.display()
            )
        })?;
        Ok(Client { stream, path })
    }

    /// Sends `request` (with the protocol version) and reads the answer, waiting at most
    /// `timeout` (`None`: as long as it takes).
    pub(crate) fn call(
        &mut self,
        request: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, String> {
        let mut request = request.clone();
        request["v"] = VERSION.into();
        let body = request.to_string();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body.as_bytes());
        let shown = self.path.display().to_string();
        let io = |e: std::io::Error| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                format!("the cluster at {shown} did not answer in time")
            } else {
                format!("lost the connection to the cluster at {shown}: {e}")
            }
        };
        self.stream.set_read_timeout(timeout).map_err(io)?;
        self.stream.write_all(&frame).map_err(io)?;
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head).map_err(io)?;
        let len = u32::from_be_bytes(head) as usize;
        if len > MAX_FRAME {
            return Err(format!(
                "the answer from {shown} is too large ({len} bytes)"
            ));
        }
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).map_err(io)?;
        serde_json::from_slice(&body)
            .map_err(|e| format!("the answer from {shown} is not JSON: {e}"))
    }
}
