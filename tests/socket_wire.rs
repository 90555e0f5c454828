//! The WebSocket on the wire, byte for byte, against the real server: RFC 6455's inbound edge
//! cases (fragmentation, interleaved control frames, masking, reserved bits and opcodes, UTF-8,
//! close codes, the size limit), each closed with the code the README documents, and
//! permessage-deflate (RFC 7692): negotiated once offered, one compressed frame per change that
//! inflates to what plain clients get, compressed client messages accepted, a zip bomb refused.

mod support;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use lantern::discord::{ClientStatus, Member, PartialUser, Presence, Snowflake, Status, User};
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::io::Write;
use support::raw_ws::{masked_frame, RawWs};
use support::Env;

const A: Snowflake = Snowflake(1_300_000_000_000_000_001);
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const ACCEPTED: &str = "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn env_with(deflate: bool) -> Env {
    Env::start_tweaked(
        SimConfig { members: 5, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() },
        1,
        |sim| {
            let user = User { id: A, username: "alice".into(), discriminator: "0".into(), ..Default::default() };
            sim.add_member(Member { user, ..Default::default() }, None);
        },
        move |c| c.server.socket.permessage_deflate = deflate,
    )
}

fn env() -> Env {
    env_with(true)
}

fn init() -> String {
    json!({"op":2,"d":{"user_id": A.to_string()}}).to_string()
}

fn hello(env: &Env) -> RawWs {
    let mut ws = RawWs::connect(env.port);
    assert_eq!(ws.recv()["t"], "HELLO");
    ws
}

/// Reads to the close frame: the last DISCONNECT's reason and the close code.
fn closed(ws: &mut RawWs) -> (Option<String>, u16) {
    let mut reason = None;
    loop {
        let (b0, body) = ws.recv_raw();
        match b0 {
            0x81 => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                if v["t"] == "DISCONNECT" {
                    reason = v["d"]["reason"].as_str().map(str::to_owned);
                }
            }
            0x88 => return (reason, u16::from_be_bytes([body[0], body[1]])),
            other => panic!("unexpected frame {other:#x} before the close"),
        }
    }
}

fn set_online(env: &Env) {
    env.sim.set_presence(Presence {
        user: PartialUser { id: A, ..Default::default() },
        status: Status::Online,
        client_status: ClientStatus { desktop: Some(Status::Online), ..Default::default() },
        ..Default::default()
    });
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut z = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    z.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}

