//! The workloads of the comparison and the herd-load configuration of each.

use std::net::SocketAddr;
use std::time::Duration;

use herd_load::{Config, Mode, Stop, WeightedPath};

/// One way of loading a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 64 keep-alive connections, `GET /`.
    KeepAlive,
    /// A new connection per request, 32 at a time, `GET /`.
    Close,
    /// 64 keep-alive connections; 5% of requests are `/spin?us=20000`, 95% `/`.
    Skewed,
    /// 512 keep-alive connections opened at once at the start, then kept for the whole run.
    Burst,
    /// 64 keep-alive connections; the busiest worker (most CPU time) is killed (SIGKILL)
    /// half-way through.
    KillWorker,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 5] = [
        Workload::KeepAlive,
        Workload::Close,
        Workload::Skewed,
        Workload::Burst,
        Workload::KillWorker,
    ];

    /// The short name used in the table, the JSON and `HERD_BENCH_WORKLOADS`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::KeepAlive => "keepalive-64",
            Workload::Close => "close-32",
            Workload::Skewed => "skewed-spin",
            Workload::Burst => "burst-512",
            Workload::KillWorker => "kill-worker",
        }
    }

    /// The workload called `name`.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// Whether it needs the workload server's `/spin` (so not for the reference servers).
    pub fn needs_spin(self) -> bool {
        self == Workload::Skewed
    }

    /// Whether a worker is killed half-way through.
    pub fn kills_a_worker(self) -> bool {
        self == Workload::KillWorker
    }

    /// The load against `addr` for `duration`.
    pub fn config(self, addr: SocketAddr, duration: Duration) -> Config {
        let mut c = Config::new(addr);
        c.threads = 2;
        c.stop = Stop::Duration(duration);
        match self {
            Workload::KeepAlive | Workload::KillWorker => {
                c.connections = 64;
                c.mode = Mode::KeepAlive;
            }
            Workload::Close => {
                c.connections = 32;
                c.mode = Mode::Close;
            }
            Workload::Skewed => {
                c.connections = 64;
                c.mode = Mode::KeepAlive;
                c.paths = vec![
                    WeightedPath::new("/", 95),
                    WeightedPath::new("/spin?us=20000", 5),
                ];
            }
            Workload::Burst => {
                c.connections = 512;
                c.mode = Mode::KeepAlive;
            }
        }
        c
    }
}
