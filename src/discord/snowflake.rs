//! Discord ids: 64-bit integers that travel as decimal strings.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A Discord snowflake id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snowflake(pub u64);

/// Milliseconds between the unix epoch and Discord's epoch (2015-01-01).
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

impl Snowflake {
    /// Unix milliseconds at which the id was minted.
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> 22) + DISCORD_EPOCH_MS
    }

    /// Parses a path or query id: ASCII digits only, 17 to 19 of them (every snowflake minted
    /// since 2015 and until about 2090), as the contract requires.
    pub fn parse_strict(s: &str) -> Option<Snowflake> {
        if (17..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok().map(Snowflake)
        } else {
            None
        }
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
                v.parse().map(Snowflake).map_err(|_| E::custom(format!("invalid snowflake {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}
