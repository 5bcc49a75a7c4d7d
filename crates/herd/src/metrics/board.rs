//! The primary's merged view of the cluster: every worker's last snapshot, the totals of the
//! workers that are gone (folded into their slot's, so counters never go back), restarts by
//! reason, reloads, IPC traffic. The primary's loop writes it (a few calls from where things
//! happen); the control socket and `/metrics` read a copy ([`Board::view`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use super::{RestartReason, Snapshot};
use crate::primary::WorkerHandle;

/// How a reload ended: `Ok`, or the reason it stopped (the old workers kept serving).
pub(crate) type ReloadResult = Result<(), String>;

#[derive(Debug, Default)]
struct Row {
    handle: Option<WorkerHandle>,
    generation: u64,
    started: Option<Instant>,
    snapshot: Snapshot,
    heartbeat: Option<Instant>,
    proc: Proc,
}

/// What /proc says of a worker, sampled when its snapshot arrives.
#[derive(Debug, Default, Clone, Copy)]
struct Proc {
    rss: u64,
    cpu_seconds: f64,
    cpu_percent: f64,
    sampled: Option<Instant>,
}

#[derive(Debug, Default, Clone)]
struct SlotRow {
    /// The totals of this slot's workers that are gone.
    folded: Snapshot,
    folded_cpu: f64,
    restarts: [u64; RestartReason::ALL.len()],
    /// Accept queues: (address, waiting now, backlog).
    queues: Vec<(SocketAddr, u32, u32)>,
    /// Why the slot has no worker (a crash backoff), if it has none.
    down: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    policy: String,
    addrs: Vec<SocketAddr>,
    target: usize,
    workers: BTreeMap<u32, Row>,
    slots: BTreeMap<usize, SlotRow>,
    generation: u64,
    reloading: bool,
    last_reload: Option<(ReloadResult, SystemTime)>,
    reloads: [u64; 2],
    ipc_in: u64,
    ipc_out: u64,
    /// `reload --wait` callers: for the next reload to start, and for the one running.
    waiting_next: Vec<Sender<ReloadResult>>,
    waiting_now: Vec<Sender<ReloadResult>>,
    stopped: bool,
    /// When the primary's loop last turned (`/livez`).
    turned: Option<Instant>,
    /// Why the cluster is not ready (`/readyz`), as of that turn.
    unready: Option<String>,
}

/// `/livez` fails when the primary's loop has not turned for this long (it turns at least
/// every [`TICK`]).
pub(crate) const LIVE_BOUND: Duration = Duration::from_secs(5);

/// The longest the primary's loop sleeps, so that `/livez` tells a blocked loop from an
/// idle one.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// What `/readyz` and `/livez` say.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    /// Time since the primary's loop last turned; `None` before it first did.
    pub since_turn: Option<Duration>,
    /// Why the cluster is not ready, or `None` when it is.
    pub unready: Option<String>,
}

/// See the module docs. Shared between the primary's loop and the control thread.
#[derive(Debug, Default)]
pub(crate) struct Board {
    state: Mutex<State>,
}

/// One worker, as `herd status` shows it.
#[derive(Debug, Clone)]
pub(crate) struct WorkerView {
    pub id: u32,
    pub slot: usize,
    pub pid: u32,
    pub state: String,
    pub generation: u64,
    pub uptime: Duration,
    pub snapshot: Snapshot,
    pub rss: u64,
    pub cpu_seconds: f64,
    pub cpu_percent: f64,
    /// Time since the worker's loop last reported; `None` before its first report.
    pub heartbeat_age: Option<Duration>,
}

/// One slot: the totals of every worker it ever had.
#[derive(Debug, Clone)]
pub(crate) struct SlotView {
    pub totals: Snapshot,
    pub cpu_seconds: f64,
    pub restarts: [u64; RestartReason::ALL.len()],
    pub queues: Vec<(SocketAddr, u32, u32)>,
    pub down: Option<String>,
}

/// A copy of the board at one moment.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub policy: String,
    pub addrs: Vec<SocketAddr>,
    pub target: usize,
    pub workers: Vec<WorkerView>,
    pub slots: BTreeMap<usize, SlotView>,
    pub totals: Snapshot,
    pub open: u64,
    pub restarts: [u64; RestartReason::ALL.len()],
    pub generation: u64,
    pub reloading: bool,
    pub last_reload: Option<(ReloadResult, SystemTime)>,
    /// Reloads that completed, and that stopped.
    pub reloads: [u64; 2],
    pub ipc_in: u64,
    pub ipc_out: u64,
}