#[test]
fn a_fragmented_request_with_a_ping_between_its_fragments_is_answered_after_the_pong() {
    let env = env();
    let mut ws = hello(&env);
    let text = init();
    let (a, rest) = text.as_bytes().split_at(5);
    let (b, c) = rest.split_at(7);
    let mut bytes = masked_frame(0x01, a);
    bytes.extend(masked_frame(0x00, b));
    bytes.extend(masked_frame(0x89, b"are you there"));
    bytes.extend(masked_frame(0x80, c));
    ws.s.write_all(&bytes).unwrap();
    assert_eq!(ws.recv_raw(), (0x8a, b"are you there".to_vec()), "the pong echoes the ping");
    let ack = ws.recv();
    assert_eq!((ack["t"].as_str(), ack["d"]["metadata"]["id"].as_str()), (Some("INIT_ACK"), Some(&*A.to_string())));
    // A pong from the client is ignored; the connection keeps working.
    ws.s.write_all(&masked_frame(0x8a, b"")).unwrap();
    ws.send(r#"{"op":4}"#);
    assert_eq!(ws.recv(), json!({"t":"HEARTBEAT_ACK","op":5}));
}

#[test]
fn protocol_violations_close_with_4012() {
    let env = env();
    let unmasked = {
        let t = br#"{"op":4}"#;
        let mut f = vec![0x81, t.len() as u8];
        f.extend_from_slice(t);
        f
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8 in a text frame", masked_frame(0x81, &[b'"', 0xc3, 0x28, b'"'])),
        ("invalid UTF-8 split over fragments", [masked_frame(0x01, &[b'"', 0xe2, 0x82]), masked_frame(0x80, b"\"")].concat()),
        ("an unmasked client frame", unmasked),
        ("RSV1 without permessage-deflate", masked_frame(0xc1, b"{}")),
        ("RSV2", masked_frame(0xa1, b"{}")),
        ("RSV3", masked_frame(0x91, b"{}")),
        ("reserved data opcode 3", masked_frame(0x83, b"{}")),
        ("reserved control opcode 0xB", masked_frame(0x8b, b"")),
        ("a fragmented ping", masked_frame(0x09, b"x")),
        ("a ping longer than 125 bytes", masked_frame(0x89, &[b'x'; 126])),
        ("a continuation with nothing to continue", masked_frame(0x80, b"{}")),
        ("a new message inside a fragmented one", [masked_frame(0x01, b"{"), masked_frame(0x81, b"{}")].concat()),
        ("a close frame with a one-byte payload", masked_frame(0x88, &[3])),
        ("close code 1005", masked_frame(0x88, &1005u16.to_be_bytes())),
        ("close code 999", masked_frame(0x88, &999u16.to_be_bytes())),
        ("a close reason that is not UTF-8", masked_frame(0x88, &[0x03, 0xe8, 0xff])),
    ];
    for (what, bytes) in cases {
        let mut ws = hello(&env);
        ws.s.write_all(&bytes).unwrap();
        assert_eq!(closed(&mut ws), (Some("WebSocket protocol error.".into()), 4012), "{what}");
    }
}

#[test]
fn an_oversized_frame_is_refused_from_its_header_with_4010() {
    let env = env();
    let mut ws = hello(&env);
    // Only the header of a 70 KiB frame: the limit is enforced before any payload arrives.
    let frame = masked_frame(0x81, &vec![b' '; 70 * 1024]);
    ws.s.write_all(&frame[..14]).unwrap();
    assert_eq!(closed(&mut ws), (Some("Message too large (the limit is 65536 bytes).".into()), 4010));
    // Fragments that add up past the limit.
    let mut ws = hello(&env);
    let part = vec![b' '; 40 * 1024];
    ws.s.write_all(&[masked_frame(0x01, &part), masked_frame(0x80, &part)].concat()).unwrap();
    assert_eq!(closed(&mut ws), (Some("Message too large (the limit is 65536 bytes).".into()), 4010));
}

#[test]
fn the_clients_close_is_echoed_with_its_code() {
    let env = env();
    let mut ws = hello(&env);
    let mut payload = 4321u16.to_be_bytes().to_vec();
    payload.extend_from_slice("bye ✓".as_bytes());
    ws.s.write_all(&masked_frame(0x88, &payload)).unwrap();
    assert_eq!(ws.recv_raw(), (0x88, 4321u16.to_be_bytes().to_vec()));
    let mut ws = hello(&env);
    ws.s.write_all(&masked_frame(0x88, b"")).unwrap();
    assert_eq!(ws.recv_raw(), (0x88, vec![]));
}

#[test]
fn permessage_deflate_sends_one_compressed_frame_that_inflates_to_the_plain_clients_json() {
    let env = env();
    let (mut z, head) = RawWs::connect_with(env.port, OFFER);
    assert!(head.to_ascii_lowercase().contains(ACCEPTED), "{head}");
    assert_eq!(z.recv()["t"], "HELLO");
    // A compressed INIT (RSV1) is inflated and served.
    z.s.write_all(&masked_frame(0xc1, &deflate(init().as_bytes()))).unwrap();
    let (b0, ack) = z.recv_raw();
    assert_eq!(b0 & 0x0f, 1);
    let ack: Value = serde_json::from_slice(&if b0 & 0x40 != 0 { inflate(&ack) } else { ack }).unwrap();
    assert_eq!(ack["t"], "INIT_ACK");
    let mut z2 = RawWs::connect_with(env.port, OFFER).0;
    assert_eq!(z2.recv()["t"], "HELLO");
    z2.s.write_all(&masked_frame(0xc1, &deflate(init().as_bytes()))).unwrap();
    z2.recv_raw();
    let mut plain = hello(&env);
    plain.send(&init());
    assert_eq!(plain.recv()["t"], "INIT_ACK");

    set_online(&env);
    let (pb0, plain_update) = plain.recv_raw();
    assert_eq!(pb0, 0x81);
    let (zb0, compressed) = z.recv_raw();
    assert_eq!(zb0, 0xc1, "FIN, RSV1 (compressed), text");
    assert!(compressed.len() < plain_update.len(), "{} compressed bytes for {} plain", compressed.len(), plain_update.len());
    assert_eq!(String::from_utf8(inflate(&compressed)).unwrap(), String::from_utf8(plain_update).unwrap());
    // The other compressing subscriber gets the very same bytes (computed once).
    assert_eq!(z2.recv_raw(), (zb0, compressed));
    // Replies to the client's own requests go uncompressed (permessage-deflate allows both).
    z.s.write_all(&masked_frame(0xc1, &deflate(br#"{"op":4}"#))).unwrap();
    assert_eq!(z.recv_raw(), (0x81, br#"{"t":"HEARTBEAT_ACK","op":5}"#.to_vec()));
}

#[test]
fn a_compressed_message_that_inflates_past_the_limit_closes_with_4010() {
    let env = env();
    let (mut ws, _) = RawWs::connect_with(env.port, OFFER);
    assert_eq!(ws.recv()["t"], "HELLO");
    let bomb = deflate(&vec![b' '; 10 << 20]);
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    ws.s.write_all(&masked_frame(0xc1, &bomb)).unwrap();
    assert_eq!(closed(&mut ws), (Some("Message too large (the limit is 65536 bytes).".into()), 4010));
}

#[test]
fn permessage_deflate_is_not_negotiated_when_turned_off() {
    let env = env_with(false);
    let (mut ws, head) = RawWs::connect_with(env.port, OFFER);
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{head}");
    assert_eq!(ws.recv()["t"], "HELLO");
    ws.s.write_all(&masked_frame(0xc1, &deflate(init().as_bytes()))).unwrap();
    assert_eq!(closed(&mut ws), (Some("WebSocket protocol error.".into()), 4012));
}
