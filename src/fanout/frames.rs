//! Server→client frames: `{"t":NAME,"op":N[,"d":...]}`, encoded once and shared as bytes.

use bytes::Bytes;
use flate2::{Compress, FlushCompress};

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

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The header of an unmasked server frame with FIN set (RSV1 when `compressed`): at most 10
/// bytes, the length in its shortest form.
pub fn header(opcode: u8, compressed: bool, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode | if compressed { 0x40 } else { 0 };
    let n = if len < 126 {
        h[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (h, n)
}

/// A whole unmasked server frame (control frames: pong, close).
pub fn frame(opcode: u8, compressed: bool, payload: &[u8]) -> Bytes {
    let (h, n) = header(opcode, compressed, payload.len());
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A close frame with `code` and no reason.
pub fn close_frame(code: u16) -> Bytes {
    frame(OP_CLOSE, false, &code.to_be_bytes())
}

/// A close frame with `code` and a reason text (Lanyard's refusals: `4006 invalid_payload`).
pub fn close_frame_with(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    frame(OP_CLOSE, false, &payload)
}

/// A complete server WebSocket frame, header and payload, ready to write: server frames are
/// unmasked, so the same bytes serve every subscriber (cloning is a reference count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
    /// Where the payload starts (the header's length).
    at: u8,
}

/// Room for the longest frame header (10 bytes) in front of a payload being assembled.
const HEAD_ROOM: usize = 10;

impl Frame {
    /// The whole frame as written to the socket.
    pub fn wire(&self) -> &Bytes {
        &self.bytes
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The payload: the JSON text (or, for a compressed frame, its deflate output).
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.at as usize..]
    }

    /// The payload as text (empty for a compressed frame).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.payload()).unwrap_or("")
    }

    /// A text frame (RSV1 set when `compressed`) over `buf`, whose first [`HEAD_ROOM`] bytes
    /// are free for the header.
    fn over(mut buf: Vec<u8>, compressed: bool) -> Frame {
        let len = buf.len() - HEAD_ROOM;
        let (h, n) = header(OP_TEXT, compressed, len);
        let start = HEAD_ROOM - n;
        buf[start..HEAD_ROOM].copy_from_slice(&h[..n]);
        Frame { bytes: Bytes::from(buf).slice(start..), at: n as u8 }
    }

    /// The same message compressed with permessage-deflate (RFC 7692) without context
    /// takeover: the raw deflate output of the payload alone, with its final empty block's
    /// `00 00 ff ff` removed, in a frame with RSV1 set. Computed once per change and shared by
    /// every compressing subscriber.
    pub fn deflated(&self, z: &mut Compress) -> Frame {
        let raw = raw_deflate(z, self.payload());
        let mut buf = Vec::with_capacity(HEAD_ROOM + raw.len());
        buf.resize(HEAD_ROOM, 0);
        buf.extend_from_slice(&raw);
        Frame::over(buf, true)
    }
}

impl Frame {
    /// The same message as Lanyard's `zlib_json`: a binary frame holding a complete zlib
    /// stream of the JSON (header `78 9c`, the raw deflate output, a final empty block, the
    /// adler32). Computed once per change from the same raw deflate permessage-deflate uses,
    /// and shared by every such subscriber.
    pub fn zlib(&self, z: &mut Compress) -> Frame {
        let text = self.payload();
        let raw = raw_deflate(z, text);
        let mut buf = Vec::with_capacity(HEAD_ROOM + raw.len() + 12);
        buf.resize(HEAD_ROOM, 0);
        buf.extend_from_slice(&[0x78, 0x9c]);
        buf.extend_from_slice(&raw);
        // The sync flush's empty stored block, whose `00 00 ff ff` permessage-deflate leaves
        // out, then a final empty fixed-Huffman block ends the stream.
        buf.extend_from_slice(&[0x00, 0x00, 0xff, 0xff, 0x03, 0x00]);
        buf.extend_from_slice(&adler32(text).to_be_bytes());
        let len = buf.len() - HEAD_ROOM;
        let (h, n) = header(OP_BINARY, false, len);
        let start = HEAD_ROOM - n;
        buf[start..HEAD_ROOM].copy_from_slice(&h[..n]);
        Frame { bytes: Bytes::from(buf).slice(start..), at: n as u8 }
    }
}

