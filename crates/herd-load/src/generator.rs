//! One generator thread: its own mio `Poll` and its share of the connections.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::config::{Config, Mode, Stop};
use crate::conn::Conn;
use crate::report::Stats;
use crate::request::{Requests, Rng};

/// What a thread's connections share: the configuration, the request mix, the request budget,
/// and the counters.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) requests: &'a Requests,
    pub(crate) mode: Mode,
    pub(crate) depth: usize,
    pub(crate) rng: Rng,
    pub(crate) stats: Stats,
    /// Requests left to send across all threads, when the run is bounded by a count.
    budget: Option<&'a AtomicU64>,
    /// No new requests once set.
    stopping: bool,
    /// Connections that closed and want to connect again, at the next turn of the loop.
    restarts: Vec<Token>,
}

impl Ctx<'_> {
    /// Takes up to `want` requests from the budget; returns how many were granted.
    pub(crate) fn claim(&mut self, want: usize) -> usize {
        if self.stopping {
            return 0;
        }
        let Some(budget) = self.budget else {
            return want;
        };
        let mut granted = 0;
        let _ = budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            granted = left.min(want as u64);
            (granted > 0).then(|| left - granted)
        });
        granted as usize
    }

    /// Gives back requests that were claimed but will not be sent as they are.
    pub(crate) fn unclaim(&mut self, n: usize) {
        if let Some(budget) = self.budget {
            budget.fetch_add(n as u64, Ordering::AcqRel);
        }
    }

    /// Asks for the connection to be started again at the next turn of the loop.
    pub(crate) fn restart(&mut self, token: Token) {
        self.restarts.push(token);
    }

    fn budget_left(&self) -> Option<u64> {
        self.budget.map(|b| b.load(Ordering::Acquire))
    }
}

/// Runs one thread's connections (global indexes `conn_indexes`) to the end of the run.
pub(crate) fn run_thread(
    config: &Config,
    requests: &Requests,
    budget: Option<&AtomicU64>,
    conn_indexes: &[usize],
    seed: u64,
) -> io::Result<Stats> {
    let mut poll = Poll::new()?;
    let depth = config.mode.depth();
    let mut conns: Vec<Conn> = conn_indexes
        .iter()
        .enumerate()
        .map(|(local, &global)| {
            let source = (!config.source_addrs.is_empty())
                .then(|| config.source_addrs[global % config.source_addrs.len()]);
            Conn::new(Token(local), source, depth)
        })
        .collect();
    let mut ctx = Ctx {
        config,
        requests,
        mode: config.mode,
        depth,
        rng: Rng::new(seed),
        stats: Stats::new(),
        budget,
        stopping: false,
        restarts: (0..conns.len()).map(Token).collect(),
    };
    let mut events = Events::with_capacity(1024.max(conns.len()));
    let check_every =
        (config.timeout / 8).clamp(Duration::from_millis(1), Duration::from_millis(100));

    let start = Instant::now();
    let deadline = match config.stop {
        Stop::Duration(d) => Some(start + d),
        Stop::Requests(_) => None,
    };
    let mut next_check = start + check_every;
    let mut idle_turn = false;
    loop {
        while let Some(token) = ctx.restarts.pop() {
            conns[token.0].start(&mut ctx, poll.registry());
        }
        let left = ctx.budget_left();
        let resting = left.is_some_and(|left| left == 0 || idle_turn)
            && conns.iter().all(|c| c.pending() == 0);
        if resting {
            if left == Some(0) {
                break;
            }
            // Requests came back to the budget while every connection here rested.
            for (i, c) in conns.iter_mut().enumerate() {
                if c.is_idle() {
                    ctx.restarts.push(Token(i));
                } else {
                    c.refill(&mut ctx);
                }
            }
            continue;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let mut wait = next_check.saturating_duration_since(now);
        if let Some(d) = deadline {
            wait = wait.min(d - now);
        }
        if !ctx.restarts.is_empty() {
            wait = Duration::ZERO;
        }
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        idle_turn = events.is_empty();
        for event in events.iter() {
            conns[event.token().0].on_event(event, &mut ctx);
        }
        let now = Instant::now();
        if now >= next_check {
            for c in conns.iter_mut() {
                c.check_timeout(now, &mut ctx);
            }
            next_check = now + check_every;
        }
    }
    ctx.stats.elapsed = start.elapsed();
    ctx.stopping = true;
    for c in conns.iter_mut() {
        c.abandon(&mut ctx);
    }
    Ok(ctx.stats)
}
