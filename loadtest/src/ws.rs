//! A minimal WebSocket (RFC 6455) codec, enough for load: client handshake, server
//! handshake (for the comparators), unfragmented text frames, ping/pong and close.
//!
//! Client frames use a fixed all-zero masking key, so the masked payload equals the plain
//! one and frames can be pre-encoded once (the uWS `load_test` trick).

use std::io;

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub const CLIENT_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The upgrade request; with `deflate`, it offers permessage-deflate without context takeover
/// either way (so that every message inflates on its own).
pub fn client_handshake(host: &str, path: &str, deflate: bool) -> Vec<u8> {
    let ext = if deflate { "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n" } else { "" };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {CLIENT_KEY}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    )
    .into_bytes()
}

/// Inflates one permessage-deflate message (RFC 7692: the payload plus the four bytes
/// `00 00 ff ff` it was stripped of), with no context kept from earlier messages.
pub fn inflate(z: &mut flate2::Decompress, payload: &[u8]) -> io::Result<Vec<u8>> {
    z.reset(false);
    let mut out = Vec::with_capacity(payload.len() * 4 + 64);
    for input in [payload, &[0, 0, 0xff, 0xff][..]] {
        let mut at = 0;
        while at < input.len() {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let before = z.total_in();
            z.decompress_vec(&input[at..], &mut out, flate2::FlushDecompress::Sync).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            at += (z.total_in() - before) as usize;
        }
    }
    Ok(out)
}

/// The server's 101 answer to a handshake request (`req` is the whole request head).
pub fn server_handshake(req: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(req).ok()?;
    let key = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("sec-websocket-key").then(|| v.trim().to_string())
    })?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Some(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes())
}

fn header(out: &mut Vec<u8>, op: u8, len: usize, masked: bool) {
    out.push(0x80 | op);
    let m = if masked { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&[0, 0, 0, 0]);
    }
}

/// A server → client frame (unmasked).
pub fn server_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    header(&mut out, op, payload.len(), false);
    out.extend_from_slice(payload);
    out
}

/// A client → server frame, masked with the zero key.
pub fn client_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    header(&mut out, op, payload.len(), true);
    out.extend_from_slice(payload);
    out
}

/// One parsed frame: opcode and the payload's range inside the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub op: u8,
    pub fin: bool,
    /// RSV1: the message is compressed (permessage-deflate).
    pub rsv1: bool,
    pub start: usize,
    pub end: usize,
    /// Bytes the whole frame took.
    pub size: usize,
}

/// Parses the frame at the start of `buf`; `Ok(None)` when more bytes are needed. Masked
/// frames (from clients) are unmasked in place.
pub fn parse(buf: &mut [u8]) -> io::Result<Option<Frame>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let rsv1 = buf[0] & 0x40 != 0;
    let op = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let mut len = (buf[1] & 0x7f) as usize;
    let mut at = 2;
    if len == 126 {
        if buf.len() < 4 {
            return Ok(None);
        }
        len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        at = 4;
    } else if len == 127 {
        if buf.len() < 10 {
            return Ok(None);
        }
        let l = u64::from_be_bytes(buf[2..10].try_into().unwrap_or([0; 8]));
        if l > (64 << 20) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "frame over 64 MiB"));
        }
        len = l as usize;
        at = 10;
    }
    let mask_at = at;
    if masked {
        at += 4;
    }
    if buf.len() < at + len {
        return Ok(None);
    }
    if masked {
        let key = [buf[mask_at], buf[mask_at + 1], buf[mask_at + 2], buf[mask_at + 3]];
        for (i, b) in buf[at..at + len].iter_mut().enumerate() {
            *b ^= key[i & 3];
        }
    }
    Ok(Some(Frame { op, fin, rsv1, start: at, end: at + len, size: at + len }))
}

/// The end of an HTTP head (`\r\n\r\n`), if it is all there.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    crate::util::memfind(buf, b"\r\n\r\n").map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for len in [0usize, 5, 125, 126, 1000, 70_000] {
            let payload = vec![b'x'; len];
            let mut f = client_frame(OP_TEXT, &payload);
            let fr = parse(&mut f).unwrap().unwrap();
            assert_eq!((fr.op, fr.fin, fr.end - fr.start, fr.size), (OP_TEXT, true, len, f.len()));
            let mut s = server_frame(OP_TEXT, &payload);
            let fr = parse(&mut s).unwrap().unwrap();
            assert_eq!(&s[fr.start..fr.end], &payload[..]);
            assert_eq!(parse(&mut s[..fr.size - 1]).unwrap(), None);
        }
    }

    #[test]
    fn handshake_accept_key() {
        let resp = server_handshake(&client_handshake("h", "/socket", false)).unwrap();
        let text = String::from_utf8(resp).unwrap();
        assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
    }
}
