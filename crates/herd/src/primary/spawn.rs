//! Starting a worker process: re-execute the program with the worker's id, slot and IPC fd in
//! its environment.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::role;

/// Node's setupPrimary settings that shape a worker process.
#[derive(Debug, Clone)]
pub(crate) struct SpawnSettings {
    pub exec: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub silent: bool,
    pub max_message: usize,
    pub drain: Duration,
    pub report_load: bool,
    /// How often an idle worker's loop turns to refresh its heartbeat.
    pub beat_every: Duration,
    /// How often workers ship metric counters; `None`: they do not count.
    pub metrics_every: Option<Duration>,
}

/// Starts worker `id` in `slot`, with `theirs` as its end of the IPC socketpair and
/// `heartbeat` as its heartbeat page.
pub(crate) fn spawn(
    s: &SpawnSettings,
    id: u32,
    slot: usize,
    cpu: Option<usize>,
    theirs: &UnixStream,
    heartbeat: BorrowedFd<'_>,
) -> io::Result<Child> {
    let mut cmd = Command::new(&s.exec);
    cmd.args(&s.args)
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .env(role::ENV_ID, id.to_string())
        .env(role::ENV_SLOT, slot.to_string())
        .env(role::ENV_FD, theirs.as_raw_fd().to_string())
        .env(role::ENV_MAX_MESSAGE, s.max_message.to_string())
        .env(role::ENV_DRAIN_MS, s.drain.as_millis().to_string())
        .env(role::ENV_REPORT_LOAD, if s.report_load { "1" } else { "0" })
        .env(
            role::ENV_METRICS_MS,
            s.metrics_every
                .map_or(0, |d| d.as_millis().max(1))
                .to_string(),
        )
        .env(role::ENV_HEARTBEAT_FD, heartbeat.as_raw_fd().to_string())
        .env(role::ENV_BEAT_MS, s.beat_every.as_millis().to_string())
        .env_remove(role::ENV_CPU)
        .stdin(Stdio::null());
    if let Some(cpu) = cpu {
        cmd.env(role::ENV_CPU, cpu.to_string());
    }
    if let Some(dir) = &s.cwd {
        cmd.current_dir(dir);
    }
    if let Some(uid) = s.uid {
        cmd.uid(uid);
    }
    if let Some(gid) = s.gid {
        cmd.gid(gid);
    }
    if s.silent {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let fd = theirs.as_raw_fd();
    let beat = heartbeat.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    let pin = cpu.map(crate::listen::cpu_set);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (fcntl, prctl, getppid, sched_setaffinity) without allocating.
    unsafe {
        cmd.pre_exec(move || {
            crate::sys::child_setup(fd, parent)?;
            crate::sys::keep_across_exec(beat)?;
            if let Some(set) = &pin {
                crate::listen::pin(set)?;
            }
            Ok(())
        });
    }
    cmd.spawn()
}
