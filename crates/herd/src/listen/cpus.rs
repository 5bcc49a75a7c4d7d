//! CPUs for pinned mode: which ones the cluster may use, which one a thread runs on, and
//! whether the kernel steers by SO_INCOMING_CPU.

use std::io;

/// The CPUs this process may run on (sched_getaffinity), in ascending order.
pub(crate) fn allowed() -> io::Result<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// The CPU the calling thread runs on right now (sched_getcpu).
pub fn current_cpu() -> Option<usize> {
    // sched_getcpu takes no arguments.
    syscall!(sched_getcpu()).ok().map(|c| c as usize)
}

/// Whether the running kernel prefers the reuseport listener whose SO_INCOMING_CPU matches
/// the CPU that took the SYN (Linux 6.2, commit b261eda84ec1).
pub(crate) fn kernel_steers_incoming_cpu() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").is_ok_and(|r| at_least(&r, (6, 2)))
}

fn at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

/// A CPU set with only `cpu`, built before fork so the child can apply it without
/// allocating.
pub(crate) fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set` (it bounds-checks `cpu`).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Pins the calling process to `set`. Async-signal-safe (used between fork and exec).
pub(crate) fn pin(set: &libc::cpu_set_t) -> io::Result<()> {
    // sched_setaffinity reads `set` during the call only.
    syscall!(sched_setaffinity(
        0,
        std::mem::size_of::<libc::cpu_set_t>(),
        set
    ))
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_compare_by_major_then_minor() {
        assert!(at_least("6.18.44-fc-v769", (6, 2)));
        assert!(at_least("6.2.0", (6, 2)));
        assert!(!at_least("6.1.99-generic", (6, 2)));
        assert!(!at_least("5.19.0", (6, 2)));
        assert!(at_least("7.0", (6, 2)));
        assert!(!at_least("garbage", (6, 2)));
    }

    #[test]
    fn this_thread_runs_on_an_allowed_cpu() {
        let cpus = allowed().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.contains(&current_cpu().unwrap()));
    }
}
