//! KV storage over REST and through the bot, against the real server (2 shards) and the
//! simulator, over real TCP.

mod support;

use lantern::discord::{Member, Snowflake};
use lantern::runtime::shard_of;
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use support::kv::{callback, callback_raw, create_token, expect_user_storage, interact, next_frame, slash, storage_data, subscriber_on_other_shard, value_body, StorageWatch};
use support::Env;

const NO_STORAGE: &str = "We could not find your key-value storage data. Please create a storage first using `/storage create token`.";

fn small() -> SimConfig {
    SimConfig { members: 40, seed: 23, heartbeat_interval_ms: 1000, ..SimConfig::default() }
}

fn env() -> Env {
    Env::start(small(), 2)
}

/// A non-bot member owned by `shard` (of 2).
fn member_on(env: &Env, shard: usize) -> Snowflake {
    env.sim
        .members()
        .iter()
        .map(|(m, _)| m)
        .find(|m| !m.user.bot && m.user.id != env.sim.application_id() && shard_of(m.user.id, 2) == shard)
        .map(|m| m.user.id)
        .expect("a member on that shard")
}

fn error(message: &str, code: &str) -> Value {
    json!({ "success": false, "error": message, "code": code })
}

fn put(env: &Env, id: Snowflake, key: &str, value: &str, token: &str) -> support::Resp {
    env.request("PUT", &format!("/api/v1/users/{id}/storage/{key}"), &[("Authorization", token), ("Content-Type", "application/json")], &value_body(value))
}