/// The Adler-32 checksum (RFC 1950 §8) that ends a zlib stream.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// The raw deflate stream of `data` ended by a sync flush, less the flush's `00 00 ff ff`
/// (the form permessage-deflate sends; Lanyard's `zlib_json` is the same output between a zlib
/// header and the adler32).
pub fn raw_deflate(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    z.reset();
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let before = z.total_in() as usize;
        let _ = z.compress_vec(&data[before..], &mut out, FlushCompress::Sync);
        if z.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

fn finish(buf: Vec<u8>) -> Frame {
    // Every frame is assembled from JSON text, so this only fails on a bug; send an ERROR
    // frame rather than invalid UTF-8.
    if std::str::from_utf8(&buf[HEAD_ROOM..]).is_err() {
        let mut b = vec![0u8; HEAD_ROOM];
        b.extend_from_slice(br#"{"t":"ERROR","op":11,"d":"Internal error."}"#);
        return Frame::over(b, false);
    }
    Frame::over(buf, false)
}

fn head(op: u8, extra: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEAD_ROOM + 32 + extra);
    buf.resize(HEAD_ROOM, 0);
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

/// A Lanyard event `{"op":0,"t":NAME,"d":...}` whose `d` is the given JSON text.
pub fn lanyard_event(t: &str, d: &[u8]) -> Frame {
    let mut buf = Vec::with_capacity(HEAD_ROOM + 32 + d.len());
    buf.resize(HEAD_ROOM, 0);
    buf.extend_from_slice(br#"{"op":0,"t":""#);
    buf.extend_from_slice(t.as_bytes());
    buf.extend_from_slice(br#"","d":"#);
    buf.extend_from_slice(d);
    buf.push(b'}');
    finish(buf)
}

/// Lanyard's INIT_STATE whose `d` maps each id to its presence.
pub fn lanyard_init_map<'a>(users: impl IntoIterator<Item = (crate::discord::Snowflake, &'a [u8])>) -> Frame {
    let mut d = Vec::with_capacity(256);
    d.push(b'{');
    for (i, (id, p)) in users.into_iter().enumerate() {
        if i > 0 {
            d.push(b',');
        }
        d.extend_from_slice(format!(r#""{id}":"#).as_bytes());
        d.extend_from_slice(p);
    }
    d.push(b'}');
    lanyard_event("INIT_STATE", &d)
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

    #[test]
    fn a_zlib_frame_is_a_whole_zlib_stream_of_the_text() {
        use std::io::Read;
        let f = lanyard_event("PRESENCE_UPDATE", br#"{"kv":{},"kv2":{},"kv3":{}}"#);
        let mut z = Compress::new(flate2::Compression::default(), false);
        let zf = f.zlib(&mut z);
        assert_eq!(zf.wire()[0], 0x82, "FIN, binary");
        assert_eq!(&zf.payload()[..2], &[0x78, 0x9c]);
        let mut text = Vec::new();
        flate2::read::ZlibDecoder::new(zf.payload()).read_to_end(&mut text).unwrap();
        assert_eq!(text, f.payload());
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn headers_use_the_shortest_length() {
        assert_eq!(&header(OP_TEXT, false, 125).0[..2], &[0x81, 125]);
        assert_eq!(header(OP_TEXT, true, 126).1, 4);
        assert_eq!(&header(OP_TEXT, true, 126).0[..4], &[0xc1, 126, 0, 126]);
        assert_eq!(header(OP_TEXT, false, 70_000).1, 10);
    }

    #[test]
    fn frames_carry_their_header() {
        let f = bare(HEARTBEAT_ACK);
        assert_eq!(&f.wire()[..2], &[0x81, 28]);
        assert_eq!(&f.wire()[2..], br#"{"t":"HEARTBEAT_ACK","op":5}"#);
        let big = with_data(PRESENCE_UPDATE, &vec![b'1'; 70_000]);
        assert_eq!(&big.wire()[..2], &[0x81, 127]);
        assert_eq!(big.len(), 10 + big.payload().len());
    }

    #[test]
    fn a_deflated_frame_inflates_to_the_same_text() {
        let f = with_data(PRESENCE_UPDATE, br#"{"status":"online","status":"online","status":"online"}"#);
        let mut z = Compress::new(flate2::Compression::default(), false);
        let d = f.deflated(&mut z);
        assert_eq!(d.wire()[0], 0xc1, "FIN, RSV1, text");
        assert!(d.payload().len() < f.payload().len());
        let mut inflate = flate2::Decompress::new(false);
        let mut input = d.payload().to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut text = Vec::with_capacity(1024);
        inflate.decompress_vec(&input, &mut text, flate2::FlushDecompress::Sync).unwrap();
        assert_eq!(text, f.payload());
        // Computed again from a fresh context: the same bytes (no context is carried over).
        assert_eq!(f.deflated(&mut z), d);
    }
}
