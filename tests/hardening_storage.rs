//! Storage hardening: the byte bound on one user's storage, writes to a large map that do not
//! stall the owner shard, the body limit that fits every valid value, and over-limit bodies
//! refused before they are read. Real server (2 shards) and simulator, over real TCP.

mod support;

use lantern::discord::Snowflake;
use lantern::runtime::shard_of;
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::kv::{create_token, slash, value_body};
use support::Env;

/// The default `storage.max_user_bytes`.
const MAX_USER_BYTES: usize = 16 << 20;
/// The storage routes' request body limit.
const MAX_BODY: usize = 384 * 1024;

fn env() -> Env {
    Env::start(SimConfig { members: 40, seed: 29, heartbeat_interval_ms: 1000, ..SimConfig::default() }, 2)
}

/// Non-bot members owned by `shard` (of 2).
fn members_on(env: &Env, shard: usize) -> Vec<Snowflake> {
    env.sim
        .members()
        .iter()
        .map(|(m, _)| m)
        .filter(|m| !m.user.bot && m.user.id != env.sim.application_id() && shard_of(m.user.id, 2) == shard)
        .map(|m| m.user.id)
        .collect()
}

fn error(message: &str, code: &str) -> Value {
    json!({ "success": false, "error": message, "code": code })
}

fn put(port: u16, id: Snowflake, key: &str, value: &str, token: &str) -> support::Resp {
    support::request(port, "PUT", &format!("/api/v1/users/{id}/storage/{key}"), &[("Authorization", token)], &value_body(value))
}

/// 30,000 NUL characters: each one is written as `\u0000` (6 bytes) in the served JSON.
fn nuls() -> String {
    "\0".repeat(30_000)
}

/// The served size of `"kNN":"<30,000 NULs>"`.
const NUL_PAIR: usize = 6 + 2 + 30_000 * 6;
/// How many such pairs fit under the default bound: 2 + n × NUL_PAIR + (n - 1) commas.
const NUL_PAIRS: usize = (MAX_USER_BYTES - 1) / (NUL_PAIR + 1);

/// Fills `id`'s storage with [`NUL_PAIRS`] pairs `k00`.. of 30,000 NULs (just under the bound).
fn fill_near_the_bound(env: &Env, id: Snowflake, token: &str) {
    // A few writers at once, so that their commits are grouped.
    std::thread::scope(|s| {
        for w in 0..4 {
            let (port, token) = (env.port, token.to_owned());
            s.spawn(move || {
                for k in (w..NUL_PAIRS).step_by(4) {
                    let r = put(port, id, &format!("k{k:02}"), &nuls(), &token);
                    assert_eq!(r.status, 200, "k{k:02}: {}", r.text());
                }
            });
        }
    });
}

#[test]
fn a_write_past_the_storage_byte_bound_is_refused_over_rest_and_the_bot_and_changes_nothing() {
    let env = env();
    let id = members_on(&env, 0)[0];
    let token = create_token(&env.sim, id);
    fill_near_the_bound(&env, id, &token);
    let path = format!("/api/v1/users/{id}/storage");
    let before = env.get(&path);
    assert_eq!(before.status, 200);
    assert_eq!(before.body.len(), 2 + NUL_PAIRS * NUL_PAIR + (NUL_PAIRS - 1), "the bound counts the map as served");
    assert!(MAX_USER_BYTES - before.body.len() < NUL_PAIR);

    let full = error(&format!("A storage can hold at most {MAX_USER_BYTES} bytes of JSON."), "storage_too_large");
    let r = put(env.port, id, "onemore", &nuls(), &token);
    assert_eq!((r.status, r.json()), (400, full.clone()));
    // A PATCH that grows a pair past the bound is refused too; one that keeps its size is not.
    assert_eq!(put(env.port, id, "small", "", &token).status, 200);
    let patch = |key: &str, value: &str| {
        env.request("PATCH", &format!("{path}/{key}"), &[("Authorization", &token)], &value_body(value))
    };
    let r = patch("small", &nuls());
    assert_eq!((r.status, r.json()), (400, full));
    assert_eq!(patch("k00", &"\u{1}".repeat(30_000)).status, 200);
    assert_eq!(
        slash(&env.sim, id, &["create", "data"], &[("key", "botkey"), ("value", &nuls())]),
        format!("Your key-value storage is full: it can hold at most {MAX_USER_BYTES} bytes of JSON.")
    );

    // Nothing changed: the map, and the user object's copy of it.
    let mut expected = serde_json::from_slice::<Value>(&before.body).unwrap();
    expected["small"] = json!("");
    expected["k00"] = json!("\u{1}".repeat(30_000));
    let after = env.get(&path);
    assert_eq!(after.json(), expected);
    assert_eq!(after.body.len(), before.body.len() + r#","small":"""#.len());
    assert_eq!(env.get(&format!("/api/v1/users/{id}")).json()["storage"], expected);

    // Room made by a delete is usable at once.
    assert_eq!(env.request("DELETE", &format!("{path}/k01"), &[("Authorization", &token)], b"").status, 200);
    assert_eq!(put(env.port, id, "onemore", &nuls(), &token).status, 200);
}

#[test]
fn writes_to_a_map_at_the_byte_bound_do_not_stall_other_users_gets_on_the_owner_shard() {
    let env = env();
    let on_zero = members_on(&env, 0);
    let (big, other) = (on_zero[0], on_zero[1]);
    let token = create_token(&env.sim, big);
    fill_near_the_bound(&env, big, &token);

    let done = std::sync::atomic::AtomicBool::new(false);
    let slowest = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (port, token) = (env.port, token.clone());
                s.spawn(move || {
                    for i in 0..12 {
                        // Each write replaces a different pair with one of the same size (`\u0001`
                        // for `\u0000`), so the map changes every time and stays at the bound.
                        let r = put(port, big, &format!("k{:02}", w * 12 + i), &"\u{1}".repeat(30_000), &token);
                        assert_eq!(r.status, 200, "{}", r.text());
                    }
                })
            })
            .collect();
        let (port, done) = (env.port, &done);
        let reader = s.spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut gets = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || gets < 20 {
                let t = Instant::now();
                let r = support::request(port, "GET", &format!("/api/v1/users/{other}"), &[], b"");
                slowest = slowest.max(t.elapsed());
                assert_eq!(r.status, 200);
                gets += 1;
            }
            slowest
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap()
    });
    // Other users' reads take about a millisecond, and a write a few (debug build); a write
    // that re-serialized the whole map held the owner shard for most of a second, and such
    // GETs took up to 4 s.
    assert!(slowest < Duration::from_secs(1), "a GET of another user on the owner shard took {slowest:?}");
    let map = env.get(&format!("/api/v1/users/{big}/storage")).json();
    assert!((0..48).all(|k| map[format!("k{k:02}")] == json!("\u{1}".repeat(30_000))));
    assert_eq!(env.get(&format!("/api/v1/users/{big}")).json()["storage"], map);
}

