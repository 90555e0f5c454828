//! Lanyard's REST dialect (`/v1/users/...`) on the real server (2 shards) against the
//! simulator, over real TCP: the presence object, `@me`, the key-value routes shared with the
//! Lantern routes, and Lanyard's error envelope.

mod support;

use lantern::discord::{Activity, Assets, ClientStatus, Member, Presence, Snowflake, Status, Timestamps};
use lantern::runtime::shard_of;
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use support::kv::{create_token, StorageWatch};
use support::Env;

fn env() -> Env {
    Env::start(SimConfig { members: 40, seed: 31, heartbeat_interval_ms: 1000, ..SimConfig::default() }, 2)
}

/// A non-bot member owned by `shard` (of 2), and the `n`th such one.
fn member_on(env: &Env, shard: usize, n: usize) -> Snowflake {
    env.sim
        .members()
        .iter()
        .map(|(m, _)| m)
        .filter(|m| !m.user.bot && m.user.id != env.sim.application_id() && shard_of(m.user.id, 2) == shard)
        .nth(n)
        .map(|m| m.user.id)
        .expect("a member on that shard")
}

fn lanyard_error(code: &str, message: &str) -> Value {
    json!({ "success": false, "error": { "code": code, "message": message } })
}

/// Lanyard's presence of a member, written out from the simulator's member and presence, field
/// by field as Lanyard documents it.
fn expected_presence(member: &Member, presence: Option<&Presence>, kv: Value) -> Value {
    let activities = presence.map(|p| serde_json::to_value(&p.activities).unwrap()).unwrap_or(json!([]));
    let spotify = activities.as_array().unwrap().iter().find(|a| a["id"] == "spotify:1").map(|a| {
        let art = a["assets"]["large_image"].as_str().map(|i| format!("https://i.scdn.co/image/{}", i.trim_start_matches("spotify:")));
        json!({
            "track_id": a["sync_id"], "timestamps": a["timestamps"], "song": a["details"], "artist": a["state"],
            "album_art_url": art, "album": a["assets"]["large_text"],
        })
    });
    let on = |f: fn(&ClientStatus) -> bool| presence.is_some_and(|p| f(&p.client_status));
    let status = match presence.map(|p| p.status) {
        Some(Status::Online) => "online",
        Some(Status::Idle) => "idle",
        Some(Status::Dnd) => "dnd",
        _ => "offline",
    };
    json!({
        "discord_user": serde_json::to_value(&member.user).unwrap(),
        "discord_status": status,
        "active_on_discord_web": on(|c| c.web.is_some()),
        "active_on_discord_desktop": on(|c| c.desktop.is_some()),
        "active_on_discord_mobile": on(|c| c.mobile.is_some()),
        "active_on_discord_embedded": on(|c| c.embedded.is_some()),
        "active_on_discord_vr": on(|c| c.vr.is_some()),
        "listening_to_spotify": spotify.is_some(),
        "spotify": spotify,
        "activities": activities,
        "kv": kv,
    })
}

#[test]
fn the_user_route_serves_lanyards_presence_object_for_every_member() {
    let env = env();
    let mut spotify_seen = false;
    for (member, presence) in env.sim.members() {
        let r = env.get(&format!("/v1/users/{}", member.user.id));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let want = json!({ "success": true, "data": expected_presence(&member, presence.as_ref(), json!({})) });
        assert_eq!(r.json(), want);
        spotify_seen |= r.json()["data"]["listening_to_spotify"] == true;
    }
    assert!(spotify_seen, "the simulated guild has a Spotify listener");
}

