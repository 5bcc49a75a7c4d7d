//! Files as responses: validators (`ETag`, `Last-Modified`), conditional requests (RFC 9110
//! section 13), single byte ranges (section 14) and the media type from the extension
//! (`mime_guess`). The body itself is a range of the open file that the event loop sends with
//! sendfile(2); nothing here touches a socket.
//!
//! Choices, for the record:
//! - The `ETag` is strong, `"<inode>-<size>-<mtime in ns>"` (hex): it changes whenever the file
//!   is replaced or written (with nanosecond timestamps), and strong tags are what `If-Range`
//!   and `If-Match` compare with. Two hosts serving copies of one file give different tags
//!   (different inodes): their clients revalidate with `If-Modified-Since` as well.
//! - Several ranges in one `Range` header are not served as `multipart/byteranges`: the
//!   header is ignored and the whole file is sent with `200` (RFC 9110 section 14.2 lets a
//!   server ignore `Range`). A malformed `Range` is ignored the same way.
//! - `Range` applies to `GET` only (RFC 9110 section 14.2); a `HEAD` gets the `200` headers.
//! - Text types get `; charset=utf-8`.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Request, Response};

/// Open `path` for reading without blocking on a FIFO (a FIFO is then refused as not a
/// regular file).
pub(crate) fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// The status for a file that could not be opened: `404` when it is not there, `403` when it
/// may not be read; anything else is the server's problem (`500`, logged).
pub(crate) fn error_status(e: &io::Error, path: &Path) -> u16 {
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::NotFound, _) | (_, Some(libc::ENOTDIR)) => 404,
        (io::ErrorKind::PermissionDenied, _) => 403,
        _ => {
            tracing::error!("opening {}: {e}", path.display());
            500
        }
    }
}

/// Answer `req` with the open `file` (`meta` from the same handle), its media type guessed
/// from `name`'s extension.
pub(crate) fn serve(
    req: &Request<'_>,
    res: &mut Response,
    file: File,
    meta: &Metadata,
    name: &Path,
) {
    if !meta.is_file() {
        res.status(404);
        return;
    }
    let validators = Validators::of(meta, SystemTime::now());
    let asked = Asked::from_request(req);
    let len = meta.len();
    match decide(&asked, &validators, len) {
        Decision::NotModified => {
            res.status(304);
            validators.write(res);
        }
        Decision::PreconditionFailed => {
            res.status(412);
        }
        Decision::Unsatisfiable => {
            let mut value = String::from("bytes */");
            value.push_str(itoa::Buffer::new().format(len));
            res.status(416)
                .header("Content-Range", value)
                .header("Accept-Ranges", "bytes");
        }
        Decision::Full => {
            validators.write(res);
            res.header("Accept-Ranges", "bytes")
                .header("Content-Type", content_type(name));
            res.body_file(Arc::new(file), 0, len);
        }
        Decision::Partial { start, end } => {
            validators.write(res);
            let mut value = String::from("bytes ");
            let mut n = itoa::Buffer::new();
            value.push_str(n.format(start));
            value.push('-');
            value.push_str(n.format(end));
            value.push('/');
            value.push_str(n.format(len));
            res.status(206)
                .header("Content-Range", value)
                .header("Accept-Ranges", "bytes")
                .header("Content-Type", content_type(name));
            res.body_file(Arc::new(file), start, end - start + 1);
        }
    }
}

/// The media type for `name`'s extension; `application/octet-stream` when unknown.
pub(crate) fn content_type(name: &Path) -> String {
    let essence = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    if essence.starts_with("text/") {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_string()
    }
}

/// What identifies the file's current content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Validators {
    /// The strong entity-tag with its quotes, e.g. `"1a2b-400-17e0..."`.
    pub(crate) etag: String,
    /// Seconds since the Unix epoch of the last modification (not later than now).
    pub(crate) modified: u64,
}

impl Validators {
    fn of(meta: &Metadata, now: SystemTime) -> Self {
        let mtime_ns = (meta.mtime() as i128) * 1_000_000_000 + meta.mtime_nsec() as i128;
        let etag = format!(
            "\"{:x}-{:x}-{:x}\"",
            meta.ino(),
            meta.len(),
            mtime_ns.max(0)
        );
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Validators {
            etag,
            modified: (meta.mtime().max(0) as u64).min(now),
        }
    }

    fn write(&self, res: &mut Response) {
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(self.modified));
        res.header("ETag", &self.etag).header("Last-Modified", date);
    }
}

