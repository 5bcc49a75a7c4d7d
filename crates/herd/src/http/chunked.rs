//! The chunked transfer coding (RFC 9112 section 7.1): chunk sizes, chunk extensions
//! (validated, then skipped), data, the last chunk and trailer fields (skipped).
//!
//! [`Decoder`] keeps its state between reads (like hyper's `proto/h1/decode.rs`), so a body
//! costs time linear in its encoded size however it is split, and the encoded bytes are
//! consumed as they are decoded: only the data is kept. The encoding's overhead is bounded: a
//! chunk size has at most 16 digits, everything after them on all size lines of a body
//! (whitespace and extensions) counts toward [`MAX_EXTENSIONS`], and the trailer section toward
//! [`MAX_TRAILERS`]. Every chunk but the last carries at least one byte of data, so a body of
//! `n` data bytes is at most `21 n` bytes plus those two limits on the wire.

use super::Error;

/// The most bytes of chunk extensions (and whitespace after chunk sizes) in one body; more is
/// answered 400. hyper allows 16 KiB too; nginx does not bound them.
pub(crate) const MAX_EXTENSIONS: usize = 16 * 1024;
/// The largest trailer section accepted; a larger one is answered 431.
const MAX_TRAILERS: usize = 8 * 1024;
/// The most hexadecimal digits in a chunk size (leading zeros included).
const MAX_SIZE_DIGITS: usize = 16;

/// Where the decoder is in the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first digit of a chunk size.
    SizeStart,
    /// More digits of a chunk size.
    Size,
    /// Whitespace after the size (BWS before `;`).
    SizeWs,
    /// Whitespace before an extension name (after `;`).
    NameStart,
    Name,
    /// Whitespace after an extension name.
    NameWs,
    /// Whitespace after `=`.
    ValueStart,
    Token,
    Quoted,
    /// After a backslash in a quoted string.
    QuotedPair,
    /// Whitespace after an extension value.
    ValueWs,
    /// The LF that ends a size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// The start of a trailer line (or of the empty line that ends the body).
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// How far decoding got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Every input byte was consumed; the body is not complete yet.
    Partial,
    /// The body is complete: this many input bytes ended its encoding (the rest is the next
    /// request).
    Done(usize),
}

/// An incremental chunked-body decoder: feed it the encoded bytes as they arrive.
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    state: State,
    /// The chunk size being read, then the data bytes of the chunk still to come.
    size: u64,
    digits: usize,
    extensions: usize,
    trailers: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::SizeStart,
            size: 0,
            digits: 0,
            extensions: 0,
            trailers: 0,
        }
    }
}

impl Decoder {
    /// Decode what `input` holds, appending the data to `body`.
    ///
    /// # Errors
    ///
    /// [`Error::BadRequest`] for a malformed encoding or too many extension bytes,
    /// [`Error::BodyTooLarge`] once a chunk size would take the data beyond `max` bytes
    /// (before the data arrives), [`Error::HeadersTooLarge`] for too large a trailer section.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        max: usize,
    ) -> Result<Decoded, Error> {
        let mut pos = 0;
        while pos < input.len() {
            if self.state == State::Data {
                let take =
                    (input.len() - pos).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                body.extend_from_slice(&input[pos..pos + take]);
                pos += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[pos];
            pos += 1;
            self.state = self.step(b, body.len(), max)?;
            if self.state == State::Done {
                return Ok(Decoded::Done(pos));
            }
        }
        Ok(Decoded::Partial)
    }

    /// One byte outside chunk data: the next state.
    fn step(&mut self, b: u8, have: usize, max: usize) -> Result<State, Error> {
        use State::*;
        let ws = matches!(b, b' ' | b'\t');
        if matches!(
            self.state,
            SizeWs | NameStart | Name | NameWs | ValueStart | Token | Quoted | QuotedPair | ValueWs
        ) && b != b'\r'
        {
            self.extensions += 1;
            if self.extensions > MAX_EXTENSIONS {
                return Err(Error::BadRequest);
            }
        }
        let next = match (self.state, b) {
            (SizeStart | Size, _) if b.is_ascii_hexdigit() => {
                self.digits += 1;
                if self.digits > MAX_SIZE_DIGITS {
                    return Err(Error::BadRequest);
                }
                let digit = (b as char).to_digit(16).unwrap_or(0);
                self.size = self
                    .size
                    .saturating_mul(16)
                    .saturating_add(u64::from(digit));
                if self.size > max.saturating_sub(have) as u64 {
                    return Err(Error::BodyTooLarge);
                }
                Size
            }
            (Size, _) if ws => SizeWs,
            (SizeWs, _) | (NameStart, _) | (NameWs, _) | (ValueStart, _) | (ValueWs, _) if ws => {
                self.state
            }
            (Size | SizeWs | Name | NameWs | Token | ValueWs, b';') => NameStart,
            (NameStart | Name, _) if is_tchar(b) => Name,
            (Name, _) if ws => NameWs,
            (Name | NameWs, b'=') => ValueStart,
            (ValueStart, b'"') => Quoted,
            (ValueStart | Token, _) if is_tchar(b) => Token,
            (Token, _) if ws => ValueWs,
            (Quoted, b'"') => ValueWs,
            (Quoted, b'\\') => QuotedPair,
            (Quoted, _) if is_qdtext(b) => Quoted,
            (QuotedPair, _) if ws || is_vchar_or_obs(b) => Quoted,
            (Size | SizeWs | Name | NameWs | Token | ValueWs, b'\r') => SizeLf,
            (SizeLf, b'\n') => {
                self.digits = 0;
                if self.size == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => SizeStart,
            (TrailerStart, b'\r') => EndLf,
            (Trailer, b'\r') => TrailerLf,
            (TrailerStart | Trailer, _) if b != b'\n' && b != 0 => {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err(Error::HeadersTooLarge);
                }
                Trailer
            }
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            _ => return Err(Error::BadRequest),
        };
        Ok(next)
    }
}

/// `tchar` (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `qdtext` (RFC 9110 section 5.6.4).
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF)
}

fn is_vchar_or_obs(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0x80..=0xFF)
}
