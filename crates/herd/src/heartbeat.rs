//! The heartbeat page: one page of memory per worker, shared with the primary (a memfd
//! mapped MAP_SHARED on both sides, its fd passed at spawn like the IPC fd).
//!
//! The worker's event loop stores the time of each turn ([`beat`]); the HTTP layer stores
//! the request it runs ([`enter`], [`leave`]) and counts requests. Each is a few atomic
//! stores: no syscall, no lock, nothing the worker waits for. The primary reads the page
//! ([`Page::sample`]) to find a loop that stopped turning and what it was doing, with no help
//! from the (hung) worker, and to count requests for recycling.
//!
//! Times are CLOCK_MONOTONIC nanoseconds, which both processes share. The request text is
//! published under a sequence lock (odd while it is written), so the primary never reads a
//! half-written one; every field is an atomic, so neither side ever races.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// The longest request text kept (`METHOD target`); longer targets are cut.
pub(crate) const MAX_WHAT: usize = 256;
const WORDS: usize = MAX_WHAT / 8;

/// The page, as both processes see it.
#[repr(C)]
struct Layout {
    /// When the loop last turned (monotonic ns); 0 while no loop runs.
    beat: AtomicU64,
    /// Requests answered.
    requests: AtomicU64,
    /// Odd while `started`, `len` and `what` are being written.
    seq: AtomicU64,
    /// When the request in progress started (monotonic ns); 0 between requests.
    started: AtomicU64,
    /// Bytes of `what` in use.
    len: AtomicU64,
    /// `METHOD target` of the request in progress, little-endian in words.
    what: [AtomicU64; WORDS],
}

const PAGE: usize = 4096;
const _: () = assert!(std::mem::size_of::<Layout>() <= PAGE);

/// A mapped heartbeat page.
struct Mapped(NonNull<Layout>);

// SAFETY: the mapping is only accessed through atomics, from any thread.
unsafe impl Send for Mapped {}
// SAFETY: as above: every field is an atomic.
unsafe impl Sync for Mapped {}

impl Mapped {
    fn map(fd: BorrowedFd<'_>) -> io::Result<Mapped> {
        let len = NonZeroUsize::new(PAGE).expect("non-zero");
        // SAFETY: a fresh shared mapping of a page-sized memfd; no existing memory is
        // affected, and the result is only used as atomics (all-zero bytes are valid ones).
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(io::Error::from)?;
        Ok(Mapped(ptr.cast()))
    }

    fn page(&self) -> &Layout {
        // SAFETY: the mapping lives as long as `self`, is page-aligned and large enough
        // for `Layout`, and every field of `Layout` is an atomic valid for any bytes.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the page `map` mapped; no reference outlives `self`.
        let _ = unsafe { munmap(self.0.cast(), PAGE) };
    }
}

/// Monotonic nanoseconds now (vDSO: no syscall).
fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The primary's side: one page per worker.
pub(crate) struct Page {
    map: Mapped,
    /// The memfd, until the worker has it (the mapping lives on without it).
    fd: Option<OwnedFd>,
}

/// What [`Page::sample`] read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Since the last turn of the loop; `None` when no loop beats.
    pub beat_age: Option<Duration>,
    pub requests: u64,
    /// The request in progress and how long it has run.
    pub doing: Option<(String, Duration)>,
}

impl Page {
    /// A fresh, zeroed page (close-on-exec: the spawn passes it on explicitly).
    pub(crate) fn create() -> io::Result<Page> {
        let fd = nix::sys::memfd::memfd_create(
            c"herd-heartbeat",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        nix::unistd::ftruncate(&fd, PAGE as i64).map_err(io::Error::from)?;
        let map = Mapped::map(fd.as_fd())?;
        Ok(Page { map, fd: Some(fd) })
    }

    /// The memfd, to pass to the worker (until [`Page::forget_fd`]).
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// The worker has its copy: close ours (the mapping stays).
    pub(crate) fn forget_fd(&mut self) {
        self.fd = None;
    }

    /// Reads the page now.
    pub(crate) fn sample(&self) -> Sample {
        let p = self.map.page();
        let now = mono_ns();
        let beat = p.beat.load(Ordering::Acquire);
        let beat_age = (beat != 0).then(|| Duration::from_nanos(now.saturating_sub(beat)));
        let requests = p.requests.load(Ordering::Relaxed);
        let mut doing = None;
        for _ in 0..16 {
            let s1 = p.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let started = p.started.load(Ordering::Relaxed);
            let len = (p.len.load(Ordering::Relaxed) as usize).min(MAX_WHAT);
            let mut bytes = [0u8; MAX_WHAT];
            for (i, w) in p.what.iter().take(len.div_ceil(8)).enumerate() {
                bytes[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            fence(Ordering::Acquire);
            if p.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            doing = (started != 0).then(|| {
                (
                    String::from_utf8_lossy(&bytes[..len]).into_owned(),
                    Duration::from_nanos(now.saturating_sub(started)),
                )
            });
            break;
        }
        Sample {
            beat_age,
            requests,
            doing,
        }
    }
}

/// The worker's side: its page, once [`attach`]ed.
struct Local {
    map: Mapped,
    /// An `Instant` and the monotonic ns it stands for, to turn the loop's `Instant`s into
    /// the page's clock without another clock read.
    base: (Instant, u64),
    /// The longest the loop may sleep between beats.
    every: Duration,
}

static LOCAL: OnceLock<Local> = OnceLock::new();

/// Maps the page the primary passed as `fd` (this process's from now on) and beats at least
/// every `every` from now on.
pub(crate) fn attach(fd: RawFd, every: Duration) -> io::Result<()> {
    if !crate::sys::fd_is_open(fd) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "heartbeat fd is not open",
        ));
    }
    // SAFETY: the primary passed this fd for this process alone; it is taken once (role's
    // environment is read once) and closed when mapped.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let map = Mapped::map(fd.as_fd())?;
    let local = Local {
        map,
        base: (Instant::now(), mono_ns()),
        every: every.max(Duration::from_millis(10)),
    };
    let _ = LOCAL.set(local);
    Ok(())
}

