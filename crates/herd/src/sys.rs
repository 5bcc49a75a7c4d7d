//! The few raw libc calls herd needs that nix and socket2 do not wrap. Every one is here.

use std::io;
use std::os::fd::RawFd;

/// Checks a libc return value the way mio's `syscall!` does.
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)* ) ) => {{
        // SAFETY: each caller passes arguments valid for this call (see its comment).
        let res = unsafe { libc::$fn($($arg, )*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// In a freshly forked child: clear close-on-exec on `fd` (so it survives exec) and ask for
/// SIGKILL when the parent dies, so no worker outlives its primary. Async-signal-safe.
pub(crate) fn child_setup(fd: RawFd, parent: libc::pid_t) -> io::Result<()> {
    // fcntl(F_SETFD, 0) takes no pointer; fd is the child's copy of the IPC socket.
    syscall!(fcntl(fd, libc::F_SETFD, 0))?;
    // prctl(PR_SET_PDEATHSIG, SIGKILL) takes plain integers.
    syscall!(prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0
    ))?;
    // The parent may have died between fork and prctl: then we were re-parented already.
    // getppid() cannot fail.
    if syscall!(getppid())? != parent {
        // No allocation between fork and exec: an errno, not a message.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// In a freshly forked child: clear close-on-exec on `fd`, so the program exec'd next has
/// it. Async-signal-safe.
pub(crate) fn keep_across_exec(fd: RawFd) -> io::Result<()> {
    // fcntl(F_SETFD, 0) takes no pointer; fd is the child's copy.
    syscall!(fcntl(fd, libc::F_SETFD, 0)).map(drop)
}

/// Sets close-on-exec on a descriptor this process owns.
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // fcntl(F_SETFD, FD_CLOEXEC) takes no pointer.
    syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)).map(drop)
}

/// Whether `fd` is an open descriptor.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // fcntl(F_GETFD) only reads the descriptor's flags.
    syscall!(fcntl(fd, libc::F_GETFD)).is_ok()
}

/// Workers leave terminal signals to the primary: Ctrl-C (SIGINT) and a hang-up reach the
/// whole process group, and the primary stops or reloads its workers gracefully.
///
/// They are caught by a handler that does nothing rather than ignored: an ignored signal stays
/// ignored across exec, so every program a worker started would ignore Ctrl-C too, while a
/// caught one is reset to its default action by exec. SA_RESTART keeps the worker's own
/// blocking calls from failing with EINTR.
pub(crate) fn ignore_terminal_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn nothing(_: libc::c_int) {}
    let action = SigAction::new(
        SigHandler::Handler(nothing),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// A listening TCP socket's accept queue: (connections waiting now, the backlog), from
/// TCP_INFO (`tcpi_unacked` and `tcpi_sacked` on a listener).
pub(crate) fn listen_queue(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain integers: all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // getsockopt writes at most `len` bytes into `info`, which is that large, and updates len.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        (&mut info as *mut libc::tcp_info).cast(),
        &mut len
    ))?;
    Ok((info.tcpi_unacked, info.tcpi_sacked))
}
