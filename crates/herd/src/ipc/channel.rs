//! One end of an IPC socketpair: frame reassembly, fd queueing, and sends that never block the
//! primary (a full socket buffer queues the rest until the peer reads).

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::{ToPrimary, ToWorker};

/// The most fds one recvmsg takes.
const MAX_FDS_PER_READ: usize = crate::primary::MAX_FDS_PER_FRAME;
/// Bytes asked of one recvmsg.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes of frame overhead beyond the user payload a limit is checked against.
const FRAME_SLACK: usize = 64;

/// A message type the channel can decode.
pub(crate) trait Decode: Sized {
    fn decode(kind: u8, payload: &[u8]) -> io::Result<Self>;
    fn fds(&self) -> usize;
}

impl Decode for ToPrimary {
    fn decode(kind: u8, payload: &[u8]) -> io::Result<Self> {
        ToPrimary::decode(kind, payload)
    }
    fn fds(&self) -> usize {
        ToPrimary::fds(self)
    }
}

impl Decode for ToWorker {
    fn decode(kind: u8, payload: &[u8]) -> io::Result<Self> {
        ToWorker::decode(kind, payload)
    }
    fn fds(&self) -> usize {
        ToWorker::fds(self)
    }
}

/// What [`Channel::next`] produced.
#[derive(Debug)]
pub(crate) enum Received<M> {
    /// A message and the fds that came with it.
    Message(M, Vec<OwnedFd>),
    /// A frame of this many bytes was larger than the limit and was discarded.
    Oversized(usize),
    /// A frame could not be decoded and was discarded.
    Malformed(io::Error),
}

/// A frame waiting for the peer to make room.
struct Pending {
    bytes: Vec<u8>,
    sent: usize,
    fds: Vec<OwnedFd>,
}

/// A frame cut from the input, not yet decoded.
enum Frame {
    Whole {
        kind: u8,
        payload: Vec<u8>,
    },
    /// A frame over the limit, whose payload of this many bytes is discarded as it arrives.
    Oversized(usize),
}

/// One end of the primary/worker socketpair.
pub(crate) struct Channel {
    stream: UnixStream,
    /// Bytes read and not yet cut into frames: at most one frame in progress.
    input: Vec<u8>,
    /// Frames cut from the input, in order.
    frames: VecDeque<Frame>,
    /// Where recvmsg writes, zeroed once (not per read), then appended to `input`.
    scratch: Box<[u8]>,
    fds: VecDeque<OwnedFd>,
    /// Bytes of an oversized frame still to discard.
    skip: usize,
    max_frame: usize,
    queue: VecDeque<Pending>,
}

impl Channel {
    /// Wraps a stream (set non-blocking here) with a limit on one message's payload.
    pub(crate) fn new(stream: UnixStream, max_message: usize) -> io::Result<Channel> {
        stream.set_nonblocking(true)?;
        Ok(Channel {
            stream,
            input: Vec::new(),
            frames: VecDeque::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            fds: VecDeque::new(),
            skip: 0,
            max_frame: max_message.saturating_add(FRAME_SLACK),
            queue: VecDeque::new(),
        })
    }

