//! Lanyard's socket dialect: what a Lanyard client sends on `/socket`, and the close codes it
//! gets for what the server refuses.
//!
//! A connection speaks Lanyard once its first Initialize (op 2) carries `subscribe_to_id`,
//! `subscribe_to_ids` or `subscribe_to_all`; [`dialect_of`] tells the two apart. In this dialect
//! op 2 may repeat (subscriptions accumulate), op 3 is a heartbeat that gets no answer, op 4
//! unsubscribes silently, and every error is a close: 4004 `unknown_opcode`, 4005
//! `requires_data_object`, 4006 `invalid_payload`. Unlike Lanyard, a `subscribe_to_ids` that is
//! not a list is a 4006 rather than a crash of the connection process.

use crate::discord::Snowflake;
use serde_json::{Map, Value};

/// Close code for an op this dialect does not know.
pub const UNKNOWN_OPCODE: u16 = 4004;
/// Close code for an Initialize whose `d` is missing, not an object, or empty.
pub const REQUIRES_DATA_OBJECT: u16 = 4005;
/// Close code for a message that is not a JSON object, or an Initialize naming no subscription.
pub const INVALID_PAYLOAD: u16 = 4006;

pub use crate::fanout::Dialect;

/// Whether a client message is a Lanyard Initialize (op 2 whose `d` names a `subscribe_to_*`
/// key, or has no Lantern key), so that the connection speaks Lanyard from now on. Anything
/// else is left to the Lantern parser, which answers it as it always has.
pub fn dialect_of(text: &[u8]) -> Option<Dialect> {
    let value: Value = serde_json::from_slice(text).ok()?;
    let obj = value.as_object()?;
    if obj.get("op").and_then(Value::as_u64) != Some(2) {
        return None;
    }
    let lanyard_keys = ["subscribe_to_id", "subscribe_to_ids", "subscribe_to_all"];
    match obj.get("d").and_then(Value::as_object) {
        Some(d) if lanyard_keys.iter().any(|k| d.contains_key(*k)) => Some(Dialect::Lanyard),
        _ => Some(Dialect::Lantern),
    }
}

/// What a Lanyard Initialize or Unsubscribe names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// `subscribe_to_id` / `unsubscribe_from_id`: INIT_STATE is that presence, or `{}`.
    One(Snowflake),
    /// `subscribe_to_ids` / `unsubscribe_from_ids`: INIT_STATE maps id → presence, unmonitored
    /// ids left out.
    Many(Vec<Snowflake>),
    /// `subscribe_to_all` / `unsubscribe_from_all`: every monitored user.
    All,
    /// An id that names no monitored user (malformed): silently nobody, as in Lanyard.
    Nobody,
}

/// A message of the Lanyard dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LanyardRequest {
    Initialize(Subscription),
    Heartbeat,
    /// `None`: op 4 naming nothing it knows (ignored, no answer).
    Unsubscribe(Option<Subscription>),
}

/// A refusal: the close code and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: u16,
    pub reason: &'static str,
}

const fn refused(code: u16, reason: &'static str) -> Refused {
    Refused { code, reason }
}

fn id(v: &Value) -> Option<Snowflake> {
    v.as_str().and_then(Snowflake::parse_strict)
}

/// Ids of a list, malformed ones dropped (they name no monitored user); `None` when the value
/// is not a list of strings.
fn ids(v: &Value) -> Option<Vec<Snowflake>> {
    let items = v.as_array()?;
    if !items.iter().all(Value::is_string) {
        return None;
    }
    let mut out: Vec<Snowflake> = Vec::with_capacity(items.len());
    for found in items.iter().filter_map(id) {
        if !out.contains(&found) {
            out.push(found);
        }
    }
    Some(out)
}

/// Reads `d` of op 2 (`prefix` "subscribe_to") or op 4 (`prefix` "unsubscribe_from"), the
/// first known key winning in Lanyard's order: `_ids`, `_id`, `_all`.
fn subscription(d: &Map<String, Value>, prefix: &str) -> Result<Option<Subscription>, Refused> {
    let invalid = refused(INVALID_PAYLOAD, "invalid_payload");
    if let Some(v) = d.get(&format!("{prefix}_ids")) {
        return ids(v).map(|ids| Some(Subscription::Many(ids))).ok_or(invalid);
    }
    if let Some(v) = d.get(&format!("{prefix}_id")) {
        if !v.is_string() {
            return Err(invalid);
        }
        return Ok(Some(id(v).map_or(Subscription::Nobody, Subscription::One)));
    }
    match d.get(&format!("{prefix}_all")) {
        Some(Value::Bool(true)) => Ok(Some(Subscription::All)),
        _ => Ok(None),
    }
}

