//! [`Cluster`]: the settings (Node's `setupPrimary`) and the entry point that supervises in
//! the primary and serves in a worker, so one `main` works for both.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Poll, Token, Waker};

use crate::control::SocketSetting;
use crate::error::{Error, ErrorKind, Result};
use crate::listen::{Listeners, Policy};
use crate::primary::spawn::SpawnSettings;
use crate::primary::{
    self, Backoff, CrashLoop, Dispatch, Event, Line, OnCrashLoop, PrimaryHandle, Recycling,
};
use crate::worker::Worker;

/// A cluster: how many workers, how they are started, how connections reach them, and what
/// the primary does on each lifecycle event.
///
/// ```no_run
/// use std::io::Write;
///
/// fn main() -> Result<(), herd::Error> {
///     herd::Cluster::new().workers(2).run(|mut worker| {
///         let listener = worker.listen("127.0.0.1:0")?;
///         worker.listening(listener.local_addr().map_err(|e| herd::Error::from(e))?)?;
///         for conn in listener.incoming() {
///             let _ = conn.map(|mut c| writeln!(c, "hello from worker {}", worker.id()));
///         }
///         Ok(())
///     })
/// }
/// ```
pub struct Cluster {
    workers: usize,
    exec: Option<PathBuf>,
    args: Option<Vec<OsString>>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    uid: Option<u32>,
    gid: Option<u32>,
    silent: bool,
    policy: Policy,
    backlog: i32,
    shutdown_timeout: Duration,
    shutdown_delay: Duration,
    max_message: usize,
    wait_ready: bool,
    ready_timeout: Duration,
    reload_batch: usize,
    backoff: Backoff,
    boot_timeout: Duration,
    run_timeout: Duration,
    recycling: Recycling,
    crash_loop: CrashLoop,
    on_event: Option<primary::OnEvent>,
    dispatch: Option<Box<dyn Dispatch>>,
    cpus: Option<Vec<usize>>,
    listen_on: Option<Vec<String>>,
    control_socket: SocketSetting,
    metrics_addr: Option<SocketAddr>,
    worker_metrics: Option<Duration>,
    poll: Option<(
        Poll,
        PrimaryHandle,
        crossbeam_channel::Receiver<primary::Command>,
    )>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("workers", &self.workers)
            .field("exec", &self.exec)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::io("I/O error", e)
    }
}

/// The exit status of a worker that failed to boot for a configuration error (sysexits'
/// `EX_CONFIG`): its `run` closure returned an [`ErrorKind::Config`] error before the
/// worker listened or called `ready()`. The primary does not restart such a worker while
/// none serves: the start stops with one line instead of a crash loop.
pub(crate) const EX_CONFIG: i32 = 78;

/// A worker's `run` failed: say why in one line (unless the primary says it: a listen error
/// it sent stops the cluster with that sentence) and exit: [`EX_CONFIG`] for a
/// configuration error before the worker announced itself (a failed boot), 1 otherwise.
/// Returning the error would have `main` print it, in pieces that interleave with the other
/// workers' lines.
fn worker_failed(e: &Error) -> ! {
    if e.kind() != ErrorKind::Listen {
        crate::log::error(format_args!("{e}"));
    }
    if e.kind() == ErrorKind::Config && !crate::worker::announced() {
        std::process::exit(EX_CONFIG)
    }
    std::process::exit(1)
}

/// A worker could not connect to its primary: one line and exit 1 (the primary reports a
/// worker that never connected).
fn exit_unconnected(e: &Error) -> ! {
    crate::log::error(format_args!("{e}"));
    std::process::exit(1)
}