#[test]
fn token_from_the_bot_then_rest_reads_writes_and_rotation() {
    let env = env();
    let id = member_on(&env, 0);
    let path = format!("/api/v1/users/{id}/storage");

    // No storage yet: reads say so, writes are unauthorized (nothing revealed before auth).
    assert_eq!(env.get(&path).json(), error(&format!("User {id} does not have any storage."), "storage_not_found"));
    assert_eq!(env.get(&path).status, 404);
    let r = put(&env, id, "a", "1", "whatever");
    assert_eq!((r.status, r.json()), (401, error("Unauthorized.", "unauthorized")));

    let token = create_token(&env.sim, id);
    assert!(token.len() > 60, "{token}");
    assert_eq!(env.get(&path).text(), "{}");
    let mut watch = StorageWatch::subscribe(&env, id);

    // Writes through both shards: some requests land on the non-owner shard.
    let mut served_by = [false; 2];
    let mut n = 0;
    while !(served_by[0] && served_by[1]) {
        assert!(n < 200, "requests never reached both shards");
        let r = put(&env, id, &format!("k{}", n % 3), &format!("v{n}"), &token);
        assert_eq!((r.status, r.text()), (200, r#"{"success":true}"#.to_owned()));
        served_by[r.header("x-lantern-shard").unwrap().parse::<usize>().unwrap()] = true;
        n += 1;
    }
    let r = put(&env, id, "greeting", "hello", &format!("Bearer {token}"));
    assert_eq!(r.status, 200, "Bearer prefix accepted");
    let map = env.get(&path).json();
    assert_eq!(map["greeting"], "hello");
    watch.expect_update(&env, &map);

    let r = env.get(&format!("{path}/greeting"));
    assert_eq!((r.status, r.text()), (200, r#"{"value":"hello"}"#.to_owned()));

    // PATCH replaces existing keys only.
    let patch = |key: &str, value: &str, token: &str| {
        env.request("PATCH", &format!("{path}/{key}"), &[("Authorization", token)], &value_body(value))
    };
    assert_eq!(patch("greeting", "hi", &token).status, 200);
    assert_eq!(env.get(&format!("{path}/greeting")).json(), json!({"value": "hi"}));
    let r = patch("missing", "x", &token);
    assert_eq!((r.status, r.json()), (404, error("Key missing does not exist in the storage.", "key_not_found")));

    // DELETE one key, then all of them (really).
    let del = |p: &str, token: &str| env.request("DELETE", p, &[("Authorization", token)], b"");
    assert_eq!(del(&format!("{path}/greeting"), &token).text(), r#"{"success":true}"#);
    let r = env.get(&format!("{path}/greeting"));
    assert_eq!((r.status, r.json()), (404, error("Key greeting does not exist in the storage.", "key_not_found")));
    assert_eq!(del(&format!("{path}/greeting"), &token).status, 404);
    assert_eq!(del(&path, "wrong").status, 401);
    assert_eq!(del(&path, &token).status, 200);
    assert_eq!(env.get(&path).text(), "{}");
    watch.expect_update(&env, &json!({}));

    // Rotation: the old token is refused at once, the new one works.
    let new = create_token(&env.sim, id);
    assert_ne!(new, token);
    assert_eq!(put(&env, id, "a", "1", &token).status, 401);
    assert_eq!(put(&env, id, "a", "1", &new).status, 200);
    assert_eq!(slash(&env.sim, id, &["get", "token"], &[]), format!("Here is your token for your key-value storage.\n```\n{new}\n```\n-# Please keep this token safe."));
}

#[test]
fn every_limit_and_error_path() {
    let env = env();
    let id = member_on(&env, 1);
    let token = create_token(&env.sim, id);
    let path = format!("/api/v1/users/{id}/storage");
    let send = |method: &str, key: &str, body: &[u8]| env.request(method, &format!("{path}/{key}"), &[("Authorization", &token)], body);
    let check = |r: support::Resp, status: u16, message: &str, code: &str| {
        assert_eq!((r.status, r.json()), (status, error(message, code)));
    };

    check(env.get("/api/v1/users/abc/storage"), 400, "user_id must be a number.", "invalid_user_id");
    check(env.get("/api/v1/users/123/storage/a"), 400, "user_id must be 17-19 characters long.", "invalid_user_id");
    check(env.get("/api/v1/users/1300000000000000999/storage"), 404, "User 1300000000000000999 is not being monitored by Lantern.", "user_not_monitored");
    check(send("PUT", &"k".repeat(256), &value_body("v")), 400, "key must be 1-255 characters long.", "invalid_key");
    assert_eq!(send("PUT", &"k".repeat(255), &value_body("v")).status, 200);
    check(send("PUT", "a-b", &value_body("v")), 400, "key must be alphanumeric.", "invalid_key");
    check(send("PUT", "a%2Eb", &value_body("v")), 400, "key must be alphanumeric.", "invalid_key");
    check(send("PUT", "k", b""), 400, "value is required.", "invalid_value");
    check(send("PUT", "k", b"{}"), 400, "value is required.", "invalid_value");
    check(send("PUT", "k", br#"{"value": 5}"#), 400, "value must be a string.", "invalid_value");
    check(send("PUT", "k", br#"{"value": null}"#), 400, "value must be a string.", "invalid_value");
    check(send("PUT", "k", b"{\"value\": "), 400, "Request body must be valid JSON.", "invalid_json");
    check(send("PUT", "k", &value_body(&"x".repeat(30_001))), 400, "value must not exceed 30,000 characters.", "invalid_value");
    assert_eq!(send("PUT", "k", &value_body(&"é".repeat(30_000))).status, 200, "30,000 characters is the limit, not bytes");
    let big = vec![b' '; lantern::http::storage::MAX_BODY_BYTES + 1];
    check(send("PUT", "k", &big), 413, "Request body must not exceed 393216 bytes.", "payload_too_large");

    // An empty string is a value like any other.
    assert_eq!(send("PUT", "empty", &value_body("")).status, 200);
    assert_eq!(env.get(&format!("{path}/empty")).json(), json!({"value": ""}));

    // Auth is checked before anything else is revealed, with the one message.
    for auth in [None, Some("nope"), Some("Bearer nope")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        for (method, p) in [("PUT", format!("{path}/k")), ("PATCH", format!("{path}/missing")), ("DELETE", format!("{path}/missing")), ("DELETE", path.clone())] {
            check(env.request(method, &p, &headers, &value_body("v")), 401, "Unauthorized.", "unauthorized");
        }
    }
    let other = member_on(&env, 0);
    check(put(&env, other, "k", "v", &token), 401, "Unauthorized.", "unauthorized");

    // 512 pairs at most; replacing one at the limit is fine.
    for i in env.get(&path).json().as_object().unwrap().len()..512 {
        assert_eq!(send("PUT", &format!("p{i}"), &value_body("v")).status, 200);
    }
    assert_eq!(env.get(&path).json().as_object().unwrap().len(), 512);
    check(send("PUT", "onemore", &value_body("v")), 400, "A storage can hold at most 512 key-value pairs.", "too_many_pairs");
    assert_eq!(send("PUT", "empty", &value_body("replaced")).status, 200);
    assert_eq!(slash(&env.sim, id, &["create", "data"], &[("key", "botkey"), ("value", "v")]), "Your key-value storage is full: it can hold at most 512 key-value pairs.");

    // Methods and CORS.
    let r = env.request("POST", &path, &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, DELETE, OPTIONS"));
    let r = env.request("OPTIONS", &format!("{path}/k"), &[("Origin", "https://example.com"), ("Access-Control-Request-Method", "PUT")], b"");
    assert_eq!(r.status, 204);
    assert!(r.header("access-control-allow-methods").unwrap().contains("PATCH"));
    assert!(r.header("access-control-allow-headers").unwrap().contains("Authorization"));
}

#[test]
fn bot_commands_and_their_replies() {
    let env = env();
    let sim = &env.sim;
    let id = member_on(&env, 0);

    // Before a token exists, every data command says how to create one.
    for (path, args) in [(&["create", "data"][..], &[("key", "a"), ("value", "b")][..]), (&["get", "data"], &[("key", "a")]), (&["list"], &[]), (&["reset"], &[]), (&["get", "token"], &[])] {
        assert_eq!(slash(sim, id, path, args), NO_STORAGE, "{path:?}");
    }
    // Someone who is not a member cannot create a token.
    assert_eq!(slash(sim, Snowflake(1_300_000_000_000_000_777), &["create", "token"], &[]), "We could not find your user data. This generally means you are not in our Discord server.");

    create_token(sim, id);
    let mut watch = StorageWatch::subscribe(&env, id);
    assert_eq!(slash(sim, id, &["create", "data"], &[("key", "city"), ("value", "Paris")]), "New key-value pair added to your storage: `city` -> `Paris`");
    watch.expect_update(&env, &json!({"city": "Paris"}));
    assert_eq!(slash(sim, id, &["get", "data"], &[("key", "city")]), "Here is the data for the key `city`: `Paris`");
    assert_eq!(slash(sim, id, &["get", "data"], &[("key", "nope")]), "We could not find the data for the key `nope`.");
    assert_eq!(slash(sim, id, &["update", "data"], &[("key", "city"), ("value", "Rome")]), "Data for the key `city` updated to `Rome`.");
    assert_eq!(slash(sim, id, &["update", "data"], &[("key", "nope"), ("value", "x")]), "We could not find the data for the key `nope`.");
    assert_eq!(slash(sim, id, &["create", "data"], &[("key", "bad.key"), ("value", "x")]), "Invalid key-value pair: key must be alphanumeric.");
    assert_eq!(slash(sim, id, &["list"], &[]), "```json\n{\n  \"city\": \"Rome\"\n}\n```");
    assert_eq!(slash(sim, id, &["delete", "data"], &[("key", "city")]), "Data for the key `city` deleted.");
    assert_eq!(slash(sim, id, &["delete", "data"], &[("key", "city")]), "We could not find the data for the key `city`.");
    assert_eq!(slash(sim, id, &["list"], &[]), "There is no data in your key-value storage.");
    watch.expect_update(&env, &json!({}));

    // Long output: every reply fits in a message; the list becomes an attachment.
    let long = "y".repeat(5000);
    let echoed = slash(sim, id, &["create", "data"], &[("key", "long"), ("value", &long)]);
    assert!(echoed.chars().count() <= 2000 && echoed.starts_with("New key-value pair added to your storage: `long` -> `yyy"), "{echoed}");
    let i = interact(sim, id, true, 2, storage_data(&["list"], &[]));
    let raw = callback_raw(sim, i);
    assert!(raw.starts_with("--"), "multipart upload: {}", &raw[..raw.len().min(200)]);
    assert!(raw.contains("kv-storage.json") && raw.contains("Here is the list of all the data in your key-value storage:"));
    assert!(raw.contains(&format!("\"long\": \"{long}\"")));
    let i = interact(sim, id, true, 2, storage_data(&["get", "data"], &[("key", "long")]));
    let raw = callback_raw(sim, i);
    assert!(raw.contains("kv-storage.json") && raw.contains("Here is the data for the key `long`:"));

    // Reset: buttons bound to the invoker; Cancel keeps, Confirm really resets.
    let i = interact(sim, id, true, 2, storage_data(&["reset"], &[]));
    let prompt = callback(sim, i);
    assert_eq!(prompt["data"]["content"], "Are you sure you want to reset your key-value storage?");
    let buttons = &prompt["data"]["components"][0]["components"];
    assert_eq!((buttons[0]["label"].as_str(), buttons[0]["style"].as_u64()), (Some("Confirm"), Some(3)));
    assert_eq!((buttons[1]["label"].as_str(), buttons[1]["style"].as_u64()), (Some("Cancel"), Some(4)));
    let confirm = buttons[0]["custom_id"].as_str().unwrap().to_owned();
    let cancel = buttons[1]["custom_id"].as_str().unwrap().to_owned();
    let press = |who: Snowflake, custom_id: &str| callback(sim, interact(sim, who, true, 3, json!({"custom_id": custom_id, "component_type": 2})));
    let stranger = member_on(&env, 1);
    let r = press(stranger, &confirm);
    assert_eq!((r["type"].as_u64(), r["data"]["content"].as_str()), (Some(4), Some("Only the member who ran this command can use these buttons.")));
    assert_eq!(env.get(&format!("/api/v1/users/{id}/storage")).json().as_object().unwrap().len(), 1, "a stranger's click changes nothing");
    let r = press(id, &cancel);
    assert_eq!(r, json!({"type": 7, "data": {"allowed_mentions": {"parse": []}, "components": [], "content": "Your key-value storage reset has been cancelled."}}));
    assert_eq!(env.get(&format!("/api/v1/users/{id}/storage")).json().as_object().unwrap().len(), 1);
    let r = press(id, &confirm);
    assert_eq!(r["data"]["content"], "Your key-value storage has been reset.");
    assert_eq!(r["data"]["components"], json!([]));
    assert_eq!(env.get(&format!("/api/v1/users/{id}/storage")).text(), "{}");

    // /ping is public; in DMs storage replies are public too.
    let r = callback(sim, interact(sim, id, true, 2, json!({"id": "2", "name": "ping", "type": 1})));
    assert!(r["data"]["content"].as_str().unwrap().starts_with("Pong!"), "{r}");
    assert!(r["data"].get("flags").is_none());
    let r = callback(sim, interact(sim, id, false, 2, storage_data(&["list"], &[])));
    assert_eq!(r["data"]["content"], "There is no data in your key-value storage.");
    assert!(r["data"].get("flags").is_none(), "not ephemeral in DMs: {r}");
}

#[test]
fn autocomplete_filters_by_prefix_and_offers_at_most_25() {
    let env = env();
    let id = member_on(&env, 1);
    let token = create_token(&env.sim, id);
    for i in 0..20 {
        assert_eq!(put(&env, id, &format!("alpha{i:02}"), "v", &token).status, 200);
    }
    for i in 0..10 {
        assert_eq!(put(&env, id, &format!("beta{i}"), "v", &token).status, 200);
    }
    let complete = |sub: &[&str], typed: &str| -> Vec<String> {
        let mut data = storage_data(sub, &[("key", typed)]);
        data["options"][0]["options"][0]["options"][0]["focused"] = json!(true);
        let r = callback(&env.sim, interact(&env.sim, id, true, 4, data));
        assert_eq!(r["type"], 8, "{r}");
        r["data"]["choices"].as_array().unwrap().iter().map(|c| {
            assert_eq!(c["name"], c["value"]);
            c["value"].as_str().unwrap().to_owned()
        }).collect()
    };
    assert_eq!(complete(&["get", "data"], "").len(), 25);
    let alpha = complete(&["delete", "data"], "al");
    assert_eq!(alpha.len(), 20);
    assert!(alpha.iter().all(|k| k.starts_with("alpha")));
    assert_eq!(complete(&["update", "data"], "BETA"), (0..10).map(|i| format!("beta{i}")).collect::<Vec<_>>());
    assert_eq!(complete(&["get", "data"], "alpha1"), (10..20).map(|i| format!("alpha{i}")).collect::<Vec<_>>());
    assert!(complete(&["get", "data"], "zzz").is_empty());
}

#[test]
fn member_remove_deletes_storage_and_token() {
    let mut env = env();
    let id = member_on(&env, 0);
    let token = create_token(&env.sim, id);
    assert_eq!(put(&env, id, "a", "1", &token).status, 200);
    let member: Member = env.sim.member(id).unwrap().0;
    env.sim.remove_member(id);
    env.get_until(&format!("/api/v1/users/{id}"), |r| r.status == 404);
    assert_eq!(put(&env, id, "a", "2", &token).status, 401, "the token is gone");
    env.sim.add_member(member, None);
    env.get_until(&format!("/api/v1/users/{id}"), |r| r.status == 200);
    let r = env.get(&format!("/api/v1/users/{id}/storage"));
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("storage_not_found")));
    assert_eq!(env.get(&format!("/api/v1/users/{id}")).json()["storage"], json!({}));
    env.stop_server();
    env.start_server();
    assert_eq!(env.get(&format!("/api/v1/users/{id}/storage")).status, 404, "deleted on disk too");
    env.stop_server();
    assert!(lantern::storage::kv_rows(env.dir.path()).unwrap().iter().all(|(_, user, _, _)| *user != id));
}

#[test]
fn changing_the_shard_count_keeps_every_pair_exactly_once() {
    let mut env = env();
    let users = [member_on(&env, 0), member_on(&env, 1)];
    let mut tokens = Vec::new();
    let mut expected = Vec::new();
    for (n, id) in users.iter().enumerate() {
        let token = create_token(&env.sim, *id);
        let mut map = serde_json::Map::new();
        for k in 0..20 {
            let (key, value) = (format!("k{k}"), format!("{n}-{k}"));
            assert_eq!(put(&env, *id, &key, &value, &token).status, 200);
            map.insert(key, json!(value));
        }
        tokens.push(token);
        expected.push(Value::Object(map));
    }
    for shards in [1, 3, 2] {
        env.stop_server();
        let rows = lantern::storage::kv_rows(env.dir.path()).unwrap();
        assert_eq!(rows.len(), 40, "every pair exactly once before restarting with {shards} shards");
        env.shards = shards;
        env.start_server();
        for (n, id) in users.iter().enumerate() {
            let r = env.get(&format!("/api/v1/users/{id}/storage"));
            assert_eq!((r.status, r.json()), (200, expected[n].clone()), "{shards} shards");
            expect_user_storage(&env, *id, &expected[n]);
            // Tokens moved too.
            assert_eq!(put(&env, *id, "k0", &format!("{n}-0"), &tokens[n]).status, 200);
        }
        env.stop_server();
        let rows = lantern::storage::kv_rows(env.dir.path()).unwrap();
        assert_eq!(rows.len(), 40, "every pair exactly once with {shards} shards");
        assert!(rows.iter().all(|(file, user, _, _)| *file == shard_of(*user, shards)), "each row in its owner's file");
        assert_eq!(lantern::storage::repartition::shard_files(env.dir.path()).unwrap().len(), shards);
        env.start_server();
    }
}

#[test]
fn rest_and_bot_writes_reach_websocket_subscribers_on_another_shard() {
    let env = env();
    let id = member_on(&env, 1);
    let token = create_token(&env.sim, id);
    let mut ws = subscriber_on_other_shard(&env, id);

    assert_eq!(put(&env, id, "city", "Paris", &token).status, 200);
    assert_eq!(
        next_frame(&mut ws),
        json!({ "t": "STORAGE_UPDATE", "op": 10, "user_id": id.to_string(), "d": { "city": "Paris" } })
    );
    // The bot writes through the same path.
    slash(&env.sim, id, &["create", "data"], &[("key", "mood"), ("value", "calm")]);
    assert_eq!(
        next_frame(&mut ws),
        json!({ "t": "STORAGE_UPDATE", "op": 10, "user_id": id.to_string(), "d": { "city": "Paris", "mood": "calm" } })
    );
    let r = env.request("DELETE", &format!("/api/v1/users/{id}/storage"), &[("Authorization", &token)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(next_frame(&mut ws), json!({ "t": "STORAGE_UPDATE", "op": 10, "user_id": id.to_string(), "d": {} }));
}
