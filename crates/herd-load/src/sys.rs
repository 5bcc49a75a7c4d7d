//! The raw system calls socket2 and std do not wrap. Every `unsafe` block of the crate is here.

use std::io;
use std::os::fd::AsRawFd;

/// Pins the calling thread to `cpu`.
///
/// # Errors
///
/// `InvalidInput` when `cpu` is beyond what a CPU set can hold; the OS error from
/// `sched_setaffinity` (e.g. `EINVAL` for a CPU that is offline or not allowed).
pub(crate) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: `cpu` was checked to lie within the set's bits.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`, which lives
    // across the call.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` on an IPv4 socket, so that binding to a source address with
/// port 0 leaves the port to be chosen at connect time (per destination), instead of taking
/// one ephemeral port out of the whole range at bind.
pub(crate) fn bind_address_no_port(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the fd is open for the duration of the call (borrowed); the option value pointer
    // and length describe `on`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
