//! A WebSocket client that sends without reading cannot grow the server's memory: whatever it
//! sends (heartbeats, invalid JSON, SUBSCRIBE/UNSUBSCRIBE pairs), the server stops reading it
//! once its unread replies reach the high-water mark. Each test runs the real binary, so the
//! server's peak RSS (`VmHWM`) is its own.

mod support;

use lantern::discord::Snowflake;
use lantern::sim::{SimConfig, Simulator};
use serde_json::json;
use std::io::{ErrorKind, Write};
use std::time::Duration;
use support::binary::{proc_status_bytes, start, write_config, Running};
use support::kv::try_request;
use support::raw_ws::{text_frame, RawWs};

/// What the client sends at most; on the unfixed server heartbeats alone grew RSS ~100 MB/s.
const SEND_AT_MOST: usize = 48 << 20;
/// The server's peak RSS may grow this much (its reply queue is capped far below).
const GROWTH_AT_MOST: usize = 32 << 20;

struct Attack {
    _sim: Simulator,
    _dir: tempfile::TempDir,
    server: Running,
    port: u16,
    users: Vec<Snowflake>,
}

fn attack_server() -> Attack {
    let sim = Simulator::start(SimConfig { members: 20, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), "");
    let (child, port) = start(&config);
    let users = sim.members().iter().map(|(m, _)| m.user.id).filter(|id| *id != sim.application_id()).take(2).collect();
    Attack { _sim: sim, _dir: dir, server: Running(child), port, users }
}

/// Subscribes to the first user, then writes `batch` (repeated 1,000 times per write) until
/// `SEND_AT_MOST` is sent or the server stops reading; returns the bytes sent and whether the
/// server stopped reading. Asserts the server's peak RSS stayed bounded and that it still
/// serves others.
fn flood_without_reading(a: &Attack, batch: &[&str]) -> (usize, bool) {
    let mut ws = RawWs::connect(a.port);
    assert_eq!(ws.recv()["t"], "HELLO");
    ws.send(&json!({"op":2,"d":{"user_id": a.users[0].to_string()}}).to_string());
    assert_eq!(ws.recv()["t"], "INIT_ACK");
    let pid = a.server.0.id();
    let before = proc_status_bytes(pid, "VmHWM");

    let one: Vec<u8> = batch.iter().flat_map(|t| text_frame(t)).collect();
    let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
    ws.s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut sent = 0;
    let mut blocked = false;
    while sent < SEND_AT_MOST {
        match ws.s.write_all(&chunk) {
            Ok(()) => sent += chunk.len(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                blocked = true;
                break;
            }
            Err(e) => panic!("the server dropped the connection instead of pushing back: {e}"),
        }
    }
    let growth = proc_status_bytes(pid, "VmHWM").saturating_sub(before);
    assert!(
        growth <= GROWTH_AT_MOST,
        "server peak RSS grew {} MiB after {} MiB of {batch:?} that were never read",
        growth >> 20,
        sent >> 20
    );
    let health = try_request(a.port, "GET", "/health", &[], b"").expect("the server still answers others");
    assert_eq!(health.status, 200, "{}", health.text());
    (sent, blocked)
}

#[test]
fn unread_heartbeat_acks_stop_the_reading_and_stay_bounded() {
    let a = attack_server();
    let (sent, blocked) = flood_without_reading(&a, &[r#"{"op":4}"#]);
    assert!(blocked, "the server kept reading {} MiB of heartbeats whose answers were never read", sent >> 20);
}

#[test]
fn unread_errors_for_invalid_json_stop_the_reading_and_stay_bounded() {
    let a = attack_server();
    let (sent, blocked) = flood_without_reading(&a, &["not json"]);
    assert!(blocked, "the server kept reading {} MiB of invalid JSON whose errors were never read", sent >> 20);
}

#[test]
fn unread_subscribe_acks_stop_the_reading_and_stay_bounded() {
    let a = attack_server();
    let id = a.users[1].to_string();
    let sub = json!({"op":12,"d":{"user_id": id}}).to_string();
    let unsub = json!({"op":14,"d":{"user_id": id}}).to_string();
    let (sent, blocked) = flood_without_reading(&a, &[&sub, &unsub]);
    assert!(blocked, "the server kept reading {} MiB of SUBSCRIBE/UNSUBSCRIBE whose ACKs were never read", sent >> 20);
}

#[test]
fn a_client_that_pushed_back_is_read_again_once_it_reads() {
    let a = attack_server();
    let mut ws = RawWs::connect(a.port);
    assert_eq!(ws.recv()["t"], "HELLO");
    ws.send(&json!({"op":2,"d":{"user_id": a.users[0].to_string()}}).to_string());
    assert_eq!(ws.recv()["t"], "INIT_ACK");
    // Far more heartbeats than the high-water mark of answers, sent from another thread while
    // this one reads every answer: backpressure pauses the reading, it loses nothing.
    let n = 200_000;
    let mut writer = ws.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let frame = text_frame(r#"{"op":4}"#);
        let chunk: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 1000).collect();
        for _ in 0..n / 1000 {
            writer.write_all(&chunk).unwrap();
        }
    });
    for i in 0..n {
        let f = ws.recv();
        assert_eq!(f, json!({"t":"HEARTBEAT_ACK","op":5}), "answer {i}");
    }
    sender.join().unwrap();
}
