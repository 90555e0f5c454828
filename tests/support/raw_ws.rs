//! A minimal raw WebSocket client over a plain `TcpStream`: no buffers of its own beyond what
//! a frame needs (so a process's memory growth is the server's), and frames written exactly as
//! a test wants them, however many at a time.

use super::DEADLINE;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;

pub struct RawWs {
    pub s: TcpStream,
}

/// One masked text frame (a zero mask leaves the payload as is).
pub fn text_frame(text: &str) -> Vec<u8> {
    let mut f = vec![0x81u8];
    let n = text.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(text.as_bytes());
    f
}

/// One masked frame with the given first byte (FIN, RSV bits, opcode) and payload, masked with
/// a non-zero key.
pub fn masked_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![b0];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

impl RawWs {
    /// Connects and upgrades `/socket`.
    pub fn connect(port: u16) -> RawWs {
        RawWs::connect_with(port, "").0
    }

    /// Connects and upgrades `/socket` with `extra` header lines (each ending in CRLF);
    /// returns the 101 response's head too.
    pub fn connect_with(port: u16, extra: &str) -> (RawWs, String) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(
            s,
            "GET /socket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        (RawWs { s }, head)
    }

    /// Reads one server frame as it is: its first byte and its payload.
    pub fn recv_raw(&mut self) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        let n = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.s.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                self.s.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut body = vec![0u8; n];
        self.s.read_exact(&mut body).unwrap();
        (h[0], body)
    }

    pub fn send(&mut self, text: &str) {
        self.s.write_all(&text_frame(text)).unwrap();
    }

    /// Reads one server frame: a text frame's JSON, or for a close frame `{"close": code}`.
    pub fn recv(&mut self) -> Value {
        let (first, body) = self.recv_raw();
        match first {
            0x81 => serde_json::from_slice(&body).unwrap(),
            0x88 => serde_json::json!({ "close": u16::from_be_bytes([body[0], body[1]]) }),
            other => panic!("unexpected frame type {other:#x}"),
        }
    }
}
