//! REST API against the real server (2 shards) and the Discord simulator, over real TCP.

mod support;

use lantern::discord::{Activity, Assets, ClientStatus, Member, PartialUser, Presence, Snowflake, Status, Timestamps, User};
use lantern::runtime::shard_of;
use lantern::sim::{Fault, SimConfig};
use serde_json::{json, Value};
use support::{wait_for, Env, DEADLINE};

const ALICE: Snowflake = Snowflake(1_300_000_000_000_000_001);
const BOB: Snowflake = Snowflake(1_300_000_000_000_000_002);
const UNKNOWN: &str = "1300000000000000999";

fn small() -> SimConfig {
    SimConfig { members: 40, seed: 11, heartbeat_interval_ms: 1000, ..SimConfig::default() }
}

fn alice() -> Member {
    Member {
        user: User {
            id: ALICE,
            username: "alice".into(),
            discriminator: "0".into(),
            global_name: Some("Alice".into()),
            avatar: Some("0123456789abcdef0123456789abcdef".into()),
            public_flags: Some(1 << 22),
            ..Default::default()
        },
        joined_at: Some("2021-05-03T00:00:00.000000+00:00".into()),
        ..Default::default()
    }
}

fn bob() -> Member {
    Member {
        user: User { id: BOB, username: "bob".into(), discriminator: "0".into(), ..Default::default() },
        joined_at: Some("2022-01-01T10:00:00.250000+00:00".into()),
        ..Default::default()
    }
}

