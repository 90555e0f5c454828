//! The contract's time formats: ISO-8601 UTC with milliseconds, unix seconds, and `mm:ss`.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2021-05-03T00:00:00.000Z` for unix milliseconds.
pub fn iso_ms(ms: i64) -> String {
    iso(ms).as_str().to_owned()
}

/// A short string formatted on the stack: what [`iso`] and [`clock_str`] return, so that
/// building a user object formats its times without an allocation each.
#[derive(Clone, Copy)]
pub struct Formatted {
    buf: [u8; 32],
    len: u8,
}

impl Formatted {
    fn new() -> Formatted {
        Formatted { buf: [0; 32], len: 0 }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len as usize] = b;
        self.len += 1;
    }

    /// `n` in decimal, zero-padded to at least `width` digits.
    fn push_num(&mut self, n: u64, width: usize) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n);
        for _ in digits.len()..width {
            self.push(b'0');
        }
        self.push_str(digits);
    }

    /// `n` in exactly `width` decimal digits (`n` < 10^`width`): the fields of an ISO time,
    /// written in place without formatting each through `itoa` first.
    fn push_fixed(&mut self, mut n: u64, width: usize) {
        let at = self.len as usize;
        for i in (at..at + width).rev() {
            self.buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len += width as u8;
    }

    fn push_str(&mut self, s: &str) {
        for &b in s.as_bytes() {
            self.push(b);
        }
    }
}

impl std::fmt::Display for Formatted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Formatted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Unix milliseconds of 10000-01-01T00:00:00Z: times from 1970 up to here take the fast path.
const YEAR_10000_MS: i64 = 253_402_300_800_000;

/// [`iso_ms`] without an allocation.
pub fn iso(ms: i64) -> Formatted {
    let mut f = Formatted::new();
    if !(0..YEAR_10000_MS).contains(&ms) {
        // Before 1970 or after 9999 (user-set activity timestamps): rare, so the general path.
        let s = match OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) {
            Ok(t) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            ),
            Err(_) => String::from("1970-01-01T00:00:00.000Z"),
        };
        f.push_str(&s);
        return f;
    }
    let (days, in_day) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    f.push_fixed(year as u64, 4);
    f.push(b'-');
    f.push_fixed(month, 2);
    f.push(b'-');
    f.push_fixed(day, 2);
    f.push(b'T');
    f.push_fixed((in_day / 3_600_000) as u64, 2);
    f.push(b':');
    f.push_fixed((in_day / 60_000 % 60) as u64, 2);
    f.push(b':');
    f.push_fixed((in_day / 1000 % 60) as u64, 2);
    f.push(b'.');
    f.push_fixed((in_day % 1000) as u64, 3);
    f.push(b'Z');
    f
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01 (≥ 0).
///
/// Counts in 400-year eras of 146,097 days from 0000-03-01, so that the leap day is the last
/// day of each computed year; then shifts March-based months back to January-based ones.
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153; // 0 = March … 11 = February
    let day = (day_of_year - (153 * march_month + 2) / 5 + 1) as u64;
    let month = if march_month < 10 { march_month + 3 } else { march_month - 9 } as u64;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses an RFC 3339 time (Discord's `joined_at`, e.g. `2021-05-03T00:00:00.123456+00:00`)
/// into unix milliseconds.
pub fn parse_iso_ms(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `mm:ss`, or `h:mm:ss` from an hour on, for a duration in whole seconds (negative → 00:00).
pub fn clock(secs: i64) -> String {
    clock_str(secs).as_str().to_owned()
}

/// [`clock`] without an allocation.
pub fn clock_str(secs: i64) -> Formatted {
    let secs = secs.max(0) as u64;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut f = Formatted::new();
    if h > 0 {
        f.push_num(h, 1);
        f.push(b':');
    }
    f.push_num(m, 2);
    f.push(b':');
    f.push_num(s, 2);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(iso_ms(1_620_000_000_123), "2021-05-03T00:00:00.123Z");
        assert_eq!(parse_iso_ms("2021-05-03T00:00:00.123456+00:00"), Some(1_620_000_000_123));
        assert_eq!(parse_iso_ms("2021-05-03T02:00:00+02:00"), Some(1_620_000_000_000));
        assert_eq!(parse_iso_ms("yesterday"), None);
        assert_eq!(clock(0), "00:00");
        assert_eq!(clock(65), "01:05");
        assert_eq!(clock(3600 + 62), "1:01:02");
        assert_eq!(clock(-5), "00:00");
        assert_eq!(clock(i64::MAX), "2562047788015215:30:07");
    }

    /// The stack formatter against the `time` crate, over every day from 1970 to 2100 and
    /// every 13th day from there to 9999 (at a time of day that moves from day to day), and at
    /// the edges of the fast path.
    #[test]
    fn iso_matches_the_time_crate_everywhere() {
        let general = |ms: i64| {
            let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) else {
                return String::from("1970-01-01T00:00:00.000Z");
            };
            format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(), t.millisecond())
        };
        let mut day = 0;
        while day * 86_400_000 < YEAR_10000_MS {
            let ms = day * 86_400_000 + (day * 7_919_123) % 86_400_000;
            assert_eq!(iso_ms(ms), general(ms), "day {day}");
            day += if day < 47_482 { 1 } else { 13 };
        }
        for ms in [0, 1, 86_399_999, 951_782_400_000, YEAR_10000_MS - 1, -1, YEAR_10000_MS, -62_135_596_800_000] {
            assert_eq!(iso_ms(ms), general(ms), "{ms}");
        }
        assert_eq!(iso_ms(i64::MAX), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_ms(i64::MIN), "1970-01-01T00:00:00.000Z");
    }
}
