//! The Lanyard dialect of `/socket` against the real server (2 shards) and the simulator, with
//! a real WebSocket client over TCP: every op, each INIT_STATE shape, the close codes, a
//! dialect switch, PRESENCE_UPDATE on presence and KV changes (beside a Lantern subscriber on
//! the same server), `_all` and a member who joins later, and `?compression=zlib_json`.

mod support;

use lantern::discord::{ClientStatus, Member, PartialUser, Presence, Snowflake, Status, User};
use lantern::runtime::shard_of;
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::io::Read;
use std::net::TcpStream;
use support::kv::{create_token, value_body};
use support::{Env, DEADLINE};
use tungstenite::{Message, WebSocket};

/// Two monitored users with different owner shards.
fn pair() -> (Snowflake, Snowflake) {
    let a = Snowflake(1_300_000_000_000_000_001);
    let b = (2..100).map(|i| Snowflake(1_300_000_000_000_000_000 + i)).find(|b| shard_of(*b, 2) != shard_of(a, 2)).unwrap();
    (a, b)
}

const UNKNOWN: Snowflake = Snowflake(1_300_000_000_000_000_999);

fn member(id: Snowflake, name: &str) -> Member {
    Member {
        user: User { id, username: name.into(), discriminator: "0".into(), ..Default::default() },
        joined_at: Some("2022-01-01T10:00:00.000000+00:00".into()),
        ..Default::default()
    }
}

fn presence(id: Snowflake, status: Status) -> Presence {
    Presence {
        user: PartialUser { id, ..Default::default() },
        status,
        client_status: ClientStatus { desktop: Some(status), ..Default::default() },
        ..Default::default()
    }
}

fn env() -> Env {
    let (a, b) = pair();
    Env::start_with(SimConfig { members: 10, seed: 7, heartbeat_interval_ms: 1000, ..SimConfig::default() }, 2, |sim| {
        sim.add_member(member(a, "alice"), None);
        sim.add_member(member(b, "bob"), None);
    })
}

/// Lanyard's presence of `id` as the REST dialect serves it.
fn lanyard(env: &Env, id: Snowflake) -> Value {
    env.get(&format!("/v1/users/{id}")).json()["data"].clone()
}

fn event(t: &str, d: Value) -> Value {
    json!({"op": 0, "t": t, "d": d})
}

struct Client {
    ws: WebSocket<TcpStream>,
}