/// The request fields that decide the answer.
#[derive(Debug, Default)]
pub(crate) struct Asked<'a> {
    pub(crate) method: &'a str,
    pub(crate) if_match: Vec<&'a [u8]>,
    pub(crate) if_none_match: Vec<&'a [u8]>,
    pub(crate) if_modified_since: Option<&'a [u8]>,
    pub(crate) if_unmodified_since: Option<&'a [u8]>,
    pub(crate) range: Option<&'a [u8]>,
    pub(crate) if_range: Option<&'a [u8]>,
}

impl<'a> Asked<'a> {
    fn from_request(req: &Request<'a>) -> Self {
        let mut asked = Asked {
            method: req.method(),
            ..Asked::default()
        };
        // Several `Range` lines make the field invalid: it is then ignored.
        let mut ranges = 0;
        for (name, value) in req.headers() {
            let is = |field: &str| name.eq_ignore_ascii_case(field);
            if is("if-match") {
                asked.if_match.push(value);
            } else if is("if-none-match") {
                asked.if_none_match.push(value);
            } else if is("if-modified-since") {
                asked.if_modified_since = Some(value);
            } else if is("if-unmodified-since") {
                asked.if_unmodified_since = Some(value);
            } else if is("range") {
                asked.range = Some(value);
                ranges += 1;
            } else if is("if-range") {
                asked.if_range = Some(value);
            }
        }
        if ranges > 1 {
            asked.range = None;
        }
        asked
    }
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// `200` with the whole file.
    Full,
    /// `206` with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    PreconditionFailed,
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
}

/// RFC 9110 section 13.2.2: the preconditions in their order, then the range.
pub(crate) fn decide(asked: &Asked<'_>, v: &Validators, len: u64) -> Decision {
    let get_or_head = matches!(asked.method, "GET" | "HEAD");
    // 1. If-Match (strong comparison), else 2. If-Unmodified-Since.
    if !asked.if_match.is_empty() {
        if !tags_match(&asked.if_match, &v.etag, true) {
            return Decision::PreconditionFailed;
        }
    } else if let Some(since) = asked.if_unmodified_since.and_then(parse_date) {
        if v.modified > since {
            return Decision::PreconditionFailed;
        }
    }
    // 3. If-None-Match (weak comparison), else 4. If-Modified-Since (GET and HEAD only).
    if !asked.if_none_match.is_empty() {
        if tags_match(&asked.if_none_match, &v.etag, false) {
            return if get_or_head {
                Decision::NotModified
            } else {
                Decision::PreconditionFailed
            };
        }
    } else if get_or_head {
        if let Some(since) = asked.if_modified_since.and_then(parse_date) {
            if v.modified <= since {
                return Decision::NotModified;
            }
        }
    }
    // 5. Range, for GET, unless If-Range says the client's copy is another version.
    if asked.method != "GET" {
        return Decision::Full;
    }
    let Some(range) = asked.range else {
        return Decision::Full;
    };
    if let Some(if_range) = asked.if_range {
        if !if_range_holds(if_range, v) {
            return Decision::Full;
        }
    }
    match parse_range(range, len) {
        RangeAsk::Ignore => Decision::Full,
        RangeAsk::Unsatisfiable => Decision::Unsatisfiable,
        RangeAsk::Bytes { start, end } => Decision::Partial { start, end },
    }
}

/// An HTTP-date as seconds since the epoch; `None` when it is not one (then it is ignored).
fn parse_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// `If-Range`: an entity-tag must match strongly; a date must equal `Last-Modified` exactly.
fn if_range_holds(value: &[u8], v: &Validators) -> bool {
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return matches!(
            entity_tags(value).next(),
            Some(Ok(Tag { weak: false, opaque })) if opaque == v.etag.as_bytes()
        );
    }
    parse_date(value) == Some(v.modified)
}

/// An entity-tag of a list: `opaque` keeps its quotes.
#[derive(Debug, PartialEq, Eq)]
struct Tag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

/// The members of an entity-tag list (`*` is a member of its own: `Err(())`). A malformed
/// member ends the list (what came before stands).
fn entity_tags(mut s: &[u8]) -> impl Iterator<Item = Result<Tag<'_>, ()>> {
    std::iter::from_fn(move || {
        // Skip OWS and empty list elements.
        while let [b' ' | b'\t' | b',', rest @ ..] = s {
            s = rest;
        }
        if s.is_empty() {
            return None;
        }
        if let [b'*', rest @ ..] = s {
            s = rest;
            return Some(Err(()));
        }
        let (weak, rest) = match s {
            [b'W', b'/', rest @ ..] => (true, rest),
            _ => (false, s),
        };
        let [b'"', inner @ ..] = rest else {
            s = &[];
            return None;
        };
        let Some(close) = inner.iter().position(|&b| b == b'"') else {
            s = &[];
            return None;
        };
        let opaque = &rest[..close + 2];
        s = &inner[close + 1..];
        Some(Ok(Tag { weak, opaque }))
    })
}

