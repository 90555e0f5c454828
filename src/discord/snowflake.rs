//! Discord ids: 64-bit integers that travel as decimal strings.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A Discord snowflake id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snowflake(pub u64);

/// Milliseconds between the unix epoch and Discord's epoch (2015-01-01).
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

impl Snowflake {
    /// Whether `s` is written as a decimal number the way ids are: digits only, no leading
    /// zero. Length is checked separately (see [`Snowflake::parse_strict`]), so that errors can
    /// say which rule failed.
    pub fn is_canonical_decimal(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0')
    }

    /// Unix milliseconds at which the id was minted.
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> 22) + DISCORD_EPOCH_MS
    }

    /// Parses a path or query id: ASCII digits only, 17 to 19 of them (every snowflake minted
    /// since 2015 and until about 2090), as the contract requires, and no leading zero (Discord
    /// never writes one, and `0123…` would otherwise name the same user as `123…`).
    pub fn parse_strict(s: &str) -> Option<Snowflake> {
        Snowflake::parse_strict_bytes(s.as_bytes())
    }

    /// [`Snowflake::parse_strict`] on bytes.
    pub fn parse_strict_bytes(digits: &[u8]) -> Option<Snowflake> {
        if !(17..=19).contains(&digits.len()) || digits[0] == b'0' {
            return None;
        }
        short_decimal(digits).map(Snowflake)
    }
}

/// The key a snowflake is placed by (see `runtime::shard_of`).
impl From<Snowflake> for u64 {
    fn from(id: Snowflake) -> u64 {
        id.0
    }
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Snowflake {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Snowflake;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a snowflake as a string or integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Snowflake, E> {
                Ok(Snowflake(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Snowflake, E> {
                u64::try_from(v).map(Snowflake).map_err(|_| E::custom("negative snowflake"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Snowflake, E> {
                parse_decimal(v).map(Snowflake).ok_or_else(|| E::custom(format!("invalid snowflake {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `s` as a u64, as `str::parse` reads it. Every event carries a few ids, so the common case —
/// 1 to 19 ASCII digits, which cannot overflow — is read without the per-digit overflow checks;
/// anything else (a sign, 20 digits, a stray byte) goes to `str::parse`.
fn parse_decimal(s: &str) -> Option<u64> {
    short_decimal(s.as_bytes()).or_else(|| s.parse().ok())
}

/// 1 to 19 ASCII digits as a u64, checked and accumulated in one pass (19 digits cannot
/// overflow a u64); `None` for anything else. Eight digits at a time: a bulk lookup reads ten
/// or more 18-digit ids, and a digit at a time was a tenth of its handler.
fn short_decimal(digits: &[u8]) -> Option<u64> {
    if !(1..=19).contains(&digits.len()) {
        return None;
    }
    let mut n = 0u64;
    let mut chunks = digits.chunks_exact(8);
    for chunk in &mut chunks {
        n = n * 100_000_000 + eight_digits(u64::from_le_bytes(chunk.try_into().ok()?))?;
    }
    for &d in chunks.remainder() {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

/// Eight ASCII digits, the first in the lowest byte, as their value; `None` if any byte is
/// not a digit.
fn eight_digits(chunk: u64) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Every byte 0x30..=0x39: its high nibble is 3, and adding 6 does not carry into it.
    if chunk & (0xF0 * ONES) != 0x30 * ONES || (chunk.wrapping_add(0x06 * ONES)) & (0xF0 * ONES) != 0x30 * ONES {
        return None;
    }
    let v = chunk - 0x30 * ONES;
    // Pairs, then fours, then all eight: each step weighs the more significant (lower) lane.
    let v = (v * 10 + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v * 100 + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((v * 10_000 + (v >> 32)) & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn digit_runs_read_as_str_parse_reads_them(s in "[0-9]{1,19}") {
            proptest::prop_assert_eq!(short_decimal(s.as_bytes()), s.parse::<u64>().ok());
        }

        #[test]
        fn a_byte_other_than_a_digit_anywhere_is_refused(s in "[0-9]{0,18}", at in 0usize..19, b in proptest::num::u8::ANY) {
            let mut bytes = s.into_bytes();
            let at = at.min(bytes.len());
            bytes.insert(at, b);
            proptest::prop_assert_eq!(short_decimal(&bytes), std::str::from_utf8(&bytes).ok().filter(|t| t.bytes().all(|c| c.is_ascii_digit())).and_then(|t| t.parse::<u64>().ok()));
        }
    }

    #[test]
    fn ids_read_as_str_parse_reads_them() {
        for s in ["0", "1", "+1", "", "-1", "1a", "9999999999999999999", "18446744073709551615", "18446744073709551616", "00000000000000000001", "1300000000000000001", " 1"] {
            assert_eq!(parse_decimal(s), s.parse::<u64>().ok(), "{s:?}");
        }
    }

    #[test]
    fn strict_parsing_refuses_leading_zeros() {
        assert_eq!(Snowflake::parse_strict("135978639193315726"), Some(Snowflake(135_978_639_193_315_726)));
        assert_eq!(Snowflake::parse_strict("0135978639193315726"), None);
        assert_eq!(Snowflake::parse_strict("00000000000000000"), None);
        assert_eq!(Snowflake::parse_strict("1300000000000000001"), Some(Snowflake(1_300_000_000_000_000_001)));
        assert_eq!(Snowflake::parse_strict("9999999999999999999"), Some(Snowflake(9_999_999_999_999_999_999)));
        assert_eq!(Snowflake::parse_strict("1234567890123456/8"), None);
        assert_eq!(Snowflake::parse_strict("12345678901234567:"), None);
        assert_eq!(Snowflake::parse_strict("1234567890123456"), None);
        assert!(Snowflake::is_canonical_decimal("10"));
        assert!(!Snowflake::is_canonical_decimal("010"));
        assert!(!Snowflake::is_canonical_decimal("0"));
        assert!(!Snowflake::is_canonical_decimal(""));
        assert!(!Snowflake::is_canonical_decimal("1a"));
    }
}
