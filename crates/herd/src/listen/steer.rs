//! Classic-BPF reuseport programs (SO_ATTACH_REUSEPORT_CBPF): which socket of a reuseport
//! group takes a new connection. No eBPF and no privilege needed.
//!
//! A program returns an index into the group's socket array (listen() order; a closed
//! socket's place is taken by the last one). An index out of range falls back to the
//! kernel's own hash pick, so a stale program can misroute but never drop a connection.
//!
//! Two uses: pinned mode on kernels without SO_INCOMING_CPU steering (the CPU that took the
//! SYN picks the socket), and scale-down (new connections avoid a slot that is leaving, so
//! its queue can be emptied before the socket closes).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// One cBPF instruction (`struct sock_filter`).
type Insn = libc::sock_filter;

const SKF_AD_OFF: i32 = -0x1000;
const SKF_AD_RXHASH: i32 = 32;
const SKF_AD_CPU: i32 = 36;
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
const SO_DETACH_REUSEPORT_BPF: libc::c_int = 68;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const MOD_K: u16 = (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// An index no group has: the kernel falls back to its hash pick.
const FALLBACK: u32 = u32::MAX;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// A program that picks one of `indices` by the packet's flow hash.
fn pick_by_hash(indices: &[u32]) -> Vec<Insn> {
    match indices {
        [] => vec![insn(RET_K, 0, 0, FALLBACK)],
        [only] => vec![insn(RET_K, 0, 0, *only)],
        _ => {
            let mut p = vec![
                insn(LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_RXHASH) as u32),
                insn(MOD_K, 0, 0, indices.len() as u32),
            ];
            let (last, rest) = indices.split_last().expect("two or more");
            for (i, idx) in rest.iter().enumerate() {
                p.push(insn(JEQ_K, 0, 1, i as u32));
                p.push(insn(RET_K, 0, 0, *idx));
            }
            p.push(insn(RET_K, 0, 0, *last));
            p
        }
    }
}

/// What a group's program should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Table {
    /// Spread over these socket indices by flow hash.
    Hash(Vec<u32>),
    /// CPU → socket indices (spread by flow hash when a CPU has several); a SYN taken on any
    /// other CPU goes to one of `others` by flow hash, or to the kernel's own pick when
    /// `others` is empty.
    Cpu {
        /// The sockets of each CPU.
        by_cpu: BTreeMap<usize, Vec<u32>>,
        /// Where SYNs from the remaining CPUs go.
        others: Vec<u32>,
    },
}

/// Compiles `table` into a cBPF program.
pub(crate) fn compile(table: &Table) -> io::Result<Vec<Insn>> {
    let prog = match table {
        Table::Hash(indices) => pick_by_hash(indices),
        Table::Cpu { by_cpu, others } => {
            let mut p = vec![insn(LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_CPU) as u32)];
            for (cpu, indices) in by_cpu {
                let body = pick_by_hash(indices);
                let skip = u8::try_from(body.len()).map_err(|_| {
                    io::Error::other("too many sockets for one CPU in a cBPF program")
                })?;
                p.push(insn(JEQ_K, 0, skip, *cpu as u32));
                p.extend(body);
            }
            p.extend(pick_by_hash(others));
            p
        }
    };
    if prog.len() > libc::BPF_MAXINSNS as usize {
        return Err(io::Error::other("the reuseport program is too long"));
    }
    Ok(prog)
}

/// Attaches `prog` to the reuseport group of `socket` (it applies to the whole group).
pub(crate) fn attach(socket: BorrowedFd<'_>, prog: &[Insn]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // setsockopt reads `fprog` (and the instructions it points to) during the call only;
    // both outlive it.
    syscall!(setsockopt(
        socket.as_raw_fd(),
        libc::SOL_SOCKET,
        SO_ATTACH_REUSEPORT_CBPF,
        (&fprog as *const libc::sock_fprog).cast(),
        std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
    ))
    .map(drop)
}

/// Removes the group's program: back to the kernel's own pick.
pub(crate) fn detach(socket: BorrowedFd<'_>) -> io::Result<()> {
    let zero: libc::c_int = 0;
    // setsockopt reads one int during the call.
    match syscall!(setsockopt(
        socket.as_raw_fd(),
        libc::SOL_SOCKET,
        SO_DETACH_REUSEPORT_BPF,
        (&zero as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
    )) {
        Ok(_) => Ok(()),
        // ENOENT: nothing attached.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::AsFd;

    fn group(n: usize) -> (Vec<Socket>, SocketAddr) {
        let mut socks: Vec<Socket> = Vec::new();
        let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        for _ in 0..n {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_reuse_port(true).unwrap();
            s.bind(&addr.into()).unwrap();
            s.listen(256).unwrap();
            s.set_nonblocking(true).unwrap();
            addr = s.local_addr().unwrap().as_socket().unwrap();
            socks.push(s);
        }
        (socks, addr)
    }

    fn accepted(s: &Socket) -> usize {
        let mut n = 0;
        while s.accept().is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_hash_table_never_picks_a_socket_it_leaves_out() {
        let (socks, addr) = group(3);
        attach(
            socks[0].as_fd(),
            &compile(&Table::Hash(vec![0, 2])).unwrap(),
        )
        .unwrap();
        let conns: Vec<TcpStream> = (0..200)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let got: Vec<usize> = socks.iter().map(accepted).collect();
        assert_eq!(got[1], 0, "{got:?}");
        assert_eq!(got[0] + got[2], conns.len());
        assert!(
            got[0] > 40 && got[2] > 40,
            "both remaining sockets get a share: {got:?}"
        );
        detach(socks[0].as_fd()).unwrap();
        let more: Vec<TcpStream> = (0..100)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            accepted(&socks[1]) > 0,
            "after detach every socket takes some of {}",
            more.len()
        );
    }

    #[test]
    fn programs_have_the_expected_shape() {
        assert_eq!(compile(&Table::Hash(vec![])).unwrap().len(), 1);
        assert_eq!(compile(&Table::Hash(vec![4])).unwrap()[0].k, 4);
        // ld, mod, (jeq, ret) x2, ret
        assert_eq!(compile(&Table::Hash(vec![0, 1, 2])).unwrap().len(), 7);
        let cpu = Table::Cpu {
            by_cpu: BTreeMap::from([(0, vec![1]), (1, vec![0])]),
            others: vec![],
        };
        let p = compile(&cpu).unwrap();
        // ld cpu, jeq 0, ret 1, jeq 1, ret 0, ret fallback
        assert_eq!(
            p.iter().map(|i| i.k).collect::<Vec<_>>()[1..],
            [0, 1, 1, 0, FALLBACK]
        );
    }
}
