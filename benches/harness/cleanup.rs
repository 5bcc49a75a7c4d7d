//! Ctrl-C and SIGTERM during a bench: kill every server process group still running before
//! the harness dies (Drop does not run when a signal ends the process). The harness is also
//! made a child subreaper, so that it reaps the workers its servers leave behind.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// Process groups of running servers; 0 is a free entry.
static GROUPS: [AtomicI32; 16] = [const { AtomicI32::new(0) }; 16];

/// Installs the SIGINT/SIGTERM handler once.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl(2) with integer arguments; orphaned descendants become our children.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: `on_signal` only calls async-signal-safe functions (kill, signal, raise)
            // and reads atomics.
            unsafe {
                libc::signal(
                    sig,
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                )
            };
        }
    });
}

/// Remembers a running server's process group.
pub fn register(pgid: i32) {
    for slot in &GROUPS {
        if slot
            .compare_exchange(0, pgid, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
    }
}

/// Forgets a process group that was killed and reaped.
pub fn unregister(pgid: i32) {
    for slot in &GROUPS {
        let _ = slot.compare_exchange(pgid, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    for slot in &GROUPS {
        let pgid = slot.load(Ordering::Acquire);
        if pgid > 0 {
            // SAFETY: kill(2) is async-signal-safe; pgid is a group this harness started.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
    // SAFETY: signal(2) and raise(3) are async-signal-safe; die of the signal as if unhandled.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}