impl Board {
    pub(crate) fn new(policy: String, target: usize) -> Board {
        Board {
            state: Mutex::new(State {
                policy,
                target,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Worker `h` was started.
    pub(crate) fn forked(&self, h: &WorkerHandle) {
        let mut s = self.lock();
        let generation = s.generation;
        s.workers.insert(
            h.id(),
            Row {
                handle: Some(h.clone()),
                generation,
                started: Some(Instant::now()),
                ..Row::default()
            },
        );
        s.slots.entry(h.slot()).or_default().down = None;
    }

    /// A worker serves `addr`.
    pub(crate) fn listening(&self, addr: SocketAddr) {
        let mut s = self.lock();
        if !s.addrs.contains(&addr) {
            s.addrs.push(addr);
        }
    }

    /// Worker `id` sent its counters; `queues` are its slot's accept queues now.
    pub(crate) fn snapshot(&self, id: u32, snap: Snapshot, queues: Vec<(SocketAddr, u32, u32)>) {
        let now = Instant::now();
        let mut s = self.lock();
        let Some(row) = s.workers.get_mut(&id) else {
            return;
        };
        row.snapshot = snap;
        row.heartbeat = Some(now);
        let slot = row.handle.as_ref().map(|h| h.slot());
        if let Some(pid) = row.handle.as_ref().map(|h| h.pid()) {
            if let Some((rss, cpu)) = read_proc(pid) {
                let p = &mut row.proc;
                if let Some(at) = p.sampled {
                    let wall = now.duration_since(at).as_secs_f64();
                    if wall > 0.0 {
                        p.cpu_percent = ((cpu - p.cpu_seconds) / wall * 100.0).max(0.0);
                    }
                }
                *p = Proc {
                    rss,
                    cpu_seconds: cpu,
                    cpu_percent: p.cpu_percent,
                    sampled: Some(now),
                };
            }
        }
        if let Some(slot) = slot {
            s.slots.entry(slot).or_default().queues = queues;
        }
    }

    /// Worker `id` exited for `reason`: its totals join its slot's.
    pub(crate) fn exited(&self, id: u32, reason: RestartReason) {
        let mut s = self.lock();
        let Some(row) = s.workers.remove(&id) else {
            return;
        };
        let Some(slot) = row.handle.as_ref().map(|h| h.slot()) else {
            return;
        };
        let sr = s.slots.entry(slot).or_default();
        sr.folded.add(&row.snapshot);
        sr.folded_cpu += row.proc.cpu_seconds;
        if reason != RestartReason::Stop {
            sr.restarts[reason as usize] += 1;
        }
    }

    /// Slot `slot` has no worker for a while (`why`), or has one again (`None`).
    pub(crate) fn slot_down(&self, slot: usize, why: Option<String>) {
        self.lock().slots.entry(slot).or_default().down = why;
    }

    /// The slot is gone (scale-down): its queues are no longer watched; its totals stay.
    pub(crate) fn slot_removed(&self, slot: usize) {
        if let Some(sr) = self.lock().slots.get_mut(&slot) {
            sr.queues.clear();
            sr.down = None;
        }
    }

    /// The cluster now aims at `n` workers.
    pub(crate) fn target(&self, n: usize) {
        self.lock().target = n;
    }

    /// An IPC message arrived from a worker.
    pub(crate) fn ipc_in(&self) {
        self.lock().ipc_in += 1;
    }

    /// An IPC message went to a worker.
    pub(crate) fn ipc_out(&self) {
        self.lock().ipc_out += 1;
    }

    /// A rolling reload started: the next generation.
    pub(crate) fn reload_started(&self) {
        let mut s = self.lock();
        s.generation += 1;
        s.reloading = true;
        let next = std::mem::take(&mut s.waiting_next);
        s.waiting_now.extend(next);
    }

    /// The reload running ended with `result`. A stopped reload also answers the callers
    /// waiting for the next one (it was dropped with it).
    pub(crate) fn reload_finished(&self, result: ReloadResult) {
        let mut s = self.lock();
        s.reloading = false;
        s.reloads[usize::from(result.is_err())] += 1;
        s.last_reload = Some((result.clone(), SystemTime::now()));
        let mut waiters = std::mem::take(&mut s.waiting_now);
        if result.is_err() {
            waiters.append(&mut s.waiting_next);
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }

    /// A reload was asked for and refused (`why`): the callers waiting for it learn why.
    pub(crate) fn reload_refused(&self, why: &str) {
        let mut s = self.lock();
        for w in std::mem::take(&mut s.waiting_next) {
            let _ = w.send(Err(why.to_string()));
        }
    }

    /// The primary stopped: every caller still waiting hears so.
    pub(crate) fn stopped(&self) {
        let mut s = self.lock();
        s.stopped = true;
        let mut waiters = std::mem::take(&mut s.waiting_now);
        waiters.append(&mut s.waiting_next);
        for w in waiters {
            let _ = w.send(Err("the cluster stopped before the reload finished".into()));
        }
    }

    /// The primary's loop turned at `now`; `unready` says why the cluster should get no
    /// traffic, if it should not.
    pub(crate) fn turned(&self, now: Instant, unready: Option<String>) {
        let mut s = self.lock();
        s.turned = Some(now);
        s.unready = unready;
    }

    /// What `/readyz` and `/livez` answer.
    pub(crate) fn health(&self) -> Health {
        let s = self.lock();
        Health {
            since_turn: s.turned.map(|t| t.elapsed()),
            unready: if s.stopped {
                Some("stopped".into())
            } else if s.turned.is_none() {
                Some("starting".into())
            } else {
                s.unready.clone()
            },
        }
    }

    /// A receiver for the result of the next reload to start (call before asking for it).
    pub(crate) fn wait_reload(&self) -> Receiver<ReloadResult> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut s = self.lock();
        if s.stopped {
            let _ = tx.send(Err("the cluster is stopping".into()));
        } else {
            s.waiting_next.push(tx);
        }
        rx
    }

    /// A copy of everything, with the live workers' counters added to their slots'.
    pub(crate) fn view(&self) -> View {
        let now = Instant::now();
        let s = self.lock();
        let mut slots: BTreeMap<usize, SlotView> = s
            .slots
            .iter()
            .map(|(n, r)| {
                (
                    *n,
                    SlotView {
                        totals: r.folded,
                        cpu_seconds: r.folded_cpu,
                        restarts: r.restarts,
                        queues: r.queues.clone(),
                        down: r.down.clone(),
                    },
                )
            })
            .collect();
        let mut workers = Vec::new();
        let mut open = 0;
        for (id, row) in &s.workers {
            let Some(h) = &row.handle else { continue };
            let sv = slots.entry(h.slot()).or_insert_with(|| SlotView {
                totals: Snapshot::default(),
                cpu_seconds: 0.0,
                restarts: [0; RestartReason::ALL.len()],
                queues: Vec::new(),
                down: None,
            });
            sv.totals.add(&row.snapshot);
            sv.cpu_seconds += row.proc.cpu_seconds;
            open += row.snapshot.open;
            workers.push(WorkerView {
                id: *id,
                slot: h.slot(),
                pid: h.pid(),
                state: format!("{:?}", h.state()).to_lowercase(),
                generation: row.generation,
                uptime: row
                    .started
                    .map_or(Duration::ZERO, |t| now.duration_since(t)),
                snapshot: row.snapshot,
                rss: row.proc.rss,
                cpu_seconds: row.proc.cpu_seconds,
                cpu_percent: row.proc.cpu_percent,
                heartbeat_age: row.heartbeat.map(|t| now.duration_since(t)),
            });
        }
        let mut totals = Snapshot::default();
        let mut restarts = [0; RestartReason::ALL.len()];
        for sv in slots.values() {
            totals.add(&sv.totals);
            for (a, b) in restarts.iter_mut().zip(sv.restarts) {
                *a += b;
            }
        }
        totals.open = open;
        View {
            policy: s.policy.clone(),
            addrs: s.addrs.clone(),
            target: s.target,
            workers,
            slots,
            totals,
            open,
            restarts,
            generation: s.generation,
            reloading: s.reloading,
            last_reload: s.last_reload.clone(),
            reloads: s.reloads,
            ipc_in: s.ipc_in,
            ipc_out: s.ipc_out,
        }
    }
}

/// Slot `slot`'s accept queues: (address, connections waiting, backlog) per listener.
pub(crate) fn queues(
    listeners: &crate::listen::Listeners,
    slot: usize,
) -> Vec<(SocketAddr, u32, u32)> {
    listeners
        .slot_sockets(slot)
        .into_iter()
        .filter_map(|(a, fd)| crate::sys::listen_queue(fd).ok().map(|(q, b)| (a, q, b)))
        .collect()
}

/// A process's resident memory (bytes) and CPU time (seconds, user + system), from
/// /proc/<pid>/stat.
fn read_proc(pid: u32) -> Option<(u64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Fields 14, 15 (utime, stime) and 24 (rss) of proc(5), counted from 3 here.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let pages: u64 = f.get(21)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some((pages * page, ticks as f64 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        let (rss, _cpu) = read_proc(std::process::id()).expect("/proc/self/stat");
        assert!(rss > 0);
    }

    #[test]
    fn reload_waiters_hear_the_result_of_the_reload_after_they_asked() {
        let b = Board::new("reuseport".into(), 1);
        let early = b.wait_reload();
        b.reload_started();
        let late = b.wait_reload();
        b.reload_finished(Ok(()));
        assert_eq!(early.try_recv(), Ok(Ok(())));
        assert!(
            late.try_recv().is_err(),
            "waits for the reload it asked for"
        );
        b.reload_started();
        b.reload_finished(Err("new worker 3 exited".into()));
        assert_eq!(late.try_recv(), Ok(Err("new worker 3 exited".into())));
        let v = b.view();
        assert_eq!((v.generation, v.reloads), (2, [1, 1]));
    }
}
