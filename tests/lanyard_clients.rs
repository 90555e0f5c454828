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
