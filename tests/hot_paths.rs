//! The REST and ingest hot paths keep their behaviour: the same bodies however they are asked
//! for (plain, gzip from the per-version cache, in a bulk answer, over the WebSocket), the
//! cached gzip following the user's changes, and an unchanged PRESENCE_UPDATE producing no
//! WebSocket frame. Real server (2 shards) and simulator over real TCP.

mod support;

use lantern::discord::{Activity, ClientStatus, Member, PartialUser, Presence, Snowflake, Status, Timestamps, User};
use lantern::runtime::shard_of;
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::net::TcpStream;
use support::{wait_for, Env, DEADLINE};
use tungstenite::{Message, WebSocket};

const ALICE: Snowflake = Snowflake(1_300_000_000_000_000_001);

fn small() -> SimConfig {
    SimConfig { members: 20, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() }
}

/// A member on the other shard from Alice, so that both local and cross-shard reads are seen.
fn bob() -> Snowflake {
    (2..100).map(|i| Snowflake(1_300_000_000_000_000_000 + i)).find(|b| shard_of(*b, 2) != shard_of(ALICE, 2)).unwrap()
}

fn member(id: Snowflake, name: &str) -> Member {
    Member {
        user: User { id, username: name.into(), discriminator: "0".into(), global_name: Some(format!("{name} the tester")), ..Default::default() },
        joined_at: Some("2022-01-01T10:00:00.000000+00:00".into()),
        ..Default::default()
    }
}

