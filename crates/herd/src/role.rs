//! Which role this process plays. A worker is the same executable re-executed by the primary
//! with its id, slot and IPC fd in the environment (Node's NODE_UNIQUE_ID and
//! NODE_CHANNEL_FD); the variables are removed on first look so a worker's own children are
//! not workers.

use std::sync::OnceLock;
use std::time::Duration;

pub(crate) const ENV_ID: &str = "HERD_WORKER_ID";
pub(crate) const ENV_SLOT: &str = "HERD_WORKER_SLOT";
pub(crate) const ENV_FD: &str = "HERD_IPC_FD";
pub(crate) const ENV_MAX_MESSAGE: &str = "HERD_MAX_MESSAGE";
pub(crate) const ENV_DRAIN_MS: &str = "HERD_DRAIN_MS";
pub(crate) const ENV_REPORT_LOAD: &str = "HERD_REPORT_LOAD";
pub(crate) const ENV_CPU: &str = "HERD_WORKER_CPU";
pub(crate) const ENV_METRICS_MS: &str = "HERD_METRICS_MS";
pub(crate) const ENV_HEARTBEAT_FD: &str = "HERD_HEARTBEAT_FD";
pub(crate) const ENV_BEAT_MS: &str = "HERD_BEAT_MS";

/// What the primary told this worker through its environment.
#[derive(Debug, Clone)]
pub(crate) struct WorkerEnv {
    pub id: u32,
    pub slot: usize,
    pub fd: i32,
    pub max_message: usize,
    pub drain: Duration,
    pub report_load: bool,
    pub cpu: Option<usize>,
    /// How often the event loop ships its metric counters; `None`: it does not count.
    pub metrics_every: Option<Duration>,
    /// The heartbeat page's fd, and how often an idle loop beats.
    pub heartbeat: Option<(i32, Duration)>,
}

static ROLE: OnceLock<Option<WorkerEnv>> = OnceLock::new();

/// Reads (once) and removes the worker variables.
pub(crate) fn worker_env() -> Option<&'static WorkerEnv> {
    ROLE.get_or_init(|| {
        let id = std::env::var(ENV_ID).ok()?.parse().ok()?;
        let get = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        let env = WorkerEnv {
            id,
            slot: get(ENV_SLOT)? as usize,
            fd: get(ENV_FD)? as i32,
            max_message: get(ENV_MAX_MESSAGE)
                .map_or(crate::ipc::DEFAULT_MAX_MESSAGE, |v| v as usize),
            drain: Duration::from_millis(get(ENV_DRAIN_MS).unwrap_or(30_000)),
            report_load: get(ENV_REPORT_LOAD) == Some(1),
            cpu: get(ENV_CPU).map(|v| v as usize),
            metrics_every: get(ENV_METRICS_MS)
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis),
            heartbeat: get(ENV_HEARTBEAT_FD).map(|fd| {
                let ms = get(ENV_BEAT_MS).unwrap_or(1000);
                (fd as i32, Duration::from_millis(ms))
            }),
        };
        for k in [
            ENV_ID,
            ENV_SLOT,
            ENV_FD,
            ENV_MAX_MESSAGE,
            ENV_DRAIN_MS,
            ENV_REPORT_LOAD,
            ENV_CPU,
            ENV_METRICS_MS,
            ENV_HEARTBEAT_FD,
            ENV_BEAT_MS,
        ] {
            std::env::remove_var(k);
        }
        Some(env)
    })
    .as_ref()
}

/// True in the primary (any process not started by a herd primary as a worker).
pub fn is_primary() -> bool {
    worker_env().is_none()
}

/// True in a worker process.
pub fn is_worker() -> bool {
    worker_env().is_some()
}

/// This worker's id (1, 2, 3, ...; never reused within a primary's life), or `None` in the
/// primary.
pub fn worker_id() -> Option<u32> {
    worker_env().map(|e| e.id)
}

/// This worker's slot (0-based; a replacement takes the slot of the worker it replaces), or
/// `None` in the primary.
pub fn worker_slot() -> Option<usize> {
    worker_env().map(|e| e.slot)
}
