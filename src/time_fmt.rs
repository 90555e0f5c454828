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
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) else {
        return String::from("1970-01-01T00:00:00.000Z");
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses an RFC 3339 time (Discord's `joined_at`, e.g. `2021-05-03T00:00:00.123456+00:00`)
/// into unix milliseconds.
pub fn parse_iso_ms(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `mm:ss`, or `h:mm:ss` from an hour on, for a duration in whole seconds (negative → 00:00).
pub fn clock(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
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
    }
}
