//! Privacy settings against the real server (2 shards) and the simulator, over real TCP: each
//! setting hides exactly what it names, on REST in both dialects, live on the WebSocket in
//! both dialects and in the card; pausing answers the member as not monitored everywhere and
//! resuming brings them back; settings survive a restart and a shard-count change; a member
//! changes only their own settings, through the REST route or the bot.

mod support;

use lantern::discord::{Activity, Assets, ClientStatus, Member, PartialUser, Presence, Snowflake, Status, Timestamps, User};
use lantern::runtime::shard_of;
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::net::TcpStream;
use support::kv::{create_token, next_frame, subscriber_on_other_shard, value_body, Ws};
use support::{Env, Resp, DEADLINE};
use tungstenite::Message;

const ALICE: Snowflake = Snowflake(1_300_000_000_000_000_001);
const UNKNOWN: Snowflake = Snowflake(1_300_000_000_000_000_999);
const CHESS_APP: &str = "1100000000000000001";
const FILM_APP: &str = "1100000000000000002";

/// A member on the other shard than Alice's.
fn bob() -> Snowflake {
    (2..100).map(|i| Snowflake(1_300_000_000_000_000_000 + i)).find(|b| shard_of(*b, 2) != shard_of(ALICE, 2)).unwrap()
}

fn member(id: Snowflake, name: &str) -> Member {
    Member {
        user: User { id, username: name.into(), discriminator: "0".into(), ..Default::default() },
        joined_at: Some("2022-01-01T10:00:00.000000+00:00".into()),
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Alice plays chess, listens to Spotify, watches a film and has a custom status, on desktop
/// and mobile.
fn alice_presence() -> Presence {
    let now = now_ms();
    Presence {
        user: PartialUser { id: ALICE, ..Default::default() },
        status: Status::Online,
        client_status: ClientStatus { desktop: Some(Status::Online), mobile: Some(Status::Idle), ..Default::default() },
        activities: vec![
            Activity {
                name: "Chess".into(),
                kind: 0,
                application_id: Some(Snowflake(CHESS_APP.parse().unwrap())),
                details: Some("Ranked".into()),
                state: Some("Move 12".into()),
                timestamps: Some(Timestamps { start: Some(now - 60_000), end: None }),
                ..Default::default()
            },
            Activity {
                id: Some("spotify:1".into()),
                name: "Spotify".into(),
                kind: 2,
                details: Some("Song Title".into()),
                state: Some("Some Artist".into()),
                sync_id: Some("track1".into()),
                timestamps: Some(Timestamps { start: Some(now - 30_000), end: Some(now + 170_000) }),
                assets: Some(Assets { large_image: Some("spotify:cover1".into()), large_text: Some("Album".into()), ..Default::default() }),
                ..Default::default()
            },
            Activity { name: "Film Night".into(), kind: 3, application_id: Some(Snowflake(FILM_APP.parse().unwrap())), ..Default::default() },
            Activity { id: Some("custom".into()), name: "Custom Status".into(), kind: 4, state: Some("hello there".into()), ..Default::default() },
        ],
        ..Default::default()
    }
}

fn env() -> Env {
    Env::start_with(SimConfig { members: 8, seed: 11, heartbeat_interval_ms: 1000, ..SimConfig::default() }, 2, |sim| {
        sim.add_member(member(ALICE, "alice"), Some(alice_presence()));
        sim.add_member(member(bob(), "bob"), None);
    })
}

/// The Lantern user object, with the one clock-dependent field (Spotify's elapsed time) blanked.
fn lantern(env: &Env, id: Snowflake) -> Value {
    norm(env.get(&format!("/api/v1/users/{id}")).json())
}

fn lanyard(env: &Env, id: Snowflake) -> Value {
    env.get(&format!("/v1/users/{id}")).json()["data"].clone()
}

fn norm(mut v: Value) -> Value {
    if let Some(t) = v.pointer_mut("/active_platforms/spotify/time/start_human_readable") {
        *t = json!("-");
    }
    v
}

fn error(message: &str, code: &str) -> Value {
    json!({ "success": false, "error": message, "code": code })
}

fn privacy_path(id: Snowflake) -> String {
    format!("/api/v1/users/{id}/privacy")
}

fn send(env: &Env, method: &str, id: Snowflake, token: &str, body: &Value) -> Resp {
    env.request(method, &privacy_path(id), &[("Authorization", token), ("Content-Type", "application/json")], body.to_string().as_bytes())
}

/// The settings object with `fields` changed from the defaults.
fn settings(fields: Value) -> Value {
    let mut s = json!({"hide_spotify": false, "hide_activities": false, "hidden_activity_types": [], "hidden_applications": [],
        "hide_platforms": false, "hide_last_seen": false, "hide_kv": false, "paused": false});
    for (k, v) in fields.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

/// `PUT`s `fields` as the whole settings and checks the answer.
fn put_settings(env: &Env, id: Snowflake, token: &str, fields: Value) {
    let r = send(env, "PUT", id, token, &fields);
    assert_eq!((r.status, r.json()), (200, settings(fields)), "PUT privacy");
}

fn put_kv(env: &Env, id: Snowflake, token: &str, key: &str, value: &str) {
    let r = env.request("PUT", &format!("/api/v1/users/{id}/storage/{key}"), &[("Authorization", token)], &value_body(value));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Removes the activities `drop` picks from an object's `activities`.
fn without_activities(v: &mut Value, drop: impl Fn(&Value) -> bool) {
    let list = v["activities"].as_array_mut().unwrap();
    list.retain(|a| !drop(a));
}

/// A Lanyard socket client subscribed to `id` (INIT_STATE read).
struct LanyardClient {
    ws: tungstenite::WebSocket<TcpStream>,
}

impl LanyardClient {
    fn subscribe(env: &Env, d: Value) -> (LanyardClient, Value) {
        let stream = TcpStream::connect(("127.0.0.1", env.port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{}/socket", env.port), stream).unwrap_or_else(|_| panic!("upgrade"));
        let mut c = LanyardClient { ws };
        assert_eq!(c.recv()["op"], 1);
        c.ws.send(Message::text(json!({"op": 2, "d": d}).to_string())).unwrap();
        let init = c.recv();
        assert_eq!(init["t"], "INIT_STATE", "{init}");
        (c, init["d"].clone())
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

    /// The next PRESENCE_UPDATE's presence of user `id` (others' are skipped).
    fn update_of(&mut self, id: Snowflake) -> Value {
        loop {
            let d = self.update();
            if d["discord_user"]["id"] == id.to_string() {
                return d;
            }
        }
    }

    /// The next PRESENCE_UPDATE's presence.
    fn update(&mut self) -> Value {
        let v = self.recv();
        assert_eq!((v["op"].as_u64(), v["t"].as_str()), (Some(0), Some("PRESENCE_UPDATE")), "{v}");
        v["d"].clone()
    }
}

/// A Lantern socket subscribed to every user (INIT_ACK read).
fn lantern_all(env: &Env) -> Ws {
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/socket", env.port)).expect("upgrade");
    assert_eq!(next_frame(&mut ws)["op"], 1);
    ws.send(Message::text(json!({"op": 2, "d": {"user_id": "All"}}).to_string())).unwrap();
    assert_eq!(next_frame(&mut ws)["t"], "INIT_ACK");
    ws
}

/// The next frame about `id` on an All subscription.
fn next_about(ws: &mut Ws, id: Snowflake) -> Value {
    loop {
        let f = next_frame(ws);
        let about = match f["op"].as_u64() {
            Some(6) => f["d"][0]["metadata"]["id"].clone(),
            Some(7) => f["d"]["user_id"].clone(),
            Some(8) => f["d"]["metadata"]["id"].clone(),
            _ => Value::Null,
        };
        if about == id.to_string() {
            return f;
        }
    }
}

fn card_texts(env: &Env, id: Snowflake) -> (u16, String) {
    let r = env.get(&format!("/api/v1/users/{id}?svg=1&maxActivities=5"));
    let text = r.text();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not XML ({e}): {text}"));
    let texts = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect::<Vec<_>>().join("\n");
    (r.status, texts)
}

#[test]
fn each_setting_hides_exactly_what_it_names_on_rest_sockets_and_the_card() {
    let env = env();
    let token = create_token(&env.sim, ALICE);
    put_kv(&env, ALICE, &token, "color", "blue");
    env.get_until(&format!("/api/v1/users/{ALICE}"), |r| r.json()["storage"] == json!({"color": "blue"}));

    // Nothing set: the defaults, and the objects everyone saw before.
    let r = env.request("GET", &privacy_path(ALICE), &[("Authorization", &token)], b"");
    assert_eq!((r.status, r.json()), (200, settings(json!({}))));
    let base = lantern(&env, ALICE);
    let base_lanyard = lanyard(&env, ALICE);
    assert_eq!(base["activities"].as_array().unwrap().len(), 4);
    assert_eq!(base_lanyard["activities"].as_array().unwrap().len(), 4);
    let (_, base_card) = card_texts(&env, ALICE);
    assert!(base_card.contains("Chess") && base_card.contains("Song Title"), "{base_card}");

    // Subscribers of both dialects, on the shard that does not own Alice.
    let mut ws = subscriber_on_other_shard(&env, ALICE);
    let (mut ly, init) = LanyardClient::subscribe(&env, json!({"subscribe_to_id": ALICE.to_string()}));
    assert_eq!(init, base_lanyard);

    let is_spotify = |a: &Value| a["id"] == "spotify:1";
    type Edit = Box<dyn Fn(&mut Value, &mut Value)>;
    let cases: Vec<(Value, Edit)> = vec![
        (
            json!({"hide_spotify": true}),
            Box::new(move |l, y| {
                l["active_platforms"]["spotify"] = Value::Null;
                without_activities(l, is_spotify);
                y["listening_to_spotify"] = json!(false);
                y["spotify"] = Value::Null;
                without_activities(y, is_spotify);
            }),
        ),
        (
            json!({"hidden_activity_types": ["playing"]}),
            Box::new(|l, y| {
                without_activities(l, |a| a["type"] == "PLAYING");
                without_activities(y, |a| a["type"] == 0);
            }),
        ),
        (
            json!({"hidden_activity_types": ["watching", "custom"]}),
            Box::new(|l, y| {
                without_activities(l, |a| a["type"] == "CUSTOM" || a["type"] == "WATCHING");
                without_activities(y, |a| a["type"] == 4 || a["type"] == 3);
            }),
        ),
        (
            json!({"hidden_applications": [FILM_APP]}),
            Box::new(|l, y| {
                without_activities(l, |a| a["application_id"] == FILM_APP);
                without_activities(y, |a| a["application_id"] == FILM_APP);
            }),
        ),
        (
            json!({"hide_activities": true}),
            Box::new(|l, y| {
                l["active_platforms"]["spotify"] = Value::Null;
                l["activities"] = json!([]);
                y["listening_to_spotify"] = json!(false);
                y["spotify"] = Value::Null;
                y["activities"] = json!([]);
            }),
        ),
        (
            json!({"hide_platforms": true}),
            Box::new(|l, y| {
                for p in ["desktop", "mobile", "web", "embedded", "vr"] {
                    l["active_platforms"][p] = json!("offline");
                    y[format!("active_on_discord_{p}")] = json!(false);
                }
            }),
        ),
        (
            json!({"hide_kv": true}),
            Box::new(|l, y| {
                l["storage"] = json!({});
                y["kv"] = json!({});
            }),
        ),
        // Alice is online: she has no last seen to hide, and nothing else changes.
        (json!({"hide_last_seen": true}), Box::new(|_, _| {})),
    ];
    for (fields, edit) in cases {
        let (mut want, mut want_lanyard) = (base.clone(), base_lanyard.clone());
        edit(&mut want, &mut want_lanyard);
        put_settings(&env, ALICE, &token, fields.clone());
        // Durable and visible when answered: REST in both dialects at once, in bulk, for
        // Lanyard's `@me`, and for new subscribers.
        assert_eq!(lantern(&env, ALICE), want, "{fields}");
        assert_eq!(lanyard(&env, ALICE), want_lanyard, "{fields}");
        let bulk = env.get(&format!("/api/v1/users?user_ids={ALICE}")).json();
        assert_eq!(norm(bulk[0].clone()), want, "{fields}");
        let me = env.request("GET", "/v1/users/@me", &[("Authorization", &token)], b"").json();
        assert_eq!(me["data"], want_lanyard, "{fields}");
        let (_, init) = LanyardClient::subscribe(&env, json!({"subscribe_to_id": ALICE.to_string()}));
        assert_eq!(init, want_lanyard, "{fields}");
        let (mut fresh, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/socket", env.port)).expect("upgrade");
        next_frame(&mut fresh);
        fresh.send(Message::text(json!({"op": 2, "d": {"user_id": ALICE.to_string()}}).to_string())).unwrap();
        let ack = next_frame(&mut fresh);
        assert_eq!((ack["t"].as_str(), norm(ack["d"].clone())), (Some("INIT_ACK"), want.clone()), "{fields}");
        // Live, without reconnecting: one update in each dialect.
        let frame = next_frame(&mut ws);
        assert_eq!((frame["t"].as_str(), norm(frame["d"].clone())), (Some("PRESENCE_UPDATE"), want.clone()), "{fields}");
        assert_eq!(ly.update(), want_lanyard, "{fields}");
        // Back to the defaults: everything as before.
        put_settings(&env, ALICE, &token, json!({}));
        assert_eq!(lantern(&env, ALICE), base, "{fields}");
        assert_eq!(lanyard(&env, ALICE), base_lanyard, "{fields}");
        assert_eq!(norm(next_frame(&mut ws)["d"].clone()), base, "{fields}");
        assert_eq!(ly.update(), base_lanyard, "{fields}");
    }

    // The card shows what the settings leave.
    for (fields, shown, hidden) in [
        (json!({"hide_spotify": true}), vec!["Chess"], vec!["Song Title"]),
        (json!({"hidden_activity_types": ["playing"]}), vec!["Song Title"], vec!["Chess"]),
        (json!({"hidden_applications": [CHESS_APP]}), vec!["Song Title"], vec!["Chess"]),
        (json!({"hide_activities": true}), vec![], vec!["Chess", "Song Title", "hello there"]),
    ] {
        put_settings(&env, ALICE, &token, fields.clone());
        next_frame(&mut ws);
        ly.update();
        let (status, texts) = card_texts(&env, ALICE);
        assert_eq!(status, 200);
        for s in shown {
            assert!(texts.contains(s), "{fields}: {s} missing from {texts}");
        }
        for h in hidden {
            assert!(!texts.contains(h), "{fields}: {h} shown in {texts}");
        }
    }
    put_settings(&env, ALICE, &token, json!({}));
    next_frame(&mut ws);
    ly.update();
    assert_eq!(card_texts(&env, ALICE).1, base_card);

    // Hidden storage: public readers get 401, the token holder still reads and writes it.
    put_settings(&env, ALICE, &token, json!({"hide_kv": true}));
    assert_eq!(norm(next_frame(&mut ws)["d"].clone())["storage"], json!({}));
    assert_eq!(ly.update()["kv"], json!({}));
    let storage = format!("/api/v1/users/{ALICE}/storage");
    assert_eq!(env.get(&storage).json(), error("Unauthorized.", "unauthorized"));
    assert_eq!(env.get(&format!("{storage}/color")).status, 401);
    let r = env.request("GET", &storage, &[("Authorization", &token)], b"");
    assert_eq!((r.status, r.json()), (200, json!({"color": "blue"})));
    put_kv(&env, ALICE, &token, "size", "L");
    let r = env.request("GET", &format!("{storage}/size"), &[("Authorization", &format!("Bearer {token}"))], b"");
    assert_eq!((r.status, r.json()), (200, json!({"value": "L"})));
    assert_eq!(lantern(&env, ALICE)["storage"], json!({}));
    assert_eq!(lanyard(&env, ALICE)["kv"], json!({}));
    // The write told subscribers nothing: the next frames are those of the change after it.
    put_settings(&env, ALICE, &token, json!({}));
    let frame = next_frame(&mut ws);
    assert_eq!((frame["t"].as_str(), &frame["d"]["storage"]), (Some("PRESENCE_UPDATE"), &json!({"color": "blue", "size": "L"})));
    assert_eq!(ly.update()["kv"], json!({"color": "blue", "size": "L"}));
}

#[test]
fn hiding_last_seen_hides_it_on_rest_and_the_card() {
    let env = env();
    let bob = bob();
    let token = create_token(&env.sim, bob);
    // Bob comes online, then goes offline: he has a last seen.
    env.sim.set_presence(Presence { user: PartialUser { id: bob, ..Default::default() }, status: Status::Online, ..Default::default() });
    env.get_until(&format!("/api/v1/users/{bob}"), |r| r.json()["status"] == "online");
    env.sim.set_presence(Presence { user: PartialUser { id: bob, ..Default::default() }, status: Status::Offline, ..Default::default() });
    let seen = env.get_until(&format!("/api/v1/users/{bob}"), |r| r.json()["last_seen_at"]["unix"].is_number()).json();
    let base_lanyard = lanyard(&env, bob);
    let (_, base_card) = card_texts(&env, bob);
    assert!(base_card.contains("Last seen"), "{base_card}");

    put_settings(&env, bob, &token, json!({"hide_last_seen": true}));
    let mut want = seen.clone();
    want["last_seen_at"] = json!({"unix": null, "raw": null});
    assert_eq!(lantern(&env, bob), want);
    assert_eq!(lanyard(&env, bob), base_lanyard, "Lanyard's object has no last seen");
    let (_, card) = card_texts(&env, bob);
    assert!(!card.contains("Last seen"), "{card}");

    put_settings(&env, bob, &token, json!({}));
    assert_eq!(lantern(&env, bob), seen);
}

#[test]
fn a_paused_member_is_not_monitored_anywhere_until_they_resume() {
    let env = env();
    let token = create_token(&env.sim, ALICE);
    let base = lantern(&env, ALICE);
    let base_lanyard = lanyard(&env, ALICE);
    let count = |env: &Env| env.get("/").json()["data"]["currently_monitoring_users"].as_u64().unwrap();
    let before = count(&env);

    let mut one = subscriber_on_other_shard(&env, ALICE);
    let mut all = lantern_all(&env);
    let (mut ly_all, _) = LanyardClient::subscribe(&env, json!({"subscribe_to_all": true}));

    // What an unknown user gets, with Alice's id in it.
    let unknown = |path: &str| {
        let r = env.get(&path.replace("{id}", &UNKNOWN.to_string()));
        (r.status, r.text().replace(&UNKNOWN.to_string(), &ALICE.to_string()))
    };
    let as_alice = |path: &str| {
        let r = env.get(&path.replace("{id}", &ALICE.to_string()));
        (r.status, r.text())
    };

    put_settings(&env, ALICE, &token, json!({"paused": true}));
    for path in ["/api/v1/users/{id}", "/v1/users/{id}", "/api/v1/users/{id}/storage", "/api/v1/users/{id}?svg=1", "/{id}.png"] {
        let got = as_alice(path);
        assert_eq!(got, unknown(path), "{path}");
        assert_eq!(got.0, 404, "{path}");
    }
    let png = env.get(&format!("/api/v1/users/{ALICE}?format=png"));
    assert_eq!((png.status, png.header("content-type")), (404, Some("image/png")), "the PNG card of an unknown user");
    assert_eq!(env.get(&format!("/api/v1/users?user_ids={ALICE}")).json(), error("Users you requested are not monitored by Lantern.", "users_not_monitored"));
    assert_eq!(count(&env), before - 1);
    // The Lantern dialect says USER_LEFT: the one-user subscription ends, All stays.
    assert_eq!(next_frame(&mut one), json!({"t": "USER_LEFT", "op": 7, "d": {"user_id": ALICE.to_string()}}));
    assert_eq!(next_frame(&mut one)["t"], "DISCONNECT");
    assert_eq!(next_about(&mut all, ALICE), json!({"t": "USER_LEFT", "op": 7, "d": {"user_id": ALICE.to_string()}}));
    // New subscriptions do not find her.
    let (_, init) = LanyardClient::subscribe(&env, json!({"subscribe_to_id": ALICE.to_string()}));
    assert_eq!(init, json!({}));
    // While paused, her presence changes reach nobody. A later change of a member of her shard
    // becoming visible shows hers was applied (one shard applies its events in order).
    let mut moved = env.sim.member(ALICE).unwrap().1.unwrap();
    moved.status = Status::Dnd;
    env.sim.set_presence(moved);
    let sentinel = env
        .sim
        .members()
        .iter()
        .map(|(m, _)| m.user.id)
        .find(|id| *id != ALICE && *id != env.sim.application_id() && shard_of(*id, 2) == shard_of(ALICE, 2))
        .expect("another member on Alice's shard");
    env.sim.set_presence(Presence { user: PartialUser { id: sentinel, ..Default::default() }, status: Status::Idle, ..Default::default() });
    env.get_until(&format!("/api/v1/users/{sentinel}"), |r| r.json()["status"] == "idle");
    // The settings stay readable (and changeable) by the token holder.
    let r = env.request("GET", &privacy_path(ALICE), &[("Authorization", &token)], b"");
    assert_eq!((r.status, r.json()), (200, settings(json!({"paused": true}))));

    // Resume: back everywhere, with what changed meanwhile; All subscribers hear USER_JOINED.
    let r = send(&env, "PATCH", ALICE, &token, &json!({"paused": false}));
    assert_eq!((r.status, r.json()), (200, settings(json!({}))));
    let back = lantern(&env, ALICE);
    assert_eq!(back["status"], "dnd");
    assert_eq!(back["activities"], base["activities"]);
    assert_eq!(count(&env), before);
    let joined = next_about(&mut all, ALICE);
    assert_eq!((joined["t"].as_str(), joined["d"]["status"].as_str()), (Some("USER_JOINED"), Some("dnd")));
    // Lanyard's All subscriber heard nothing of her while she was paused, and hears her again now.
    let update = ly_all.update_of(ALICE);
    assert_eq!(update["discord_user"]["id"], ALICE.to_string());
    assert_eq!(update["discord_status"], "dnd");
    let mut want_lanyard = base_lanyard.clone();
    want_lanyard["discord_status"] = json!("dnd");
    assert_eq!(lanyard(&env, ALICE), want_lanyard);
    assert_eq!(card_texts(&env, ALICE).0, 200);
}

#[test]
fn only_the_token_holder_reads_and_changes_the_settings() {
    let env = env();
    let bob = bob();
    let alice_token = create_token(&env.sim, ALICE);
    let bob_token = create_token(&env.sim, bob);
    let path = privacy_path(ALICE);
    let unauthorized = error("Unauthorized.", "unauthorized");

    // No token, a wrong one, another member's: refused, and nothing changes.
    let r = env.get(&path);
    assert_eq!((r.status, r.json()), (401, unauthorized.clone()));
    let r = send(&env, "PUT", ALICE, "not-a-token", &json!({"paused": true}));
    assert_eq!((r.status, r.json()), (401, unauthorized.clone()));
    let r = send(&env, "PATCH", ALICE, &bob_token, &json!({"paused": true}));
    assert_eq!((r.status, r.json()), (403, error("You can only read and change your own privacy settings.", "forbidden")));
    let r = env.request("GET", &path, &[("Authorization", &bob_token)], b"");
    assert_eq!(r.status, 403);
    // A token that names Alice but is not hers.
    use base64::Engine as _;
    let forged = base64::engine::general_purpose::STANDARD.encode(format!("{ALICE}:{}", "0".repeat(32)));
    let r = send(&env, "PATCH", ALICE, &forged, &json!({"paused": true}));
    assert_eq!(r.status, 401);
    assert_eq!(env.get(&format!("/api/v1/users/{ALICE}")).status, 200);

    // Bad bodies: a clear 400 and nothing changed.
    for (body, code, message) in [
        (&b"{"[..], "invalid_json", "Request body must be valid JSON."),
        (b"[]", "invalid_json", "Request body must be a JSON object."),
        (br#"{"hide_everything":true}"#, "invalid_privacy", ""),
        (br#"{"paused":"yes"}"#, "invalid_privacy", ""),
        (br#"{"paused":null}"#, "invalid_privacy", ""),
        (br#"{"hidden_activity_types":["dancing"]}"#, "invalid_privacy", ""),
        (br#"{"hidden_applications":["0123"]}"#, "invalid_privacy", ""),
    ] {
        let r = env.request("PATCH", &path, &[("Authorization", &alice_token)], body);
        assert_eq!((r.status, r.json()["code"].as_str()), (400, Some(code)), "{}", r.text());
        if !message.is_empty() {
            assert_eq!(r.json()["error"], message);
        }
    }
    let r = send(&env, "PATCH", ALICE, &alice_token, &json!({"hidden_activity_types": ["dancing"]}));
    assert!(r.json()["error"].as_str().unwrap().contains("dancing"), "{}", r.text());
    let r = env.request("GET", &path, &[("Authorization", &format!("Bearer {alice_token}"))], b"");
    assert_eq!((r.status, r.json()), (200, settings(json!({}))));
    let r = env.request("GET", &format!("/api/v1/users/0{}/privacy", &ALICE.to_string()[1..]), &[("Authorization", &alice_token)], b"");
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_user_id")));
    let r = env.request("DELETE", &path, &[("Authorization", &alice_token)], b"");
    assert_eq!(r.status, 405);

    // PATCH changes the fields given; PUT replaces the whole.
    let r = send(&env, "PATCH", ALICE, &alice_token, &json!({"hide_spotify": true}));
    assert_eq!(r.json(), settings(json!({"hide_spotify": true})));
    let r = send(&env, "PATCH", ALICE, &alice_token, &json!({"hidden_applications": [FILM_APP, CHESS_APP, FILM_APP]}));
    assert_eq!(r.json(), settings(json!({"hide_spotify": true, "hidden_applications": [CHESS_APP, FILM_APP]})));
    let r = send(&env, "PUT", ALICE, &alice_token, &json!({"hide_kv": true}));
    assert_eq!(r.json(), settings(json!({"hide_kv": true})));
    // Bob's are his own.
    let r = env.request("GET", &privacy_path(bob), &[("Authorization", &bob_token)], b"");
    assert_eq!(r.json(), settings(json!({})));
}

#[test]
fn settings_survive_a_restart_and_a_shard_count_change() {
    let mut env = env();
    let bob = bob();
    let alice_token = create_token(&env.sim, ALICE);
    let bob_token = create_token(&env.sim, bob);
    put_settings(&env, ALICE, &alice_token, json!({"hide_spotify": true, "hide_platforms": true}));
    put_settings(&env, bob, &bob_token, json!({"paused": true}));
    let filtered = lantern(&env, ALICE);
    assert_eq!(filtered["active_platforms"]["spotify"], Value::Null);

    for shards in [2, 3, 1] {
        env.stop_server();
        env.shards = shards;
        env.start_server();
        env.get_until(&format!("/api/v1/users/{ALICE}"), |r| r.status == 200);
        let r = env.request("GET", &privacy_path(ALICE), &[("Authorization", &alice_token)], b"");
        assert_eq!((r.status, r.json()), (200, settings(json!({"hide_spotify": true, "hide_platforms": true}))), "{shards} shards");
        assert_eq!(lantern(&env, ALICE), filtered, "{shards} shards");
        let r = env.request("GET", &privacy_path(bob), &[("Authorization", &bob_token)], b"");
        assert_eq!(r.json(), settings(json!({"paused": true})), "{shards} shards");
        assert_eq!(env.get(&format!("/api/v1/users/{bob}")).status, 404, "{shards} shards");
    }
    env.stop_server();
    let rows = lantern::storage::privacy_rows(env.dir.path()).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|(file, user, _)| *file == 0 && (*user == ALICE || *user == bob)));
}

/// `/privacy <sub>` with string options, as Discord sends it.
fn privacy_command(sub: &str, args: &[(&str, &str, bool)]) -> Value {
    let options: Vec<Value> = args
        .iter()
        .map(|(name, value, focused)| {
            let mut o = json!({"name": name, "type": 3, "value": value});
            if *focused {
                o["focused"] = json!(true);
            }
            o
        })
        .collect();
    json!({"id": "1", "name": "privacy", "type": 1, "options": [{"name": sub, "type": 1, "options": options}]})
}

/// Runs `/privacy <sub>` as `user` and returns the reply, checking it is private.
fn bot(env: &Env, user: Snowflake, in_guild: bool, sub: &str, args: &[(&str, &str)]) -> String {
    let args: Vec<(&str, &str, bool)> = args.iter().map(|(k, v)| (*k, *v, false)).collect();
    let id = support::kv::interact(&env.sim, user, in_guild, 2, privacy_command(sub, &args));
    let body = support::kv::callback(&env.sim, id);
    assert_eq!((body["type"].as_u64(), body["data"]["flags"].as_u64()), (Some(4), Some(64)), "ephemeral: {body}");
    body["data"]["content"].as_str().unwrap().to_owned()
}

fn described(lines: [&str; 8]) -> String {
    format!(
        "Your privacy settings:\n- Spotify (`hide_spotify`): {}\n- Activities (`hide_activities`): {}\n- Hidden activity types (`hidden_activity_types`): {}\n- Hidden applications (`hidden_applications`): {}\n- Platforms (`hide_platforms`): {}\n- Last seen (`hide_last_seen`): {}\n- Key-value storage in public objects (`hide_kv`): {}\n- Paused: {}",
        lines[0], lines[1], lines[2], lines[3], lines[4], lines[5], lines[6], lines[7]
    )
}

#[test]
fn the_bot_changes_only_the_settings_of_the_member_who_runs_it() {
    let env = env();
    let bob = bob();
    let base = lantern(&env, ALICE);
    let defaults = described(["shown", "shown", "none", "none", "shown", "shown", "shown", "no"]);
    assert_eq!(bot(&env, ALICE, true, "show", &[]), defaults);

    // Alice hides Spotify and two activity types; readers see it at once.
    let reply = bot(&env, ALICE, true, "set", &[("setting", "hide_spotify"), ("value", "on")]);
    assert_eq!(reply, format!("Your privacy settings have been updated.\n{}", described(["hidden", "shown", "none", "none", "shown", "shown", "shown", "no"])));
    let reply = bot(&env, ALICE, false, "set", &[("setting", "hidden_activity_types"), ("value", "custom, playing")]);
    let hidden = described(["hidden", "shown", "`playing`, `custom`", "none", "shown", "shown", "shown", "no"]);
    assert_eq!(reply, format!("Your privacy settings have been updated.\n{hidden}"));
    let mut want = base.clone();
    want["active_platforms"]["spotify"] = Value::Null;
    without_activities(&mut want, |a| a["id"] == "spotify:1" || a["type"] == "PLAYING" || a["type"] == "CUSTOM");
    assert_eq!(lantern(&env, ALICE), want);

    // Bad values are explained and change nothing.
    assert_eq!(bot(&env, ALICE, true, "set", &[("setting", "hide_kv"), ("value", "maybe")]), "`hide_kv` takes `on` or `off`.");
    assert!(bot(&env, ALICE, true, "set", &[("setting", "hide_everything"), ("value", "on")]).starts_with("Unknown setting."));
    assert!(bot(&env, ALICE, true, "set", &[("setting", "hidden_activity_types"), ("value", "dancing")]).contains("unknown activity type `dancing`"));
    assert_eq!(bot(&env, ALICE, true, "show", &[]), hidden);

    // Bob pauses and resumes himself; Alice stays as she is.
    assert!(bot(&env, bob, true, "pause", &[]).starts_with("Lantern has paused showing you"));
    assert!(bot(&env, bob, true, "pause", &[]).starts_with("You are already paused."));
    assert_eq!(env.get(&format!("/api/v1/users/{bob}")).status, 404);
    assert_eq!(lantern(&env, ALICE), want);
    assert_eq!(bot(&env, ALICE, true, "show", &[]), hidden);
    assert_eq!(bot(&env, ALICE, true, "resume", &[]), "You are not paused.");
    assert_eq!(env.get(&format!("/api/v1/users/{bob}")).status, 404, "Alice's resume is hers");
    assert_eq!(bot(&env, bob, true, "resume", &[]), "Lantern shows you again, with your privacy settings.");
    assert_eq!(env.get(&format!("/api/v1/users/{bob}")).status, 200);
    assert_eq!(bot(&env, bob, true, "show", &[]), defaults);

    // Back to showing everything.
    bot(&env, ALICE, true, "set", &[("setting", "hide_spotify"), ("value", "off")]);
    bot(&env, ALICE, true, "set", &[("setting", "hidden_activity_types"), ("value", "none")]);
    assert_eq!(lantern(&env, ALICE), base);
}

#[test]
fn the_bot_autocompletes_settings_and_values() {
    let env = env();
    let complete = |args: &[(&str, &str, bool)]| {
        let id = support::kv::interact(&env.sim, ALICE, true, 4, privacy_command("set", args));
        let body = support::kv::callback(&env.sim, id);
        assert_eq!(body["type"], 8, "{body}");
        body["data"]["choices"].clone()
    };
    assert_eq!(complete(&[("setting", "spot", true)]), json!([{"name": "hide_spotify: hides Spotify", "value": "hide_spotify"}]));
    assert_eq!(complete(&[("setting", "", true)]).as_array().unwrap().len(), 7);
    assert_eq!(
        complete(&[("setting", "hide_kv", false), ("value", "", true)]),
        json!([{"name": "on (hide)", "value": "on"}, {"name": "off (show)", "value": "off"}])
    );
    assert_eq!(
        complete(&[("setting", "hidden_activity_types", false), ("value", "custom,w", true)]),
        json!([{"name": "custom,watching", "value": "custom,watching"}])
    );
}

#[test]
fn a_backup_and_its_restore_into_another_shard_count_keep_the_settings() {
    let env = env();
    let token = create_token(&env.sim, ALICE);
    put_settings(&env, ALICE, &token, json!({"hide_last_seen": true, "hidden_applications": [CHESS_APP]}));
    let out = tempfile::tempdir().unwrap();
    let socket = env.dir.path().join("control.sock");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_lantern")).args(args).output().expect("lantern runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["backup", "--socket", socket.to_str().unwrap(), "--out", out.path().to_str().unwrap()]);
    let archive = std::fs::read_dir(out.path()).unwrap().flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with(".tar.gz")).unwrap();
    let restored = tempfile::tempdir().unwrap();
    let data = restored.path().join("shards");
    run(&["restore", archive.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--shards", "3"]);
    let rows = lantern::storage::privacy_rows(&data).unwrap();
    assert_eq!(rows.len(), 1);
    let (file, user, stored) = &rows[0];
    assert_eq!((*file, *user), (shard_of(ALICE, 3), ALICE));
    let stored: Value = serde_json::from_str(stored).unwrap();
    assert_eq!(stored, settings(json!({"hide_last_seen": true, "hidden_applications": [CHESS_APP]})));
}

#[test]
fn the_bot_keeps_no_settings_for_someone_who_is_not_a_member() {
    let env = env();
    let stranger = Snowflake(1_300_000_000_000_000_777);
    let reply = bot(&env, stranger, false, "set", &[("setting", "hide_spotify"), ("value", "on")]);
    assert_eq!(reply, "We could not find your user data. This generally means you are not in our Discord server.");
    assert_eq!(bot(&env, stranger, false, "pause", &[]), "We could not find your user data. This generally means you are not in our Discord server.");
}
