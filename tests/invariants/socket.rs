//! The WebSocket: lantern's RFC 6455 reader on a client's bytes, and the `/socket` protocol
//! parser.

use super::json::{self, Json};
use arbitrary::{Arbitrary, Result, Unstructured};
use lantern::discord::Snowflake;
use lantern::fanout::close::CloseReason;
use lantern::fanout::frames;
use lantern::socket::protocol::{self, Refusal, Request, Target};
use lantern::socket::wire::{Decompress, Inbound, Reader, WireError};
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::{Error, Message};

/// An in-memory socket: reads the client's bytes in chunks of `chunk`, keeps what is written.
struct Mem {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    output: Vec<u8>,
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a client sends: raw bytes, or frames built from parts (so that the fuzzer reaches
/// fragmentation, control frames and length forms without guessing the framing).
#[derive(Debug, Arbitrary)]
pub enum WsInput {
    Raw(Vec<u8>),
    Frames(Vec<FrameSpec>),
}

#[derive(Debug, Arbitrary)]
pub struct WsCase {
    pub input: WsInput,
    /// Selects `max_frame_bytes`.
    pub limit: u8,
    /// Read chunk size.
    pub chunk: u8,
}

#[derive(Debug, Arbitrary)]
pub struct FrameSpec {
    pub fin: bool,
    /// Reserved bits (usually 0).
    pub rsv: Option<u8>,
    pub opcode: Opcode,
    /// `None` sends the frame unmasked (a protocol error from a client).
    pub mask: Option<[u8; 4]>,
    pub payload: Payload,
    /// 0: the shortest length form; 1: at least 16 bits; 2: 64 bits.
    pub length_form: u8,
}

#[derive(Debug, Arbitrary)]
pub enum Opcode {
    Continue,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
    Other(u8),
}

#[derive(Debug, Arbitrary)]
pub enum Payload {
    Bytes(Vec<u8>),
    Text(String),
    Request(ProtocolInput),
    /// A payload of this many bytes (around the limits).
    Size(u16, u8),
    /// A close frame: code and reason.
    Close(u16, String),
}

impl Payload {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Payload::Bytes(b) => b.clone(),
            Payload::Text(s) => s.clone().into_bytes(),
            Payload::Request(p) => p.text().into_bytes(),
            Payload::Size(n, fill) => vec![*fill; *n as usize + if *fill > 200 { 60_000 } else { 0 }],
            Payload::Close(code, reason) => {
                let mut b = code.to_be_bytes().to_vec();
                b.extend_from_slice(reason.as_bytes());
                b
            }
        }
    }
}

impl FrameSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        let op = match self.opcode {
            Opcode::Continue => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
            Opcode::Other(o) => o & 0xF,
        };
        out.push(((self.fin as u8) << 7) | ((self.rsv.unwrap_or(0) & 7) << 4) | op);
        let payload = self.payload.bytes();
        let len = payload.len();
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        if len < 126 && self.length_form % 3 == 0 {
            out.push(m | len as u8);
        } else if len < 65536 && self.length_form % 3 != 2 {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(&payload),
        }
    }
}

impl WsInput {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            WsInput::Raw(b) => b.clone(),
            WsInput::Frames(frames) => {
                let mut out = Vec::new();
                for f in frames {
                    f.encode(&mut out);
                }
                out
            }
        }
    }
}

/// The limits tried: lantern's minimum, default and some in between.
pub fn limit(sel: u8) -> usize {
    [1024, 64 * 1024, 1500, 4096][sel as usize % 4]
}

pub fn check_ws(case: &WsCase) {
    check_frames(&case.input.bytes(), limit(case.limit), 1 + case.chunk as usize);
}