#[test]
fn unmonitored_and_malformed_ids_and_unknown_paths_get_lanyards_errors() {
    let env = env();
    let not_monitored = lanyard_error("user_not_monitored", "User is not being monitored by Lantern");
    for path in ["/v1/users/1300000000000000999", "/v1/users/abc", "/v1/users/0123"] {
        let r = env.get(path);
        assert_eq!((r.status, r.json()), (404, not_monitored.clone()), "{path}");
    }
    let route = lanyard_error("not_found", "Route does not exist");
    for path in ["/v1", "/v1/users", "/v1/nope", "/v1/users/1/kv/a/b"] {
        let r = env.get(path);
        assert_eq!((r.status, r.json()), (404, route.clone()), "{path}");
    }
    let id = member_on(&env, 0, 0);
    let r = env.request("POST", &format!("/v1/users/{id}"), &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, OPTIONS")));
    assert_eq!(r.json(), lanyard_error("method_not_allowed", "Method POST is not allowed on this path"));
    let r = env.request("OPTIONS", &format!("/v1/users/{id}/kv/a"), &[], b"");
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert!(r.header("access-control-allow-methods").unwrap().contains("PATCH"));
    // The Lantern routes are untouched by the dialect.
    assert_eq!(env.get(&format!("/api/v1/users/{id}")).json()["metadata"]["id"], id.to_string());
}

#[test]
fn a_presence_change_shows_in_the_lanyard_object_with_its_spotify_block() {
    let env = env();
    let id = member_on(&env, 1, 0);
    let (member, _) = env.sim.member(id).unwrap();
    let song = Activity {
        id: Some("spotify:1".into()),
        name: "Spotify".into(),
        kind: 2,
        sync_id: Some("4cOdK2wGLETKBW3PvgPWqT".into()),
        session_id: Some("abc".into()),
        details: Some("Never Gonna Give You Up".into()),
        state: Some("Rick Astley".into()),
        timestamps: Some(Timestamps { start: Some(1_700_000_000_000), end: Some(1_700_000_214_000) }),
        assets: Some(Assets { large_image: Some("spotify:ab67616d0000b273aa".into()), large_text: Some("Whenever You Need Somebody".into()), ..Assets::default() }),
        ..Activity::default()
    };
    let presence = Presence {
        user: lantern::discord::PartialUser { id, ..Default::default() },
        guild_id: Some(env.sim.guild_id()),
        status: Status::Dnd,
        activities: vec![song],
        client_status: ClientStatus { mobile: Some(Status::Dnd), embedded: Some(Status::Dnd), ..ClientStatus::default() },
    };
    env.sim.set_presence(presence.clone());
    let path = format!("/v1/users/{id}");
    let r = env.get_until(&path, |r| r.json()["data"]["spotify"]["track_id"] == "4cOdK2wGLETKBW3PvgPWqT");
    assert_eq!(r.json()["data"], expected_presence(&member, Some(&presence), json!({})));
    assert_eq!(
        r.json()["data"]["spotify"],
        json!({ "track_id": "4cOdK2wGLETKBW3PvgPWqT", "timestamps": { "start": 1_700_000_000_000i64, "end": 1_700_000_214_000i64 },
                "song": "Never Gonna Give You Up", "artist": "Rick Astley",
                "album_art_url": "https://i.scdn.co/image/ab67616d0000b273aa", "album": "Whenever You Need Somebody" })
    );
    assert_eq!((r.json()["data"]["active_on_discord_mobile"].as_bool(), r.json()["data"]["active_on_discord_embedded"].as_bool()), (Some(true), Some(true)));
}

#[test]
fn me_answers_the_key_owners_presence_and_refuses_anything_else() {
    let env = env();
    let id = member_on(&env, 1, 1);
    let no_permission = lanyard_error("no_permission", "You do not have permission to access this resource");
    let r = env.get("/v1/users/@me");
    assert_eq!((r.status, r.json()), (401, no_permission.clone()));
    let token = create_token(&env.sim, id);
    // A key in the right form for this user that is not their key.
    use base64::Engine as _;
    let forged = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{}", "0".repeat(32)));
    for wrong in [forged.as_str(), "nope", &format!("Bearer {token}")] {
        let r = env.request("GET", "/v1/users/@me", &[("Authorization", wrong)], b"");
        assert_eq!((r.status, r.json()), (401, no_permission.clone()), "{wrong}");
    }
    let r = env.request("GET", "/v1/users/@me", &[("Authorization", &token)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), env.get(&format!("/v1/users/{id}")).json());
}

#[test]
fn kv_routes_write_the_same_store_as_the_lantern_routes_and_answer_204() {
    let env = env();
    let id = member_on(&env, 0, 1);
    let token = create_token(&env.sim, id);
    let auth = [("Authorization", token.as_str())];
    let mut watch = StorageWatch::subscribe(&env, id);

    let r = env.request("PUT", &format!("/v1/users/{id}/kv/fav_song"), &auth, "Never Gonna Give You Up".as_bytes());
    assert_eq!((r.status, r.body.len(), r.header("content-type")), (204, 0, None), "{}", r.text());
    watch.expect_update(&env, &json!({ "fav_song": "Never Gonna Give You Up" }));
    assert_eq!(env.get(&format!("/v1/users/{id}")).json()["data"]["kv"], json!({ "fav_song": "Never Gonna Give You Up" }));
    // Lantern's routes read (and may delete) a key with `_`, but do not write one.
    assert_eq!(env.get(&format!("/api/v1/users/{id}/storage/fav_song")).json(), json!({ "value": "Never Gonna Give You Up" }));
    let r = env.request("PUT", &format!("/api/v1/users/{id}/storage/other_key"), &auth, br#"{"value":"x"}"#);
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_key")));

    // PATCH merges several pairs at once, through `@me`.
    let r = env.request("PATCH", "/v1/users/@me/kv", &auth, br#"{"a":"1","b_2":"two","fav_song":"Take On Me"}"#);
    assert_eq!((r.status, r.body.len()), (204, 0), "{}", r.text());
    let merged = json!({ "a": "1", "b_2": "two", "fav_song": "Take On Me" });
    watch.expect_update(&env, &merged);
    assert_eq!(env.get(&format!("/api/v1/users/{id}/storage")).json(), merged);

    // DELETE, and a delete of a key that does not exist, are both 204.
    for key in ["a", "a"] {
        let r = env.request("DELETE", &format!("/v1/users/{id}/kv/{key}"), &auth, b"");
        assert_eq!((r.status, r.body.len()), (204, 0));
    }
    watch.expect_update(&env, &json!({ "b_2": "two", "fav_song": "Take On Me" }));
    // A write made on the Lantern side shows in Lanyard's object.
    let r = env.request("PUT", &format!("/api/v1/users/{id}/storage/lantern"), &auth, br#"{"value":"yes"}"#);
    assert_eq!(r.status, 200);
    let r = env.get_until(&format!("/v1/users/{id}"), |r| r.json()["data"]["kv"]["lantern"] == "yes");
    assert_eq!(r.json()["data"]["kv"], json!({ "b_2": "two", "fav_song": "Take On Me", "lantern": "yes" }));
}

#[test]
fn kv_routes_refuse_bad_keys_values_bodies_and_other_users_with_lanyards_codes() {
    let env = env();
    let id = member_on(&env, 1, 2);
    let other = member_on(&env, 0, 2);
    let token = create_token(&env.sim, id);
    let auth = [("Authorization", token.as_str())];
    let no_permission = lanyard_error("no_permission", "You do not have permission to access this resource");
    let validation = |m: &str| lanyard_error("kv_validation_failed", m);
    let cases: Vec<(&str, String, Vec<u8>, u16, Value)> = vec![
        ("PUT", format!("/v1/users/{id}/kv/{}", "k".repeat(256)), b"v".to_vec(), 400, validation("key must be 255 characters or less")),
        ("PUT", format!("/v1/users/{id}/kv/a-b"), b"v".to_vec(), 400, validation("key must be alphanumeric (a-zA-Z0-9_)")),
        ("PUT", format!("/v1/users/{id}/kv/a"), "x".repeat(30_001).into_bytes(), 400, validation("value must be 30000 characters or less")),
        ("PATCH", format!("/v1/users/{id}/kv"), br#"{"a":1}"#.to_vec(), 400, lanyard_error("invalid_kv_value", "body must be an object")),
        ("PATCH", format!("/v1/users/{id}/kv"), b"[]".to_vec(), 400, lanyard_error("invalid_kv_value", "body must be an object")),
        ("PATCH", format!("/v1/users/{id}/kv"), b"{".to_vec(), 400, lanyard_error("invalid_kv_value", "body must be an object")),
        ("PUT", format!("/v1/users/{other}/kv/a"), b"v".to_vec(), 401, no_permission.clone()),
        ("DELETE", format!("/v1/users/{other}/kv/a"), vec![], 401, no_permission.clone()),
    ];
    for (method, path, body, status, want) in cases {
        let r = env.request(method, &path, &auth, &body);
        assert_eq!((r.status, r.json()), (status, want), "{method} {path}");
    }
    let r = env.request("PUT", &format!("/v1/users/{id}/kv/a"), &[], b"v");
    assert_eq!((r.status, r.json()), (401, no_permission.clone()));
    // 512 keys at most, counted over the whole merge; a refused merge writes nothing.
    let many: serde_json::Map<String, Value> = (0..512).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = env.request("PATCH", &format!("/v1/users/{id}/kv"), &auth, &serde_json::to_vec(&many).unwrap());
    assert_eq!(r.status, 204, "{}", r.text());
    let r = env.request("PATCH", &format!("/v1/users/{id}/kv"), &auth, br#"{"k0":"w","one_more":"x"}"#);
    assert_eq!((r.status, r.json()), (400, validation("request would exceed the key limit (512)")));
    assert_eq!(env.get(&format!("/api/v1/users/{id}/storage/k0")).json(), json!({ "value": "v" }));
    // Nothing was written for the other user.
    assert_eq!(env.get(&format!("/api/v1/users/{other}/storage")).status, 404);
}

/// `GET` of a simulated CDN file, straight from the simulator.
fn cdn_file(env: &Env, path: &str) -> Vec<u8> {
    let url = env.sim.cdn_url();
    let port: u16 = url.rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap();
    let prefix = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default();
    let r = support::request(port, "GET", &format!("{prefix}{path}"), &[], b"");
    assert_eq!(r.status, 200, "{path}");
    r.body
}

#[test]
fn quicklinks_proxy_the_avatar_from_the_cdn_in_the_requested_format() {
    let env = env();
    let members = env.sim.members();
    let with_avatar = members.iter().map(|(m, _)| &m.user).find(|u| u.avatar.as_deref().is_some_and(|a| !a.starts_with("a_"))).expect("a static avatar");
    let without = members.iter().map(|(m, _)| &m.user).find(|u| u.avatar.is_none()).expect("a member without an avatar");
    let hash = with_avatar.avatar.clone().unwrap();
    let cases = [
        (format!("/{}.png", with_avatar.id), format!("/avatars/{}/{hash}.png", with_avatar.id)),
        (format!("/{}.webp", with_avatar.id), format!("/avatars/{}/{hash}.webp", with_avatar.id)),
        (format!("/{}.jpeg", with_avatar.id), format!("/avatars/{}/{hash}.jpg", with_avatar.id)),
        // No animated avatar: a GIF request gets the JPEG.
        (format!("/{}.gif", with_avatar.id), format!("/avatars/{}/{hash}.jpg", with_avatar.id)),
        (format!("/{}.png", without.id), format!("/embed/avatars/{}.png", (without.id.0 >> 22) % 6)),
    ];
    for (path, cdn_path) in cases {
        let r = env.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("image/png"), "{path} (the simulated CDN serves PNGs)");
        assert_eq!(r.header("cache-control"), Some("public, max-age=600"));
        assert_eq!(r.body, cdn_file(&env, &cdn_path), "{path} serves {cdn_path}");
        assert!(env.sim.cdn_hits().iter().any(|h| h.starts_with(&cdn_path)), "{cdn_path} was fetched: {:?}", env.sim.cdn_hits());
    }
    // Served from the cache the second time.
    let hits = env.sim.cdn_hits().len();
    assert_eq!(env.get(&format!("/{}.png", with_avatar.id)).status, 200);
    assert_eq!(env.sim.cdn_hits().len(), hits);

    let r = env.get("/1300000000000000999.png");
    assert_eq!((r.status, r.json()), (404, lanyard_error("user_not_monitored", "User is not being monitored by Lantern")));
    let r = env.get("/nope.png");
    assert_eq!(r.status, 404);
    let r = env.request("DELETE", &format!("/{}.png", with_avatar.id), &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, OPTIONS")));
}

#[test]
fn a_quicklink_whose_cdn_fetch_fails_is_a_502() {
    let env = Env::start_tweaked(
        SimConfig { members: 20, seed: 32, heartbeat_interval_ms: 1000, ..SimConfig::default() },
        2,
        |_| {},
        |c| c.card.fetch_timeout = std::time::Duration::from_millis(200),
    );
    env.sim.set_cdn_delay(std::time::Duration::from_secs(3));
    let id = env.sim.members().iter().map(|(m, _)| m.user.id).find(|id| *id != env.sim.application_id()).unwrap();
    let r = env.get(&format!("/{id}.png"));
    assert_eq!((r.status, r.json()), (502, lanyard_error("upstream_error", "The avatar could not be fetched from Discord's CDN")));
}

#[test]
fn decorations_nameplates_and_name_styles_reach_both_dialects_and_follow_member_updates() {
    let env = env();
    let members = env.sim.members();
    let (decorated, _) = members
        .iter()
        .find(|(m, _)| m.user.avatar_decoration_data.is_some() && m.user.collectibles.is_some())
        .expect("the simulator decorates some members")
        .clone();
    let id = decorated.user.id;
    let lantern = env.get(&format!("/api/v1/users/{id}")).json();
    let meta = &lantern["metadata"];
    for field in ["avatar_decoration_data", "banner_decoration_data", "collectibles", "display_name_styles", "clan", "primary_guild"] {
        let sent = serde_json::to_value(&decorated.user).unwrap()[field].clone();
        assert_eq!(meta[field], sent, "Lantern metadata.{field}");
        assert_eq!(env.get(&format!("/v1/users/{id}")).json()["data"]["discord_user"][field], sent, "Lanyard discord_user.{field}");
    }
    assert!(meta["avatar_decoration_data"]["sku_id"].is_string(), "snowflakes are strings: {meta}");

    // A member update that takes the decoration away and changes the name style.
    let mut updated = decorated.clone();
    updated.user.avatar_decoration_data = None;
    updated.user.display_name_styles = Some(lantern::discord::DisplayNameStyles { font_id: Some(3), effect_id: None, colors: vec![255] });
    env.sim.update_member(updated);
    let v = env.get_until(&format!("/api/v1/users/{id}"), |r| r.json()["metadata"]["avatar_decoration_data"].is_null()).json();
    assert_eq!(v["metadata"]["display_name_styles"], json!({ "font_id": 3, "effect_id": null, "colors": [255] }));
    let ly = env.get(&format!("/v1/users/{id}")).json();
    assert_eq!(ly["data"]["discord_user"]["avatar_decoration_data"], Value::Null);
    assert!(ly["data"]["discord_user"].as_object().unwrap().contains_key("avatar_decoration_data"), "sent as null, as Discord does");
    assert_eq!(ly["data"]["discord_user"]["display_name_styles"], json!({ "font_id": 3, "effect_id": null, "colors": [255] }));
}
