//! Back-pressure over real sockets: with a small per-worker cap, 2,000 simultaneous connections
//! saturate every worker; the primary then stops accepting (the kernel's backlog holds the
//! rest), so its memory and the connections it holds stay bounded, and every request is still
//! answered.

mod rr_common;
mod util;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use rr_common::{connect, read_answer, start};
use util::SEC;

const CONNECTIONS: usize = 2000;
const THREADS: usize = 16;
const CAP: usize = 4;
const WORKERS: usize = 2;

fn vm_rss_kib(pid: i32) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn saturated_workers_keep_the_primary_bounded() {
    let cap = CAP.to_string();
    let (c, addr) = start(
        "rr",
        WORKERS,
        &[
            ("FIX_RR_MAX_CONNS", &cap),
            ("FIX_RR_MAX_UNACKED", &cap),
            // Room for all of them in the kernel's accept queue (somaxconn caps it).
            ("FIX_BACKLOG", "4096"),
        ],
    );
    let primary = c.pid();
    let workers = c.worker_pids();
    // Warm up (first hand-offs, buffers), then take the baseline.
    for _ in 0..20 {
        assert_eq!(rr_common::get(addr, "/").unwrap().status, 200);
    }
    std::thread::sleep(Duration::from_millis(100));
    let rss0 = vm_rss_kib(primary);
    let fds0 = open_fds(primary);
    let wfds0: Vec<usize> = workers.iter().map(|&p| open_fds(p)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let pending = Arc::new(AtomicUsize::new(0));
    let max_pending = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let stop = stop.clone();
        let workers = workers.clone();
        std::thread::spawn(move || {
            let (mut rss, mut fds, mut wfds) = (0, 0, vec![0; workers.len()]);
            while !stop.load(Ordering::Relaxed) {
                rss = rss.max(vm_rss_kib(primary));
                fds = fds.max(open_fds(primary));
                for (m, &p) in wfds.iter_mut().zip(&workers) {
                    *m = (*m).max(open_fds(p));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (rss, fds, wfds)
        })
    };
    let barrier = Arc::new(Barrier::new(THREADS));
    let clients: Vec<_> = (0..THREADS)
        .map(|_| {
            let (pending, max_pending) = (pending.clone(), max_pending.clone());
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut conns = Vec::new();
                for _ in 0..CONNECTIONS / THREADS {
                    conns.push(connect(addr, None, 30 * SEC)?);
                    let now = pending.fetch_add(1, Ordering::Relaxed) + 1;
                    max_pending.fetch_max(now, Ordering::Relaxed);
                }
                // Every connection is open (most waiting in the backlog) before any request.
                barrier.wait();
                for s in &mut conns {
                    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
                }
                let mut ok = 0;
                for mut s in conns {
                    if read_answer(&mut s)?.status == 200 {
                        ok += 1;
                    }
                    pending.fetch_sub(1, Ordering::Relaxed);
                }
                std::io::Result::Ok(ok)
            })
        })
        .collect();
    let answered: usize = clients
        .into_iter()
        .map(|h| h.join().unwrap().expect("every connection answered"))
        .sum();
    stop.store(true, Ordering::Relaxed);
    let (rss, fds, wfds) = monitor.join().unwrap();
    eprintln!(
        "primary VmRSS {rss0} -> peak {rss} KiB; fds {fds0} -> peak {fds}; worker fds {wfds0:?} -> peak {wfds:?}; \
         client connections open at once: {}",
        max_pending.load(Ordering::Relaxed)
    );
    assert_eq!(answered, CONNECTIONS);
    assert!(
        max_pending.load(Ordering::Relaxed) == CONNECTIONS,
        "the load never got simultaneous"
    );
    // The primary holds at most CAP unacknowledged connections per worker.
    assert!(fds <= fds0 + WORKERS * CAP, "primary fds {fds0} -> {fds}");
    assert!(rss <= rss0 + 4 * 1024, "primary VmRSS {rss0} -> {rss} KiB");
    // Each worker stays at its cap (one over while its load report is stale).
    for (w0, w) in wfds0.iter().zip(&wfds) {
        assert!(*w <= w0 + CAP + 1, "worker fds {w0} -> {w}");
    }
}