/// Reads `bytes` as lantern's server does ([`Reader`], fed in chunks of `chunk`, without and
/// with permessage-deflate): messages stay within the limit, also inflated, text goes through
/// the protocol parser, parsing stops at the first error, and what the server writes back
/// (pongs, the close's echo) is valid WebSocket for a client.
pub fn check_frames(bytes: &[u8], max: usize, chunk: usize) {
    for deflate in [false, true] {
        let mut inflater = deflate.then(|| Decompress::new(false));
        let mut reader = Reader::default();
        let mut written = Vec::new();
        'read: for piece in bytes.chunks(chunk.max(1)) {
            reader.feed(piece);
            loop {
                match reader.next(max, inflater.as_mut()) {
                    Ok(Some(Inbound::Text(t))) => {
                        assert!(t.len() <= max, "a {}-byte message passed a {max}-byte limit", t.len());
                        check_protocol(&t);
                    }
                    Ok(Some(Inbound::Binary | Inbound::Pong)) => {}
                    Ok(Some(Inbound::Ping(p))) => {
                        assert!(p.len() <= 125);
                        written.extend_from_slice(&frames::frame(frames::OP_PONG, false, &p));
                    }
                    Ok(Some(Inbound::Close(code))) => {
                        written.extend_from_slice(&code.map_or_else(|| frames::frame(frames::OP_CLOSE, false, &[]), frames::close_frame));
                        break 'read;
                    }
                    Ok(None) => break,
                    Err(WireError::Protocol | WireError::TooLarge) => break 'read,
                }
            }
        }
        // The client's view of what the server sent.
        let back = Mem { input: written.clone(), pos: 0, chunk: 4096, output: Vec::new() };
        let mut client = WebSocket::from_raw_socket(back, Role::Client, None);
        for _ in 0..written.len() + 2 {
            match client.read() {
                Ok(Message::Pong(_) | Message::Close(_)) => {}
                Ok(m) => panic!("the server wrote {m:?} on its own"),
                Err(Error::ConnectionClosed | Error::AlreadyClosed | Error::Io(_)) => break,
                Err(Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => break,
                Err(e) => panic!("the server wrote invalid WebSocket data ({e:?}): {written:02x?}"),
            }
        }
    }
}

/// A protocol frame, raw or built from parts.
#[derive(Debug, Arbitrary)]
pub enum ProtocolInput {
    Raw(String),
    Json(Json),
    Request { op: OpValue, d: Option<DValue>, extra: Option<Json> },
}

#[derive(Debug, Arbitrary)]
pub enum OpValue {
    Op(u8),
    Any(Json),
}

#[derive(Debug, Arbitrary)]
pub enum DValue {
    One(IdValue),
    Many(Vec<IdValue>),
    Both(IdValue, Vec<IdValue>),
    Neither,
    Any(Json),
}

#[derive(Debug)]
pub struct IdValue(pub Value);

impl<'a> Arbitrary<'a> for IdValue {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(IdValue(match u.int_in_range(0..=5)? {
            0 => Value::String((1_300_000_000_000_000_000u64 + u.int_in_range(0..=3)?).to_string()),
            1..=3 => Value::String(json::string(u)?),
            _ => json::value(u, 1)?,
        }))
    }
}

impl ProtocolInput {
    pub fn text(&self) -> String {
        match self {
            ProtocolInput::Raw(s) => s.clone(),
            ProtocolInput::Json(j) => j.0.to_string(),
            ProtocolInput::Request { op, d, extra } => {
                let mut m = Map::new();
                m.insert("op".into(), match op {
                    OpValue::Op(o) => Value::from(*o),
                    OpValue::Any(j) => j.0.clone(),
                });
                if let Some(d) = d {
                    let ids = |v: &[IdValue]| Value::Array(v.iter().map(|i| i.0.clone()).collect());
                    m.insert("d".into(), match d {
                        DValue::One(id) => json!({ "user_id": id.0 }),
                        DValue::Many(v) => json!({ "user_ids": ids(v) }),
                        DValue::Both(id, v) => json!({ "user_id": id.0, "user_ids": ids(v) }),
                        DValue::Neither => json!({}),
                        DValue::Any(j) => j.0.clone(),
                    });
                }
                if let Some(Json(extra)) = extra {
                    m.insert("extra".into(), extra.clone());
                }
                Value::Object(m).to_string()
            }
        }
    }
}

/// The client frame that asks for `req`.
fn request_json(req: &Request) -> String {
    let target = |t: &Target| match t {
        Target::All => json!({ "user_id": "all" }),
        // Zero-padded to 17 digits: `0…01` is accepted as id 1.
        Target::One(id) => json!({ "user_id": format!("{:017}", id.0) }),
        Target::Many(ids) => json!({ "user_ids": ids.iter().map(|i| format!("{:017}", i.0)).collect::<Vec<_>>() }),
    };
    match req {
        Request::Heartbeat => json!({ "op": 4 }),
        Request::Init(t) => json!({ "op": 2, "d": target(t) }),
        Request::Subscribe(t) => json!({ "op": 12, "d": target(t) }),
        Request::Unsubscribe(t) => json!({ "op": 14, "d": target(t) }),
    }
    .to_string()
}

