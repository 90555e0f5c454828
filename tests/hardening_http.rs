//! HTTP hardening against the real server (2 shards) and the simulator, over real TCP: the
//! deadline for a request's headers, the per-address connection cap, upgrade requests to other
//! paths, and ids with leading zeros.

mod support;

use lantern::config::Config;
use lantern::discord::{Member, Snowflake, User};
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{request, wait_for, Env, Resp, DEADLINE};
use tungstenite::{Message, WebSocket};

/// A monitored user whose id has 18 digits, so that a leading zero still gives 19 characters.
const SHORT: Snowflake = Snowflake(135_978_639_193_315_726);
const ALICE: Snowflake = Snowflake(1_300_000_000_000_000_001);

fn member(id: Snowflake, name: &str) -> Member {
    Member {
        user: User { id, username: name.into(), discriminator: "0".into(), ..Default::default() },
        joined_at: Some("2022-01-01T10:00:00.000000+00:00".into()),
        ..Default::default()
    }
}

fn env_with(tweak: impl Fn(&mut Config) + 'static) -> Env {
    Env::start_tweaked(
        SimConfig { members: 10, seed: 3, heartbeat_interval_ms: 1000, ..SimConfig::default() },
        2,
        |sim| {
            sim.add_member(member(SHORT, "short"), None);
            sim.add_member(member(ALICE, "alice"), None);
        },
        tweak,
    )
}

fn connect(env: &Env) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", env.port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Reads one response (head and a `Content-Length` body) from a keep-alive connection.
fn read_response(s: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("a response before the deadline");
        assert_eq!(n, 1, "the connection closed mid-response: {}", String::from_utf8_lossy(&raw));
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw.clone()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    raw.extend_from_slice(&body);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    Resp { status, headers, body: raw[split + 4..].to_vec() }
}

/// Keeps sending one byte of header every `every` until the server closes the connection (or
/// the deadline passes); returns everything the server sent.
fn dribble_until_closed(s: &mut TcpStream, every: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(every)).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    let mut writing = true;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if writing && s.write_all(b"a").is_err() {
            writing = false;
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(got),
        }
    }
    None
}

const SLOW_HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";

fn error_body(message: &str, code: &str) -> Value {
    json!({"success": false, "error": message, "code": code})
}

fn assert_timed_out(raw: &[u8]) {
    let r = parse(raw);
    assert_eq!(r.status, 408, "{}", String::from_utf8_lossy(raw));
    assert_eq!(r.json(), error_body("The request headers were not received in time.", "request_timeout"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_deadline() {
    // Each byte comes well within the idle timeout; only a deadline for the whole head ends it.
    let env = env_with(|c| c.server.header_timeout = Duration::from_millis(300));
    let mut s = connect(&env);
    s.write_all(SLOW_HEAD).unwrap();
    let got = dribble_until_closed(&mut s, Duration::from_millis(50)).expect("the server closed the slow connection");
    assert_timed_out(&got);
    assert_eq!(env.get("/health").status, 200);
}

#[test]
fn a_slow_request_pipelined_behind_a_complete_one_is_cut_off_at_the_header_deadline() {
    let env = env_with(|c| c.server.header_timeout = Duration::from_millis(300));
    let mut s = connect(&env);
    let mut both = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    both.extend_from_slice(SLOW_HEAD);
    s.write_all(&both).unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    let got = dribble_until_closed(&mut s, Duration::from_millis(50)).expect("the server closed the slow connection");
    assert_timed_out(&got);
}

#[test]
fn idle_keep_alive_between_requests_is_not_cut_by_the_header_deadline() {
    let env = env_with(|c| c.server.header_timeout = Duration::from_millis(200));
    let mut s = connect(&env);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    // Not synchronisation: the idle gap itself is what is tested (five header deadlines long).
    std::thread::sleep(Duration::from_millis(1000));
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
}

/// The server's stop closes an idle keep-alive connection at once instead of waiting out the
/// grace period for it (here far longer than the test may run).
#[test]
fn stopping_closes_an_idle_keep_alive_connection_without_waiting_out_the_grace_period() {
    let mut env = env_with(|c| c.server.shutdown_grace = Duration::from_secs(3600));
    let mut s = connect(&env);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    let server = env.server.take().unwrap();
    let stopping = std::thread::spawn(move || server.shutdown());
    // The end of the stream, before the read timeout (DEADLINE) runs out.
    let mut byte = [0u8; 1];
    assert_eq!(s.read(&mut byte).expect("the connection closed while the server stopped"), 0);
    stopping.join().unwrap();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let env = env_with(|c| c.server.header_timeout = Duration::from_millis(200));
    let mut s = connect(&env);
    s.write_all(format!("GET /api/v1/users/{ALICE} HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let first = read_response(&mut s);
    assert_eq!((first.status, first.json()["metadata"]["id"].clone()), (200, json!(ALICE.to_string())));
    assert_eq!(read_response(&mut s).status, 404);
    assert_eq!(read_response(&mut s).status, 200);
}

#[test]
fn a_body_the_route_never_reads_does_not_reset_the_connection() {
    // A DELETE without a token is answered 401 without its body being read. The server must
    // go on reading (and discarding) the body until the client is done: a socket closed with
    // unread bytes is reset by the kernel, and the client then loses the end of the exchange.
    let env = env_with(|_| {});
    let mut s = connect(&env);
    let body = vec![b' '; 1 << 20];
    let head = format!("DELETE /api/v1/users/{ALICE}/storage HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let sent = writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&body));
        let _ = writer.shutdown(std::net::Shutdown::Write);
        sent
    });
    let r = read_response(&mut s);
    assert_eq!((r.status, r.json()), (401, error_body("Unauthorized.", "unauthorized")));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the connection ends with a close, not a reset");
    assert_eq!(rest, b"", "nothing follows the answer");
    sender.join().unwrap().expect("the whole body was taken");
}

/// A keep-alive connection that has been served once (so the server counts it).
fn served(env: &Env) -> TcpStream {
    let mut s = connect(env);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    s
}

fn assert_too_many(r: &Resp) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json(), error_body("Too many connections from your address.", "too_many_connections"));
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn plain_http_connections_over_the_per_address_cap_get_429_too_many_connections() {
    let env = env_with(|c| c.server.max_connections_per_ip = 3);
    let held: Vec<TcpStream> = (0..3).map(|_| served(&env)).collect();
    // Refusals take no slot and give none back.
    for _ in 0..3 {
        assert_too_many(&env.get("/health"));
    }
    drop(held);
    assert!(wait_for(DEADLINE, || env.get("/health").status == 200), "a slot is free again once a connection closes");
}

fn ws_connect(env: &Env, path: &str) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
    let stream = connect(env);
    tungstenite::client(format!("ws://127.0.0.1:{}{path}", env.port), stream).map(|(ws, _)| ws).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("handshake interrupted"),
    })
}

