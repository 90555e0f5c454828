//! Helpers for storage and bot tests: injected interactions, recorded callbacks, and checks
//! of what readers see after a storage change.

use super::{wait_for, Env, Resp, DEADLINE};
use lantern::discord::Snowflake;
use lantern::sim::Simulator;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static NEXT_INTERACTION: AtomicU64 = AtomicU64::new(1_400_000_000_000_000_000);

/// A member's user object as Discord sends it inside an interaction.
fn user_json(sim: &Simulator, id: Snowflake) -> Value {
    match sim.member(id) {
        Some((m, _)) => json!({"id": id, "username": m.user.username, "discriminator": "0", "global_name": m.user.global_name, "avatar": null}),
        None => json!({"id": id, "username": format!("user{}", id.0 % 1000), "discriminator": "0", "global_name": null, "avatar": null}),
    }
}

/// Injects an INTERACTION_CREATE of `kind` (2 command, 3 component, 4 autocomplete) from
/// `user`, in the base guild or in DMs; returns the interaction id.
pub fn interact(sim: &Simulator, user: Snowflake, in_guild: bool, kind: u8, data: Value) -> u64 {
    let id = NEXT_INTERACTION.fetch_add(1, Ordering::Relaxed);
    let mut d = json!({
        "id": id.to_string(), "application_id": sim.application_id(), "type": kind, "token": format!("itoken-{id}"),
        "version": 1, "data": data, "locale": "en-US", "app_permissions": "0", "entitlements": [], "attachment_size_limit": 8_388_608,
        "authorizing_integration_owners": {}, "context": if in_guild { 0 } else { 1 },
    });
    let user = user_json(sim, user);
    if in_guild {
        d["guild_id"] = json!(sim.guild_id());
        d["channel_id"] = json!(sim.guild_id());
        d["member"] = json!({"user": user, "roles": [], "joined_at": "2021-05-03T00:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0, "permissions": "0"});
    } else {
        d["user"] = user;
    }
    sim.dispatch("INTERACTION_CREATE", d);
    id
}

/// The options of `/storage <path…>` with `args` on the leaf subcommand.
pub fn storage_data(path: &[&str], args: &[(&str, &str)]) -> Value {
    let leaf: Vec<Value> = args.iter().map(|(k, v)| json!({"name": k, "type": 3, "value": v})).collect();
    let mut options = json!([{"name": path[path.len() - 1], "type": 1, "options": leaf}]);
    if path.len() == 2 {
        options = json!([{"name": path[0], "type": 2, "options": options}]);
    }
    json!({"id": "1", "name": "storage", "type": 1, "options": options})
}

/// The recorded callback body of interaction `id` (raw text), waiting for it.
pub fn callback_raw(sim: &Simulator, id: u64) -> String {
    let prefix = format!("/api/v10/interactions/{id}/itoken-{id}/callback");
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(r) = sim.requests().into_iter().find(|r| r.path.starts_with(&prefix)) {
            assert_eq!(r.method, "POST");
            return r.body;
        }
        assert!(Instant::now() < deadline, "interaction {id} was never answered");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The recorded callback body of interaction `id` as JSON.
pub fn callback(sim: &Simulator, id: u64) -> Value {
    let raw = callback_raw(sim, id);
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("callback is not JSON ({e}): {raw}"))
}

/// Runs `/storage <path>` from a guild member and returns the callback's content.
pub fn slash(sim: &Simulator, user: Snowflake, path: &[&str], args: &[(&str, &str)]) -> String {
    let id = interact(sim, user, true, 2, storage_data(path, args));
    let body = callback(sim, id);
    assert_eq!(body["type"], 4, "{body}");
    assert_eq!(body["data"]["flags"], 64, "ephemeral in guilds: {body}");
    body["data"]["content"].as_str().unwrap_or_default().to_owned()
}

/// `/storage create token`, returning the token from the reply.
pub fn create_token(sim: &Simulator, user: Snowflake) -> String {
    token_from_reply(&slash(sim, user, &["create", "token"], &[]))
}

/// The token in a `/storage create token` reply, checking the reply's exact shape.
pub fn token_from_reply(content: &str) -> String {
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.len(), 5, "{content}");
    assert_eq!(lines[0], "We have created a new token for your key-value storage.");
    assert_eq!((lines[1], lines[3], lines[4]), ("```", "```", "-# Please keep this token safe."));
    lines[2].to_owned()
}

/// Checks that the user object over REST shows `storage` (waiting for it).
pub fn expect_user_storage(env: &Env, id: Snowflake, storage: &Value) {
    env.get_until(&format!("/api/v1/users/{id}"), |r| r.status == 200 && r.json()["storage"] == *storage);
}

pub type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// A WebSocket client on the shard that does *not* own `id`, subscribed to it (INIT_ACK read).
pub fn subscriber_on_other_shard(env: &Env, id: Snowflake) -> Ws {
    let owner = lantern::runtime::shard_of(id, env.shards);
    for _ in 0..200 {
        let (mut ws, response) = tungstenite::connect(format!("ws://127.0.0.1:{}/socket", env.port)).expect("upgrade");
        let shard: usize = response.headers()["x-lantern-shard"].to_str().unwrap().parse().unwrap();
        if shard == owner {
            continue;
        }
        let hello: Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(hello["op"], 1);
        ws.send(tungstenite::Message::text(json!({ "op": 2, "d": { "user_id": id.to_string() } }).to_string())).unwrap();
        let ack: Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(ack["t"], "INIT_ACK");
        return ws;
    }
    panic!("no connection landed on the other shard");
}

/// The next text frame, as JSON (fails the test after [`DEADLINE`]).
pub fn next_frame(ws: &mut Ws) -> Value {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
    }
    loop {
        match ws.read().expect("a frame") {
            tungstenite::Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Watches one user's storage the way readers see it: a WebSocket subscriber on the shard
/// that does not own the user, and the user object over REST.
pub struct StorageWatch {
    ws: Ws,
    id: Snowflake,
}

impl StorageWatch {
    pub fn subscribe(env: &Env, id: Snowflake) -> StorageWatch {
        StorageWatch { ws: subscriber_on_other_shard(env, id), id }
    }

    /// Checks that readers see `storage` after a change: the subscriber receives
    /// `{"t":"STORAGE_UPDATE","op":10,"user_id":id,"d":storage}` (after the updates of earlier
    /// writes, each a STORAGE_UPDATE of the same user), and the user object shows it.
    pub fn expect_update(&mut self, env: &Env, storage: &Value) {
        let want = json!({ "t": "STORAGE_UPDATE", "op": 10, "user_id": self.id.to_string(), "d": storage });
        loop {
            let frame = next_frame(&mut self.ws);
            if frame == want {
                break;
            }
            assert_eq!((&frame["t"], &frame["op"], &frame["user_id"]), (&want["t"], &want["op"], &want["user_id"]), "waiting for {want}, got {frame}");
        }
        expect_user_storage(env, self.id, storage);
    }
}

/// `{"value": v}`.
pub fn value_body(v: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "value": v })).unwrap()
}

/// A request that reports connection failures instead of panicking (servers that die).
pub fn try_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Resp> {
    let raw = super::exchange(port, method, path, headers, body).ok()?;
    let complete = raw.windows(4).any(|w| w == b"\r\n\r\n");
    complete.then(|| super::parse_response(&raw))
}

/// Waits until `port` answers `/health` with 200.
pub fn wait_healthy(port: u16) -> bool {
    wait_for(DEADLINE * 2, || try_request(port, "GET", "/health", &[], b"").is_some_and(|r| r.status == 200))
}
