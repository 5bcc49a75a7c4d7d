//! The blocking pool: handlers marked [`blocking`] run on a bounded set of threads of their
//! worker, so that one that waits (a database, a remote API, a sleep) stalls only itself.
//!
//! Bounded at both ends: at most `threads` threads (started on demand, so a service that never
//! blocks never starts one), and at most `queue` jobs waiting. A full queue first pauses
//! reading on every connection of the worker (the kernel's socket buffers and accept queue hold
//! what comes, which is free back-pressure); requests already read when the queue holds twice
//! that are answered `503` with `Retry-After`. Memory stays bounded either way.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::deferred::Responder;
use super::request::OwnedRequest;
use super::{Handler, Request, Response};
use crate::event_loop::Wake;

/// Marks a handler as blocking: every request it serves runs on the worker's blocking pool
/// (see [`Http::blocking_threads`](super::Http::blocking_threads)) instead of the event loop,
/// and its connection waits for the answer while the loop serves the others. The request is
/// copied for the thread (head and body), which is the price of leaving the loop.
///
/// Use it for the whole service (`Http::new(blocking(handler))`) or for the routes that wait
/// (`Router::get("/report", blocking(report))`).
///
/// ```
/// use herd::http::{blocking, Router};
/// use herd::{Http, Request, Response};
///
/// let app = Router::new()
///     .get("/", |_req: &Request<'_>, res: &mut Response| {
///         res.body("fast, on the loop\n");
///     })
///     .get("/slow", blocking(|_req: &Request<'_>, res: &mut Response| {
///         std::thread::sleep(std::time::Duration::from_millis(50));
///         res.body("slow, on the pool\n");
///     }));
/// let http = Http::new(app).blocking_threads(64);
/// # let _ = http;
/// ```
pub fn blocking<H: Handler>(handler: H) -> Blocking<H> {
    Blocking(Arc::new(handler))
}

/// A handler that runs on the blocking pool; see [`blocking`].
#[derive(Debug)]
pub struct Blocking<H>(Arc<H>);

impl<H: Handler> Handler for Blocking<H> {
    fn call(&self, req: &Request<'_>, res: &mut Response) {
        let Some(link) = res.link.clone() else {
            // Not served by a connection (no loop to come back to): run it here.
            self.0.call(req, res);
            return;
        };
        if link.pool.is_full() {
            link.pool.stats.rejected.fetch_add(1, Ordering::Relaxed);
            res.status(503)
                .header("Retry-After", "1")
                .header("Content-Type", "text/plain")
                .body("503 overloaded: the worker's blocking pool is full, retry later\n");
            return;
        }
        let owned = OwnedRequest::new(req);
        let handler = Arc::clone(&self.0);
        let responder = res.defer();
        link.pool.submit(
            Job {
                work: Work::Handler {
                    run: Box::new(move |res| handler.call(&owned.as_request(&mut Vec::new()), res)),
                    responder: Box::new(responder),
                },
                queued: Instant::now(),
            },
            &link.wake,
        );
    }
}

/// The blocking pool's sizes, set on [`Http`](super::Http).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolConfig {
    pub(crate) threads: usize,
    pub(crate) queue: usize,
}

/// One request for the pool.
struct Job {
    work: Work,
    queued: Instant,
}

/// What a pool thread runs.
enum Work {
    /// A blocking handler, answering through its responder.
    Handler {
        run: Box<dyn FnOnce(&mut Response) + Send>,
        /// Boxed: a responder carries a whole response, and jobs move through a channel.
        responder: Box<Responder>,
    },
    /// A piece of a response body to read (see [`Response::stream`]).
    Task(Box<dyn FnOnce() + Send>),
}

struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// The loop whose reading this pool paused (back-pressure), to resume it.
    paused: Option<Wake>,
}

/// One worker's blocking pool (shared by its connections through [`Http`](super::Http)).
pub(crate) struct Pool {
    config: PoolConfig,
    state: Mutex<State>,
    ready: Condvar,
    pub(crate) stats: Arc<Counters>,
}

