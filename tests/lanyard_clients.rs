//! Lanyard's real client libraries against the real server (2 shards) and the simulator:
//! lanyard-py 2.0.1 (PyPI) driven by `tests/clients/lanyard/lanyard_py.py`.
//!
//! The clients are installed by `.ci/lanyard-clients-env` (sourced by `.ci/run`), which sets
//! `LANTERN_LANYARD_PYTHON` to a Python 3.12 with lanyard-py and Playwright, and
//! `LANTERN_LANYARD_PAGE` to the bundled use-lanyard page. Without them the tests say so loudly
//! and pass, unless `LANTERN_CLIENTS_REQUIRED` is set (as `.ci/lanyard-clients-env` does), when
//! they fail.

mod support;

use lantern::discord::Snowflake;
use lantern::runtime::shard_of;
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use support::kv::create_token;
use support::Env;

fn python() -> Option<PathBuf> {
    match std::env::var_os("LANTERN_LANYARD_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            missing("LANTERN_LANYARD_PYTHON");
            None
        }
    }
}

fn missing(what: &str) {
    let message = format!("{what} is not set: the Lanyard client tests did not run (source .ci/lanyard-clients-env)");
    assert!(std::env::var_os("LANTERN_CLIENTS_REQUIRED").is_none(), "{message}");
    eprintln!("\n*** {message} ***\n");
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/lanyard/lanyard_py.py")
}

/// Runs the driver to the end and returns its lines by step.
fn run_steps(python: &PathBuf, args: &[String]) -> std::collections::HashMap<String, Value> {
    let out = Command::new(python).arg(script()).args(args).output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "driver failed: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .map(|v| (v["step"].as_str().unwrap().to_owned(), v))
        .collect()
}

fn env() -> Env {
    Env::start(SimConfig { members: 30, seed: 41, heartbeat_interval_ms: 1000, ..SimConfig::default() }, 2)
}

fn member_on(env: &Env, shard: usize) -> Snowflake {
    env.sim
        .members()
        .iter()
        .map(|(m, _)| m.user.id)
        .find(|id| *id != env.sim.application_id() && shard_of(*id, 2) == shard)
        .expect("a member on that shard")
}

#[test]
fn lanyard_py_reads_presences_and_writes_kv_over_rest() {
    let Some(python) = python() else { return };
    let env = env();
    let id = member_on(&env, 1);
    let token = create_token(&env.sim, id);
    let base = format!("http://127.0.0.1:{}", env.port);
    let before = env.get(&format!("/v1/users/{id}")).json()["data"].clone();
    let steps = run_steps(&python, &[String::from("rest"), base, id.to_string(), token, "1300000000000000999".into()]);

    assert_eq!(steps["get_user"]["returned"], before, "the client returns the presence the server serves");
    assert_eq!(steps["get_me"]["returned"], before);
    assert_eq!(
        (&steps["get_unknown"]["raised"], &steps["get_unknown"]["status"], &steps["get_unknown"]["code"]),
        (&json!("LanyardAPIError"), &json!(404), &json!("user_not_monitored"))
    );
    // lanyard-py requires `"success": true` in a body and so raises on Lanyard's (and our)
    // empty 204, although the write happened (README, Lanyard compatibility).
    for step in ["set_kv", "update_kv", "delete_kv"] {
        assert_eq!((&steps[step]["raised"], &steps[step]["status"]), (&json!("LanyardAPIError"), &json!(204)), "{step}: {}", steps[step]);
    }
    assert_eq!(steps["set_kv_wrong_token"]["raised"], "LanyardUnauthorizedError");
    let kv = json!({ "py_song": "Take On Me", "b_2": "two" });
    assert_eq!(steps["get_after"]["returned"]["kv"], kv);
    assert_eq!(env.get(&format!("/api/v1/users/{id}/storage")).json(), kv, "the writes are in the shared store");
}

/// The bundled use-lanyard page, when `.ci/lanyard-clients-env` made it.
fn page_ready() -> bool {
    let ok = std::env::var_os("LANTERN_LANYARD_PAGE").is_some_and(|p| std::path::Path::new(&p).exists());
    if !ok {
        missing("LANTERN_LANYARD_PAGE");
    }
    ok
}

