//! systemd's service notifications (sd_notify(3)): a datagram to the socket named in
//! `NOTIFY_SOCKET` (a leading `@` is the abstract namespace), so that `Type=notify` and
//! `Type=notify-reload` units know when the cluster is ready, reloading and stopping.
//!
//! The variable is read once by the primary and removed, so that workers and the programs
//! they start do not talk to systemd in the cluster's name. Without it, nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The primary's end of the notification socket, if systemd gave one.
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// READY=1 went out for the cluster's start.
    started: bool,
}

impl Notifier {
    /// Takes `NOTIFY_SOCKET` from the environment (and removes it).
    pub(crate) fn from_env() -> Notifier {
        let path = std::env::var_os("NOTIFY_SOCKET");
        std::env::remove_var("NOTIFY_SOCKET");
        let target = path.and_then(|p| {
            let p = p.into_encoded_bytes();
            let addr = match p.strip_prefix(b"@") {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name)
                }
                None => {
                    use std::os::unix::ffi::OsStrExt;
                    SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(&p))
                },
            };
            match (UnixDatagram::unbound(), addr) {
                (Ok(s), Ok(a)) => Some((s, a)),
                (Err(e), _) | (_, Err(e)) => {
                    crate::log::warn(format_args!(
                        "NOTIFY_SOCKET is set but unusable ({e}): systemd will not hear from this cluster"
                    ));
                    None
                }
            }
        });
        Notifier {
            target,
            started: false,
        }
    }

    fn send(&self, state: &str) {
        if let Some((socket, addr)) = &self.target {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!("sd_notify {state:?}: {e}");
            }
        }
    }

    /// Every slot has a ready worker: the first time, the cluster has started.
    pub(crate) fn all_ready(&mut self, workers: usize) {
        if !std::mem::replace(&mut self.started, true) {
            self.send(&format!("READY=1\nSTATUS={workers} workers ready"));
        }
    }

    /// A rolling reload started (`Type=notify-reload` waits for the READY=1 that ends it;
    /// without MONOTONIC_USEC, `systemctl reload` does not match the two).
    pub(crate) fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            monotonic_usec()
        ));
    }

    /// The reload ended: `result` says how.
    pub(crate) fn reloaded(&self, result: Result<(), &str>) {
        match result {
            Ok(()) => self.send("READY=1\nSTATUS=reload complete"),
            Err(why) => self.send(&format!(
                "READY=1\nSTATUS=reload failed, the old workers keep serving: {why}"
            )),
        }
    }

    /// A stop signal arrived: not ready, serving for `delay` before the stop.
    pub(crate) fn shutdown_delay(&self, delay: std::time::Duration) {
        self.send(&format!(
            "STATUS=shutting down: not ready, serving for {:.1} s, then draining",
            delay.as_secs_f64()
        ));
    }

    /// The cluster is stopping.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with.
fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000,
        Err(_) => 0,
    }
}
