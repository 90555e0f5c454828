//! Arbitrary JSON values, extreme numbers and strings, and URL encoding for building inputs.

use arbitrary::{Arbitrary, Result, Unstructured};
use serde_json::{Map, Number, Value};

/// A plausible "now" (2023-11-14), for timestamps near the present.
pub const NOW_MS: i64 = 1_700_000_000_000;

/// An arbitrary JSON value (depth-limited), biased towards the keys and values lantern reads.
#[derive(Debug, Clone)]
pub struct Json(pub Value);

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Json(value(u, 4)?))
    }
}

/// Keys that lantern's decoders look at.
const KEYS: &[&str] = &[
    "op", "d", "t", "s", "user_id", "user_ids", "value", "id", "user", "guild_id", "status", "activities", "timestamps", "start", "end",
    "created_at", "name", "type", "members", "presences", "username", "public_flags", "chunk_index", "chunk_count", "nonce", "emoji",
    "assets", "client_status", "primary_guild", "joined_at",
];

pub fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 4 } else { 6 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u)?,
        3 => Value::String(u.arbitrary()?),
        4 => Value::String(string(u)?),
        5 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array((0..n).map(|_| value(u, depth - 1)).collect::<Result<_>>()?)
        }
        _ => {
            let n = u.int_in_range(0..=5)?;
            let mut m = Map::new();
            for _ in 0..n {
                let k = if u.arbitrary()? { u.choose(KEYS)?.to_string() } else { u.arbitrary()? };
                m.insert(k, value(u, depth - 1)?);
            }
            Value::Object(m)
        }
    })
}

/// A JSON number: an integer of any size, an extreme, or a finite float.
pub fn number(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Value::from(extreme_i64(u)?),
        1 => Value::from(u.arbitrary::<u64>()?),
        2 => Value::from(u.int_in_range(0u8..=20)?),
        _ => Number::from_f64(float(u)?).map(Value::Number).unwrap_or(Value::Null),
    })
}

/// A finite float, often out of the i64 range.
pub fn float(u: &mut Unstructured<'_>) -> Result<f64> {
    let f = match u.int_in_range(0..=4)? {
        0 => 1e300,
        1 => -1e300,
        2 => 9.3e18,
        3 => -0.0,
        _ => u.arbitrary::<f64>()?,
    };
    Ok(if f.is_finite() { f } else { 0.5 })
}

/// An i64 that is often an extreme or near the present.
pub fn extreme_i64(u: &mut Unstructured<'_>) -> Result<i64> {
    Ok(match u.int_in_range(0..=9)? {
        0 => i64::MIN,
        1 => i64::MAX,
        2 => i64::MIN + 1,
        3 => i64::MAX - 1,
        4 => 0,
        5 => -1,
        6 => NOW_MS + u.arbitrary::<i32>()? as i64 * 1000,
        7 => u64::MAX as i64,
        _ => u.arbitrary()?,
    })
}

/// A snowflake-looking or otherwise interesting string.
pub fn string(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=9)? {
        0 => format!("{}", u.int_in_range(10_000_000_000_000_000u64..=9_999_999_999_999_999_999)?),
        1 => "1300000000000000001".into(),
        2 => "all".into(),
        3 => "ALL".into(),
        4 => format!("{}", u.arbitrary::<u64>()?),
        5 => "0".repeat(u.int_in_range(0..=21)?),
        6 => "Spotify".into(),
        7 => "<script>&\"'</script>\u{0}\u{1b}\u{202e}\u{FFFF}]]>".into(),
        8 => "x".repeat(u.int_in_range(0..=400)?),
        _ => u.arbitrary()?,
    })
}

/// Percent-encodes everything but unreserved characters (a query or path component).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
pub fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

pub use lantern::socket::protocol::kind;
