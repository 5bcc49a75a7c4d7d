//! The workloads of the comparison and the herd-load configuration of each.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use herd_load::{Config, Mode, Stop, WeightedPath};

/// How the load generator's connections look to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// As clients on a network arrive: one generator thread pinned to each of `cpus` (so
    /// SYNs come from every CPU, as a NIC with RSS spreads them) and the connections spread
    /// over [`SOURCES`] source addresses 127.0.0.2, .3, … (so that per-client policies see
    /// many clients). Every server gets this load.
    Spread {
        /// The CPUs to pin one generator thread each to.
        cpus: Vec<usize>,
    },
    /// Plain loopback: two unpinned threads, every connection from 127.0.0.1. Kept for the
    /// policies it misleads (`pinned`, `rr-sticky`), as a labelled lesson.
    Plain,
}

/// How many source addresses the spread load uses: one per connection of the keep-alive
/// workloads (64 clients).
pub const SOURCES: u8 = 64;

impl Load {
    /// `spread` or `plain`, for the JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Load::Spread { .. } => "spread",
            Load::Plain => "plain",
        }
    }

    /// The source addresses: 127.0.0.2 to 127.0.0.(1 + [`SOURCES`]).
    pub fn sources() -> Vec<IpAddr> {
        (2..2 + SOURCES)
            .map(|d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d)))
            .collect()
    }
}

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

    /// The load against `addr` for `duration`, shaped by `load`.
    pub fn config(self, addr: SocketAddr, duration: Duration, load: &Load) -> Config {
        let mut c = Config::new(addr);
        c.threads = 2;
        if let Load::Spread { cpus } = load {
            c.threads = cpus.len().max(2);
            c.cpus.clone_from(cpus);
            c.source_addrs = Load::sources();
        }
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