fn playing(id: Snowflake) -> Presence {
    Presence {
        user: PartialUser { id, ..Default::default() },
        status: Status::Online,
        client_status: ClientStatus { desktop: Some(Status::Online), ..Default::default() },
        activities: vec![Activity {
            id: Some("game1".into()),
            name: "Chess".into(),
            kind: 0,
            created_at: Some(1_700_000_000_000),
            application_id: Some(Snowflake(1_100_000_000_000_000_000)),
            details: Some("Ranked".into()),
            state: Some("Move 12".into()),
            timestamps: Some(Timestamps { start: Some(1_700_000_000_000), end: None }),
            assets: Some(Assets { large_image: Some("mp:external/a/https/x.png".into()), large_text: Some("Board".into()), ..Default::default() }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn env() -> Env {
    Env::start_with(small(), 2, |sim| {
        sim.add_member(alice(), Some(playing(ALICE)));
        sim.add_member(bob(), None);
    })
}

fn alice_json() -> Value {
    json!({
        "metadata": {
            "id": "1300000000000000001", "username": "alice", "discriminator": "0", "global_name": "Alice",
            "avatar": "0123456789abcdef0123456789abcdef",
            "avatar_url": "https://cdn.discordapp.com/avatars/1300000000000000001/0123456789abcdef0123456789abcdef.png",
            "display_avatar_url": "https://cdn.discordapp.com/avatars/1300000000000000001/0123456789abcdef0123456789abcdef.png",
            "bot": false,
            "flags": { "human_readable": ["ActiveDeveloper"], "bitfield": 4194304 },
            "monitoring_since": { "unix": 1620000000, "raw": "2021-05-03T00:00:00.000Z" },
            "avatar_decoration_data": null, "banner_decoration_data": null, "collectibles": null,
            "display_name_styles": null, "clan": null, "primary_guild": null
        },
        "active_platforms": { "desktop": "online", "mobile": "offline", "web": "offline", "embedded": "offline", "vr": "offline", "spotify": null },
        "activities": [{
            "id": "game1", "name": "Chess", "type": "PLAYING", "state": "Move 12", "details": "Ranked",
            "application_id": "1100000000000000000", "created_at": 1700000000,
            "assets": {
                "large_image": { "hash": "mp:external/a/https/x.png", "image_url": "https://media.discordapp.net/external/a/https/x.png", "text": "Board" },
                "small_image": { "hash": null, "image_url": null, "text": null }
            },
            "start_time": { "unix": 1700000000, "raw": "2023-11-14T22:13:20.000Z" },
            "end_time": null
        }],
        "storage": {},
        "server_tag": null,
        "status": "online",
        "last_seen_at": { "unix": null, "raw": null }
    })
}

fn error(message: &str, code: &str) -> Value {
    json!({ "success": false, "error": message, "code": code })
}

#[test]
fn info_health_and_single_user() {
    let env = env();
    let members = env.sim.members().len();
    let r = env.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({ "data": {
            "info": "Lantern provides Discord presences as an API and WebSocket. Find out more here: https://github.com/discordplace/lantern",
            "discord_invite": "https://invite.lantern.rest",
            "currently_monitoring_users": members
        }})
    );
    assert!(r.text().starts_with(r#"{"data":{"info":"Lantern provides"#), "key order: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    let h = env.get("/health");
    assert_eq!(h.status, 200);
    assert_eq!(
        h.json(),
        json!({ "status": "ok", "gateway": "connected", "members_loaded": true, "shards": { "total": 2, "up": 2 }, "monitored_users": members })
    );

    let r = env.get("/api/v1/users/1300000000000000001");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), alice_json());

    let bob = env.get("/api/v1/users/1300000000000000002").json();
    assert_eq!(bob["status"], "offline");
    assert_eq!(bob["activities"], json!([]));
    assert_eq!(bob["metadata"]["global_name"], Value::Null);
    assert_eq!(bob["metadata"]["monitoring_since"], json!({ "unix": 1641031200, "raw": "2022-01-01T10:00:00.250Z" }));
    assert_eq!(bob["last_seen_at"], json!({ "unix": null, "raw": null }));
}

#[test]
fn bulk_lookup_rules() {
    let env = env();
    let path = format!("/api/v1/users?user_ids={BOB}&user_ids={UNKNOWN}&user_ids={ALICE}");
    let r = env.get(&path);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["metadata"]["id"], BOB.to_string(), "request order");
    assert_eq!(v[1], alice_json());

    // Comma-separated and a single id work too.
    let r = env.get(&format!("/api/v1/users?user_ids={ALICE},{BOB}"));
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    let r = env.get(&format!("/api/v1/users?user_ids={ALICE}"));
    assert_eq!(r.json(), json!([alice_json()]));

    let r = env.get("/api/v1/users");
    assert_eq!((r.status, r.json()), (400, error("user_ids is required.", "missing_user_ids")));
    let fifty_one: Vec<String> = (0..51).map(|i| format!("user_ids={}", 1_300_000_000_000_001_000u64 + i)).collect();
    let r = env.get(&format!("/api/v1/users?{}", fifty_one.join("&")));
    assert_eq!((r.status, r.json()), (400, error("You can only request up to 50 users at once.", "too_many_user_ids")));
    let fifty: Vec<String> = (0..50).map(|i| format!("user_ids={}", 1_300_000_000_000_001_000u64 + i)).collect();
    let r = env.get(&format!("/api/v1/users?{}&user_ids={ALICE}", fifty[..49].join("&")));
    assert_eq!(r.status, 200, "exactly 50 is allowed");
    let r = env.get(&format!("/api/v1/users?user_ids={ALICE}&user_ids={ALICE}"));
    assert_eq!((r.status, r.json()), (400, error("user_ids must not contain duplicates.", "duplicate_user_ids")));
    let r = env.get("/api/v1/users?user_ids=abc");
    assert_eq!(
        (r.status, r.json()),
        (400, error("user_ids must be an array of strings with 17-19 characters long.", "invalid_user_ids"))
    );
    let r = env.get(&format!("/api/v1/users?user_ids={UNKNOWN}"));
    assert_eq!((r.status, r.json()), (404, error("Users you requested are not monitored by Lantern.", "users_not_monitored")));
}

#[test]
fn errors_methods_cors_head_gzip() {
    let env = env();
    let r = env.get("/api/v1/users/12ab");
    assert_eq!((r.status, r.json()), (400, error("user_id must be a number.", "invalid_user_id")));
    let r = env.get("/api/v1/users/123");
    assert_eq!((r.status, r.json()), (400, error("user_id must be 17-19 characters long.", "invalid_user_id")));
    let r = env.get(&format!("/api/v1/users/{UNKNOWN}"));
    assert_eq!(
        (r.status, r.json()),
        (404, error("User 1300000000000000999 is not being monitored by Lantern.", "user_not_monitored"))
    );
    for path in ["/nope", "/api/v1/users/1300000000000000001/createSvg", "/api/v2/users"] {
        let r = env.get(path);
        assert_eq!((r.status, r.json()), (404, error("Resource not found.", "not_found")), "{path}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    }
    let r = env.request("POST", "/api/v1/users/1300000000000000001", &[], b"{}");
    assert_eq!((r.status, r.json()), (405, error("Method POST is not allowed on this path.", "method_not_allowed")));
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));

    // Trailing slash and case do not matter.
    assert_eq!(env.get("/api/v1/users/1300000000000000001/").json(), alice_json());
    assert_eq!(env.get("/API/V1/Users/1300000000000000001").json(), alice_json());

    // HEAD: same headers, no body.
    let get = env.get("/api/v1/users/1300000000000000001");
    let head = env.request("HEAD", "/api/v1/users/1300000000000000001", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), get.header("content-length"));

    // Preflight.
    let r = env.request(
        "OPTIONS",
        "/api/v1/users/1300000000000000001",
        &[("Origin", "https://example.com"), ("Access-Control-Request-Method", "PUT")],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, HEAD, PUT, PATCH, DELETE, OPTIONS"));
    assert_eq!(r.header("access-control-allow-headers"), Some("Authorization, Content-Type"));

    // gzip when asked (the body is over the threshold), identity otherwise.
    let r = env.request("GET", "/api/v1/users/1300000000000000001", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut plain).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&plain).unwrap(), alice_json());
    assert_eq!(get.header("content-encoding"), None);
    assert_eq!(get.header("vary"), Some("Accept-Encoding"));
}

#[test]
fn answers_cross_shard() {
    let env = env();
    let ids: Vec<Snowflake> = env.sim.members().iter().map(|(m, _)| m.user.id).collect();
    assert!(ids.iter().any(|id| shard_of(*id, 2) == 0) && ids.iter().any(|id| shard_of(*id, 2) == 1));
    let mut cross = 0;
    for id in &ids {
        let r = env.get(&format!("/api/v1/users/{id}"));
        assert_eq!(r.status, 200, "{id}");
        assert_eq!(r.json()["metadata"]["id"], id.to_string());
        let served_by: usize = r.header("x-lantern-shard").unwrap().parse().unwrap();
        if served_by != shard_of(*id, 2) {
            cross += 1;
        }
    }
    assert!(cross > 0, "no request was answered through another shard");
}

#[test]
fn presence_and_membership_changes() {
    let env = env();
    let path = format!("/api/v1/users/{BOB}");
    // Presence change.
    let mut p = playing(BOB);
    p.status = Status::Idle;
    p.client_status = ClientStatus { mobile: Some(Status::Idle), ..Default::default() };
    env.sim.set_presence(p);
    let v = env.get_until(&path, |r| r.json()["status"] == "idle").json();
    assert_eq!(v["active_platforms"]["mobile"], "idle");
    assert_eq!(v["activities"][0]["name"], "Chess");

    // Member update (new global name) and user fields carried by a presence.
    let mut b = bob();
    b.user.global_name = Some("Bobby".into());
    env.sim.update_member(b);
    env.get_until(&path, |r| r.json()["metadata"]["global_name"] == "Bobby");

    // Join.
    let carol = Member {
        user: User { id: Snowflake(1_300_000_000_000_000_003), username: "carol".into(), discriminator: "0".into(), ..Default::default() },
        joined_at: Some("2024-01-01T00:00:00+00:00".into()),
        ..Default::default()
    };
    env.sim.add_member(carol, None);
    let v = env.get_until("/api/v1/users/1300000000000000003", |r| r.status == 200).json();
    assert_eq!(v["metadata"]["username"], "carol");

    // Events of another guild are ignored.
    env.sim.dispatch(
        "PRESENCE_UPDATE",
        json!({ "user": { "id": ALICE.to_string() }, "guild_id": "1000000000000000001", "status": "dnd", "activities": [], "client_status": { "web": "dnd" } }),
    );
    env.sim.dispatch(
        "GUILD_MEMBER_REMOVE",
        json!({ "guild_id": "1000000000000000001", "user": { "id": ALICE.to_string(), "username": "alice" } }),
    );
    // Leave.
    env.sim.remove_member(BOB);
    env.get_until(&path, |r| r.status == 404);
    // Alice is untouched by the other guild's events (they were dispatched before the remove).
    assert_eq!(env.get(&format!("/api/v1/users/{ALICE}")).json(), alice_json());
}

#[test]
fn resumes_after_a_dropped_connection_without_losing_updates() {
    let env = env();
    let before = env.sim.stats();
    env.sim.fault(Fault::DropConnections);
    // Sent while the server is (about to be) disconnected: resume must replay it.
    let mut p = playing(BOB);
    p.status = Status::Dnd;
    env.sim.set_presence(p);
    env.get_until(&format!("/api/v1/users/{BOB}"), |r| r.json()["status"] == "dnd");
    assert!(wait_for(DEADLINE, || env.sim.stats().resumes > before.resumes), "the server never resumed");
    assert_eq!(env.sim.stats().identifies, before.identifies, "resumed, not re-identified");
    env.get_until("/health", |r| r.status == 200);
}

#[test]
fn reidentifies_after_invalid_session_and_drops_departed_members() {
    let env = env();
    // Bob and a generated member on the other shard leave while the server is away: the
    // session is invalidated first, so no GUILD_MEMBER_REMOVE reaches the server and only the
    // member list of the new session tells it they are gone.
    let other = env
        .sim
        .members()
        .iter()
        .map(|(m, _)| m.user.id)
        .find(|id| ![ALICE, BOB, env.sim.application_id()].contains(id) && shard_of(*id, 2) != shard_of(BOB, 2))
        .expect("a member on the other shard");
    let gone = [BOB, other];
    for id in gone {
        assert_eq!(env.get(&format!("/api/v1/users/{id}")).status, 200, "{id} is monitored before");
    }
    let monitoring = || env.get("/").json()["data"]["currently_monitoring_users"].as_u64().unwrap();
    let before_count = monitoring();
    let before = env.sim.stats();
    env.sim.fault_removing(Fault::InvalidSession { resumable: false }, &gone);
    assert!(wait_for(DEADLINE, || env.sim.stats().identifies > before.identifies));
    for id in gone {
        let r = env.get_until(&format!("/api/v1/users/{id}"), |r| r.status != 200);
        assert_eq!((r.status, r.json()), (404, error(&format!("User {id} is not being monitored by Lantern."), "user_not_monitored")));
    }
    assert!(wait_for(DEADLINE, || monitoring() == before_count - 2), "monitoring {} users, expected {}", monitoring(), before_count - 2);
    assert_eq!(env.sim.stats().resumes, before.resumes, "a new session, not a resume");
    // The others stay, unchanged.
    env.get_until("/health", |r| r.status == 200);
    assert_eq!(env.get(&format!("/api/v1/users/{ALICE}")).json(), alice_json());
    let r = env.get(&format!("/api/v1/users?user_ids={ALICE}&user_ids={BOB}"));
    assert_eq!((r.status, r.json()), (200, json!([alice_json()])));
}

#[test]
fn last_seen_survives_a_restart() {
    let mut env = env();
    let path = format!("/api/v1/users/{ALICE}");
    env.sim.set_presence(Presence { user: PartialUser { id: ALICE, ..Default::default() }, status: Status::Offline, ..Default::default() });
    let v = env.get_until(&path, |r| r.json()["status"] == "offline").json();
    let seen = v["last_seen_at"].clone();
    assert!(seen["unix"].as_i64().unwrap() > 1_700_000_000, "{seen}");
    assert!(seen["raw"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["activities"], json!([]));

    env.stop_server();
    env.start_server();
    let v = env.get(&path).json();
    assert_eq!(v["status"], "offline");
    assert_eq!(v["last_seen_at"], seen);

    // Coming back online clears it, and the clear is persisted: it is gone from the shard
    // files, and a server started while she is offline (it never saw her leave) shows no
    // last-seen time rather than the old one.
    env.sim.set_presence(playing(ALICE));
    env.get_until(&path, |r| r.json() == alice_json());
    env.stop_server();
    let rows = lantern::storage::last_seen_rows(env.dir.path()).unwrap();
    assert!(rows.iter().all(|(_, id, _)| *id != ALICE), "the clear reached the disk: {rows:?}");
    env.sim.set_presence(Presence { user: PartialUser { id: ALICE, ..Default::default() }, status: Status::Offline, ..Default::default() });
    env.start_server();
    let v = env.get(&path).json();
    assert_eq!(v["status"], "offline");
    assert_eq!(v["last_seen_at"], json!({ "unix": null, "raw": null }));
}

#[test]
fn large_guild_is_loaded_through_member_chunks() {
    let env = Env::start(SimConfig { members: 2500, seed: 5, ..SimConfig::default() }, 2);
    let members = env.sim.members().len();
    assert!(members >= 2500);
    let r = env.get("/");
    assert_eq!(r.json()["data"]["currently_monitoring_users"], members);
    assert_eq!(env.sim.stats().member_requests, 1);
    // Every member answers, whichever shard owns it.
    for (m, _) in env.sim.members().iter().step_by(97) {
        assert_eq!(env.get(&format!("/api/v1/users/{}", m.user.id)).status, 200);
    }
}
