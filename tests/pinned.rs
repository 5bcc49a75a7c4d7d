//! Pinned-CPU mode, checked the way the kernel's selftest so_incoming_cpu.c does: for each
//! CPU k, a client thread pinned to CPU k opens 50 connections, and every one must land on
//! the worker pinned to CPU k — for the SO_INCOMING_CPU path and the cBPF path, and again
//! after a reload replaced the workers.

mod util;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use util::*;

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size matches the set.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0);
    // SAFETY: CPU_ISSET reads one bit of a valid set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

fn pin_this_thread(cpu: usize) {
    // SAFETY: as above; CPU_SET writes one bit.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of a valid set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the set is valid for its size.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(rc, 0);
}

/// One GET with Connection: close; returns (worker id, cpu) from the response headers.
fn who(addr: SocketAddr) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let header = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    Ok((header("X-Herd-Worker:"), header("X-Herd-Cpu:")))
}

/// Waits until every answer comes from a worker in `ids`.
fn wait_for_workers(addr: SocketAddr, ids: &HashSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut streak = 0;
    while streak < 20 {
        assert!(Instant::now() < deadline, "workers {ids:?} never took over");
        match who(addr) {
            Ok((id, _)) if ids.contains(&id) => streak += 1,
            _ => {
                streak = 0;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// For each CPU, 50 connections from a client pinned to it all reach the one worker on it.
fn each_cpu_reaches_its_own_worker(addr: SocketAddr, cpus: &[usize]) -> HashSet<String> {
    let mut owners = HashSet::new();
    for &cpu in cpus {
        let seen: Vec<(String, String)> = std::thread::spawn(move || {
            pin_this_thread(cpu);
            (0..50).map(|_| who(addr).unwrap()).collect()
        })
        .join()
        .unwrap();
        let workers: HashSet<&String> = seen.iter().map(|(w, _)| w).collect();
        assert_eq!(
            workers.len(),
            1,
            "CPU {cpu}'s connections went to {workers:?}"
        );
        assert!(
            seen.iter().all(|(_, c)| *c == cpu.to_string()),
            "CPU {cpu}: {seen:?}"
        );
        owners.insert(seen[0].0.clone());
    }
    assert_eq!(owners.len(), cpus.len(), "one worker per CPU: {owners:?}");
    owners
}

fn pinned(policy: &str) {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: needs two CPUs, this process may use {cpus:?}");
        return;
    }
    let cpus = &cpus[..2];
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _c = Proc::start(
        example("hello").to_str().unwrap(),
        &[
            ("PORT", &port.to_string()),
            ("WORKERS", "2"),
            ("POLICY", policy),
        ],
        &[],
    );
    wait_for_workers(addr, &HashSet::from(["1".into(), "2".into()]));
    let before = each_cpu_reaches_its_own_worker(addr, cpus);
    _c.signal(libc::SIGHUP);
    wait_for_workers(addr, &HashSet::from(["3".into(), "4".into()]));
    let after = each_cpu_reaches_its_own_worker(addr, cpus);
    assert!(
        before.is_disjoint(&after),
        "the reload replaced both workers"
    );
}

#[test]
fn pinned_with_so_incoming_cpu() {
    pinned("pinned-incoming-cpu");
}

#[test]
fn pinned_with_a_cbpf_program() {
    pinned("pinned-cbpf");
}

#[test]
fn unavailable_cpus_are_a_clear_error() {
    let port = free_port().to_string();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_POLICY", "pinned"),
            ("FIX_CPUS", "0,4095"),
            ("PORT", &port),
        ],
        &[],
    );
    let status = c.wait(5 * SEC).expect("exits");
    assert_eq!(status.code(), Some(1));
    let err = c.stderr_contains(5 * SEC, &["CPU 4095 is not available"]);
    assert!(
        err.contains("CPU 4095 is not available to this process"),
        "{err}"
    );
}
