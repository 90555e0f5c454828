//! The server against the simulator's gateway faults: a fatal close (4004, 4014) is logged once
//! with its cause and not retried, user routes say in a header that their presence is stale and
//! `/health` reports it; a close that ends the session (4007, 4009) makes the server identify
//! anew and load the member list again.

mod support;

use lantern::discord::{PartialUser, Presence, Snowflake, Status};
use lantern::sim::{Fault, SimConfig, Simulator, PRIVILEGED_INTENTS};
use serde_json::{json, Value};
use std::process::Command;
use support::binary::{command, message, spawn_logged, wait_listening, write_config_sharded, SECRET};
use support::kv::{create_token, try_request, value_body};
use support::{wait_for, Env, DEADLINE};

const HEADER: &str = "x-lantern-gateway";

fn small() -> SimConfig {
    SimConfig { members: 40, seed: 17, heartbeat_interval_ms: 1000, ..SimConfig::default() }
}

fn some_members(sim: &Simulator, n: usize) -> Vec<Snowflake> {
    sim.members().iter().map(|(m, _)| m.user.id).filter(|id| *id != sim.application_id()).take(n).collect()
}

/// After `code`, user routes still answer 200 with what they had, marked by the header, and
/// `/health` reports the failed gateway; nothing reconnects.
fn fatal_close_marks_user_routes(code: u16) {
    let env = Env::start(small(), 2);
    let id = some_members(&env.sim, 1)[0];
    let token = create_token(&env.sim, id);
    let path = format!("/api/v1/users/{id}/storage/k");
    let put = env.request("PUT", &path, &[("Authorization", &token), ("Content-Type", "application/json")], &value_body("v"));
    assert_eq!(put.status, 200, "{}", put.text());
    let reads = [
        format!("/api/v1/users/{id}"),
        format!("/api/v1/users?user_ids={id}"),
        format!("/api/v1/users/{id}?svg=1"),
        format!("/api/v1/users/{id}/storage"),
        format!("/api/v1/users/{id}/storage/k"),
    ];
    for p in &reads {
        let r = env.get(p);
        assert_eq!((r.status, r.header(HEADER)), (200, None), "{p} while connected: {}", r.text());
    }
    let before = env.get(&reads[0]).json();

    env.sim.fault(Fault::Close(code));
    let health = env.get_until("/health", |r| r.json()["gateway"] == "failed");
    assert_eq!(health.status, 503);
    assert_eq!(
        health.json(),
        json!({"status": "unavailable", "gateway": "failed", "members_loaded": true, "shards": {"total": 2, "up": 2}, "monitored_users": 41})
    );
    for p in &reads {
        let r = env.get(p);
        assert_eq!((r.status, r.header(HEADER)), (200, Some("failed")), "{p} after {code}: {}", r.text());
    }
    assert_eq!(env.get(&reads[0]).header("access-control-expose-headers"), Some("x-lantern-gateway"));
    let head = env.request("HEAD", &reads[0], &[], b"");
    assert_eq!((head.status, head.header(HEADER)), (200, Some("failed")));
    // The stale object is still served as it was.
    let after = env.get(&reads[0]).json();
    assert_eq!((&after["metadata"], &after["status"]), (&before["metadata"], &before["status"]));
    // Only user routes carry it.
    assert_eq!(env.get("/").header(HEADER), None);
    assert_eq!(env.get("/health").header(HEADER), None);
    let s = env.sim.stats();
    assert_eq!((s.connections, s.identifies, s.resumes), (1, 1, 0), "a fatal close is not retried");
}

#[test]
fn after_close_4004_user_routes_carry_the_gateway_header_and_health_says_failed() {
    fatal_close_marks_user_routes(4004);
}

#[test]
fn after_close_4014_user_routes_carry_the_gateway_header_and_health_says_failed() {
    fatal_close_marks_user_routes(4014);
}

fn presence(user: Snowflake, status: Status) -> Presence {
    Presence {
        user: PartialUser { id: user, ..PartialUser::default() },
        guild_id: None,
        status,
        activities: Vec::new(),
        client_status: lantern::discord::ClientStatus { desktop: Some(status), ..Default::default() },
    }
}

