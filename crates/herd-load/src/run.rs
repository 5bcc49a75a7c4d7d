//! Running a configuration: threads, their connections, and the merged report.

use std::io;
use std::sync::atomic::AtomicU64;
use std::thread;

use crate::config::{Config, Stop};
use crate::generator::run_thread;
use crate::report::{merge, Report};
use crate::request::Requests;
use crate::sys;

/// Runs the load described by `config` and reports what it measured.
///
/// Connections are dealt round-robin to `min(threads, connections)` threads, each with its own
/// poll loop; the call returns when the run is over and every thread has been joined and every
/// socket closed.
///
/// # Errors
///
/// `InvalidInput` for a configuration that cannot run (no connections or threads, no path
/// with a weight, a zero timeout, spaces in the path, host or header name); the OS error when a
/// thread cannot be pinned to its CPU or a poll cannot be created. Failures of individual
/// connections are not errors of the run: they are counted in [`Report::errors`].
pub fn run(config: &Config) -> io::Result<Report> {
    config.validate()?;
    let threads = config.threads.min(config.connections);
    let requests = Requests::new(config);
    let budget = match config.stop {
        Stop::Requests(n) => Some(AtomicU64::new(n)),
        Stop::Duration(_) => None,
    };
    let shares: Vec<Vec<usize>> = (0..threads)
        .map(|t| (t..config.connections).step_by(threads).collect())
        .collect();
    let results: Vec<io::Result<_>> = thread::scope(|scope| {
        let handles: Vec<_> = shares
            .iter()
            .enumerate()
            .map(|(t, share)| {
                let (requests, budget) = (&requests, budget.as_ref());
                thread::Builder::new()
                    .name(format!("herd-load-{t}"))
                    .spawn_scoped(scope, move || {
                        if !config.cpus.is_empty() {
                            sys::pin_current_thread(config.cpus[t % config.cpus.len()])?;
                        }
                        run_thread(config, requests, budget, share, t as u64)
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("generator thread panicked"))),
                Err(e) => Err(e),
            })
            .collect()
    });
    let stats = results.into_iter().collect::<io::Result<Vec<_>>>()?;
    Ok(merge(
        &stats,
        config.connections,
        config.mode.depth(),
        &config.worker_header,
    ))
}