    /// The socket, for registration with a poller.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Reads everything available. Returns `Ok(false)` once the peer has closed its end.
    pub(crate) fn fill(&mut self) -> io::Result<bool> {
        loop {
            match self.read_once() {
                Ok(0) => return Ok(false),
                Ok(_) => self.cut(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    fn read_once(&mut self) -> io::Result<usize> {
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS_PER_READ]);
        let result = {
            let mut iov = [IoSliceMut::new(&mut self.scratch)];
            recvmsg::<()>(
                self.stream.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map(|msg| {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            fds.extend(raw);
                        }
                    }
                }
                (msg.bytes, fds, msg.flags.contains(MsgFlags::MSG_CTRUNC))
            })
        };
        match result {
            Ok((n, fds, truncated)) => {
                self.input.extend_from_slice(&self.scratch[..n]);
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor for us (SCM_RIGHTS);
                    // nothing else owns it.
                    self.fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
                }
                if truncated {
                    tracing::warn!("IPC control data truncated: some passed fds were lost");
                }
                Ok(n)
            }
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Cuts complete frames off the input as it arrives, discarding the bytes of frames over
    /// the limit on the spot, so a peer cannot make this side buffer more than one frame.
    fn cut(&mut self) {
        let mut at = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.input.len() - at);
                at += n;
                self.skip -= n;
                if self.skip > 0 {
                    break;
                }
            }
            let Some(head) = self.input.get(at..at + 4) else {
                break;
            };
            let len = u32::from_le_bytes(head.try_into().expect("4 bytes")) as usize;
            if len > self.max_frame || len == 0 {
                self.frames
                    .push_back(Frame::Oversized(len.saturating_sub(1)));
                at += 4;
                self.skip = len;
                continue;
            }
            let Some(frame) = self.input.get(at + 4..at + 4 + len) else {
                break;
            };
            self.frames.push_back(Frame::Whole {
                kind: frame[0],
                payload: frame[1..].to_vec(),
            });
            at += 4 + len;
        }
        self.input.drain(..at);
    }

    /// The next complete message in what has been read, if any.
    pub(crate) fn next<M: Decode>(&mut self) -> Option<Received<M>> {
        let decoded = match self.frames.pop_front()? {
            Frame::Oversized(n) => return Some(Received::Oversized(n)),
            Frame::Whole { kind, payload } => M::decode(kind, &payload),
        };
        Some(match decoded {
            Ok(msg) => {
                let want = msg.fds();
                if self.fds.len() < want {
                    return Some(Received::Malformed(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "IPC message arrived without its file descriptors",
                    )));
                }
                let fds = self.fds.drain(..want).collect();
                Received::Message(msg, fds)
            }
            Err(e) => Received::Malformed(e),
        })
    }

    /// Sends one frame with `fds`, without blocking: what the socket cannot take now is queued
    /// and goes out from [`Channel::flush`]. Returns whether the queue is now non-empty.
    pub(crate) fn send(&mut self, frame: Vec<u8>, fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
        if self.queue.is_empty() {
            match send_frame(self.stream.as_raw_fd(), &frame, fds) {
                Ok(n) if n == frame.len() => return Ok(false),
                // The fds went with the first byte; only the rest of the bytes wait.
                Ok(n) => {
                    self.queue.push_back(Pending {
                        bytes: frame,
                        sent: n,
                        fds: Vec::new(),
                    });
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        // Nothing of this frame went out: it waits whole, with copies of its fds.
        let fds = fds
            .iter()
            .map(|f| f.try_clone_to_owned())
            .collect::<io::Result<_>>()?;
        self.queue.push_back(Pending {
            bytes: frame,
            sent: 0,
            fds,
        });
        Ok(true)
    }

    /// Writes queued frames. Returns whether something is still queued.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        while let Some(p) = self.queue.front_mut() {
            let borrowed: Vec<BorrowedFd<'_>> = p.fds.iter().map(|f| f.as_fd()).collect();
            match send_frame(self.stream.as_raw_fd(), &p.bytes[p.sent..], &borrowed) {
                Ok(n) => {
                    drop(borrowed);
                    p.sent += n;
                    p.fds.clear();
                    if p.sent == p.bytes.len() {
                        self.queue.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Waits up to `timeout` for the next message (used by a worker before its loop runs).
    pub(crate) fn recv_blocking<M: Decode>(
        &mut self,
        timeout: Duration,
    ) -> io::Result<Received<M>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.next() {
                return Ok(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the primary",
                ));
            }
            wait_fd(self.stream.as_fd(), PollFlags::POLLIN, left)?;
            if !self.fill()? {
                // A last frame may have come with the close: it is still an answer.
                return self.next().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the primary closed the IPC channel",
                    )
                });
            }
        }
    }
}