impl Client {
    fn connect_path(env: &Env, path: &str) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", env.port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        // Messages that get no answer are not held back by Nagle waiting for an ACK.
        stream.set_nodelay(true).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{}{path}", env.port), stream).unwrap_or_else(|_| panic!("upgrade"));
        Client { ws }
    }

    fn connect(env: &Env) -> Client {
        Client::connect_path(env, "/socket")
    }

    /// Connects and reads HELLO.
    fn hello(env: &Env) -> Client {
        let mut c = Client::connect(env);
        assert_eq!(c.recv()["op"], 1);
        c
    }

    fn send(&mut self, v: Value) {
        self.send_text(&v.to_string());
    }

    fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }

    /// The next message: a text frame's JSON, or a binary frame inflated as a zlib stream.
    fn recv_raw(&mut self) -> (bool, String) {
        loop {
            match self.ws.read().expect("a frame before the deadline") {
                Message::Text(t) => return (false, t.as_str().to_owned()),
                Message::Binary(b) => {
                    assert_eq!(&b[..2], &[0x78, 0x9c], "a zlib header");
                    let mut text = String::new();
                    flate2::read::ZlibDecoder::new(&b[..]).read_to_string(&mut text).expect("a whole zlib stream");
                    return (true, text);
                }
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    fn recv(&mut self) -> Value {
        let (_, text) = self.recv_raw();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The next PRESENCE_UPDATE of a Lanyard connection whose user is `id`.
    fn update_of(&mut self, id: Snowflake) -> Value {
        loop {
            let v = self.recv();
            assert_eq!((v["op"].as_u64(), v["t"].as_str()), (Some(0), Some("PRESENCE_UPDATE")), "{v}");
            if v["d"]["discord_user"]["id"] == id.to_string() {
                return v;
            }
        }
    }

    /// Reads until the close frame; returns its code and reason, and whether any message came
    /// before it.
    fn closed(&mut self) -> (u16, String, bool) {
        let mut messages = false;
        loop {
            match self.ws.read() {
                Ok(Message::Close(Some(f))) => return (u16::from(f.code), f.reason.as_str().to_owned(), messages),
                Ok(Message::Close(None)) => return (1005, String::new(), messages),
                Ok(Message::Text(_)) | Ok(Message::Binary(_)) => messages = true,
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    }

    fn subscribe(&mut self, d: Value) -> Value {
        self.send(json!({"op": 2, "d": d}));
        let v = self.recv();
        assert_eq!((v["op"].as_u64(), v["t"].as_str()), (Some(0), Some("INIT_STATE")), "{v}");
        v["d"].clone()
    }
}

#[test]
fn init_state_for_one_user_is_its_presence_and_an_empty_object_when_unmonitored() {
    let env = env();
    let (a, _) = pair();
    let mut c = Client::hello(&env);
    c.send(json!({"op": 2, "d": {"subscribe_to_id": a.to_string()}}));
    assert_eq!(c.recv(), event("INIT_STATE", lanyard(&env, a)));
    for id in [UNKNOWN.to_string(), "not-an-id".to_string()] {
        let mut u = Client::hello(&env);
        u.send(json!({"op": 2, "d": {"subscribe_to_id": id}}));
        assert_eq!(u.recv(), event("INIT_STATE", json!({})));
    }
}

#[test]
fn init_state_for_ids_maps_monitored_users_and_omits_the_others() {
    let env = env();
    let (a, b) = pair();
    let mut c = Client::hello(&env);
    let d = c.subscribe(json!({"subscribe_to_ids": [a.to_string(), UNKNOWN.to_string(), b.to_string()]}));
    assert_eq!(d, json!({a.to_string(): lanyard(&env, a), b.to_string(): lanyard(&env, b)}));
}

#[test]
fn init_state_for_all_maps_every_monitored_user_of_every_shard() {
    let env = env();
    let mut c = Client::hello(&env);
    let d = c.subscribe(json!({"subscribe_to_all": true}));
    let mut expected = serde_json::Map::new();
    for (m, _) in env.sim.members() {
        let r = env.get(&format!("/v1/users/{}", m.user.id));
        if r.status == 200 {
            expected.insert(m.user.id.to_string(), r.json()["data"].clone());
        }
    }
    assert!(expected.len() >= 12, "both shards' users");
    assert_eq!(d, Value::Object(expected));
}

#[test]
fn op2_sent_before_reading_hello_is_answered_after_it() {
    let env = env();
    let (a, _) = pair();
    let mut c = Client::connect(&env);
    c.send(json!({"op": 2, "d": {"subscribe_to_id": a.to_string()}}));
    assert_eq!(c.recv(), json!({"t": "HELLO", "op": 1, "d": {"heartbeat_interval": 30000}}));
    assert_eq!(c.recv(), event("INIT_STATE", lanyard(&env, a)));
}

#[test]
fn repeated_op2_accumulates_subscriptions_and_updates_carry_no_top_level_id() {
    let env = env();
    let (a, b) = pair();
    let mut c = Client::hello(&env);
    assert_eq!(c.subscribe(json!({"subscribe_to_id": a.to_string()})), lanyard(&env, a));
    assert_eq!(c.subscribe(json!({"subscribe_to_ids": [b.to_string(), a.to_string()]})), json!({a.to_string(): lanyard(&env, a), b.to_string(): lanyard(&env, b)}));
    for (id, status) in [(a, Status::Online), (b, Status::Dnd), (a, Status::Idle)] {
        env.sim.set_presence(presence(id, status));
        let u = c.update_of(id);
        assert_eq!(u.as_object().unwrap().len(), 3, "op, t and d only: {u}");
        assert_eq!(u["d"]["discord_status"], json!(format!("{status:?}").to_lowercase()));
        assert_eq!(u, event("PRESENCE_UPDATE", lanyard(&env, id)));
    }
}

#[test]
fn heartbeats_get_no_answer_and_each_unsubscribe_form_stops_updates_silently() {
    let env = env();
    let (a, b) = pair();
    // unsubscribe_from_id
    let mut c = Client::hello(&env);
    c.subscribe(json!({"subscribe_to_ids": [a.to_string(), b.to_string()]}));
    c.send(json!({"op": 3}));
    c.send(json!({"op": 4, "d": {"unsubscribe_from_id": a.to_string()}}));
    c.send(json!({"op": 4, "d": {"unsubscribe_from_id": UNKNOWN.to_string()}}));
    c.send(json!({"op": 4}));
    // unsubscribe_from_ids
    let mut m = Client::hello(&env);
    m.subscribe(json!({"subscribe_to_ids": [a.to_string(), b.to_string()]}));
    m.send(json!({"op": 4, "d": {"unsubscribe_from_ids": [a.to_string(), UNKNOWN.to_string()]}}));
    // unsubscribe_from_all leaves the All list; an id subscription stays.
    let mut all = Client::hello(&env);
    all.subscribe(json!({"subscribe_to_all": true}));
    all.subscribe(json!({"subscribe_to_id": b.to_string()}));
    all.send(json!({"op": 4, "d": {"unsubscribe_from_all": true}}));
    // Each connection's next message answers a later op 2: nothing answered the heartbeat or
    // the unsubscribes, which were applied in order.
    for client in [&mut c, &mut m, &mut all] {
        assert_eq!(client.subscribe(json!({"subscribe_to_id": UNKNOWN.to_string()})), json!({}));
    }
    // A change to a, then to b: each connection's next message is b's update (a's change did
    // not reach them). A subscriber of a proves a's change was published before b's.
    let mut witness = Client::hello(&env);
    witness.subscribe(json!({"subscribe_to_id": a.to_string()}));
    env.sim.set_presence(presence(a, Status::Dnd));
    witness.update_of(a);
    env.sim.set_presence(presence(b, Status::Idle));
    for (name, client) in [("_id", &mut c), ("_ids", &mut m), ("_all", &mut all)] {
        let u = client.recv();
        assert_eq!(u, event("PRESENCE_UPDATE", lanyard(&env, b)), "unsubscribe_from{name}");
    }
}

#[test]
fn refusals_close_with_lanyards_codes_and_reasons() {
    let env = env();
    let (a, _) = pair();
    let cases: [(Option<Value>, &str, u16, &str); 7] = [
        // A bare op 2 is Lantern's until the connection speaks Lanyard.
        (Some(json!({"subscribe_to_id": a.to_string()})), r#"{"op":2}"#, 4005, "requires_data_object"),
        (Some(json!({"subscribe_to_id": a.to_string()})), r#"{"op":2,"d":[1]}"#, 4005, "requires_data_object"),
        (None, r#"{"op":2,"d":{"subscribe_to_ids":"x"}}"#, 4006, "invalid_payload"),
        (None, r#"{"op":2,"d":{"subscribe_to_all":false,"subscribe_to_id":5}}"#, 4006, "invalid_payload"),
        (Some(json!({"subscribe_to_id": a.to_string()})), r#"{"op":7}"#, 4004, "unknown_opcode"),
        (Some(json!({"subscribe_to_id": a.to_string()})), r#"{"d":{}}"#, 4004, "unknown_opcode"),
        (Some(json!({"subscribe_to_id": a.to_string()})), "not json", 4006, "invalid_payload"),
    ];
    for (first, text, code, reason) in cases {
        let mut c = Client::hello(&env);
        if let Some(d) = first {
            c.subscribe(d);
        }
        c.send_text(text);
        assert_eq!(c.closed(), (code, reason.to_owned(), false), "{text}");
    }
    // An empty `d` on a connection that already speaks Lanyard.
    let mut c = Client::hello(&env);
    c.subscribe(json!({"subscribe_to_id": a.to_string()}));
    c.send(json!({"op": 2, "d": {}}));
    assert_eq!(c.closed(), (4005, "requires_data_object".to_owned(), false));
}

#[test]
fn a_dialect_switch_is_refused() {
    let env = env();
    let (a, _) = pair();
    // Lanyard first: a Lantern INIT is an invalid payload.
    let mut c = Client::hello(&env);
    c.subscribe(json!({"subscribe_to_id": a.to_string()}));
    c.send(json!({"op": 2, "d": {"user_id": a.to_string()}}));
    assert_eq!(c.closed(), (4006, "invalid_payload".to_owned(), false));
    // Lantern first: a Lanyard op 2 gets Lantern's existing refusal of its payload.
    let mut l = Client::hello(&env);
    l.send(json!({"op": 2, "d": {"user_id": a.to_string()}}));
    assert_eq!(l.recv()["t"], "INIT_ACK");
    l.send(json!({"op": 2, "d": {"subscribe_to_id": a.to_string()}}));
    let reason = "Either user_ids or user_id must be provided.";
    assert_eq!(l.recv(), json!({"t": "DISCONNECT", "op": 9, "d": {"reason": reason, "error": reason}}));
    assert_eq!(l.closed().0, 4002);
}

/// The next Lantern frame named `t`, skipping others.
fn lantern_next(c: &mut Client, t: &str) -> Value {
    loop {
        let v = c.recv();
        if v["t"] == t {
            return v;
        }
    }
}

#[test]
fn kv_writes_through_both_dialects_reach_lanyard_and_lantern_subscribers() {
    let env = env();
    let (a, b) = pair();
    let token = create_token(&env.sim, a);
    let auth = [("Authorization", token.as_str())];
    let mut ly = Client::hello(&env);
    ly.subscribe(json!({"subscribe_to_ids": [a.to_string(), b.to_string()]}));
    let mut ln = Client::hello(&env);
    ln.send(json!({"op": 2, "d": {"user_id": a.to_string()}}));
    assert_eq!(ln.recv()["t"], "INIT_ACK");

    // Lanyard's route.
    let r = env.request("PUT", &format!("/v1/users/{a}/kv/fav_song"), &auth, b"Take On Me");
    assert_eq!(r.status, 204, "{}", r.text());
    let u = ly.update_of(a);
    assert_eq!(u["d"]["kv"], json!({"fav_song": "Take On Me"}));
    assert_eq!(u, event("PRESENCE_UPDATE", lanyard(&env, a)));
    let s = lantern_next(&mut ln, "STORAGE_UPDATE");
    assert_eq!(s, json!({"t": "STORAGE_UPDATE", "op": 10, "user_id": a.to_string(), "d": {"fav_song": "Take On Me"}}));

    // Lantern's route.
    let r = env.request("PUT", &format!("/api/v1/users/{a}/storage/mood"), &auth, &value_body("calm"));
    assert_eq!(r.status, 200, "{}", r.text());
    let u = ly.update_of(a);
    assert_eq!(u["d"]["kv"], json!({"fav_song": "Take On Me", "mood": "calm"}));
    let s = lantern_next(&mut ln, "STORAGE_UPDATE");
    assert_eq!(s["d"], json!({"fav_song": "Take On Me", "mood": "calm"}));

    // A presence change: Lantern's frame is today's, Lanyard's is its presence.
    env.sim.set_presence(presence(a, Status::Dnd));
    let p = lantern_next(&mut ln, "PRESENCE_UPDATE");
    assert_eq!(p["op"], 6);
    assert_eq!(p["d"], env.get(&format!("/api/v1/users/{a}")).json());
    assert_eq!(ly.update_of(a), event("PRESENCE_UPDATE", lanyard(&env, a)));
}

#[test]
fn all_subscribers_receive_a_member_who_joins_later() {
    let env = env();
    let mut on_shard = Vec::new();
    // One All subscriber per connection; whichever shard accepts each, the joiners below are
    // owned by both shards.
    for _ in 0..2 {
        let mut c = Client::hello(&env);
        c.subscribe(json!({"subscribe_to_all": true}));
        on_shard.push(c);
    }
    let joiners: Vec<Snowflake> = [0, 1]
        .iter()
        .map(|s| (200..400).map(|i| Snowflake(1_300_000_000_000_000_000 + i)).find(|id| shard_of(*id, 2) == *s).unwrap())
        .collect();
    for id in &joiners {
        env.sim.add_member(member(*id, "carol"), Some(presence(*id, Status::Online)));
        for c in on_shard.iter_mut() {
            // The join, then its presence.
            let mut u = c.update_of(*id);
            assert_eq!(u["d"]["discord_user"]["username"], "carol");
            while u["d"]["discord_status"] != "online" {
                u = c.update_of(*id);
            }
            assert_eq!(u, event("PRESENCE_UPDATE", lanyard(&env, *id)));
        }
    }
}

#[test]
fn a_member_who_leaves_sends_nothing_to_lanyard_subscribers() {
    let env = env();
    let (a, b) = pair();
    let mut c = Client::hello(&env);
    c.subscribe(json!({"subscribe_to_ids": [a.to_string(), b.to_string()]}));
    env.sim.remove_member(a);
    env.get_until(&format!("/v1/users/{a}"), |r| r.status == 404);
    env.sim.set_presence(presence(b, Status::Idle));
    assert_eq!(c.recv(), event("PRESENCE_UPDATE", lanyard(&env, b)));
}

#[test]
fn zlib_json_frames_inflate_to_exactly_the_plain_json() {
    let env = env();
    let (a, b) = pair();
    let mut plain = Client::connect(&env);
    let mut z = Client::connect_path(&env, "/socket?compression=zlib_json");
    let (hp, zp) = (plain.recv_raw(), z.recv_raw());
    assert_eq!((hp.0, zp.0), (false, true), "plain text, zlib binary");
    assert_eq!(zp.1, hp.1, "HELLO");
    let sub = json!({"op": 2, "d": {"subscribe_to_ids": [a.to_string(), b.to_string()]}});
    plain.send(sub.clone());
    z.send(sub);
    let (ip, iz) = (plain.recv_raw(), z.recv_raw());
    assert!(iz.0);
    assert_eq!(iz.1, ip.1, "INIT_STATE");
    env.sim.set_presence(presence(b, Status::Dnd));
    let (up, uz) = (plain.recv_raw(), z.recv_raw());
    assert!(uz.0);
    assert_eq!(uz.1, up.1, "PRESENCE_UPDATE");
    assert_eq!(serde_json::from_str::<Value>(&uz.1).unwrap(), event("PRESENCE_UPDATE", lanyard(&env, b)));
    // A refusal is a close frame either way.
    z.send_text(r#"{"op":9}"#);
    assert_eq!(z.closed(), (4004, "unknown_opcode".to_owned(), false));
}

#[test]
fn a_silent_lanyard_connection_is_closed_after_the_idle_timeout() {
    let (a, b) = pair();
    let env = Env::start_tweaked(
        SimConfig { members: 4, seed: 7, heartbeat_interval_ms: 1000, ..SimConfig::default() },
        2,
        |sim| {
            sim.add_member(member(a, "alice"), None);
            sim.add_member(member(b, "bob"), None);
        },
        |c| c.server.socket.lanyard_idle_timeout = std::time::Duration::from_millis(300),
    );
    let mut c = Client::hello(&env);
    c.subscribe(json!({"subscribe_to_id": a.to_string()}));
    // A heartbeat is answered by nothing; the silence after it closes the connection.
    c.send(json!({"op": 3}));
    assert_eq!(c.closed(), (1000, "idle timeout".to_owned(), false));
}
