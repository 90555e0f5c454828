//! WebSocket `/socket` against the real server (2 shards) and the simulator, with real
//! WebSocket clients over TCP. Every wait is a blocking read or a poll with a deadline.

mod support;

use lantern::config::Config;
use lantern::discord::{ClientStatus, Member, PartialUser, Presence, Snowflake, Status, User};
use lantern::runtime::shard_of;
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::net::TcpStream;
use support::kv::{create_token, value_body};
use support::{wait_for, Env, DEADLINE};
use tungstenite::{Message, WebSocket};

fn small() -> SimConfig {
    SimConfig { members: 20, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() }
}

/// Two monitored users with different owner shards (so that any connection, whichever shard
/// accepts it, subscribes to one local and one remote user).
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

fn env_with(tweak: impl Fn(&mut Config) + 'static) -> Env {
    let (a, b) = pair();
    Env::start_tweaked(
        small(),
        2,
        |sim| {
            sim.add_member(member(a, "alice"), None);
            sim.add_member(member(b, "bob"), None);
        },
        tweak,
    )
}

fn env() -> Env {
    env_with(|_| {})
}

/// Writes one pair through the storage API (durably, as any client would).
fn put_storage(env: &Env, token: &str, id: Snowflake, key: &str, value: &str) {
    let r = env.request("PUT", &format!("/api/v1/users/{id}/storage/{key}"), &[("Authorization", token)], &value_body(value));
    assert_eq!(r.status, 200, "{}", r.text());
}

struct Client {
    ws: WebSocket<TcpStream>,
}

impl Client {
    fn connect(env: &Env) -> Client {
        Client::connect_path(env, "/socket").unwrap()
    }