fn ws_recv(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match ws.read().expect("a frame before the deadline") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

#[test]
fn a_websocket_holds_one_slot_of_the_per_address_connection_cap() {
    let env = env_with(|c| c.server.max_connections_per_ip = 2);
    let mut ws = ws_connect(&env, "/socket").unwrap();
    assert_eq!(ws_recv(&mut ws)["t"], "HELLO");
    // Initialized at once, so that the init timeout cannot end it during the test.
    ws.send(Message::text(json!({"op":2,"d":{"user_id":ALICE.to_string()}}).to_string())).unwrap();
    assert_eq!(ws_recv(&mut ws)["t"], "INIT_ACK");
    // The WebSocket and one plain connection fit in two slots: the upgrade took no second one.
    let plain = served(&env);
    assert_too_many(&env.get("/health"));
    match ws_connect(&env, "/socket") {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("a third connection upgraded: {:?}", other.map(|_| ())),
    }
    ws.send(Message::text(json!({"op":4}).to_string())).unwrap();
    assert_eq!(ws_recv(&mut ws)["t"], "HEARTBEAT_ACK", "the WebSocket still works");
    drop(ws);
    assert!(wait_for(DEADLINE, || env.get("/health").status == 200), "the WebSocket's slot is released when it closes");
    drop(plain);
}

#[test]
fn a_websocket_upgrade_to_a_path_other_than_socket_gets_404() {
    let env = env_with(|_| {});
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    for path in ["/health", "/", "/api/v1/users", &format!("/api/v1/users/{ALICE}")] {
        let r = request(env.port, "GET", path, &upgrade, b"");
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.json(), error_body("Resource not found.", "not_found"), "{path}");
    }
    match ws_connect(&env, "/health") {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("upgraded on /health: {:?}", other.map(|_| ())),
    }
    // `/socket` still upgrades.
    let mut ws = ws_connect(&env, "/socket").unwrap();
    assert_eq!(ws_recv(&mut ws)["t"], "HELLO");
}

#[test]
fn ids_with_a_leading_zero_are_invalid_everywhere() {
    let env = env_with(|_| {});
    assert_eq!(env.get(&format!("/api/v1/users/{SHORT}")).status, 200, "the user itself is monitored");
    let padded = format!("0{SHORT}");
    assert_eq!(padded.len(), 19);
    let invalid_id = error_body("user_id must be a number.", "invalid_user_id");
    for path in [
        format!("/api/v1/users/{padded}"),
        "/api/v1/users/00000000000000000".to_string(),
        format!("/api/v1/users/{padded}?svg=1"),
        format!("/api/v1/users/{padded}/storage"),
        format!("/api/v1/users/{padded}/storage/key"),
    ] {
        let r = env.get(&path);
        assert_eq!((r.status, r.json()), (400, invalid_id.clone()), "{path}");
    }
    let invalid_list = error_body("user_ids must be an array of strings with 17-19 characters long.", "invalid_user_ids");
    for query in [format!("user_ids={padded}"), format!("user_ids={ALICE}&user_ids={padded}"), format!("user_ids={ALICE},00000000000000000")] {
        let r = env.get(&format!("/api/v1/users?{query}"));
        assert_eq!((r.status, r.json()), (400, invalid_list.clone()), "{query}");
    }

    // WebSocket INIT (a DISCONNECT with 4002) and SUBSCRIBE (an ERROR).
    for (d, reason) in [
        (json!({"user_id": padded}), "user_id must be a number."),
        (json!({"user_ids": [ALICE.to_string(), padded]}), "user_ids must be an array of strings with 17-19 characters long."),
    ] {
        let mut ws = ws_connect(&env, "/socket").unwrap();
        assert_eq!(ws_recv(&mut ws)["t"], "HELLO");
        ws.send(Message::text(json!({"op":2,"d":d}).to_string())).unwrap();
        assert_eq!(ws_recv(&mut ws), json!({"t":"DISCONNECT","op":9,"d":{"reason":reason,"error":reason}}));
    }
    let mut ws = ws_connect(&env, "/socket").unwrap();
    assert_eq!(ws_recv(&mut ws)["t"], "HELLO");
    ws.send(Message::text(json!({"op":2,"d":{"user_id":ALICE.to_string()}}).to_string())).unwrap();
    assert_eq!(ws_recv(&mut ws)["t"], "INIT_ACK");
    ws.send(Message::text(json!({"op":12,"d":{"user_id":padded}}).to_string())).unwrap();
    assert_eq!(ws_recv(&mut ws), json!({"t":"ERROR","op":11,"d":"user_id must be a number."}));
}
