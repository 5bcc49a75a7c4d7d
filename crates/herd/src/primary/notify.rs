//! systemd's service notifications (sd_notify(3)): a datagram to the socket named in
//! `NOTIFY_SOCKET` (a leading `@` is the abstract namespace), so that `Type=notify` and
//! `Type=notify-reload` units know when the cluster is ready, reloading and stopping.
//!
//! The variable is read once by the primary and removed, so that workers and the programs
//! they start do not talk to systemd in the cluster's name. Without it, nothing is sent.
//!
//! `WatchdogSec=` (systemd's `WATCHDOG_USEC`, and `WATCHDOG_PID` when it names this
//! process or is unset) asks for `WATCHDOG=1` at least that often: the primary sends it
//! every half period while its loop turns and the cluster is healthy (see
//! [`Watchdog`]). Both variables are removed too, as sd_watchdog_enabled(3) does.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// The primary's end of the notification socket, if systemd gave one.
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// READY=1 went out for the cluster's start.
    started: bool,
    /// systemd's watchdog, when it asked for one.
    pub(crate) watchdog: Option<Watchdog>,
}

/// systemd's watchdog: `WATCHDOG=1` every half `period` while the cluster is healthy. A
/// cluster that has been failing (a slot crash-loops, or no worker is ready) for a whole
/// period is not: the pings stop and systemd acts (`Restart=`, `WatchdogSignal=`).
pub(crate) struct Watchdog {
    period: Duration,
    /// When the next ping is due.
    next: Instant,
    /// Since when the cluster has been failing without a break.
    failing_since: Option<Instant>,
}

impl Watchdog {
    /// When the primary's loop must next wake for it.
    pub(crate) fn deadline(&self) -> Instant {
        self.next
    }
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
        let watchdog = watchdog_from_env().map(|period| Watchdog {
            period,
            next: Instant::now(),
            failing_since: None,
        });
        if watchdog.is_some() && target.is_none() {
            crate::log::warn(format_args!(
                "WATCHDOG_USEC is set without NOTIFY_SOCKET: systemd's watchdog cannot be fed"
            ));
        }
        Notifier {
            target,
            started: false,
            watchdog,
        }
    }

    /// Feeds the watchdog if a ping is due at `now` and the cluster is healthy: `failing`
    /// says whether it is failing now (a stopping cluster is not, while its loop turns).
    pub(crate) fn watchdog(&mut self, now: Instant, failing: Option<&str>) {
        let Some(w) = self.watchdog.as_mut() else {
            return;
        };
        match failing {
            None => w.failing_since = None,
            Some(_) => {
                w.failing_since.get_or_insert(now);
            }
        }
        if now < w.next {
            return;
        }
        w.next = now + w.period / 2;
        let failed_for = w.failing_since.map(|t| now.saturating_duration_since(t));
        if failed_for.is_some_and(|d| d >= w.period) {
            tracing::debug!("watchdog not fed: {}", failing.unwrap_or_default());
            return;
        }
        self.send("WATCHDOG=1");
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

/// The watchdog period systemd asked for (`WATCHDOG_USEC`, for this process by
/// `WATCHDOG_PID` or for whoever reads it), if any; removes both variables.
fn watchdog_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    std::env::remove_var("WATCHDOG_USEC");
    std::env::remove_var("WATCHDOG_PID");
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec = usec?;
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(Duration::from_micros(n)),
        _ => {
            crate::log::warn(format_args!(
                "WATCHDOG_USEC={usec:?} is not a positive number of microseconds: no watchdog"
            ));
            None
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with.
fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000,
        Err(_) => 0,
    }
}