/// Parses one client message (text, or a binary frame read as text, as Lanyard does).
pub fn parse(text: &[u8]) -> Result<LanyardRequest, Refused> {
    let invalid = refused(INVALID_PAYLOAD, "invalid_payload");
    let value: Value = serde_json::from_slice(text).map_err(|_| invalid.clone())?;
    let Value::Object(obj) = value else { return Err(invalid) };
    match obj.get("op").and_then(Value::as_u64) {
        Some(2) => {
            let d = match obj.get("d") {
                Some(Value::Object(d)) if !d.is_empty() => d,
                _ => return Err(refused(REQUIRES_DATA_OBJECT, "requires_data_object")),
            };
            subscription(d, "subscribe_to")?.map(LanyardRequest::Initialize).ok_or(invalid)
        }
        Some(3) => Ok(LanyardRequest::Heartbeat),
        Some(4) => {
            let sub = match obj.get("d") {
                Some(Value::Object(d)) => subscription(d, "unsubscribe_from").unwrap_or(None),
                _ => None,
            };
            Ok(LanyardRequest::Unsubscribe(sub))
        }
        _ => Err(refused(UNKNOWN_OPCODE, "unknown_opcode")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Snowflake = Snowflake(94490510688792576);
    const B: Snowflake = Snowflake(1300000000000000001);

    #[test]
    fn the_first_initialize_decides_the_dialect() {
        assert_eq!(dialect_of(br#"{"op":2,"d":{"subscribe_to_id":"94490510688792576"}}"#), Some(Dialect::Lanyard));
        assert_eq!(dialect_of(br#"{"op":2,"d":{"subscribe_to_all":true}}"#), Some(Dialect::Lanyard));
        assert_eq!(dialect_of(br#"{"op":2,"d":{"user_id":"ALL"}}"#), Some(Dialect::Lantern));
        assert_eq!(dialect_of(br#"{"op":2}"#), Some(Dialect::Lantern));
        assert_eq!(dialect_of(br#"{"op":4}"#), None);
        assert_eq!(dialect_of(b"nope"), None);
    }

    #[test]
    fn initialize_forms_in_lanyards_order() {
        let init = |t: &str| parse(t.as_bytes());
        assert_eq!(init(r#"{"op":2,"d":{"subscribe_to_id":"94490510688792576"}}"#), Ok(LanyardRequest::Initialize(Subscription::One(A))));
        assert_eq!(init(r#"{"op":2,"d":{"subscribe_to_id":"abc"}}"#), Ok(LanyardRequest::Initialize(Subscription::Nobody)));
        assert_eq!(
            init(r#"{"op":2,"d":{"subscribe_to_ids":["94490510688792576","x","1300000000000000001","94490510688792576"]}}"#),
            Ok(LanyardRequest::Initialize(Subscription::Many(vec![A, B])))
        );
        assert_eq!(
            init(r#"{"op":2,"d":{"subscribe_to_all":true,"subscribe_to_ids":[]}}"#),
            Ok(LanyardRequest::Initialize(Subscription::Many(vec![]))),
            "_ids wins"
        );
        assert_eq!(init(r#"{"op":2,"d":{"subscribe_to_all":true}}"#), Ok(LanyardRequest::Initialize(Subscription::All)));
    }

    #[test]
    fn refusals_close_with_lanyards_codes() {
        let code = |t: &str| parse(t.as_bytes()).unwrap_err().code;
        assert_eq!(code(r#"{"op":2}"#), REQUIRES_DATA_OBJECT);
        assert_eq!(code(r#"{"op":2,"d":{}}"#), REQUIRES_DATA_OBJECT);
        assert_eq!(code(r#"{"op":2,"d":[1]}"#), REQUIRES_DATA_OBJECT);
        assert_eq!(code(r#"{"op":2,"d":{"subscribe_to_ids":"94490510688792576"}}"#), INVALID_PAYLOAD);
        assert_eq!(code(r#"{"op":2,"d":{"subscribe_to_ids":[1]}}"#), INVALID_PAYLOAD);
        assert_eq!(code(r#"{"op":2,"d":{"subscribe_to_id":5}}"#), INVALID_PAYLOAD);
        assert_eq!(code(r#"{"op":2,"d":{"subscribe_to_all":false}}"#), INVALID_PAYLOAD);
        assert_eq!(code(r#"{"op":2,"d":{"user_id":"1"}}"#), INVALID_PAYLOAD);
        assert_eq!(code(r#"{"op":7}"#), UNKNOWN_OPCODE);
        assert_eq!(code(r#"{"d":{}}"#), UNKNOWN_OPCODE);
        assert_eq!(code("[]"), INVALID_PAYLOAD);
        assert_eq!(code("{"), INVALID_PAYLOAD);
    }

    #[test]
    fn heartbeats_and_unsubscribes_get_no_answer() {
        assert_eq!(parse(br#"{"op":3}"#), Ok(LanyardRequest::Heartbeat));
        assert_eq!(parse(br#"{"op":4,"d":{"unsubscribe_from_id":"94490510688792576"}}"#), Ok(LanyardRequest::Unsubscribe(Some(Subscription::One(A)))));
        assert_eq!(parse(br#"{"op":4,"d":{"unsubscribe_from_all":true}}"#), Ok(LanyardRequest::Unsubscribe(Some(Subscription::All))));
        assert_eq!(parse(br#"{"op":4,"d":{"unsubscribe_from_ids":"x"}}"#), Ok(LanyardRequest::Unsubscribe(None)));
        assert_eq!(parse(br#"{"op":4}"#), Ok(LanyardRequest::Unsubscribe(None)));
    }
}
