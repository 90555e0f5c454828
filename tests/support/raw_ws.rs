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

impl RawWs {
    /// Connects and upgrades `/socket`.
    pub fn connect(port: u16) -> RawWs {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(
            s,
            "GET /socket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        RawWs { s }
    }

    pub fn send(&mut self, text: &str) {
        self.s.write_all(&text_frame(text)).unwrap();
    }

    /// Reads one server frame: a text frame's JSON, or for a close frame `{"close": code}`.
    pub fn recv(&mut self) -> Value {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).unwrap();
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
        match h[0] {
            0x81 => serde_json::from_slice(&body).unwrap(),
            0x88 => serde_json::json!({ "close": u16::from_be_bytes([body[0], body[1]]) }),
            other => panic!("unexpected frame type {other:#x}"),
        }
    }
}
