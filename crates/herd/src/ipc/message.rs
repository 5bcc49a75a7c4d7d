//! The messages of the IPC protocol and their encoding.

use std::io;

use crate::metrics::Snapshot;

/// From a worker to the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToPrimary {
    /// The worker process started and connected its channel.
    Online,
    /// Node's queryServer: create (or reuse) this slot's listener for `addr`.
    Listen { req: u32, addr: String },
    /// The worker serves `addr` (its event loop registered the listener).
    Listening { addr: String },
    /// The worker says it is ready (PM2's wait_ready).
    Ready,
    /// A user message.
    Message(Vec<u8>),
    /// The worker registered `n` handed-over connections.
    Took(u32),
    /// The worker holds `n` open connections.
    Load(u32),
    /// The draining worker gives back connections idle between exchanges, each with the
    /// bytes it read and did not consume; carries one fd per entry, in order.
    HandBack(Vec<Vec<u8>>),
    /// The worker's metric counters (cumulative since it started).
    Stats(Snapshot),
}

/// From the primary to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToWorker {
    /// The listener for request `req`; carries one fd.
    ListenOk { req: u32 },
    /// Listening failed: `errno` and a sentence saying what happened.
    ListenErr { req: u32, errno: i32, text: String },
    /// A user message.
    Message(Vec<u8>),
    /// Listening on `addr` works by hand-off: the primary accepts and sends connections.
    ListenHandoff { req: u32, addr: String },
    /// Stop accepting, finish in-flight work and exit. `hand_back`: give idle connections
    /// back ([`ToPrimary::HandBack`]) instead of closing them: another worker takes them.
    Disconnect { hand_back: bool },
    /// `n` handed-over connections; carries `n` fds.
    Connections(u32),
    /// Connections another worker gave back while draining, each with the bytes it had read
    /// and not consumed; carries one fd per entry, in order.
    Adopt(Vec<Vec<u8>>),
}

mod kind {
    pub const ONLINE: u8 = 1;
    pub const LISTEN: u8 = 2;
    pub const LISTENING: u8 = 3;
    pub const READY: u8 = 4;
    pub const MESSAGE: u8 = 5;
    pub const TOOK: u8 = 6;
    pub const LOAD: u8 = 7;
    pub const HAND_BACK: u8 = 8;
    pub const STATS: u8 = 20;
    pub const LISTEN_OK: u8 = 101;
    pub const LISTEN_ERR: u8 = 102;
    pub const W_MESSAGE: u8 = 103;
    pub const DISCONNECT: u8 = 104;
    pub const CONNECTIONS: u8 = 105;
    pub const LISTEN_HANDOFF: u8 = 106;
    pub const ADOPT: u8 = 107;
}

/// Appends a frame header and returns the position of its length field.
fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

/// A cursor over a frame's payload.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> io::Result<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>().ok_or_else(short)?;
        self.0 = rest;
        Ok(u32::from_le_bytes(*head))
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(short());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "IPC string is not UTF-8"))
    }
    /// A count followed by that many byte strings (each no longer than what is left).
    fn byte_list(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let n = self.u32()? as usize;
        // Each entry takes at least its 4-byte length: a count beyond that is a lie.
        if n > self.0.len() / 4 {
            return Err(short());
        }
        (0..n).map(|_| self.bytes().map(<[u8]>::to_vec)).collect()
    }
    /// A count of `u64`s, the values, read as a [`Snapshot`].
    fn snapshot(&mut self) -> io::Result<Snapshot> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 8 {
            return Err(short());
        }
        let list: Vec<u64> = (0..n)
            .map(|_| {
                let (head, rest) = self.0.split_first_chunk::<8>().expect("length checked");
                self.0 = rest;
                u64::from_le_bytes(*head)
            })
            .collect();
        Snapshot::from_wire(&list).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "IPC stats of an unknown layout")
        })
    }
    fn end(self) -> io::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "IPC frame has trailing bytes",
            ))
        }
    }
}

fn put_byte_list(out: &mut Vec<u8>, list: &[Vec<u8>]) {
    put_u32(out, list.len() as u32);
    for b in list {
        put_bytes(out, b);
    }
}

