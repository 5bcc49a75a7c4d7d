//! systemd socket activation: listening sockets passed to the primary with `LISTEN_FDS`
//! (sd_listen_fds(3)). systemd keeps its copy of each socket across restarts of the
//! service, so connections that arrive while the primary is down (a crash, an upgrade of the
//! primary itself) wait in the queue instead of being refused.
//!
//! The protocol: `LISTEN_PID` names the process the sockets are for (a child that inherited
//! the variables must ignore them), `LISTEN_FDS` says how many descriptors start at fd 3,
//! `LISTEN_FDNAMES` optionally names them (`:`-separated). The variables are removed once
//! read, so workers and the programs they start never see them.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use socket2::{Socket, Type};

/// The first descriptor systemd passes (SD_LISTEN_FDS_START).
const FIRST_FD: RawFd = 3;

/// A listening socket systemd passed.
pub(crate) struct Activated {
    pub addr: SocketAddr,
    /// Its name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`), if any.
    pub name: Option<String>,
    pub socket: Socket,
}

impl std::fmt::Debug for Activated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{} ({n})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Takes the sockets systemd passed to this process, if any, and removes the variables.
///
/// # Errors
/// A sentence saying what to fix: a passed descriptor that is not open, or not a listening
/// TCP socket.
pub(crate) fn take() -> Result<Vec<Activated>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let Some(fds) = fds else {
        return Ok(Vec::new());
    };
    let ours = pid
        .as_deref()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !ours {
        tracing::debug!(
            "LISTEN_FDS is for pid {}, not this process: ignored",
            pid.as_deref().unwrap_or("(unset)")
        );
        return Ok(Vec::new());
    }
    let n: RawFd = fds
        .parse()
        .map_err(|_| format!("LISTEN_FDS={fds:?} is not a number of descriptors"))?;
    let names: Vec<Option<String>> = match names {
        Some(list) => list
            .split(':')
            .map(|s| Some(s.to_string()).filter(|s| !s.is_empty()))
            .collect(),
        None => Vec::new(),
    };
    (0..n)
        .map(|i| adopt(FIRST_FD + i, names.get(i as usize).cloned().flatten()))
        .collect()
}

/// Takes ownership of passed descriptor `fd` and checks it is a listening TCP socket.
fn adopt(fd: RawFd, name: Option<String>) -> Result<Activated, String> {
    let what = || match &name {
        Some(n) => format!("socket-activated fd {fd} ({n})"),
        None => format!("socket-activated fd {fd}"),
    };
    if !crate::sys::fd_is_open(fd) {
        return Err(format!(
            "{} is not open: LISTEN_FDS counts more descriptors than were passed",
            what()
        ));
    }
    crate::sys::set_cloexec(fd).map_err(|e| format!("{}: {e}", what()))?;
    // SAFETY: systemd passed descriptors FIRST_FD.. for this process alone (LISTEN_PID is
    // ours, checked above); `fd` is open (checked) and is taken once: the variables that
    // name it are gone.
    let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let listening = socket.is_listener().unwrap_or(false);
    let stream = socket.r#type().is_ok_and(|t| t == Type::STREAM);
    let addr = socket.local_addr().ok().and_then(|a| a.as_socket());
    match (addr, stream && listening) {
        (Some(addr), true) => {
            socket
                .set_nonblocking(true)
                .map_err(|e| format!("{}: {e}", what()))?;
            Ok(Activated { addr, name, socket })
        }
        _ => Err(format!(
            "{} is not a listening TCP socket: herd serves TCP, so the .socket unit needs ListenStream= with an IP address and port",
            what()
        )),
    }
}

/// Whether an activated socket bound to `bound` serves a worker's request for `requested`:
/// the same address, or the same port when the worker asked for any address (0.0.0.0 or
/// ::), which is what a service written for `0.0.0.0:8000` means under systemd.
pub(crate) fn serves(bound: SocketAddr, requested: SocketAddr) -> bool {
    bound == requested
        || (requested.ip().is_unspecified()
            && requested.port() == bound.port()
            && requested.is_ipv4() == bound.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::serves;

    #[test]
    fn an_activated_socket_serves_its_address_and_any_address_on_its_port() {
        let a = |s: &str| s.parse().unwrap();
        let cases = [
            ("127.0.0.1:8000", "127.0.0.1:8000", true),
            ("127.0.0.1:8000", "0.0.0.0:8000", true),
            ("0.0.0.0:8000", "0.0.0.0:8000", true),
            ("[::]:8000", "[::]:8000", true),
            ("[::1]:8000", "[::]:8000", true),
            ("127.0.0.1:8000", "127.0.0.1:8001", false),
            ("127.0.0.1:8000", "0.0.0.0:8001", false),
            ("127.0.0.1:8000", "10.0.0.1:8000", false),
            ("[::]:8000", "0.0.0.0:8000", false),
            ("127.0.0.1:8000", "0.0.0.0:0", false),
        ];
        for (bound, requested, want) in cases {
            assert_eq!(
                serves(a(bound), a(requested)),
                want,
                "{bound} for {requested}"
            );
        }
    }
}