/// Playing a game with a long description: the object is well over the gzip threshold.
fn playing(id: Snowflake, details: &str) -> Presence {
    Presence {
        user: PartialUser { id, ..Default::default() },
        status: Status::Online,
        client_status: ClientStatus { desktop: Some(Status::Online), ..Default::default() },
        activities: vec![Activity {
            name: "Chess".into(),
            kind: 0,
            created_at: Some(1_700_000_000_000),
            details: Some(details.into()),
            state: Some("A long state line that makes the user object large enough to compress ".repeat(8).into()),
            timestamps: Some(Timestamps { start: Some(1_700_000_000_000), end: None }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn env() -> Env {
    let bob = bob();
    Env::start_with(small(), 2, |sim| {
        sim.add_member(member(ALICE, "alice"), Some(playing(ALICE, "Ranked")));
        sim.add_member(member(bob, "bob"), Some(playing(bob, "Casual")));
    })
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut plain).expect("a gzip body");
    plain
}

fn gzip_get(env: &Env, path: &str) -> support::Resp {
    env.request("GET", path, &[("Accept-Encoding", "gzip")], b"")
}

#[test]
fn the_user_object_is_the_same_bytes_plain_gzipped_in_bulk_and_on_both_shards() {
    let env = env();
    let bob = bob();
    for id in [ALICE, bob] {
        let path = format!("/api/v1/users/{id}");
        let plain = env.get_until(&path, |r| r.status == 200);
        assert_eq!(plain.header("content-type"), Some("application/json; charset=utf-8"));
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        assert!(plain.body.len() > 1024, "over the gzip threshold: {}", plain.body.len());
        // Twice: the second answer comes from the cache and must be the same.
        for _ in 0..2 {
            let z = gzip_get(&env, &path);
            assert_eq!(z.status, 200);
            assert_eq!(z.header("content-encoding"), Some("gzip"));
            assert_eq!(z.header("vary"), Some("Accept-Encoding"));
            assert_eq!(z.header("content-type"), Some("application/json; charset=utf-8"));
            assert_eq!(z.header("access-control-allow-origin"), Some("*"));
            assert!(z.header("x-lantern-shard").is_some_and(|s| s == "0" || s == "1"), "the shard that answered");
            assert_eq!(gunzip(&z.body), plain.body, "{id}: gzip decodes to the plain body");
        }
    }
    let a = env.get(&format!("/api/v1/users/{ALICE}")).body;
    let b = env.get(&format!("/api/v1/users/{bob}")).body;
    let bulk = env.get(&format!("/api/v1/users?user_ids={ALICE},{bob}"));
    assert_eq!(bulk.status, 200);
    let mut expected = b"[".to_vec();
    expected.extend_from_slice(&a);
    expected.push(b',');
    expected.extend_from_slice(&b);
    expected.push(b']');
    assert_eq!(bulk.body, expected, "the bulk answer is the single objects, byte for byte");
    let zbulk = gzip_get(&env, &format!("/api/v1/users?user_ids={ALICE},{bob}"));
    assert_eq!(zbulk.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&zbulk.body), expected);
}

#[test]
fn the_cached_gzip_body_changes_when_the_user_changes() {
    let env = env();
    let path = format!("/api/v1/users/{ALICE}");
    let plain_before = env.get_until(&path, |r| r.status == 200 && r.text().contains("Ranked"));
    let before = gunzip(&gzip_get(&env, &path).body);
    assert_eq!(before, plain_before.body);
    env.sim.set_presence(playing(ALICE, "Tournament"));
    let plain = env.get_until(&path, |r| r.text().contains("Tournament"));
    let z = gzip_get(&env, &path);
    assert_eq!(z.header("content-encoding"), Some("gzip"));
    let after = gunzip(&z.body);
    assert_ne!(after, before, "a new version is compressed anew");
    assert_eq!(after, plain.body, "and decodes to the new plain object");
    let v: Value = serde_json::from_slice(&after).unwrap();
    assert_eq!(v["activities"][0]["details"], "Tournament");
}

/// An object under the gzip threshold is served plain even when gzip is accepted.
#[test]
fn a_small_user_object_is_served_plain_even_when_gzip_is_accepted() {
    let env = Env::start_with(small(), 2, |sim| sim.add_member(member(ALICE, "al"), None));
    let path = format!("/api/v1/users/{ALICE}");
    let plain = env.get_until(&path, |r| r.status == 200);
    assert!(plain.body.len() < 1024, "{}", plain.body.len());
    let z = gzip_get(&env, &path);
    assert_eq!(z.header("content-encoding"), None);
    assert_eq!(z.header("vary"), Some("Accept-Encoding"));
    assert_eq!(z.body, plain.body);
}

struct Ws {
    ws: WebSocket<TcpStream>,
}

impl Ws {
    fn connect(env: &Env) -> Ws {
        let stream = TcpStream::connect(("127.0.0.1", env.port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{}/socket", env.port), stream).map_err(|_| "handshake").unwrap();
        let mut c = Ws { ws };
        assert_eq!(c.recv()["op"], 1, "hello");
        c
    }

    fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    fn recv(&mut self) -> Value {
        loop {
            match self.ws.read().expect("a frame before the deadline") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }
}

#[test]
fn an_unchanged_presence_update_sends_no_websocket_frame() {
    let env = env();
    let path = format!("/api/v1/users/{ALICE}");
    env.get_until(&path, |r| r.status == 200);
    let mut c = Ws::connect(&env);
    c.send(json!({"op":2,"d":{"user_id": ALICE.to_string()}}));
    assert_eq!(c.recv()["t"], "INIT_ACK");

    env.sim.set_presence(playing(ALICE, "Blitz"));
    let first = c.recv();
    assert_eq!((first["t"].as_str(), first["d"]["activities"][0]["details"].as_str()), (Some("PRESENCE_UPDATE"), Some("Blitz")), "{first}");
    // The same presence again, twice: nothing a client sees changes.
    env.sim.set_presence(playing(ALICE, "Blitz"));
    env.sim.set_presence(playing(ALICE, "Blitz"));
    assert!(wait_for(DEADLINE, || env.get(&path).status == 200));
    // A real change after them: it is the very next frame.
    env.sim.set_presence(playing(ALICE, "Bullet"));
    let next = c.recv();
    assert_eq!(next["d"]["activities"][0]["details"], "Bullet", "no frame for the unchanged presences: {next}");
    assert_eq!(env.get(&path).json()["activities"][0]["details"], "Bullet");
}
