//! The `Date` header value, rendered at most once per second per loop thread.
//!
//! Each loop thread keeps its own copy in a thread-local: no sharing, no locking, no unsafe.

use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT` is 29 bytes.
const LEN: usize = 29;

struct Cached {
    text: [u8; LEN],
    /// When the rendered second ends (on the monotonic clock).
    until: Option<Instant>,
}

thread_local! {
    static DATE: RefCell<Cached> = const { RefCell::new(Cached { text: [0; LEN], until: None }) };
}

/// Append the current IMF-fixdate (e.g. `Sun, 06 Nov 1994 08:49:37 GMT`) to `out`.
pub(crate) fn append(out: &mut Vec<u8>, now: Instant) {
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if !matches!(cached.until, Some(until) if now < until) {
            let since_epoch = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            cached.text = render(since_epoch.as_secs());
            let rest_of_second =
                Duration::from_secs(1) - Duration::from_nanos(since_epoch.subsec_nanos().into());
            cached.until = Some(now + rest_of_second);
        }
        out.extend_from_slice(&cached.text);
    });
}

/// Render `secs` since the Unix epoch as an IMF-fixdate.
fn render(secs: u64) -> [u8; LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let in_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    text[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut text[5..7], day);
    text[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two_digits(&mut text[12..14], year / 100);
    two_digits(&mut text[14..16], year % 100);
    two_digits(&mut text[17..19], in_day / 3600);
    two_digits(&mut text[20..22], in_day / 60 % 60);
    two_digits(&mut text[23..25], in_day % 60);
    text
}

fn two_digits(dst: &mut [u8], n: u64) {
    dst[0] = b'0' + (n / 10 % 10) as u8;
    dst[1] = b'0' + (n % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31): Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn renders_imf_fixdate() {
        assert_eq!(&render(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&render(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&render(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&render(1_767_225_599), b"Wed, 31 Dec 2025 23:59:59 GMT");
    }
}