/// The payload errors of INIT, SUBSCRIBE and UNSUBSCRIBE.
fn payload_message(m: &str) -> bool {
    const FIXED: [&str; 8] = [
        "Required",
        "Either user_ids or user_id must be provided.",
        "Only one of user_ids or user_id can be provided.",
        "user_id must be a number.",
        "user_id must be 17-19 characters long.",
        "user_ids must not be empty.",
        "user_ids must be an array of strings with 17-19 characters long.",
        "user_ids must not contain duplicates.",
    ];
    let kinds = ["null", "boolean", "number", "string", "array", "object"];
    FIXED.contains(&m)
        || ["Expected object, received ", "Expected string, received ", "Expected array, received "]
            .iter()
            .any(|p| m.strip_prefix(p).is_some_and(|k| kinds.contains(&k)))
}

fn check_target(d: &Value, t: &Target) {
    match t {
        Target::All => assert!(d["user_id"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("all")), "{d}"),
        Target::One(id) => assert_eq!(d["user_id"].as_str().and_then(Snowflake::parse_strict), Some(*id), "{d}"),
        Target::Many(ids) => {
            let items = d["user_ids"].as_array().expect("user_ids");
            assert!(!ids.is_empty() && ids.len() == items.len(), "{d}");
            for (item, id) in items.iter().zip(ids) {
                assert_eq!(item.as_str().and_then(Snowflake::parse_strict), Some(*id));
            }
            let mut seen = std::collections::HashSet::new();
            assert!(ids.iter().all(|i| seen.insert(*i)));
        }
    }
}

pub fn check_protocol_input(p: &ProtocolInput) {
    check_protocol(&p.text());
}

/// `protocol::parse`: a request that matches the frame and round-trips, or a documented
/// refusal with the close reason that goes with it.
pub fn check_protocol(text: &str) {
    let value: Option<Value> = serde_json::from_str(text).ok();
    let op = value.as_ref().and_then(|v| v.get("op")).and_then(Value::as_u64);
    match protocol::parse(text) {
        Ok(req) => {
            let v = value.expect("accepted frames are JSON");
            let d = &v["d"];
            match &req {
                Request::Heartbeat => assert_eq!(op, Some(4)),
                Request::Init(t) => {
                    assert_eq!(op, Some(frames::INIT as u64));
                    check_target(d, t);
                }
                Request::Subscribe(t) => {
                    assert_eq!(op, Some(frames::SUBSCRIBE as u64));
                    check_target(d, t);
                }
                Request::Unsubscribe(t) => {
                    assert_eq!(op, Some(frames::UNSUBSCRIBE as u64));
                    check_target(d, t);
                }
            }
            assert_eq!(protocol::parse(&request_json(&req)), Ok(req));
        }
        Err(Refusal::Error(m)) => {
            match &value {
                None => assert_eq!(m, "Invalid JSON."),
                Some(v) if !v.is_object() => assert_eq!(m, format!("The payload must be a JSON object, received {}.", json::kind(v))),
                Some(_) => {
                    assert!(matches!(op, Some(12 | 14)), "ERROR {m:?} for op {op:?}");
                    assert!(payload_message(&m), "undocumented message {m:?}");
                }
            }
            let frame: Value = serde_json::from_str(frames::error(&m).as_str()).expect("ERROR frame is JSON");
            assert_eq!(frame, json!({ "t": "ERROR", "op": 11, "d": m }));
        }
        Err(Refusal::Disconnect(reason, m)) => {
            assert!(value.as_ref().is_some_and(Value::is_object));
            match reason {
                CloseReason::InvalidOpcode => {
                    assert_eq!(m, "Invalid opcode.");
                    assert!(!op.is_some_and(|o| (1..=15).contains(&o)));
                }
                CloseReason::OpcodeNotAllowed => {
                    assert_eq!(m, "You are not allowed to send this opcode to the server.");
                    assert!(op.is_some_and(|o| (1..=15).contains(&o) && ![2, 4, 12, 14].contains(&o)));
                }
                CloseReason::InvalidPayload => {
                    assert_eq!(op, Some(2));
                    assert!(payload_message(&m), "undocumented message {m:?}");
                }
                other => panic!("parse closed with {other:?}"),
            }
            let frame: Value = serde_json::from_str(frames::disconnect(&m).as_str()).expect("DISCONNECT frame is JSON");
            assert_eq!(frame["d"], json!({ "reason": m, "error": m }));
        }
    }
}
