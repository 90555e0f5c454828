//! permessage-deflate with real clients: Python `websockets` and headless Chromium (through
//! Playwright) negotiate it, send their INIT compressed, and receive compressed
//! PRESENCE_UPDATEs that decode to the same JSON as a plain client's. `.ci/run` installs both
//! (`pip install websockets playwright`, Debian's chromium); where one is missing locally the
//! test says so loudly and skips.

mod support;

use lantern::discord::{ClientStatus, Member, PartialUser, Presence, Snowflake, Status, User};
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use support::raw_ws::RawWs;
use support::{Env, DEADLINE};

const A: Snowflake = Snowflake(1_300_000_000_000_000_001);

fn env() -> Env {
    Env::start_tweaked(
        SimConfig { members: 5, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() },
        1,
        |sim| {
            let user = User { id: A, username: "alice".into(), discriminator: "0".into(), ..Default::default() };
            sim.add_member(Member { user, ..Default::default() }, None);
        },
        |_| {},
    )
}

fn python_has(module: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {module}")]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn skip(why: &str) {
    eprintln!("\n!!!!!!!! SKIPPED: {why} (.ci/run installs it; run `pip install websockets playwright` and install chromium) !!!!!!!!\n");
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(name)
}

/// Runs a client script against a fresh server next to a plain subscriber; returns the
/// extensions the client saw and the update it decoded, with the plain client's update.
fn compare_with_plain(args: &[&str]) -> (String, Value, Value) {
    let env = env();
    let mut plain = RawWs::connect(env.port);
    assert_eq!(plain.recv()["t"], "HELLO");
    plain.send(&json!({"op":2,"d":{"user_id": A.to_string()}}).to_string());
    assert_eq!(plain.recv()["t"], "INIT_ACK");

    let mut child = Command::new("python3")
        .args(args)
        .arg(env.port.to_string())
        .arg(A.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = |what: &str| {
        let line = rx.recv_timeout(DEADLINE * 4).unwrap_or_else(|_| panic!("the client never printed {what}"));
        let rest = line.strip_prefix(what).unwrap_or_else(|| panic!("expected {what}, got {line:?}"));
        rest.trim().to_string()
    };
    let extensions = next("EXTENSIONS");
    next("READY");
    env.sim.set_presence(Presence {
        user: PartialUser { id: A, ..Default::default() },
        status: Status::Online,
        client_status: ClientStatus { desktop: Some(Status::Online), ..Default::default() },
        ..Default::default()
    });
    let update: Value = serde_json::from_str(&next("UPDATE")).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the client failed: {status}");
    (extensions, update, plain.recv())
}

#[test]
fn python_websockets_gets_compressed_updates_that_decode_to_the_plain_json() {
    if !python_has("websockets") {
        return skip("Python `websockets` is not installed");
    }
    let (extensions, update, plain) = compare_with_plain(&[script("deflate_websockets.py").to_str().unwrap()]);
    assert_eq!(extensions, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    assert_eq!(update["t"], "PRESENCE_UPDATE");
    assert_eq!(update, plain);
}

fn chromium() -> Option<PathBuf> {
    let candidates = [std::env::var("CHROMIUM").unwrap_or_default(), "/usr/bin/chromium-headless-shell".into(), "/usr/bin/chromium".into()];
    candidates.into_iter().filter(|c| !c.is_empty()).map(PathBuf::from).find(|p| p.exists())
}

#[test]
fn headless_chromium_gets_compressed_updates_that_decode_to_the_plain_json() {
    if !python_has("playwright") {
        return skip("Python `playwright` is not installed");
    }
    let Some(browser) = chromium() else { return skip("no chromium or chromium-headless-shell") };
    std::env::set_var("CHROMIUM_PATH", &browser);
    let (extensions, update, plain) = compare_with_plain(&[script("deflate_chromium.py").to_str().unwrap()]);
    assert_eq!(extensions, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    assert_eq!(update, plain);
}
