//! Client→server frames: parsing and validation, with the messages clients see.

use crate::discord::Snowflake;
use crate::fanout::close::CloseReason;
use crate::fanout::frames;
pub use crate::fanout::{join_ids, Target};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Init(Target),
    Heartbeat,
    Subscribe(Target),
    Unsubscribe(Target),
}

/// Input the server refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Answer with ERROR; the connection stays open.
    Error(String),
    /// Answer with DISCONNECT and close.
    Disconnect(CloseReason, String),
}

/// The JSON type name the way the protocol's messages say it.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Request, Refusal> {
    let value: Value = serde_json::from_str(text).map_err(|_| Refusal::Error("Invalid JSON.".into()))?;
    let Value::Object(obj) = value else {
        return Err(Refusal::Error(format!("The payload must be a JSON object, received {}.", kind(&value))));
    };
    let op = match obj.get("op") {
        Some(Value::Number(n)) => n.as_u64().filter(|op| (1..=15).contains(op)),
        _ => None,
    };
    let Some(op) = op else { return Err(Refusal::Disconnect(CloseReason::InvalidOpcode, "Invalid opcode.".into())) };
    let op = op as u8;
    if op == frames::HEARTBEAT {
        return Ok(Request::Heartbeat);
    }
    if !matches!(op, frames::INIT | frames::SUBSCRIBE | frames::UNSUBSCRIBE) {
        return Err(Refusal::Disconnect(
            CloseReason::OpcodeNotAllowed,
            "You are not allowed to send this opcode to the server.".into(),
        ));
    }
    match target(obj.get("d")) {
        Ok(t) => Ok(match op {
            frames::INIT => Request::Init(t),
            frames::SUBSCRIBE => Request::Subscribe(t),
            _ => Request::Unsubscribe(t),
        }),
        // INIT's payload errors close the connection (as in the deployed Lantern); SUBSCRIBE's
        // and UNSUBSCRIBE's only answer with ERROR.
        Err(message) if op == frames::INIT => Err(Refusal::Disconnect(CloseReason::InvalidPayload, message)),
        Err(message) => Err(Refusal::Error(message)),
    }
}

/// Validates `d` of INIT, SUBSCRIBE and UNSUBSCRIBE.
pub fn target(d: Option<&Value>) -> Result<Target, String> {
    let Some(d) = d else { return Err("Required".into()) };
    let Value::Object(d) = d else { return Err(format!("Expected object, received {}", kind(d))) };
    let one = d.get("user_id");
    let many = d.get("user_ids");
    if let Some(v) = one.filter(|v| !v.is_string()) {
        return Err(format!("Expected string, received {}", kind(v)));
    }
    if let Some(v) = many {
        let Value::Array(items) = v else { return Err(format!("Expected array, received {}", kind(v))) };
        if let Some(bad) = items.iter().find(|i| !i.is_string()) {
            return Err(format!("Expected string, received {}", kind(bad)));
        }
    }
    match (one.and_then(Value::as_str), many.and_then(Value::as_array)) {
        (None, None) => Err("Either user_ids or user_id must be provided.".into()),
        (Some(_), Some(_)) => Err("Only one of user_ids or user_id can be provided.".into()),
        (Some(id), None) => {
            if id.eq_ignore_ascii_case("all") {
                Ok(Target::All)
            } else if !Snowflake::is_canonical_decimal(id) {
                Err("user_id must be a number.".into())
            } else {
                Snowflake::parse_strict(id).map(Target::One).ok_or_else(|| "user_id must be 17-19 characters long.".into())
            }
        }
        (None, Some(items)) => {
            if items.is_empty() {
                return Err("user_ids must not be empty.".into());
            }
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                let id = item.as_str().and_then(Snowflake::parse_strict);
                let Some(id) = id else { return Err("user_ids must be an array of strings with 17-19 characters long.".into()) };
                if ids.contains(&id) {
                    return Err("user_ids must not contain duplicates.".into());
                }
                ids.push(id);
            }
            Ok(Target::Many(ids))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> Refusal {
        parse(text).unwrap_err()
    }

    #[test]
    fn requests() {
        assert_eq!(parse(r#"{"op":4}"#), Ok(Request::Heartbeat));
        assert_eq!(parse(r#"{"op":2,"d":{"user_id":"ALL"}}"#), Ok(Request::Init(Target::All)));
        assert_eq!(parse(r#"{"op":12,"d":{"user_id":"all"}}"#), Ok(Request::Subscribe(Target::All)));
        assert_eq!(
            parse(r#"{"op":14,"d":{"user_ids":["1300000000000000001"]}}"#),
            Ok(Request::Unsubscribe(Target::Many(vec![Snowflake(1300000000000000001)])))
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(err("{"), Refusal::Error("Invalid JSON.".into()));
        assert_eq!(err("[1]"), Refusal::Error("The payload must be a JSON object, received array.".into()));
        assert_eq!(err(r#"{"op":"2"}"#), Refusal::Disconnect(CloseReason::InvalidOpcode, "Invalid opcode.".into()));
        assert_eq!(err(r#"{"op":16}"#), Refusal::Disconnect(CloseReason::InvalidOpcode, "Invalid opcode.".into()));
        assert!(matches!(err(r#"{"op":3}"#), Refusal::Disconnect(CloseReason::OpcodeNotAllowed, _)));
        assert_eq!(err(r#"{"op":2}"#), Refusal::Disconnect(CloseReason::InvalidPayload, "Required".into()));
        assert_eq!(err(r#"{"op":12,"d":"x"}"#), Refusal::Error("Expected object, received string".into()));
        assert_eq!(err(r#"{"op":12,"d":{}}"#), Refusal::Error("Either user_ids or user_id must be provided.".into()));
        assert_eq!(err(r#"{"op":12,"d":{"user_id":5}}"#), Refusal::Error("Expected string, received number".into()));
        assert_eq!(err(r#"{"op":12,"d":{"user_id":"12a"}}"#), Refusal::Error("user_id must be a number.".into()));
        assert_eq!(err(r#"{"op":12,"d":{"user_id":"123"}}"#), Refusal::Error("user_id must be 17-19 characters long.".into()));
        assert_eq!(err(r#"{"op":12,"d":{"user_id":"0135978639193315726"}}"#), Refusal::Error("user_id must be a number.".into()));
        assert_eq!(
            err(r#"{"op":12,"d":{"user_ids":["0135978639193315726"]}}"#),
            Refusal::Error("user_ids must be an array of strings with 17-19 characters long.".into())
        );
        assert_eq!(
            err(r#"{"op":12,"d":{"user_id":"1300000000000000001","user_ids":[]}}"#),
            Refusal::Error("Only one of user_ids or user_id can be provided.".into())
        );
        assert_eq!(
            err(r#"{"op":12,"d":{"user_ids":["1300000000000000001","1300000000000000001"]}}"#),
            Refusal::Error("user_ids must not contain duplicates.".into())
        );
    }
}
