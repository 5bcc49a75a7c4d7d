//! The machine a run happened on: CPUs, kernel, CPU model.

use serde_json::{json, Value};

/// What the report says about the machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs this process may use (nproc).
    pub nproc: usize,
    /// Their numbers (the affinity mask), where the load generator's threads are pinned.
    pub cpus: Vec<usize>,
    /// The kernel release (uname -r).
    pub kernel: String,
    /// The first CPU model name in /proc/cpuinfo.
    pub cpu: String,
}

impl Machine {
    /// This machine.
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&i| set.is_set(i).unwrap_or(false))
                    .collect::<Vec<_>>()
            })
            .ok()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| (0..nproc).collect());
        Machine {
            nproc,
            cpus,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu,
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "nproc": self.nproc,
            "cpus": self.cpus,
            "kernel": self.kernel,
            "cpu": self.cpu,
        })
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "nproc {}, Linux {}, {}",
            self.nproc, self.kernel, self.cpu
        )
    }
}