/// After `code` the session is gone: the server identifies anew (no successful RESUME),
/// requests the member list again and serves what it lists.
fn session_ending_close_reloads_members(code: u16) {
    // Larger than the large threshold: the member list comes from op 8 chunks.
    let env = Env::start(SimConfig { members: 120, seed: 29, heartbeat_interval_ms: 1000, ..SimConfig::default() }, 2);
    let s = env.sim.stats();
    assert_eq!((s.identifies, s.resumes, s.member_requests), (1, 0, 1));
    let ids = some_members(&env.sim, 2);
    let (changed, removed) = (ids[0], ids[1]);
    let status = match env.get(&format!("/api/v1/users/{changed}")).json()["status"].as_str() {
        Some("dnd") => Status::Idle,
        _ => Status::Dnd,
    };

    env.sim.fault(Fault::Close(code));
    // While the server is away: news it can only learn from a fresh member list, since the
    // session that would have carried them is gone.
    env.sim.set_presence(presence(changed, status));
    env.sim.remove_member(removed);

    assert!(
        env.sim.wait_until(DEADLINE, |s| s.identifies == 2 && s.member_requests == 2),
        "no fresh IDENTIFY and member request after {code}: {:?}",
        env.sim.stats()
    );
    let want = serde_json::to_value(status).unwrap();
    env.get_until(&format!("/api/v1/users/{changed}"), |r| r.status == 200 && r.json()["status"] == want);
    env.get_until(&format!("/api/v1/users/{removed}"), |r| r.status == 404);
    let health = env.get_until("/health", |r| r.status == 200);
    assert_eq!(health.json()["gateway"], "connected");
    let r = env.get(&format!("/api/v1/users/{changed}"));
    assert_eq!(r.header(HEADER), None);
    assert_eq!(env.sim.stats().resumes, 0, "the session cannot be resumed after {code}");
}

#[test]
fn after_close_4007_the_server_identifies_anew_and_reloads_members() {
    session_ending_close_reloads_members(4007);
}

#[test]
fn after_close_4009_the_server_identifies_anew_and_reloads_members() {
    session_ending_close_reloads_members(4009);
}

// ---- the real binary, for its log ----

/// Runs the server against `sim` until the gateway has failed, then stops it gracefully and
/// returns every log line. Also checks the header on a user route and `/health`.
fn run_until_failed(sim: &Simulator, token: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_sharded(sim, dir.path(), 1, "");
    let mut cmd = command(&config, Some(SECRET));
    cmd.env("DISCORD_BOT_TOKEN", token);
    let (mut child, rx) = spawn_logged(cmd);
    let (mut lines, port) = wait_listening(&rx);
    let health = |port| try_request(port, "GET", "/health", &[], b"");
    assert!(wait_for(DEADLINE, || health(port).is_some_and(|r| r.json()["gateway"] == "failed")), "the gateway never failed");
    let r = health(port).unwrap();
    assert_eq!(
        (r.status, r.json()),
        (503, json!({"status": "unavailable", "gateway": "failed", "members_loaded": false, "shards": {"total": 1, "up": 1}, "monitored_users": 0}))
    );
    let id = some_members(sim, 1)[0];
    let r = try_request(port, "GET", &format!("/api/v1/users/{id}"), &[], b"").unwrap();
    assert_eq!((r.status, r.header(HEADER)), (404, Some("failed")));

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    // The reader thread ends at EOF, which closes the channel.
    lines.extend(rx.iter());
    lines
}

fn check_fatal_log(lines: &[Value], code: u64, cause: &str, hint: &str) {
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {errors:?}");
    let m = message(errors[0]);
    assert!(m.contains(&format!("{code} {cause}")), "{m}");
    assert!(m.contains(hint), "{m}");
    assert_eq!(errors[0]["fields"]["code"], code);
    let reconnecting: Vec<&str> = lines.iter().map(message).filter(|m| m.contains("reconnecting")).collect();
    assert!(reconnecting.is_empty(), "a fatal close is not retried: {reconnecting:?}");
}

#[test]
fn binary_logs_4004_once_naming_the_token_and_does_not_say_reconnecting() {
    let sim = Simulator::start(SimConfig { members: 5, ..SimConfig::default() }).unwrap();
    let lines = run_until_failed(&sim, "not-the-token");
    check_fatal_log(&lines, 4004, "authentication failed", "check DISCORD_BOT_TOKEN");
    assert_eq!(sim.stats().connections, 1);
}

#[test]
fn binary_logs_4014_once_naming_the_intents_to_enable() {
    let sim = Simulator::start(SimConfig { members: 5, privileged_intents: PRIVILEGED_INTENTS & !(1 << 8), ..SimConfig::default() })
        .unwrap();
    let lines = run_until_failed(&sim, &sim.token());
    check_fatal_log(
        &lines,
        4014,
        "disallowed intents",
        "enable the Presence and Server Members intents for the bot in the Discord developer portal",
    );
    assert_eq!(sim.stats().connections, 1);
}