impl Pool {
    pub(crate) fn new(config: PoolConfig) -> Self {
        Pool {
            config: PoolConfig {
                threads: config.threads.max(1),
                queue: config.queue.max(1),
            },
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                threads: 0,
                idle: 0,
                paused: None,
            }),
            ready: Condvar::new(),
            stats: Arc::new(Counters::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Past the hard limit (twice the queue): new jobs are refused.
    pub(crate) fn is_full(&self) -> bool {
        self.lock().jobs.len() >= 2 * self.config.queue
    }

    /// Run `task` on a pool thread (queued like a blocking handler).
    pub(crate) fn spawn(self: &Arc<Self>, task: Box<dyn FnOnce() + Send>, wake: &Wake) {
        let job = Job {
            work: Work::Task(task),
            queued: Instant::now(),
        };
        self.submit(job, wake);
    }

    fn submit(self: &Arc<Self>, job: Job, wake: &Wake) {
        let mut st = self.lock();
        st.jobs.push_back(job);
        self.stats.queued.store(st.jobs.len(), Ordering::Relaxed);
        if st.jobs.len() >= self.config.queue && st.paused.is_none() {
            wake.pause_reading(true);
            st.paused = Some(wake.clone());
        }
        if st.idle == 0 && st.threads < self.config.threads {
            let pool = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("herd-blocking".into())
                .spawn(move || pool.work());
            match spawned {
                Ok(_) => {
                    st.threads += 1;
                    self.stats.threads.store(st.threads, Ordering::Relaxed);
                }
                // The threads already there will get to it.
                Err(e) => tracing::warn!("starting a blocking-pool thread: {e}"),
            }
        }
        drop(st);
        self.ready.notify_one();
    }

    /// A pool thread: take jobs until the pool is gone (the `Http` dropped, the worker done).
    fn work(self: Arc<Self>) {
        loop {
            let job = {
                let mut st = self.lock();
                loop {
                    if let Some(job) = st.jobs.pop_front() {
                        self.stats.queued.store(st.jobs.len(), Ordering::Relaxed);
                        if st.jobs.len() < self.config.queue {
                            if let Some(wake) = st.paused.take() {
                                wake.pause_reading(false);
                            }
                        }
                        break job;
                    }
                    // Only the pool's own threads hold it besides the `Http`: when that is
                    // gone, nothing more can come.
                    if Arc::strong_count(&self) <= st.threads {
                        st.threads -= 1;
                        return;
                    }
                    st.idle += 1;
                    let (guard, _) = self
                        .ready
                        .wait_timeout(st, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner());
                    st = guard;
                    st.idle -= 1;
                }
            };
            self.run(job);
        }
    }

    fn run(&self, job: Job) {
        let waited = job.queued.elapsed();
        let stats = &self.stats;
        stats.waits.fetch_add(1, Ordering::Relaxed);
        stats
            .wait_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        stats
            .max_wait_us
            .fetch_max(waited.as_micros() as u64, Ordering::Relaxed);
        stats.busy.fetch_add(1, Ordering::Relaxed);
        match job.work {
            Work::Handler { run, mut responder } => {
                match panic::catch_unwind(AssertUnwindSafe(|| run(&mut responder))) {
                    Ok(()) => responder.send(),
                    Err(_) => {
                        stats.panicked.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("a blocking handler panicked; answered 500");
                        // Dropped unsent: the connection answers 500 and closes.
                        drop(responder);
                    }
                }
            }
            Work::Task(task) => {
                if panic::catch_unwind(AssertUnwindSafe(task)).is_err() {
                    stats.panicked.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("a response body's reader panicked");
                }
            }
        }
        stats.busy.fetch_sub(1, Ordering::Relaxed);
        stats.completed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The pool's live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    threads: AtomicUsize,
    busy: AtomicUsize,
    queued: AtomicUsize,
    completed: AtomicU64,
    pub(crate) rejected: AtomicU64,
    panicked: AtomicU64,
    waits: AtomicU64,
    wait_us: AtomicU64,
    max_wait_us: AtomicU64,
}

/// A handle on a worker's blocking-pool counters, from [`Http::blocking_stats`](super::Http::blocking_stats);
/// read it from any thread (e.g. for metrics) with [`snapshot`](Self::snapshot).
#[derive(Debug, Clone)]
pub struct BlockingStats(pub(crate) Arc<Counters>);

/// The blocking pool's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BlockingSnapshot {
    /// Threads started (they are started on demand, up to the configured size).
    pub threads: usize,
    /// Threads running a handler now.
    pub busy: usize,
    /// Jobs waiting for a thread now (the queue depth).
    pub queued: usize,
    /// Jobs finished (answered, or panicked).
    pub completed: u64,
    /// Requests refused with `503` because the queue was past its limit.
    pub rejected: u64,
    /// Handlers that panicked (answered `500`).
    pub panicked: u64,
    /// Total time jobs waited in the queue before a thread took them.
    pub queue_wait_total: Duration,
    /// The longest such wait.
    pub queue_wait_max: Duration,
}

impl BlockingStats {
    /// The counters now.
    pub fn snapshot(&self) -> BlockingSnapshot {
        let c = &self.0;
        BlockingSnapshot {
            threads: c.threads.load(Ordering::Relaxed),
            busy: c.busy.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
            queue_wait_total: Duration::from_micros(c.wait_us.load(Ordering::Relaxed)),
            queue_wait_max: Duration::from_micros(c.max_wait_us.load(Ordering::Relaxed)),
        }
    }
}