fn short() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "IPC frame is shorter than its message",
    )
}

fn unknown(kind: u8) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unknown IPC message kind {kind}"),
    )
}

impl ToPrimary {
    /// Appends this message as one frame.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let at = match self {
            ToPrimary::Online => begin(out, kind::ONLINE),
            ToPrimary::Listen { req, addr } => {
                let at = begin(out, kind::LISTEN);
                put_u32(out, *req);
                put_bytes(out, addr.as_bytes());
                at
            }
            ToPrimary::Listening { addr } => {
                let at = begin(out, kind::LISTENING);
                put_bytes(out, addr.as_bytes());
                at
            }
            ToPrimary::Ready => begin(out, kind::READY),
            ToPrimary::Message(data) => {
                let at = begin(out, kind::MESSAGE);
                out.extend_from_slice(data);
                at
            }
            ToPrimary::Took(n) => {
                let at = begin(out, kind::TOOK);
                put_u32(out, *n);
                at
            }
            ToPrimary::Load(n) => {
                let at = begin(out, kind::LOAD);
                put_u32(out, *n);
                at
            }
            ToPrimary::HandBack(inputs) => {
                let at = begin(out, kind::HAND_BACK);
                put_byte_list(out, inputs);
                at
            }
            ToPrimary::Stats(snap) => {
                let at = begin(out, kind::STATS);
                let list = snap.to_wire();
                put_u32(out, list.len() as u32);
                for v in list {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                at
            }
        };
        finish(out, at);
    }

    /// Decodes a frame's kind and payload.
    pub(crate) fn decode(kind: u8, payload: &[u8]) -> io::Result<Self> {
        let mut c = Cursor(payload);
        let msg = match kind {
            kind::ONLINE => ToPrimary::Online,
            kind::LISTEN => ToPrimary::Listen {
                req: c.u32()?,
                addr: c.string()?,
            },
            kind::LISTENING => ToPrimary::Listening { addr: c.string()? },
            kind::READY => ToPrimary::Ready,
            kind::MESSAGE => return Ok(ToPrimary::Message(payload.to_vec())),
            kind::TOOK => ToPrimary::Took(c.u32()?),
            kind::LOAD => ToPrimary::Load(c.u32()?),
            kind::HAND_BACK => ToPrimary::HandBack(c.byte_list()?),
            kind::STATS => ToPrimary::Stats(c.snapshot()?),
            k => return Err(unknown(k)),
        };
        c.end()?;
        Ok(msg)
    }
}

impl ToWorker {
    /// Appends this message as one frame.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let at = match self {
            ToWorker::ListenOk { req } => {
                let at = begin(out, kind::LISTEN_OK);
                put_u32(out, *req);
                at
            }
            ToWorker::ListenErr { req, errno, text } => {
                let at = begin(out, kind::LISTEN_ERR);
                put_u32(out, *req);
                put_u32(out, *errno as u32);
                put_bytes(out, text.as_bytes());
                at
            }
            ToWorker::Message(data) => {
                let at = begin(out, kind::W_MESSAGE);
                out.extend_from_slice(data);
                at
            }
            ToWorker::ListenHandoff { req, addr } => {
                let at = begin(out, kind::LISTEN_HANDOFF);
                put_u32(out, *req);
                put_bytes(out, addr.as_bytes());
                at
            }
            ToWorker::Disconnect { hand_back } => {
                let at = begin(out, kind::DISCONNECT);
                out.push(u8::from(*hand_back));
                at
            }
            ToWorker::Connections(n) => {
                let at = begin(out, kind::CONNECTIONS);
                put_u32(out, *n);
                at
            }
            ToWorker::Adopt(inputs) => {
                let at = begin(out, kind::ADOPT);
                put_byte_list(out, inputs);
                at
            }
        };
        finish(out, at);
    }

    /// Decodes a frame's kind and payload.
    pub(crate) fn decode(kind: u8, payload: &[u8]) -> io::Result<Self> {
        let mut c = Cursor(payload);
        if kind == kind::DISCONNECT {
            // An empty payload is a primary from before hand-back: close, as it expects.
            return match payload {
                [] | [0] => Ok(ToWorker::Disconnect { hand_back: false }),
                [1] => Ok(ToWorker::Disconnect { hand_back: true }),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "IPC disconnect frame has a bad payload",
                )),
            };
        }
        let msg = match kind {
            kind::LISTEN_OK => ToWorker::ListenOk { req: c.u32()? },
            kind::LISTEN_ERR => ToWorker::ListenErr {
                req: c.u32()?,
                errno: c.u32()? as i32,
                text: c.string()?,
            },
            kind::W_MESSAGE => return Ok(ToWorker::Message(payload.to_vec())),
            kind::LISTEN_HANDOFF => ToWorker::ListenHandoff {
                req: c.u32()?,
                addr: c.string()?,
            },
            kind::CONNECTIONS => ToWorker::Connections(c.u32()?),
            kind::ADOPT => ToWorker::Adopt(c.byte_list()?),
            k => return Err(unknown(k)),
        };
        c.end()?;
        Ok(msg)
    }

    /// How many fds travel with this message.
    pub(crate) fn fds(&self) -> usize {
        match self {
            ToWorker::ListenOk { .. } => 1,
            ToWorker::Connections(n) => *n as usize,
            ToWorker::Adopt(inputs) => inputs.len(),
            _ => 0,
        }
    }
}