    fn connect_path(env: &Env, path: &str) -> Result<Client, tungstenite::Error> {
        let stream = TcpStream::connect(("127.0.0.1", env.port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{}{path}", env.port), stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => panic!("handshake interrupted"),
        })?;
        Ok(Client { ws })
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

    fn recv_text(&mut self) -> String {
        loop {
            match self.ws.read().expect("a frame before the deadline") {
                Message::Text(t) => return t.as_str().to_owned(),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    fn recv(&mut self) -> Value {
        let text = self.recv_text();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Reads until the close frame; returns its code and the last text frame before it.
    fn closed(&mut self) -> (u16, Option<Value>) {
        let mut last = None;
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => last = Some(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Message::Close(Some(frame))) => return (u16::from(frame.code), last),
                Ok(Message::Close(None)) => return (1005, last),
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    }

    /// Expects DISCONNECT `reason` and then a close with `code`.
    fn disconnected(&mut self, reason: &str, code: u16) {
        let (got, last) = self.closed();
        assert_eq!(last, Some(json!({"t":"DISCONNECT","op":9,"d":{"reason":reason,"error":reason}})));
        assert_eq!(got, code, "close code for {reason:?}");
    }

    fn init(&mut self, d: Value) -> Value {
        self.send(json!({"op":2,"d":d}));
        let ack = self.recv();
        assert_eq!(ack["t"], "INIT_ACK", "{ack}");
        assert_eq!(ack["op"], 3);
        ack["d"].clone()
    }
}

fn user(env: &Env, id: Snowflake) -> Value {
    env.get(&format!("/api/v1/users/{id}")).json()
}

fn error(text: &str) -> Value {
    json!({"t":"ERROR","op":11,"d":text})
}

fn set_status(env: &Env, id: Snowflake, status: Status) {
    env.sim.set_presence(presence(id, status));
    let want = match status {
        Status::Online => "online",
        Status::Idle => "idle",
        Status::Dnd => "dnd",
        _ => "offline",
    };
    env.get_until(&format!("/api/v1/users/{id}"), |r| r.json()["status"] == want);
}

#[test]
fn hello_init_heartbeat_and_updates_across_shards() {
    let env = env_with(|c| c.server.socket.heartbeat_interval = std::time::Duration::from_millis(12_345));
    let (a, b) = pair();
    let mut c = Client::connect(&env);
    assert_eq!(c.recv_text(), r#"{"t":"HELLO","op":1,"d":{"heartbeat_interval":12345}}"#);
    // One user: `d` is the user object, the same as REST's.
    assert_eq!(c.init(json!({"user_id": a.to_string()})), user(&env, a));
    c.send(json!({"op":4}));
    assert_eq!(c.recv_text(), r#"{"t":"HEARTBEAT_ACK","op":5}"#);

    // Several users (owned by both shards): arrays, in request order.
    let mut m = Client::hello(&env);
    assert_eq!(m.init(json!({"user_ids": [b.to_string(), a.to_string()]})), json!([user(&env, b), user(&env, a)]));

    for (id, status) in [(a, Status::Online), (b, Status::Dnd), (a, Status::Idle)] {
        env.sim.set_presence(presence(id, status));
        let u = m.recv();
        assert_eq!((u["t"].as_str(), u["op"].as_u64()), (Some("PRESENCE_UPDATE"), Some(6)));
        assert_eq!(u["d"].as_array().unwrap().len(), 1, "{u}");
        assert_eq!(u["d"][0]["metadata"]["id"], id.to_string());
        assert_eq!(u["d"][0], user(&env, id));
        if id == a {
            let single = c.recv();
            assert_eq!(single["t"], "PRESENCE_UPDATE");
            assert_eq!(single["d"], user(&env, a));
        }
    }
    // The query string is ignored; other paths refuse the upgrade with 404.
    let mut q = Client::connect_path(&env, "/socket/?v=1").unwrap();
    assert_eq!(q.recv()["t"], "HELLO");
    match Client::connect_path(&env, "/nope") {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade to /nope accepted"),
    }
    // Ping is answered; a client close is answered with a close.
    c.ws.send(Message::Ping(vec![1, 2, 3].into())).unwrap();
    loop {
        match c.ws.read().unwrap() {
            Message::Pong(p) => break assert_eq!(&p[..], &[1, 2, 3]),
            Message::Text(t) => panic!("unexpected {t}"),
            _ => {}
        }
    }
    c.ws.close(None).unwrap();
    loop {
        match c.ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close: {e}"),
        }
    }
}

#[test]
fn all_subscribers_join_and_leave() {
    let env = env();
    let (a, b) = pair();
    let mut all = Client::hello(&env);
    let d = all.init(json!({"user_id": "All"}));
    assert_eq!(d.as_array().unwrap().len(), env.sim.members().len());
    let mut upper = Client::hello(&env);
    assert_eq!(upper.init(json!({"user_id": "ALL"})).as_array().unwrap().len(), env.sim.members().len());
    let mut only_a = Client::hello(&env);
    only_a.init(json!({"user_id": a.to_string()}));
    let mut both = Client::hello(&env);
    both.init(json!({"user_ids": [a.to_string(), b.to_string()]}));

    env.sim.set_presence(presence(b, Status::Online));
    for c in [&mut all, &mut upper, &mut both] {
        let u = c.recv();
        assert_eq!(u["t"], "PRESENCE_UPDATE");
        assert_eq!(u["d"][0]["metadata"]["id"], b.to_string());
    }

    let carol = Snowflake(1_300_000_000_000_000_500);
    env.sim.add_member(member(carol, "carol"), None);
    for c in [&mut all, &mut upper] {
        let j = c.recv();
        assert_eq!((j["t"].as_str(), j["op"].as_u64()), (Some("USER_JOINED"), Some(8)));
        assert_eq!(j["d"], user(&env, carol));
    }

    // A leaves: everyone subscribed to A hears it; the connection left with nobody is closed.
    env.sim.remove_member(a);
    let left = json!({"t":"USER_LEFT","op":7,"d":{"user_id": a.to_string()}});
    for c in [&mut all, &mut upper, &mut both, &mut only_a] {
        assert_eq!(c.recv(), left);
    }
    only_a.disconnected("There is no user to monitor anymore.", 4006);
    // `both` now has one user: its updates come as one object. All stays open.
    env.sim.set_presence(presence(b, Status::Idle));
    let u = both.recv();
    assert_eq!(u["d"]["metadata"]["id"], b.to_string(), "{u}");
    assert_eq!(all.recv()["d"][0]["status"], "idle");
}

#[test]
fn subscribe_and_unsubscribe() {
    let env = env();
    let (a, b) = pair();
    let mut c = Client::hello(&env);
    c.init(json!({"user_id": a.to_string()}));
    c.send(json!({"op":12,"d":{"user_id": b.to_string()}}));
    assert_eq!(c.recv(), json!({"t":"SUBSCRIBE_ACK","op":13,"d":[user(&env, b)]}));
    c.send(json!({"op":12,"d":{"user_id": b.to_string()}}));
    assert_eq!(c.recv(), error(&format!("You are already subscribed to user {b}.")));
    c.send(json!({"op":12,"d":{"user_ids": [a.to_string(), b.to_string()]}}));
    assert_eq!(c.recv(), error(&format!("You are already subscribed to user(s) {a}, {b}.")));
    c.send(json!({"op":12,"d":{"user_id": UNKNOWN.to_string()}}));
    assert_eq!(c.recv(), error(&format!("User {UNKNOWN} not found.")));
    let unknown2 = Snowflake(UNKNOWN.0 - 1);
    c.send(json!({"op":12,"d":{"user_ids": [UNKNOWN.to_string(), unknown2.to_string()]}}));
    assert_eq!(c.recv(), error(&format!("User(s) {UNKNOWN}, {unknown2} not found.")));
    c.send(json!({"op":12,"d":"x"}));
    assert_eq!(c.recv(), error("Expected object, received string"));
    c.send(json!({"op":14,"d":{"user_id": UNKNOWN.to_string()}}));
    assert_eq!(c.recv(), error(&format!("You are not subscribed to user {UNKNOWN}.")));
    c.send(json!({"op":14,"d":{"user_ids": [a.to_string(), UNKNOWN.to_string()]}}));
    assert_eq!(c.recv(), error(&format!("You are not subscribed to user(s) {UNKNOWN}.")));
    c.send(json!({"op":14,"d":{"user_id": "all"}}));
    assert_eq!(c.recv(), error("You are not subscribed to all users."));

    c.send(json!({"op":14,"d":{"user_id": a.to_string()}}));
    assert_eq!(c.recv_text(), r#"{"t":"UNSUBSCRIBE_ACK","op":15}"#);
    // A's change is not delivered any more: the next frame is B's.
    set_status(&env, a, Status::Online);
    env.sim.set_presence(presence(b, Status::Dnd));
    let u = c.recv();
    assert_eq!(u["d"]["metadata"]["id"], b.to_string(), "{u}");
    c.send(json!({"op":14,"d":{"user_ids": [b.to_string()]}}));
    c.disconnected("You require at least one user to be subscribed. Connection closed.", 4007);

    // From a list to All, and out of All.
    let mut c = Client::hello(&env);
    c.init(json!({"user_id": a.to_string()}));
    c.send(json!({"op":12,"d":{"user_id": "All"}}));
    let ack = c.recv();
    assert_eq!(ack["t"], "SUBSCRIBE_ACK");
    assert_eq!(ack["d"].as_array().unwrap().len(), env.sim.members().len());
    c.send(json!({"op":12,"d":{"user_id": b.to_string()}}));
    assert_eq!(c.recv(), error("You are already subscribed to all users."));
    c.send(json!({"op":14,"d":{"user_id": b.to_string()}}));
    assert_eq!(c.recv(), error("You are subscribed to all users."));
    c.send(json!({"op":14,"d":{"user_id": "ALL"}}));
    c.disconnected("You require at least one user to be subscribed. Connection closed.", 4007);
}

#[test]
fn bad_input_gets_an_answer() {
    let env = env();
    let (a, b) = pair();
    let mut c = Client::hello(&env);
    c.send_text("{nope");
    assert_eq!(c.recv(), error("Invalid JSON."));
    c.send_text("[1,2]");
    assert_eq!(c.recv(), error("The payload must be a JSON object, received array."));
    c.send_text("null");
    assert_eq!(c.recv(), error("The payload must be a JSON object, received null."));
    c.ws.send(Message::binary(b"{\"op\":4}".to_vec())).unwrap();
    assert_eq!(c.recv(), error("Binary frames are not supported; send JSON text frames."));
    // INIT is atomic: one unknown id fails it all, and nothing stays registered.
    c.send(json!({"op":2,"d":{"user_ids":[a.to_string(), UNKNOWN.to_string()]}}));
    assert_eq!(c.recv(), error(&format!("User(s) {UNKNOWN} not found.")));
    c.send(json!({"op":2,"d":{"user_id": UNKNOWN.to_string()}}));
    assert_eq!(c.recv(), error(&format!("User {UNKNOWN} not found.")));
    let ids: Vec<String> = (0..1001).map(|i| (1_300_000_000_000_100_000u64 + i).to_string()).collect();
    c.send(json!({"op":2,"d":{"user_ids": ids}}));
    assert_eq!(c.recv(), error("You can subscribe to at most 1000 users per connection."));
    c.init(json!({"user_id": b.to_string()}));
    set_status(&env, a, Status::Online);
    env.sim.set_presence(presence(b, Status::Online));
    assert_eq!(c.recv()["d"]["metadata"]["id"], b.to_string(), "A was not left registered");
    c.send(json!({"op":2,"d":{"user_id": a.to_string()}}));
    assert_eq!(c.recv(), error("You are already initialized. Use SUBSCRIBE (op 12) to add users."));

    let disconnects: Vec<(Value, &str, u16)> = vec![
        (json!({"op":"2","d":{"user_id": a.to_string()}}), "Invalid opcode.", 4000),
        (json!({"d":{}}), "Invalid opcode.", 4000),
        (json!({"op":99}), "Invalid opcode.", 4000),
        (json!({"op":3}), "You are not allowed to send this opcode to the server.", 4001),
        (json!({"op":11,"d":"x"}), "You are not allowed to send this opcode to the server.", 4001),
        (json!({"op":2}), "Required", 4002),
        (json!({"op":2,"d":[1]}), "Expected object, received array", 4002),
        (json!({"op":2,"d":{}}), "Either user_ids or user_id must be provided.", 4002),
        (json!({"op":2,"d":{"user_id":"abc"}}), "user_id must be a number.", 4002),
        (json!({"op":2,"d":{"user_id":"123"}}), "user_id must be 17-19 characters long.", 4002),
        (json!({"op":2,"d":{"user_ids":["123"]}}), "user_ids must be an array of strings with 17-19 characters long.", 4002),
        (json!({"op":2,"d":{"user_ids":[1]}}), "Expected string, received number", 4002),
        (json!({"op":2,"d":{"user_ids":[a.to_string(), a.to_string()]}}), "user_ids must not contain duplicates.", 4002),
        (json!({"op":2,"d":{"user_id":a.to_string(),"user_ids":[]}}), "Only one of user_ids or user_id can be provided.", 4002),
        (json!({"op":4}), "Invalid websocket connection.", 4003),
        (json!({"op":12,"d":{"user_id": a.to_string()}}), "Invalid websocket connection.", 4003),
        (json!({"op":14,"d":{"user_id": a.to_string()}}), "Invalid websocket connection.", 4003),
    ];
    for (frame, reason, code) in disconnects {
        let mut c = Client::hello(&env);
        c.send(frame.clone());
        c.disconnected(reason, code);
    }
    // Larger than max_frame_bytes (64 KiB).
    let mut c = Client::hello(&env);
    c.send_text(&format!(r#"{{"op":4,"pad":"{}"}}"#, "x".repeat(70 * 1024)));
    c.disconnected("Message too large (the limit is 65536 bytes).", 4010);
}

#[test]
fn init_deadline_and_heartbeat_timeout() {
    let env = env_with(|c| {
        c.server.socket.init_timeout = std::time::Duration::from_millis(300);
        c.server.socket.heartbeat_interval = std::time::Duration::from_millis(200);
        c.server.socket.heartbeat_grace = std::time::Duration::from_millis(100);
    });
    let (a, _) = pair();
    let mut silent = Client::hello(&env);
    silent.disconnected("You did not initialize in time.", 4004);
    let mut c = Client::hello(&env);
    c.init(json!({"user_id": a.to_string()}));
    c.disconnected("Connection timed out.", 4005);
}

#[test]
fn storage_update_from_a_rest_kv_write() {
    let env = env();
    let (a, b) = pair();
    let token = create_token(&env.sim, a);
    let mut c = Client::hello(&env);
    c.init(json!({"user_ids": [a.to_string(), b.to_string()]}));
    let r = env.request("PUT", &format!("/api/v1/users/{a}/storage/city"), &[("Authorization", &token)], &value_body("Oslo"));
    assert_eq!((r.status, r.text()), (200, r#"{"success":true}"#.to_owned()));
    assert_eq!(c.recv_text(), format!(r#"{{"t":"STORAGE_UPDATE","op":10,"user_id":"{a}","d":{{"city":"Oslo"}}}}"#));
    assert_eq!(user(&env, a)["storage"], json!({"city":"Oslo"}));
}

#[test]
fn connections_per_ip_are_limited() {
    let env = env_with(|c| c.server.socket.max_connections_per_ip = 2);
    let one = Client::hello(&env);
    let _two = Client::hello(&env);
    let mut three = Client::connect(&env);
    three.disconnected("Too many connections from your address.", 4009);
    drop(one);
    assert!(wait_for(DEADLINE, || {
        let mut c = Client::connect(&env);
        c.recv()["t"] == "HELLO"
    }));
}

#[test]
fn the_server_stops_though_a_client_never_answers_its_close() {
    let mut env = env_with(|c| {
        c.server.shutdown_grace = std::time::Duration::from_millis(300);
        c.server.socket.close_timeout = std::time::Duration::from_secs(120);
    });
    let (a, _) = pair();
    let mut c = Client::hello(&env);
    c.init(json!({"user_id": a.to_string()}));
    // The client reads nothing while the server stops: its close is never answered, and the
    // session outlives the grace period.
    let (done, stopped) = std::sync::mpsc::channel();
    let server = env.server.take().expect("the server runs");
    let stopper = std::thread::spawn(move || {
        server.shutdown();
        let _ = done.send(());
    });
    assert!(stopped.recv_timeout(std::time::Duration::from_secs(60)).is_ok(), "the server's stop never returned");
    stopper.join().unwrap();
    c.disconnected("The server is shutting down.", 4011);
}

#[test]
fn slow_consumer_is_cut_off_while_others_keep_receiving() {
    let env = env_with(|c| {
        c.server.socket.max_queued_bytes = 256 * 1024;
        c.server.socket.close_timeout = std::time::Duration::from_secs(120);
    });
    let (a, _) = pair();
    let mut slow = Client::hello(&env);
    slow.init(json!({"user_id": a.to_string()}));
    let mut healthy = Client::hello(&env);
    healthy.init(json!({"user_id": a.to_string()}));
    // 32 KiB maps, 800 of them (25 MiB), written durably through the storage API: far more
    // than the socket buffers hold for a reader that never reads. The healthy reader receives
    // each one before the next is written.
    let token = create_token(&env.sim, a);
    for pad in ["pad1", "pad2"] {
        put_storage(&env, &token, a, pad, &"x".repeat(16 * 1024));
        assert_eq!(healthy.recv()["t"], "STORAGE_UPDATE");
    }
    let rounds = 800;
    for i in 0..rounds {
        put_storage(&env, &token, a, "n", &i.to_string());
        let u = healthy.recv();
        assert_eq!(u["t"], "STORAGE_UPDATE");
        assert_eq!(u["d"]["n"], i.to_string());
    }
    let mut received = 0;
    let (code, last) = loop {
        match slow.ws.read().expect("frames, then a close") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["t"] == "STORAGE_UPDATE" {
                    received += 1;
                } else {
                    break (None, v);
                }
            }
            Message::Close(f) => break (f.map(|f| u16::from(f.code)), Value::Null),
            _ => {}
        }
    };
    assert_eq!(last, json!({"t":"DISCONNECT","op":9,"d":{"reason":"Slow consumer","error":"Slow consumer"}}), "{code:?}");
    assert!(received < rounds, "the slow consumer was not cut off");
    let (code, _) = slow.closed();
    assert_eq!(code, 4008);
    // The healthy one is still subscribed.
    env.sim.set_presence(presence(a, Status::Online));
    assert_eq!(healthy.recv()["t"], "PRESENCE_UPDATE");
}


#[test]
fn a_frame_larger_than_the_queue_cap_is_never_queued() {
    let env = env_with(|c| c.server.socket.max_queued_bytes = 4096);
    let (a, _) = pair();
    let mut c = Client::hello(&env);
    c.init(json!({"user_id": a.to_string()}));
    // An 8 KiB STORAGE_UPDATE for a connection whose queue may hold 4 KiB: even into an empty
    // queue it is refused, and the connection is cut off as a slow consumer.
    put_storage(&env, &create_token(&env.sim, a), a, "pad", &"x".repeat(8192));
    assert_eq!(c.recv(), json!({"t":"DISCONNECT","op":9,"d":{"reason":"Slow consumer","error":"Slow consumer"}}));
    assert_eq!(c.closed().0, 4008);
}
