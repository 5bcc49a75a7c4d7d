//! The primary's listening sockets (Node's queryServer, done by the primary).
//!
//! Under [`Policy::ReusePort`] each worker *slot* has its own SO_REUSEPORT listener, kept by
//! the primary for the life of the slot: a replacement worker inherits the socket and with it
//! every connection waiting in its accept queue. Under [`Policy::Shared`] one listener serves
//! every slot. Port 0 is resolved once, so every slot listens on the same real port.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, Protocol, Socket, Type};

/// How connections reach workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// One SO_REUSEPORT listener per worker slot; the kernel spreads connections by a hash of
    /// the 4-tuple. The default: the intent of Node's SCHED_NONE without its imbalance.
    #[default]
    ReusePort,
    /// One listener shared by every worker, as Node's SCHED_NONE does it: uneven by nature
    /// (the most recently waiting worker tends to win).
    Shared,
}

impl Policy {
    /// The policy named `name` (`reuseport`, `shared`), as the examples' `POLICY` takes it.
    pub fn from_name(name: &str) -> Option<Policy> {
        match name {
            "reuseport" => Some(Policy::ReusePort),
            "shared" => Some(Policy::Shared),
            _ => None,
        }
    }
}

/// Why a listener could not be made: an errno and a sentence.
#[derive(Debug, Clone)]
pub(crate) struct ListenError {
    pub errno: i32,
    pub text: String,
}

struct Group {
    addr: SocketAddr,
    shared: Option<Socket>,
    slots: HashMap<usize, Socket>,
}

/// Every listener the primary holds.
pub(crate) struct Listeners {
    policy: Policy,
    /// A dispatcher in the primary accepts: one plain listener per address.
    handoff: bool,
    backlog: i32,
    groups: HashMap<SocketAddr, Group>,
}

impl Listeners {
    pub(crate) fn new(policy: Policy, backlog: i32, handoff: bool) -> Listeners {
        Listeners {
            policy,
            handoff,
            backlog,
            groups: HashMap::new(),
        }
    }

    /// Whether connections are handed over by a dispatcher in the primary.
    pub(crate) fn handoff(&self) -> bool {
        self.handoff
    }

    /// Under hand-off: the real address for `requested`, and the listener when this call
    /// created it (the dispatcher's copy; the primary keeps its own).
    pub(crate) fn get_handoff(
        &mut self,
        requested: SocketAddr,
    ) -> Result<(SocketAddr, Option<std::os::fd::OwnedFd>), ListenError> {
        if let Some(g) = self.groups.get(&requested) {
            return Ok((g.addr, None));
        }
        let addr = probe(requested)?;
        let socket = open(addr, false, self.backlog).map_err(|e| explain(e, requested))?;
        let copy = socket
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| explain(e, requested))?;
        self.groups.insert(
            requested,
            Group {
                addr,
                shared: Some(socket),
                slots: HashMap::new(),
            },
        );
        Ok((addr, Some(copy)))
    }

    /// The listener for `requested` in `slot`, created on first use.
    pub(crate) fn get(
        &mut self,
        requested: SocketAddr,
        slot: usize,
    ) -> Result<BorrowedFd<'_>, ListenError> {
        let backlog = self.backlog;
        let policy = self.policy;
        let group = match self.groups.entry(requested) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let addr = probe(requested)?;
                v.insert(Group {
                    addr,
                    shared: None,
                    slots: HashMap::new(),
                })
            }
        };
        let addr = group.addr;
        let socket = match policy {
            Policy::Shared => match &mut group.shared {
                Some(s) => s,
                s @ None => {
                    s.insert(open(addr, false, backlog).map_err(|e| explain(e, requested))?)
                }
            },
            Policy::ReusePort => match group.slots.entry(slot) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(open(addr, true, backlog).map_err(|e| explain(e, requested))?)
                }
            },
        };
        let socket: &Socket = socket;
        Ok(socket.as_fd())
    }

    /// Closes `slot`'s listeners (the slot is gone for good).
    pub(crate) fn remove_slot(&mut self, slot: usize) {
        for g in self.groups.values_mut() {
            g.slots.remove(&slot);
        }
    }
}

/// Binds `requested` without SO_REUSEPORT to learn whether the port is free of every other
/// socket group (a second cluster on the same port must get EADDRINUSE, not a share of the
/// traffic), and to resolve port 0. Returns the real address.
fn probe(requested: SocketAddr) -> Result<SocketAddr, ListenError> {
    let s = Socket::new(
        Domain::for_address(requested),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| explain(e, requested))?;
    s.set_reuse_address(true)
        .map_err(|e| explain(e, requested))?;
    s.bind(&requested.into())
        .map_err(|e| explain(e, requested))?;
    let local = s.local_addr().map_err(|e| explain(e, requested))?;
    local.as_socket().ok_or_else(|| ListenError {
        errno: libc::EINVAL,
        text: format!("{requested} is not an IP address"),
    })
}

/// A listening socket on `addr`, non-blocking, TCP_NODELAY (inherited by accepted sockets).
fn open(addr: SocketAddr, reuse_port: bool, backlog: i32) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    Ok(s)
}

fn explain(e: io::Error, addr: SocketAddr) -> ListenError {
    let errno = e.raw_os_error().unwrap_or(libc::EIO);
    let what = match errno {
        libc::EADDRINUSE => format!("address {addr} is already in use (EADDRINUSE): another process listens on this port"),
        libc::EACCES => format!("permission denied to listen on {addr} (EACCES): ports below 1024 need root or CAP_NET_BIND_SERVICE"),
        libc::EADDRNOTAVAIL => format!("address {addr} is not available on this machine (EADDRNOTAVAIL)"),
        _ => format!("cannot listen on {addr}: {e}"),
    };
    ListenError { errno, text: what }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn port_zero_resolves_once_for_every_slot() {
        let mut l = Listeners::new(Policy::ReusePort, 128, false);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = TcpListener::from(l.get(any, 0).unwrap().try_clone_to_owned().unwrap());
        let b = TcpListener::from(l.get(any, 1).unwrap().try_clone_to_owned().unwrap());
        let a2 = TcpListener::from(l.get(any, 0).unwrap().try_clone_to_owned().unwrap());
        let port = a.local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(b.local_addr().unwrap().port(), port);
        assert_eq!(a2.local_addr().unwrap().port(), port);
    }

    #[test]
    fn a_port_held_by_another_process_is_eaddrinuse_with_a_clear_sentence() {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut l = Listeners::new(Policy::ReusePort, 128, false);
        let err = l.get(other.local_addr().unwrap(), 0).unwrap_err();
        assert_eq!(err.errno, libc::EADDRINUSE);
        assert!(err.text.contains("already in use"), "{}", err.text);
    }
}
