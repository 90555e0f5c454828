//! Server→client frames: `{"t":NAME,"op":N[,"d":...]}`, encoded once and shared as bytes.

use bytes::Bytes;
use tungstenite::Utf8Bytes;

pub const HELLO: u8 = 1;
pub const INIT: u8 = 2;
pub const INIT_ACK: u8 = 3;
pub const HEARTBEAT: u8 = 4;
pub const HEARTBEAT_ACK: u8 = 5;
pub const PRESENCE_UPDATE: u8 = 6;
pub const USER_LEFT: u8 = 7;
pub const USER_JOINED: u8 = 8;
pub const DISCONNECT: u8 = 9;
pub const STORAGE_UPDATE: u8 = 10;
pub const ERROR: u8 = 11;
pub const SUBSCRIBE: u8 = 12;
pub const SUBSCRIBE_ACK: u8 = 13;
pub const UNSUBSCRIBE: u8 = 14;
pub const UNSUBSCRIBE_ACK: u8 = 15;

/// The `t` name of an opcode.
pub fn name(op: u8) -> &'static str {
    match op {
        HELLO => "HELLO",
        INIT => "INIT",
        INIT_ACK => "INIT_ACK",
        HEARTBEAT => "HEARTBEAT",
        HEARTBEAT_ACK => "HEARTBEAT_ACK",
        PRESENCE_UPDATE => "PRESENCE_UPDATE",
        USER_LEFT => "USER_LEFT",
        USER_JOINED => "USER_JOINED",
        DISCONNECT => "DISCONNECT",
        STORAGE_UPDATE => "STORAGE_UPDATE",
        ERROR => "ERROR",
        SUBSCRIBE => "SUBSCRIBE",
        SUBSCRIBE_ACK => "SUBSCRIBE_ACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBSCRIBE_ACK => "UNSUBSCRIBE_ACK",
        _ => "UNKNOWN",
    }
}

/// A frame ready to write: validated UTF-8 over shared bytes (cloning is a reference count).
pub type Frame = Utf8Bytes;

fn finish(buf: Vec<u8>) -> Frame {
    // Every frame is assembled from JSON text, so this only fails on a bug; fall back to an
    // ERROR frame rather than panicking on the executor.
    Utf8Bytes::try_from(Bytes::from(buf)).unwrap_or_else(|_| Utf8Bytes::from_static(r#"{"t":"ERROR","op":11,"d":"Internal error."}"#))
}

fn head(op: u8, extra: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32 + extra);
    buf.extend_from_slice(br#"{"t":""#);
    buf.extend_from_slice(name(op).as_bytes());
    buf.extend_from_slice(br#"","op":"#);
    buf.extend_from_slice(op.to_string().as_bytes());
    buf
}

/// A frame without `d`.
pub fn bare(op: u8) -> Frame {
    let mut buf = head(op, 0);
    buf.push(b'}');
    finish(buf)
}

/// A frame whose `d` is the given JSON text.
pub fn with_data(op: u8, d: &[u8]) -> Frame {
    let mut buf = head(op, d.len());
    buf.extend_from_slice(br#","d":"#);
    buf.extend_from_slice(d);
    buf.push(b'}');
    finish(buf)
}

/// A frame whose `d` is a JSON array of the given JSON values.
pub fn with_array<'a>(op: u8, items: impl IntoIterator<Item = &'a [u8]>) -> Frame {
    let mut buf = head(op, 256);
    buf.extend_from_slice(br#","d":["#);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(item);
    }
    buf.extend_from_slice(b"]}");
    finish(buf)
}

pub fn hello(heartbeat_interval_ms: u128) -> Frame {
    with_data(HELLO, format!(r#"{{"heartbeat_interval":{heartbeat_interval_ms}}}"#).as_bytes())
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// DISCONNECT: `d` is `{"reason": text, "error": text}` (the README's field and the deployed
/// Lantern's).
pub fn disconnect(reason: &str) -> Frame {
    let r = json_string(reason);
    with_data(DISCONNECT, format!(r#"{{"reason":{r},"error":{r}}}"#).as_bytes())
}

/// ERROR: `d` is the message as a bare string.
pub fn error(message: &str) -> Frame {
    with_data(ERROR, json_string(message).as_bytes())
}

pub fn user_left(id: crate::discord::Snowflake) -> Frame {
    with_data(USER_LEFT, format!(r#"{{"user_id":"{id}"}}"#).as_bytes())
}

/// STORAGE_UPDATE: `{"t":"STORAGE_UPDATE","op":10,"user_id":"<id>","d":{<the kv map>}}`.
pub fn storage_update(id: crate::discord::Snowflake, storage_json: &[u8]) -> Frame {
    let mut buf = head(STORAGE_UPDATE, storage_json.len() + 32);
    buf.extend_from_slice(format!(r#","user_id":"{id}","d":"#).as_bytes());
    buf.extend_from_slice(storage_json);
    buf.push(b'}');
    finish(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(hello(30000).as_str(), r#"{"t":"HELLO","op":1,"d":{"heartbeat_interval":30000}}"#);
        assert_eq!(bare(HEARTBEAT_ACK).as_str(), r#"{"t":"HEARTBEAT_ACK","op":5}"#);
        assert_eq!(disconnect("Slow consumer").as_str(), r#"{"t":"DISCONNECT","op":9,"d":{"reason":"Slow consumer","error":"Slow consumer"}}"#);
        assert_eq!(error("a \"b\"").as_str(), r#"{"t":"ERROR","op":11,"d":"a \"b\""}"#);
        assert_eq!(with_array(INIT_ACK, [&b"1"[..], b"2"]).as_str(), r#"{"t":"INIT_ACK","op":3,"d":[1,2]}"#);
        assert_eq!(with_array(SUBSCRIBE_ACK, []).as_str(), r#"{"t":"SUBSCRIBE_ACK","op":13,"d":[]}"#);
        let id = crate::discord::Snowflake(1300000000000000001);
        assert_eq!(user_left(id).as_str(), r#"{"t":"USER_LEFT","op":7,"d":{"user_id":"1300000000000000001"}}"#);
        assert_eq!(
            storage_update(id, br#"{"k":"v"}"#).as_str(),
            r#"{"t":"STORAGE_UPDATE","op":10,"user_id":"1300000000000000001","d":{"k":"v"}}"#
        );
    }
}