#[test]
fn a_30000_character_value_written_as_surrogate_pair_escapes_fits_the_body_limit() {
    let env = env();
    let id = members_on(&env, 1)[0];
    let token = create_token(&env.sim, id);
    let path = format!("/api/v1/users/{id}/storage");
    // The worst case: every character outside the BMP, each as a `\uXXXX\uXXXX` pair.
    let body = format!("{{ \"value\" : \"{}\" }}", r"\ud83d\ude00".repeat(30_000));
    assert_eq!(body.len(), 360_016);
    let r = env.request("PUT", &format!("{path}/smile"), &[("Authorization", &token)], body.as_bytes());
    assert_eq!((r.status, r.text()), (200, r#"{"success":true}"#.to_owned()));
    let r = env.get(&format!("{path}/smile"));
    assert_eq!((r.status, r.text()), (200, format!(r#"{{"value":"{}"}}"#, "😀".repeat(30_000))));

    // The limit itself, with whitespace to spare, and one byte past it.
    let mut padded = body.into_bytes();
    padded.resize(MAX_BODY, b' ');
    assert_eq!(env.request("PUT", &format!("{path}/padded"), &[("Authorization", &token)], &padded).status, 200);
    padded.push(b' ');
    let r = env.request("PUT", &format!("{path}/padded2"), &[("Authorization", &token)], &padded);
    assert_eq!((r.status, r.json()), (413, error(&format!("Request body must not exceed {MAX_BODY} bytes."), "payload_too_large")));
}

/// Sends `head` (and `body`) on a fresh connection and reads until the server closes it or
/// `within` passes; returns what arrived and whether the connection was closed.
fn raw_exchange(port: u16, head: &str, body: &[u8], within: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let deadline = Instant::now() + within;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer also ends the connection.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break false,
            Err(e) => panic!("read: {e}"),
        }
    };
    (String::from_utf8_lossy(&raw).into_owned(), closed)
}

/// Checks a raw answer: a 413 in the error shape that closes the connection, and nothing before it.
fn assert_refused_at_once(raw: &str, closed: bool) {
    assert!(raw.starts_with("HTTP/1.1 413 "), "expected an immediate 413, got {raw:?}");
    assert!(!raw.contains("100 Continue"), "{raw:?}");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.to_ascii_lowercase().contains("\r\nconnection: close"), "{head}");
    assert_eq!(serde_json::from_str::<Value>(body).unwrap(), error(&format!("Request body must not exceed {MAX_BODY} bytes."), "payload_too_large"));
    assert!(closed, "the connection stays open after the 413: {raw:?}");
}

#[test]
fn an_over_limit_content_length_with_expect_100_continue_gets_413_at_once_and_no_100_continue() {
    let env = env();
    let id = members_on(&env, 1)[0];
    let head = format!(
        "PUT /api/v1/users/{id}/storage/k HTTP/1.1\r\nHost: x\r\nAuthorization: t\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 1000000000\r\n\r\n"
    );
    let (raw, closed) = raw_exchange(env.port, &head, b"", Duration::from_secs(10));
    assert_refused_at_once(&raw, closed);
}

#[test]
fn an_over_limit_content_length_gets_413_before_any_of_the_body_arrives() {
    let env = env();
    let id = members_on(&env, 1)[0];
    let head = format!("PUT /api/v1/users/{id}/storage/k HTTP/1.1\r\nHost: x\r\nAuthorization: t\r\nContent-Length: 1000000000\r\n\r\n");
    let (raw, closed) = raw_exchange(env.port, &head, b"", Duration::from_secs(10));
    assert_refused_at_once(&raw, closed);
}

#[test]
fn a_chunked_body_is_cut_at_the_limit_and_refused_without_waiting_for_the_rest() {
    let env = env();
    let id = members_on(&env, 1)[0];
    let head = format!("PATCH /api/v1/users/{id}/storage/k HTTP/1.1\r\nHost: x\r\nAuthorization: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    // One byte past the limit, in a chunk that goes on, and no last chunk.
    let mut body = format!("{:x}\r\n", MAX_BODY + 1000).into_bytes();
    body.resize(body.len() + MAX_BODY + 1, b' ');
    let (raw, closed) = raw_exchange(env.port, &head, &body, Duration::from_secs(10));
    assert_refused_at_once(&raw, closed);
}