/// One sendmsg of `bytes`, with `fds` attached to its first byte.
fn send_frame(fd: RawFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: &[ControlMessage<'_>] = &[ControlMessage::ScmRights(&raw)];
    let cmsgs = if raw.is_empty() { &[][..] } else { cmsgs };
    loop {
        match sendmsg::<()>(
            fd,
            &[IoSlice::new(bytes)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends a whole frame, waiting for room when the socket is full (worker side: a worker may
/// wait for its primary; the primary never waits for a worker).
pub(crate) fn send_blocking(
    stream: &UnixStream,
    frame: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let mut sent = 0;
    let mut fds = fds;
    while sent < frame.len() {
        match send_frame(stream.as_raw_fd(), &frame[sent..], fds) {
            Ok(n) => {
                sent += n;
                fds = &[];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_fd(stream.as_fd(), PollFlags::POLLOUT, Duration::from_secs(1))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn wait_fd(fd: BorrowedFd<'_>, flags: PollFlags, timeout: Duration) -> io::Result<()> {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, flags)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn frames_and_fds_cross_a_real_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = Channel::new(a, 1024).unwrap();
        let mut b = Channel::new(b, 1024).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut frame = Vec::new();
        ToWorker::ListenOk { req: 9 }.encode(&mut frame);
        ToWorker::Message(b"after".to_vec()).encode(&mut frame);
        assert!(!a.send(frame, &[listener.as_fd()]).unwrap());
        let got = b.recv_blocking::<ToWorker>(Duration::from_secs(2)).unwrap();
        let Received::Message(ToWorker::ListenOk { req: 9 }, fds) = got else {
            panic!("{got:?}")
        };
        assert_eq!(fds.len(), 1);
        let passed = TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(passed.local_addr().unwrap(), listener.local_addr().unwrap());
        let got = b.recv_blocking::<ToWorker>(Duration::from_secs(2)).unwrap();
        assert!(matches!(got, Received::Message(ToWorker::Message(ref m), _) if m == b"after"));
    }

    #[test]
    fn an_oversized_frame_is_skipped_and_the_stream_stays_in_step() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut b = Channel::new(b, 16).unwrap();
        let mut frame = Vec::new();
        ToPrimary::Message(vec![7; 8 << 20]).encode(&mut frame);
        ToPrimary::Ready.encode(&mut frame);
        let writer = std::thread::spawn(move || send_blocking(&a, &frame, &[]).map(|_| a));
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.len() < 2 && Instant::now() < deadline {
            b.fill().unwrap();
            // Discarded as it arrives: never more than one read's worth is held.
            assert!(
                b.input.len() <= READ_CHUNK,
                "{} bytes buffered",
                b.input.len()
            );
            while let Some(r) = b.next::<ToPrimary>() {
                seen.push(r);
            }
        }
        let _a = writer.join().unwrap().unwrap();
        assert!(
            matches!(seen[0], Received::Oversized(n) if n == 8 << 20),
            "{seen:?}"
        );
        assert!(
            matches!(seen[1], Received::Message(ToPrimary::Ready, _)),
            "{seen:?}"
        );
    }

    #[test]
    fn a_full_socket_queues_instead_of_blocking() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = Channel::new(a, 1 << 20).unwrap();
        let mut b = Channel::new(b, 1 << 20).unwrap();
        let mut queued = false;
        for _ in 0..64 {
            let mut frame = Vec::new();
            ToWorker::Message(vec![1; 64 * 1024]).encode(&mut frame);
            queued |= a.send(frame, &[]).unwrap();
        }
        assert!(queued, "4 MiB should not fit a socket buffer");
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < 64 && Instant::now() < deadline {
            a.flush().unwrap();
            b.fill().unwrap();
            while let Some(Received::Message(ToWorker::Message(m), _)) = b.next::<ToWorker>() {
                assert_eq!(m.len(), 64 * 1024);
                got += 1;
            }
        }
        assert_eq!(got, 64);
    }
}