/// Runs use-lanyard's page in `mode` for `id`: checks what it first shows, changes the user's
/// status in the simulator, and returns what the page shows then.
fn use_lanyard(env: &Env, python: &PathBuf, mode: &str, id: Snowflake) -> Value {
    use std::io::{BufRead, Write};
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/lanyard/use_lanyard.py");
    let mut child = Command::new(python)
        .arg(driver)
        .args([mode, &format!("127.0.0.1:{}", env.port), &id.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || -> Value {
        let line = lines.next().expect("the driver printed a step").expect("readable");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let shown = next();
    assert_eq!(shown["step"], "shown");
    assert_eq!(shown["data"], env.get(&format!("/v1/users/{id}")).json()["data"], "the page shows the presence the server serves");
    let (_, presence) = env.sim.member(id).unwrap();
    let mut presence = presence.unwrap_or_else(|| lantern::discord::Presence {
        user: lantern::discord::PartialUser { id, ..Default::default() },
        guild_id: Some(env.sim.guild_id()),
        ..Default::default()
    });
    let new_status = if shown["status"] == "dnd" { lantern::discord::Status::Idle } else { lantern::discord::Status::Dnd };
    presence.status = new_status;
    env.sim.set_presence(presence);
    let want = if new_status == lantern::discord::Status::Idle { "idle" } else { "dnd" };
    writeln!(child.stdin.as_mut().unwrap(), "{want}").unwrap();
    let updated = next();
    assert_eq!((&updated["step"], &updated["status"]), (&json!("updated"), &json!(want)), "{updated}");
    let console = next();
    assert_eq!(console["problems"], json!([]), "no console error or failed request");
    assert!(child.wait().unwrap().success());
    updated["data"].clone()
}

#[test]
fn use_lanyard_rest_mode_shows_the_presence_and_a_change_after_revalidating() {
    let Some(python) = python() else { return };
    if !page_ready() {
        return;
    }
    let env = env();
    let id = member_on(&env, 0);
    let data = use_lanyard(&env, &python, "rest", id);
    assert_eq!(data, env.get(&format!("/v1/users/{id}")).json()["data"]);
}

#[test]
fn use_lanyard_ws_mode_shows_the_presence_and_a_change_without_a_reload() {
    let Some(python) = python() else { return };
    if !page_ready() {
        return;
    }
    let env = env();
    let id = member_on(&env, 1);
    let data = use_lanyard(&env, &python, "ws", id);
    assert_eq!(data, env.get(&format!("/v1/users/{id}")).json()["data"]);
}

/// lanyard-py's `subscribe` in `mode` (`ws` with ids, or `ws_all`): its event lines, read as
/// they come; the child is killed when dropped.
struct Subscriber {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Subscriber {
    fn spawn(python: &PathBuf, env: &Env, mode: &str, ids: &[Snowflake]) -> Subscriber {
        let mut child = Command::new(python)
            .arg(script())
            .arg(mode)
            .arg(format!("http://127.0.0.1:{}", env.port))
            .args(ids.iter().map(|i| i.to_string()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        Subscriber { child, lines }
    }

    fn next(&mut self) -> Value {
        let line = self.lines.next().expect("the driver printed an event").expect("readable");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["step"], "event", "{v}");
        v["data"].clone()
    }

    /// Reads events until every one of `ids` was shown (the client yields a map or one
    /// presence per event): each user's presence, by id.
    fn initial(&mut self, ids: &[Snowflake]) -> serde_json::Map<String, Value> {
        let mut seen = serde_json::Map::new();
        while !ids.iter().all(|i| seen.contains_key(&i.to_string())) {
            let d = self.next();
            if let Some(id) = d["discord_user"]["id"].as_str() {
                seen.insert(id.to_owned(), d.clone());
            } else {
                seen.extend(d.as_object().expect("a map of presences").clone());
            }
        }
        seen
    }

    /// Reads events until one shows `id` with `status`.
    fn until(&mut self, id: Snowflake, status: &str) -> Value {
        loop {
            let d = self.next();
            let found = |p: &Value| p["discord_user"]["id"] == id.to_string() && p["discord_status"] == status;
            if found(&d) {
                return d;
            }
            if let Some(p) = d.get(id.to_string()).filter(|p| found(p)) {
                return p.clone();
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_status(env: &Env, id: Snowflake, status: lantern::discord::Status) {
    let (_, presence) = env.sim.member(id).unwrap();
    let mut presence = presence.unwrap_or_else(|| lantern::discord::Presence {
        user: lantern::discord::PartialUser { id, ..Default::default() },
        guild_id: Some(env.sim.guild_id()),
        ..Default::default()
    });
    presence.status = status;
    env.sim.set_presence(presence);
}

#[test]
fn lanyard_py_subscribes_to_one_several_and_all_users_and_sees_changes() {
    use lantern::discord::Status;
    let Some(python) = python() else { return };
    let env = env();
    let (a, b) = (member_on(&env, 0), member_on(&env, 1));
    let rest = |id: Snowflake| env.get(&format!("/v1/users/{id}")).json()["data"].clone();

    // One user: the initial state is its presence, then the change.
    let mut one = Subscriber::spawn(&python, &env, "ws", &[a]);
    let first = one.next();
    assert_eq!(first, rest(a), "INIT_STATE as the client returns it");
    // Several users, and all.
    let mut several = Subscriber::spawn(&python, &env, "ws", &[a, b]);
    let init = several.initial(&[a, b]);
    assert_eq!(Value::Object(init), json!({ a.to_string(): rest(a), b.to_string(): rest(b) }));
    let mut all = Subscriber::spawn(&python, &env, "ws_all", &[]);
    let init = all.initial(&[a, b]);
    assert_eq!((&init[&a.to_string()], &init[&b.to_string()]), (&rest(a), &rest(b)));

    for (id, status, name) in [(a, Status::Dnd, "dnd"), (b, Status::Idle, "idle")] {
        set_status(&env, id, status);
        let seen = several.until(id, name);
        assert_eq!(seen, rest(id));
        assert_eq!(all.until(id, name), rest(id));
        if id == a {
            assert_eq!(one.until(id, name), rest(id));
        }
    }
}
