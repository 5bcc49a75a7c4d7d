//! The control protocol's framing and request checks (documented in [`super`]).

use serde_json::{json, Value};

/// The protocol version this primary speaks.
pub(crate) const VERSION: u64 = 1;

/// The largest frame accepted either way, in bytes.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

/// Appends `value` as one frame.
pub(crate) fn frame(value: &Value, out: &mut Vec<u8>) {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
}

/// What the front of `input` holds.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    /// Not a whole frame yet.
    Partial,
    /// A frame of `len` bytes of payload (after the 4-byte header).
    Whole(usize),
    /// A length over [`MAX_FRAME`] (or zero): the peer is not speaking this protocol.
    Bad(usize),
}

/// Looks at the front of `input`.
pub(crate) fn peek(input: &[u8]) -> Frame {
    let Some(head) = input.first_chunk::<4>() else {
        return Frame::Partial;
    };
    let len = u32::from_be_bytes(*head) as usize;
    if len == 0 || len > MAX_FRAME {
        Frame::Bad(len)
    } else if input.len() >= 4 + len {
        Frame::Whole(len)
    } else {
        Frame::Partial
    }
}

/// An answer saying what went wrong.
pub(crate) fn error(text: impl Into<String>) -> Value {
    json!({"v": VERSION, "ok": false, "error": text.into()})
}

/// A parsed request, or the answer that refuses it.
pub(crate) fn parse(payload: &[u8]) -> Result<Value, Value> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| {
        error(format!(
            "the request is not JSON ({e}): see the protocol in herd's docs"
        ))
    })?;
    match v.get("v").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(other) => {
            return Err(error(format!(
                "protocol version {other} is not supported: this primary speaks version {VERSION}"
            )))
        }
        None => return Err(error("the request has no protocol version: add \"v\": 1")),
    }
    if v.get("cmd").and_then(Value::as_str).is_none() {
        return Err(error(
            "the request has no \"cmd\": one of status, reload, scale, stop, kill",
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_requests() {
        let mut out = Vec::new();
        frame(&json!({"v": 1, "cmd": "status"}), &mut out);
        let Frame::Whole(n) = peek(&out) else {
            panic!("whole")
        };
        assert_eq!(parse(&out[4..4 + n]).unwrap()["cmd"], "status");
        assert_eq!(peek(&out[..3]), Frame::Partial);
        assert_eq!(peek(&out[..6]), Frame::Partial);
        assert_eq!(peek(b"GET / HTTP/1.1\r\n"), Frame::Bad(0x47455420));
        assert_eq!(peek(&[0, 0, 0, 0]), Frame::Bad(0));
        assert!(parse(b"{nope").is_err());
        assert!(parse(br#"{"v":2,"cmd":"status"}"#).unwrap_err()["error"]
            .as_str()
            .unwrap()
            .contains("version 2"));
        assert!(parse(br#"{"cmd":"status"}"#).is_err());
        assert!(parse(br#"{"v":1}"#).is_err());
    }
}