/// Whether any member of the `lists` matches `etag` (ours, strong): `*` matches any current
/// file; `strong` comparison refuses weak tags.
fn tags_match(lists: &[&[u8]], etag: &str, strong: bool) -> bool {
    lists.iter().any(|list| {
        entity_tags(list).any(|tag| match tag {
            Err(()) => true,
            Ok(tag) => !(strong && tag.weak) && tag.opaque == etag.as_bytes(),
        })
    })
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// Not one valid byte range (another unit, malformed, several ranges): send it all.
    Ignore,
    /// No byte of the range is in the file.
    Unsatisfiable,
    /// Bytes `start..=end`, both within the file.
    Bytes { start: u64, end: u64 },
}

/// Parse a single-range `bytes=` specifier (`a-b`, `a-`, `-n`) against a file of `len` bytes.
pub(crate) fn parse_range(value: &[u8], len: u64) -> RangeAsk {
    let value = value.trim_ascii();
    let Some((unit, set)) = value.split_at_checked(6) else {
        return RangeAsk::Ignore;
    };
    if !unit.eq_ignore_ascii_case(b"bytes=") {
        return RangeAsk::Ignore;
    }
    let mut specs = set
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|spec| !spec.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeAsk::Ignore;
    };
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeAsk::Ignore;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    match (digits(first), digits(last)) {
        // -n: the last n bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || len == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Bytes {
                    start: len - n.min(len),
                    end: len - 1,
                }
            }
        }
        // a-: from a to the end; a-b: a to b, clamped to the end.
        (Some(start), last) if last.is_some() || spec.len() == dash + 1 => {
            if let Some(end) = last {
                if end < start {
                    return RangeAsk::Ignore;
                }
            }
            if start >= len {
                return RangeAsk::Unsatisfiable;
            }
            RangeAsk::Bytes {
                start,
                end: last.map_or(len - 1, |end| end.min(len - 1)),
            }
        }
        _ => RangeAsk::Ignore,
    }
}

