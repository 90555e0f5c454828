//! 1,000 WebSocket connections on the real server (2 shards), and the memory each idle one
//! costs. Alone in its own test binary so that no other test's allocations pollute the
//! process's RSS.

mod support;

use lantern::discord::{ClientStatus, Member, PartialUser, Presence, Snowflake, Status, User};
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use support::{Env, DEADLINE};

const A: Snowflake = Snowflake(1_300_000_000_000_000_001);

fn env() -> Env {
    Env::start_tweaked(
        SimConfig { members: 20, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() },
        2,
        |sim| {
            let user = User { id: A, username: "alice".into(), discriminator: "0".into(), ..Default::default() };
            sim.add_member(Member { user, ..Default::default() }, None);
        },
        |c| {
            // Every connection of this test comes from 127.0.0.1.
            c.server.max_connections_per_ip = 5000;
            c.server.socket.max_connections_per_ip = 5000;
        },
    )
}

/// A minimal raw WebSocket client: no buffers of its own beyond what a frame needs, so the
/// process's memory growth per connection is the server's.
struct Raw {
    s: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Raw {
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
        Raw { s }
    }

    fn send(&mut self, text: &str) {
        let mut f = vec![0x81u8];
        let n = text.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        f.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as is
        f.extend_from_slice(text.as_bytes());
        self.s.write_all(&f).unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(h[0], 0x81, "a final text frame");
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
        serde_json::from_slice(&body).unwrap()
    }
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

#[test]
fn a_thousand_connections_receive_one_update() {
    let env = env();
    let a = A;
    let init = json!({"op":2,"d":{"user_id": a.to_string()}}).to_string();
    // Warm up allocator pools with a few connections first, then measure the rest.
    let mut conns: Vec<Raw> = Vec::new();
    for _ in 0..50 {
        let mut c = Raw::connect(env.port);
        assert_eq!(c.recv()["t"], "HELLO");
        c.send(&init);
        assert_eq!(c.recv()["t"], "INIT_ACK");
        conns.push(c);
    }
    let before = rss_bytes();
    for _ in 0..950 {
        let mut c = Raw::connect(env.port);
        assert_eq!(c.recv()["t"], "HELLO");
        c.send(&init);
        assert_eq!(c.recv()["t"], "INIT_ACK");
        conns.push(c);
    }
    let per_conn = (rss_bytes().saturating_sub(before)) / 950;
    eprintln!("memory per idle subscribed connection: {per_conn} bytes (process RSS growth / 950)");
    assert!(per_conn < 64 * 1024, "{per_conn} bytes per idle connection");

    env.sim.set_presence(Presence {
        user: PartialUser { id: a, ..Default::default() },
        status: Status::Online,
        client_status: ClientStatus { desktop: Some(Status::Online), ..Default::default() },
        ..Default::default()
    });
    let want = json!("online");
    for c in &mut conns {
        let u = c.recv();
        assert_eq!(u["t"], "PRESENCE_UPDATE");
        assert_eq!(u["d"]["status"], want);
    }
}