impl ToPrimary {
    /// How many fds travel with this message.
    pub(crate) fn fds(&self) -> usize {
        match self {
            ToPrimary::HandBack(inputs) => inputs.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_parts(buf: &[u8]) -> (u8, &[u8]) {
        let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(len + 4, buf.len());
        (buf[4], &buf[5..])
    }

    #[test]
    fn every_message_round_trips() {
        let up = [
            ToPrimary::Online,
            ToPrimary::Listen {
                req: 7,
                addr: "127.0.0.1:0".into(),
            },
            ToPrimary::Listening {
                addr: "[::1]:8000".into(),
            },
            ToPrimary::Ready,
            ToPrimary::Message(b"hi\0there".to_vec()),
            ToPrimary::Took(3),
            ToPrimary::Load(12),
            ToPrimary::HandBack(vec![vec![], b"GET / HT".to_vec()]),
            ToPrimary::Stats(Snapshot {
                by_class: [1, 2, 3, 4, 5],
                bytes_in: 9,
                open: 2,
                ..Snapshot::default()
            }),
        ];
        for m in up {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            let (k, p) = frame_parts(&buf);
            assert_eq!(ToPrimary::decode(k, p).unwrap(), m);
        }
        let down = [
            ToWorker::ListenOk { req: 1 },
            ToWorker::ListenErr {
                req: 2,
                errno: 98,
                text: "address in use".into(),
            },
            ToWorker::Message(vec![]),
            ToWorker::Disconnect { hand_back: false },
            ToWorker::Disconnect { hand_back: true },
            ToWorker::Connections(4),
            ToWorker::Adopt(vec![b"x".to_vec()]),
            ToWorker::ListenHandoff {
                req: 3,
                addr: "127.0.0.1:9".into(),
            },
        ];
        for m in down {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            let (k, p) = frame_parts(&buf);
            assert_eq!(ToWorker::decode(k, p).unwrap(), m);
        }
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        assert!(ToPrimary::decode(2, &[1, 0]).is_err());
        assert!(ToPrimary::decode(2, &[1, 0, 0, 0, 255, 0, 0, 0]).is_err());
        assert!(ToPrimary::decode(1, &[0]).is_err());
        assert!(ToPrimary::decode(200, &[]).is_err());
        assert!(ToWorker::decode(102, &[0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xfe]).is_err());
        // A count of entries the payload cannot hold.
        assert!(ToPrimary::decode(8, &[255, 255, 255, 255]).is_err());
        assert!(ToWorker::decode(107, &[2, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ToWorker::decode(104, &[1, 0]).is_err());
        assert!(ToPrimary::decode(20, &[1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ToPrimary::decode(20, &[255, 255, 255, 0]).is_err());
    }
}