/// A run of ASCII digits as a number (saturating: a position past any file is still a
/// position); `None` for anything else, including nothing.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Validators {
        Validators {
            etag: "\"abc-10-99\"".into(),
            // Sun, 06 Nov 1994 08:49:37 GMT
            modified: 784_111_777,
        }
    }

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";
    const EARLIER: &[u8] = b"Sun, 06 Nov 1994 08:49:36 GMT";
    const LATER_RFC850: &[u8] = b"Sunday, 06-Nov-94 08:49:38 GMT";

    #[test]
    fn ranges() {
        use RangeAsk::*;
        let table: &[(&str, u64, RangeAsk)] = &[
            ("bytes=0-99", 1000, Bytes { start: 0, end: 99 }),
            ("bytes=0-0", 1000, Bytes { start: 0, end: 0 }),
            (
                "bytes=500-",
                1000,
                Bytes {
                    start: 500,
                    end: 999,
                },
            ),
            (
                "bytes=-100",
                1000,
                Bytes {
                    start: 900,
                    end: 999,
                },
            ),
            ("bytes=-5000", 1000, Bytes { start: 0, end: 999 }),
            (
                "bytes=900-5000",
                1000,
                Bytes {
                    start: 900,
                    end: 999,
                },
            ),
            ("BYTES= 1-2 ", 1000, Bytes { start: 1, end: 2 }),
            ("bytes=1-2,", 1000, Bytes { start: 1, end: 2 }),
            (
                "bytes=0-99999999999999999999999",
                10,
                Bytes { start: 0, end: 9 },
            ),
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=1000-2000", 1000, Unsatisfiable),
            ("bytes=99999999999999999999999-", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=5-4", 1000, Ignore),
            ("bytes=0-1,5-6", 1000, Ignore),
            ("bytes=", 1000, Ignore),
            ("bytes=-", 1000, Ignore),
            ("bytes=a-b", 1000, Ignore),
            ("bytes=1-2-3", 1000, Ignore),
            ("bytes=+1-2", 1000, Ignore),
            ("bytes 0-1", 1000, Ignore),
            ("items=0-1", 1000, Ignore),
            ("", 1000, Ignore),
        ];
        for (value, len, want) in table {
            assert_eq!(
                parse_range(value.as_bytes(), *len),
                *want,
                "{value:?} of {len}"
            );
        }
    }

    #[test]
    fn entity_tag_lists() {
        let tags: Vec<_> = entity_tags(br#" "a", W/"b" ,,"c,d", *"#).collect();
        assert_eq!(
            tags,
            vec![
                Ok(Tag {
                    weak: false,
                    opaque: br#""a""#
                }),
                Ok(Tag {
                    weak: true,
                    opaque: br#""b""#
                }),
                Ok(Tag {
                    weak: false,
                    opaque: br#""c,d""#
                }),
                Err(()),
            ]
        );
        assert_eq!(entity_tags(br#""unterminated"#).count(), 0);
        assert_eq!(entity_tags(b"bare").count(), 0);
    }

    #[test]
    fn preconditions_in_rfc_order() {
        use Decision::*;
        let etag = v().etag;
        let weak = format!("W/{etag}");
        fn get<'a>(f: impl FnOnce(&mut Asked<'a>)) -> Decision {
            let mut asked = Asked {
                method: "GET",
                ..Asked::default()
            };
            f(&mut asked);
            decide(&asked, &v(), 1000)
        }
        assert_eq!(get(|_| {}), Full);
        // If-None-Match: weak comparison; `*`; a list.
        assert_eq!(
            get(|a| a.if_none_match = vec![etag.as_bytes()]),
            NotModified
        );
        assert_eq!(
            get(|a| a.if_none_match = vec![weak.as_bytes()]),
            NotModified
        );
        assert_eq!(get(|a| a.if_none_match = vec![b"*"]), NotModified);
        assert_eq!(
            get(|a| a.if_none_match = vec![b"\"x\"", etag.as_bytes()]),
            NotModified
        );
        assert_eq!(get(|a| a.if_none_match = vec![b"\"x\""]), Full);
        // If-None-Match takes precedence over If-Modified-Since.
        assert_eq!(
            get(|a| {
                a.if_none_match = vec![b"\"x\""];
                a.if_modified_since = Some(DATE);
            }),
            Full
        );
        assert_eq!(get(|a| a.if_modified_since = Some(DATE)), NotModified);
        assert_eq!(
            get(|a| a.if_modified_since = Some(LATER_RFC850)),
            NotModified
        );
        assert_eq!(get(|a| a.if_modified_since = Some(EARLIER)), Full);
        assert_eq!(get(|a| a.if_modified_since = Some(b"yesterday")), Full);
        // If-Match: strong comparison only.
        assert_eq!(get(|a| a.if_match = vec![etag.as_bytes()]), Full);
        assert_eq!(
            get(|a| a.if_match = vec![weak.as_bytes()]),
            PreconditionFailed
        );
        assert_eq!(get(|a| a.if_match = vec![b"\"x\""]), PreconditionFailed);
        assert_eq!(
            get(|a| a.if_unmodified_since = Some(EARLIER)),
            PreconditionFailed
        );
        assert_eq!(get(|a| a.if_unmodified_since = Some(DATE)), Full);
        // Ranges, and If-Range.
        let range = |a: &mut Asked<'_>| a.range = Some(b"bytes=0-9");
        assert_eq!(get(range), Partial { start: 0, end: 9 });
        assert_eq!(
            get(|a| {
                range(a);
                a.if_range = Some(etag.as_bytes());
            }),
            Partial { start: 0, end: 9 }
        );
        for stale in [weak.as_bytes(), b"\"x\"", EARLIER, b"garbage"] {
            assert_eq!(
                get(|a| {
                    range(a);
                    a.if_range = Some(stale);
                }),
                Full,
                "If-Range {:?}",
                String::from_utf8_lossy(stale)
            );
        }
        assert_eq!(
            get(|a| {
                range(a);
                a.if_range = Some(DATE);
            }),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(get(|a| a.range = Some(b"bytes=1000-")), Unsatisfiable);
        // A 304 wins over the range.
        assert_eq!(
            get(|a| {
                range(a);
                a.if_none_match = vec![etag.as_bytes()];
            }),
            NotModified
        );
        // HEAD: conditionals yes, ranges no. Other methods: 412 where GET gets 304.
        let head = Asked {
            method: "HEAD",
            range: Some(b"bytes=0-9"),
            ..Asked::default()
        };
        assert_eq!(decide(&head, &v(), 1000), Full);
        let post = Asked {
            method: "POST",
            if_none_match: vec![b"*"],
            ..Asked::default()
        };
        assert_eq!(decide(&post, &v(), 1000), PreconditionFailed);
    }

    #[test]
    fn media_types() {
        for (name, want) in [
            ("a.html", "text/html; charset=utf-8"),
            ("a.CSS", "text/css; charset=utf-8"),
            ("a.png", "image/png"),
            ("a.json", "application/json"),
            ("dir.d/noext", "application/octet-stream"),
            ("a.unknownext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), want, "{name}");
        }
    }
}