fn ns(l: &Local, at: Instant) -> u64 {
    l.base.1 + at.saturating_duration_since(l.base.0).as_nanos() as u64
}

/// The event loop turned at `now`.
#[inline]
pub(crate) fn beat(now: Instant) {
    if let Some(l) = LOCAL.get() {
        l.map
            .page()
            .beat
            .store(ns(l, now).max(1), Ordering::Release);
    }
}

/// How often a loop must beat, when this worker has a page.
pub(crate) fn every() -> Option<Duration> {
    LOCAL.get().map(|l| l.every)
}

/// The event loop stopped (it returned): nothing is watched any more.
pub(crate) fn rest() {
    if let Some(l) = LOCAL.get() {
        l.map.page().beat.store(0, Ordering::Release);
    }
}

/// `timeout` for the loop's poll, shortened so the loop beats while idle.
#[inline]
pub(crate) fn cap(timeout: Option<Duration>) -> Option<Duration> {
    match LOCAL.get() {
        Some(l) => Some(timeout.map_or(l.every, |t| t.min(l.every))),
        None => timeout,
    }
}

/// A request `method target` starts at `now` (the handler is about to run).
#[inline]
pub(crate) fn enter(method: &str, target: &str, now: Instant) {
    if let Some(l) = LOCAL.get() {
        l.enter(method, target, now);
    }
}

/// The request [`enter`]ed was answered.
#[inline]
pub(crate) fn leave() {
    if let Some(l) = LOCAL.get() {
        l.leave();
    }
}

impl Local {
    fn enter(&self, method: &str, target: &str, now: Instant) {
        let p = self.map.page();
        // One writer (this loop): plain loads and stores, ordered by the fences.
        let seq = p.seq.load(Ordering::Relaxed);
        p.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        // `method target`, cut at the bound, copied in slices (this runs on every request)
        // and stored a word at a time.
        let m = method.as_bytes();
        let t = target.as_bytes();
        let mut buf = [0u8; MAX_WHAT];
        let m_len = m.len().min(MAX_WHAT);
        buf[..m_len].copy_from_slice(&m[..m_len]);
        let mut len = m_len;
        if len < MAX_WHAT {
            buf[len] = b' ';
            len += 1;
            let t_len = t.len().min(MAX_WHAT - len);
            buf[len..len + t_len].copy_from_slice(&t[..t_len]);
            len += t_len;
        }
        for (slot, word) in p
            .what
            .iter()
            .zip(buf[..len.div_ceil(8) * 8].chunks_exact(8))
        {
            let word: [u8; 8] = word.try_into().expect("chunks of 8");
            slot.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        p.len.store(len as u64, Ordering::Relaxed);
        p.started.store(ns(self, now).max(1), Ordering::Relaxed);
        p.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    fn leave(&self) {
        let p = self.map.page();
        let seq = p.seq.load(Ordering::Relaxed);
        p.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        p.started.store(0, Ordering::Relaxed);
        p.seq.store(seq.wrapping_add(2), Ordering::Release);
        let n = p.requests.load(Ordering::Relaxed);
        p.requests.store(n + 1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_shows_what_the_other_mapping_wrote() {
        let page = Page::create().unwrap();
        assert!(page.sample().beat_age.is_none(), "no loop beats yet");
        // A second mapping of the same memfd, as the worker has.
        let theirs = Mapped::map(page.fd().unwrap()).unwrap();
        let p = theirs.page();
        p.beat.store(mono_ns() - 2_000_000_000, Ordering::Release);
        p.requests.store(7, Ordering::Relaxed);
        let s = page.sample();
        let age = s.beat_age.unwrap();
        assert!(
            age >= Duration::from_secs(2) && age < Duration::from_secs(3),
            "{age:?}"
        );
        assert_eq!(s.requests, 7);
        assert!(s.doing.is_none());
    }

    #[test]
    fn the_request_in_progress_is_published_and_cleared() {
        let page = Page::create().unwrap();
        let worker = Local {
            map: Mapped::map(page.fd().unwrap()).unwrap(),
            base: (Instant::now(), mono_ns()),
            every: Duration::from_secs(1),
        };
        let long = format!("/report?id={}", "9".repeat(400));
        worker.enter("GET", &long, Instant::now());
        let (what, running) = page.sample().doing.unwrap();
        assert_eq!(what.len(), MAX_WHAT, "cut at the bound");
        assert!(what.starts_with("GET /report?id=999"), "{what}");
        assert!(running < Duration::from_secs(1));
        worker.leave();
        worker.enter("POST", "/a", Instant::now());
        assert_eq!(
            page.sample().doing.unwrap().0,
            "POST /a",
            "no byte of the longer one left"
        );
        worker.leave();
        let s = page.sample();
        assert!(s.doing.is_none());
        assert_eq!(s.requests, 2);
    }
}