/// The CPUs this process may use (at least one).
fn one_per_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Cluster {
    /// A cluster with the defaults documented on each setter.
    pub fn new() -> Cluster {
        Cluster {
            workers: one_per_cpu(),
            exec: None,
            args: None,
            cwd: None,
            env: Vec::new(),
            uid: None,
            gid: None,
            silent: false,
            policy: Policy::default(),
            backlog: 1024,
            shutdown_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            max_message: crate::ipc::DEFAULT_MAX_MESSAGE,
            wait_ready: false,
            ready_timeout: Duration::from_secs(10),
            reload_batch: 1,
            backoff: Backoff {
                first: Duration::from_millis(100),
                max: Duration::from_secs(15),
                healthy_after: Duration::from_secs(60),
            },
            boot_timeout: Duration::from_secs(60),
            run_timeout: Duration::from_secs(30),
            recycling: Recycling::default(),
            crash_loop: CrashLoop {
                crashes: 5,
                window: Duration::from_secs(60),
                then: OnCrashLoop::Retry,
            },
            on_event: None,
            dispatch: None,
            cpus: None,
            listen_on: None,
            control_socket: SocketSetting::Default,
            metrics_addr: None,
            worker_metrics: Some(Duration::from_secs(1)),
            poll: None,
        }
    }

    /// How many workers. `0` means one per CPU this process may use, as PM2's `instances: 0`
    /// does (so a `WORKERS=0` setting means "as many as the machine has"). Default: one per
    /// CPU (the available parallelism).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// The executable workers run. Default: this program, as it was at the path it was
    /// started from (so a rolling reload picks up a new binary put at that path).
    pub fn exec(mut self, path: impl Into<PathBuf>) -> Self {
        self.exec = Some(path.into());
        self
    }

    /// Arguments for workers. Default: the primary's own arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// The workers' working directory. Default: the primary's.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// An extra environment variable for workers (on top of the primary's environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The user id workers run as (the primary must be root). Default: the primary's.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// The group id workers run as (the primary must be root). Default: the primary's.
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Discard the workers' stdout and stderr. Default: false (workers share the primary's).
    pub fn silent(mut self, silent: bool) -> Self {
        self.silent = silent;
        self
    }

    /// How connections reach workers. Default: [`Policy::ReusePort`].
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Hand connections out from the primary with `dispatcher` (Node's SCHED_RR and its
    /// relatives; see the herd-rr crate) instead of letting workers accept. Overrides
    /// [`Cluster::policy`]. Default: none (workers accept).
    pub fn dispatch(mut self, dispatcher: impl Dispatch) -> Self {
        self.dispatch = Some(Box::new(dispatcher));
        self
    }

    /// The CPUs a [`Policy::Pinned`] cluster pins its slots to (slot i → `cpus[i % len]`).
    /// Default: every CPU this process may run on (sched_getaffinity).
    ///
    /// [`Cluster::run`] fails with [`ErrorKind::Config`] when one is not available.
    pub fn cpus(mut self, cpus: impl IntoIterator<Item = usize>) -> Self {
        self.cpus = Some(cpus.into_iter().collect());
        self
    }

    /// The only addresses workers may listen on ([`Worker::listen`], [`Worker::bind`],
    /// [`Worker::serve_http`]); a request for any other gets [`ErrorKind::Listen`] (EPERM)
    /// back in the worker and creates no socket. Give the addresses exactly as workers ask
    /// for them (`"0.0.0.0:8000"`, `"127.0.0.1:0"`).
    ///
    /// Default: the addresses the cluster's first workers ask for until the first of them
    /// reports it is listening (as [`Worker::serve`] does, for all its addresses at once);
    /// the set is fixed from then on, so a worker started later (or a compromised one)
    /// cannot open new ports through the primary. Either way each worker may make at most
    /// 64 listen requests.
    ///
    /// [`Cluster::run`] fails with [`ErrorKind::Config`] when one is not an IP address and
    /// port.
    pub fn listen_on<I, S>(mut self, addrs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.listen_on = Some(addrs.into_iter().map(Into::into).collect());
        self
    }

    /// The listen backlog of each listener. Default: 1024 (the kernel caps it at somaxconn).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// How long a stop or a disconnect waits for a worker to finish before SIGKILL; also the
    /// worker's drain deadline. Default: 30 s.
    pub fn shutdown_timeout(mut self, t: Duration) -> Self {
        self.shutdown_timeout = t;
        self
    }

    /// How long the first SIGTERM or SIGINT leaves the cluster serving before it drains:
    /// meanwhile `/readyz` answers 503 (and systemd's STATUS says so), so that a load
    /// balancer or Kubernetes stops sending new traffic while the workers still take what
    /// comes. A second SIGTERM or SIGINT skips the rest of the delay;
    /// [`PrimaryHandle::stop`](crate::PrimaryHandle::stop) and `herd stop` do not wait for
    /// it. Give the supervisor (Kubernetes' `terminationGracePeriodSeconds`, systemd's
    /// `TimeoutStopSec`) at least the delay plus [`Cluster::shutdown_timeout`]. Default:
    /// zero (drain at once).
    pub fn shutdown_delay(mut self, d: Duration) -> Self {
        self.shutdown_delay = d;
        self
    }

    /// The largest IPC message, in bytes, either way. Default: 1 MiB.
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message = n;
        self
    }

    /// Whether a reload waits for the new worker's explicit [`Worker::ready`] (PM2's
    /// `wait_ready`) instead of its first `listening`. Default: false.
    pub fn wait_ready(mut self, wait: bool) -> Self {
        self.wait_ready = wait;
        self
    }

    /// How long a reload (or a recycle) waits for a new worker to be ready before it stops
    /// and keeps the old workers. Also how long the cluster's first workers have to connect
    /// to the primary: until one has, a worker that does not is taken as a program that is
    /// not a herd program, and the cluster stops. Default: 10 s.
    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }

    /// How many slots a rolling reload replaces at once. Default: 1.
    pub fn reload_batch(mut self, n: usize) -> Self {
        self.reload_batch = n.max(1);
        self
    }

    /// The restart delay after a crash: `first`, doubled per crash in a row, capped at `max`,
    /// reset after a worker lived `healthy_after`. Default: 100 ms, 15 s, 60 s (PM2's
    /// exp_backoff_restart_delay).
    pub fn restart_backoff(
        mut self,
        first: Duration,
        max: Duration,
        healthy_after: Duration,
    ) -> Self {
        self.backoff = Backoff {
            first,
            max,
            healthy_after,
        };
        self
    }

    /// The control socket's path (`herd --socket PATH`; mode 0600), or `None` for no control
    /// socket. Default: env `HERD_SOCKET` if set, else `herd-<program>.sock` under
    /// `$XDG_RUNTIME_DIR`, else `herd-<program>-<uid>.sock` in the temp dir (see
    /// [`crate::control`]).
    ///
    /// A socket that cannot be created is a warning (the cluster runs without it), except
    /// one held by another live primary at a path set here or in `HERD_SOCKET`: then
    /// [`Cluster::run`] fails with [`ErrorKind::Config`] naming the path. A stale socket
    /// left by a dead primary is replaced.
    pub fn control_socket(mut self, path: Option<PathBuf>) -> Self {
        self.control_socket = match path {
            Some(p) => SocketSetting::Path(p),
            None => SocketSetting::Off,
        };
        self
    }

    /// How long a worker may take from its start to ready (listening, or
    /// [`Worker::ready`] under [`Cluster::wait_ready`]); one that takes longer is killed and
    /// restarted like a crashed one. A worker that serves no socket calls
    /// [`Worker::ready`] to say it started. Zero turns it off. Default: 60 s.
    pub fn boot_timeout(mut self, t: Duration) -> Self {
        self.boot_timeout = t;
        self
    }

    /// The watchdog: how long a worker's event loop may go without turning (a handler that
    /// never returns, a deadlock, a stopped process) before the worker counts as hung. A hung
    /// worker is named in one warning with the request it was in, reported as
    /// [`Event::Hung`], replaced in its slot at once (the slot's queued connections go to
    /// the replacement) and killed: SIGABRT first (its default action dumps core; an
    /// application may catch it to log its state), SIGKILL 2 s later. The primary samples
    /// the workers' heartbeats about every second (a quarter of this when shorter), so a
    /// hang is seen within this plus about a second. Workers that serve with a loop of their
    /// own (not [`Worker::serve`]) are watched only once they beat through
    /// [`Worker::heartbeat`] (herd-tokio does for tokio servers). Zero turns it off.
    /// Default: 30 s.
    pub fn run_timeout(mut self, t: Duration) -> Self {
        self.run_timeout = t;
        self
    }

    /// Recycle a worker after it served `requests` requests plus a per-worker share of
    /// `jitter` (gunicorn's `max_requests` and `max_requests_jitter`), so workers started
    /// together do not leave together. A recycle starts a new worker in the slot, then
    /// disconnects the old one once the new one is ready: the old one finishes its requests
    /// and hands its idle keep-alive connections over. One slot at a time, never during a
    /// reload. Counts come from the heartbeat page, so only workers serving with
    /// [`Worker::serve`] over HTTP are counted. Default: off.
    pub fn max_requests(mut self, requests: u64, jitter: u64) -> Self {
        self.recycling.max_requests = (requests > 0).then_some((requests, jitter));
        self
    }

    /// Recycle a worker (as [`Cluster::max_requests`] does) once it has run `lifetime` plus
    /// a per-worker share of `jitter` (granian's `workers_lifetime`). Checked about every
    /// second. Default: off.
    pub fn max_lifetime(mut self, lifetime: Duration, jitter: Duration) -> Self {
        self.recycling.max_lifetime = (!lifetime.is_zero()).then_some((lifetime, jitter));
        self
    }

    /// Recycle a worker (as [`Cluster::max_requests`] does) once its resident memory
    /// exceeds `bytes` (PM2's `max_memory_restart`), read from /proc about every second.
    /// Default: off.
    pub fn max_rss(mut self, bytes: u64) -> Self {
        self.recycling.max_rss = (bytes > 0).then_some(bytes);
        self
    }

    /// A slot whose workers fail `crashes` times within `window` (crashes, hangs, boots
    /// that time out) is reported as crash-looping: one error line naming the slot, how
    /// often and the last exit, and [`Event::Failed`]; then `then` decides: keep restarting
    /// with the capped backoff, or stop the cluster with an error (a non-zero exit for
    /// systemd or Kubernetes to act on). A worker living the backoff's `healthy_after`
    /// clears it. Zero `crashes` turns it off. Default: 5 crashes within 60 s,
    /// [`OnCrashLoop::Retry`].
    pub fn crash_loop(mut self, crashes: u32, window: Duration, then: OnCrashLoop) -> Self {
        self.crash_loop = CrashLoop {
            crashes,
            window,
            then,
        };
        self
    }

    /// Serve the admin endpoints from the primary on this address: `GET /metrics`
    /// (Prometheus text), `/readyz` (200 when every slot has a ready worker, no slot
    /// crash-loops and the cluster is not stopping; else 503 and one line saying why) and
    /// `/livez` (200 while the primary's loop turns; 503 when it has not for 5 s). `HEAD`
    /// works on each. Default: `None` (no admin endpoint). [`Cluster::run`] fails when it
    /// cannot listen there.
    pub fn metrics_addr(mut self, addr: Option<SocketAddr>) -> Self {
        self.metrics_addr = addr;
        self
    }

    /// How often each worker's event loop ships its counters (requests, durations, bytes,
    /// connections) to the primary; they are also shipped when it exits. `None`: workers
    /// do not count (the metrics and `herd status` then show no requests). Default: 1 s.
    pub fn worker_metrics(mut self, every: Option<Duration>) -> Self {
        self.worker_metrics = every.map(|d| d.max(Duration::from_millis(1)));
        self
    }

    /// Called in the primary, on its loop, for every lifecycle event.
    pub fn on_event(mut self, f: impl FnMut(&Event, &PrimaryHandle) + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// A handle on the primary, for use from other threads (reload, scale, stop, send).
    ///
    /// # Errors
    /// When the primary's poller cannot be created.
    pub fn handle(&mut self) -> Result<PrimaryHandle> {
        self.ensure_poll()?;
        Ok(self.poll.as_ref().expect("created above").1.clone())
    }

    fn ensure_poll(&mut self) -> Result<()> {
        if self.poll.is_none() {
            let poll =
                Poll::new().map_err(|e| Error::io("cannot create the primary's poller", e))?;
            let waker = Waker::new(poll.registry(), Token(1))
                .map_err(|e| Error::io("cannot create the primary's waker", e))?;
            let (tx, rx) = crossbeam_channel::unbounded();
            let line = Line {
                tx,
                waker: Arc::new(waker),
                max_message: self.max_message,
            };
            let handle = PrimaryHandle {
                line,
                workers: Arc::new(Mutex::new(Vec::new())),
            };
            self.poll = Some((poll, handle, rx));
        }
        Ok(())
    }

    /// In the primary: starts the workers and supervises them until the cluster stops
    /// (SIGTERM/SIGINT or [`PrimaryHandle::stop`]). In a worker: connects to the primary and
    /// runs `worker`; the process should exit when it returns `Ok`. When `worker` fails, the
    /// worker process writes the error to stderr as one line (a listen error is reported by
    /// the primary instead) and exits with status 1, so that several workers failing at once
    /// do not garble each other's lines.
    ///
    /// A configuration error ([`ErrorKind::Config`], e.g. from
    /// `herd::tls::TlsConfig::from_pem_files` on a bad path)
    /// returned before the worker listened or called [`Worker::ready`] is a failed boot: the
    /// worker exits with status 78 (`EX_CONFIG` of sysexits.h) instead, and the primary does
    /// not restart it. While no other worker serves (the cluster is starting), the primary
    /// stops the cluster and `run` returns an [`ErrorKind::Config`] error naming the worker;
    /// during a rolling reload the reload stops and the old workers serve on; when other
    /// workers serve outside a reload (a crashed worker's restart), it counts as a crash
    /// (restart with backoff, crash-loop detection), as a worker that serves may recover.
    ///
    /// Without a tracing subscriber, worker crashes, restarts and failed reloads still reach
    /// stderr, one line each; install one (e.g. `tracing_subscriber::fmt().init()`) to see
    /// every lifecycle event.
    ///
    /// # Errors
    /// In the primary: a setting that cannot work ([`ErrorKind::Config`]), workers that
    /// cannot start ([`ErrorKind::Start`]), or a stop that had to kill workers
    /// ([`ErrorKind::Shutdown`]). In a worker: what `worker` returned.
    pub fn run<F>(mut self, worker: F) -> Result<()>
    where
        F: FnOnce(Worker) -> Result<()>,
    {
        if crate::is_worker() {
            let me = Worker::connect().unwrap_or_else(|e| exit_unconnected(&e));
            return worker(me).map_err(|e| worker_failed(&e));
        }
        let spawn = self.spawn_settings()?;
        self.ensure_poll()?;
        let (poll, handle, rx) = self.poll.take().expect("created above");
        let mut listeners = Listeners::new(
            self.policy,
            self.backlog,
            self.dispatch.is_some(),
            self.cpus.clone(),
        )
        .map_err(|e| Error::new(ErrorKind::Config, e))?;
        // systemd's sockets (LISTEN_FDS), taken before any worker starts: they must not
        // inherit the variables.
        listeners.adopt_activated(
            crate::listen::activation::take().map_err(|e| Error::new(ErrorKind::Config, e))?,
        );
        let workers = match self.workers {
            0 => one_per_cpu(),
            n => n,
        };
        let policy = match &self.dispatch {
            Some(_) => "dispatch".to_string(),
            None => format!("{:?}", self.policy).to_lowercase(),
        };
        let board = Arc::new(crate::metrics::Board::new(policy, workers));
        let control = crate::control::start(
            &self.control_socket,
            self.metrics_addr,
            handle.clone(),
            board.clone(),
        )?;
        let cfg = primary::Config {
            settings: self.settings(&spawn),
            spawn,
            listeners,
            dispatch: self.dispatch.take(),
            allowed: primary::Allowed::new(self.allowed_addrs()?),
            board,
        };
        let result = primary::Primary::new(cfg, poll, rx, handle, self.on_event.take())?.run();
        drop(control);
        result
    }

    fn settings(&self, spawn: &SpawnSettings) -> primary::Settings {
        primary::Settings {
            workers: match self.workers {
                0 => one_per_cpu(),
                n => n,
            },
            exec: spawn.exec.display().to_string(),
            wait_ready: self.wait_ready,
            ready_timeout: self.ready_timeout,
            shutdown_timeout: self.shutdown_timeout,
            shutdown_delay: self.shutdown_delay,
            reload_batch: self.reload_batch,
            backoff: self.backoff,
            boot_timeout: self.boot_timeout,
            run_timeout: self.run_timeout,
            recycling: self.recycling,
            crash_loop: self.crash_loop,
        }
    }

    /// [`Cluster::listen_on`]'s addresses, parsed.
    fn allowed_addrs(&self) -> Result<Option<Vec<std::net::SocketAddr>>> {
        let Some(list) = &self.listen_on else {
            return Ok(None);
        };
        list.iter()
            .map(|a| {
                a.parse().map_err(|_| {
                    Error::new(
                        ErrorKind::Config,
                        format!("listen_on: {a:?} is not an IP address and port (like \"0.0.0.0:8000\" or \"[::1]:8000\")"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn spawn_settings(&self) -> Result<SpawnSettings> {
        let exec = match &self.exec {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| Error::io("cannot find this program's path (set Cluster::exec)", e))?,
        };
        if !exec.is_file() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "exec {} is not a file: set Cluster::exec to the worker program",
                    exec.display()
                ),
            ));
        }
        if let Some(dir) = &self.cwd {
            if !dir.is_dir() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "cwd {} is not a directory: set Cluster::cwd to one that exists",
                        dir.display()
                    ),
                ));
            }
        }
        if (self.uid.is_some() || self.gid.is_some()) && !nix::unistd::geteuid().is_root() {
            return Err(Error::new(
                ErrorKind::Config,
                "uid/gid need the primary to run as root: run it as root or drop Cluster::uid/gid",
            ));
        }
        Ok(SpawnSettings {
            exec,
            args: self
                .args
                .clone()
                .unwrap_or_else(|| std::env::args_os().skip(1).collect()),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
            uid: self.uid,
            gid: self.gid,
            silent: self.silent,
            max_message: self.max_message,
            drain: self.shutdown_timeout,
            report_load: self.dispatch.as_ref().is_some_and(|d| d.wants_load()),
            metrics_every: self.worker_metrics,
            beat_every: primary::beat_every(self.run_timeout),
        })
    }
}
