//! The chunked transfer coding (RFC 9112 section 7.1): chunk sizes, chunk extensions (skipped),
//! data, the last chunk and trailer fields (skipped).

use super::Error;

/// The longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;
/// The largest trailer section accepted.
const MAX_TRAILERS: usize = 8192;

/// How far decoding got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// The body is not complete yet.
    Partial,
    /// The body is complete: this many input bytes were its encoding.
    Done(usize),
}

/// Decode the chunked body at the start of `input`, appending the data to `body`.
///
/// # Errors
///
/// [`Error::BadRequest`] for a malformed encoding, [`Error::BodyTooLarge`] once the data would
/// exceed `max` bytes (checked before the data arrives).
pub(crate) fn decode(input: &[u8], body: &mut Vec<u8>, max: usize) -> Result<Decoded, Error> {
    let mut pos = 0;
    loop {
        let Some(line) = line(&input[pos..])? else {
            return Ok(Decoded::Partial);
        };
        let size = chunk_size(&input[pos..pos + line])?;
        pos += line + 2;
        if size == 0 {
            return trailers(input, pos);
        }
        if size > max.saturating_sub(body.len()) {
            return Err(Error::BodyTooLarge);
        }
        let Some(chunk) = input.get(pos..pos + size + 2) else {
            return Ok(Decoded::Partial);
        };
        if !chunk.ends_with(b"\r\n") {
            return Err(Error::BadRequest);
        }
        body.extend_from_slice(&chunk[..size]);
        pos += size + 2;
    }
}

/// Skip the trailer section that starts at `pos`, up to its empty line.
fn trailers(input: &[u8], mut pos: usize) -> Result<Decoded, Error> {
    let start = pos;
    loop {
        let Some(line) = line(&input[pos..])? else {
            if input.len() - start > MAX_TRAILERS {
                return Err(Error::HeadersTooLarge);
            }
            return Ok(Decoded::Partial);
        };
        pos += line + 2;
        if line == 0 {
            return Ok(Decoded::Done(pos));
        }
        if pos - start > MAX_TRAILERS {
            return Err(Error::HeadersTooLarge);
        }
    }
}

/// The length of the CRLF-terminated line at the start of `input` (without the CRLF), or
/// `None` while it is incomplete. A bare LF is an error.
fn line(input: &[u8]) -> Result<Option<usize>, Error> {
    let window = &input[..input.len().min(MAX_LINE + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => Err(Error::BadRequest),
        Some(lf) if input[lf - 1] == b'\r' => Ok(Some(lf - 1)),
        Some(_) => Err(Error::BadRequest),
        None if input.len() > MAX_LINE + 1 => Err(Error::BadRequest),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: the hexadecimal size; extensions are ignored.
fn chunk_size(line: &[u8]) -> Result<usize, Error> {
    let end = line
        .iter()
        .position(|&b| matches!(b, b';' | b' ' | b'\t'))
        .unwrap_or(line.len());
    let (digits, ext) = line.split_at(end);
    let ext = ext.trim_ascii_start();
    if digits.is_empty() || digits.len() > 15 || !(ext.is_empty() || ext[0] == b';') {
        return Err(Error::BadRequest);
    }
    digits.iter().try_fold(0usize, |size, &b| {
        let digit = (b as char).to_digit(16).ok_or(Error::BadRequest)?;
        Ok(size * 16 + digit as usize)
    })
}
