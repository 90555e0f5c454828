//! The real `lantern` binary: acknowledged storage writes survive `kill -9`, and the server
//! refuses to start without a valid `KV_TOKEN_ENCRYPTION_SECRET`.

mod support;

use lantern::discord::Snowflake;
use lantern::runtime::shard_of;
use lantern::sim::{SimConfig, Simulator};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::binary::{command, start, write_config, SECRET};
use support::kv::{create_token, try_request, value_body};
use support::{wait_for, DEADLINE};

#[test]
fn acknowledged_writes_survive_kill_9() {
    let sim = Simulator::start(SimConfig { members: 30, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), "");
    let (mut child, port) = start(&config);

    // One member per shard, each with a token.
    let members: Vec<Snowflake> = sim.members().iter().map(|(m, _)| m.user.id).filter(|id| *id != sim.application_id()).collect();
    let users: Vec<Snowflake> = (0..2).map(|s| *members.iter().find(|id| shard_of(**id, 2) == s).unwrap()).collect();
    let tokens: Vec<String> = users.iter().map(|u| create_token(&sim, *u)).collect();

    let acked: Arc<Mutex<Vec<(Snowflake, String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let (acked, stop, users, tokens) = (acked.clone(), stop.clone(), users.clone(), tokens.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) || i >= 60 {
                        break;
                    }
                    let u = (t + i) % 2;
                    let (key, value) = (format!("t{t}k{i}"), format!("value-{t}-{i}"));
                    let path = format!("/api/v1/users/{}/storage/{key}", users[u]);
                    match try_request(port, "PUT", &path, &[("Authorization", &tokens[u])], &value_body(&value)) {
                        Some(r) if r.status == 200 => acked.lock().unwrap().push((users[u], key, value)),
                        Some(r) => panic!("unexpected answer {} {}", r.status, r.text()),
                        None => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    assert!(wait_for(DEADLINE, || acked.lock().unwrap().len() >= 150), "writes were not acknowledged");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150);
    eprintln!("{} writes acknowledged before kill -9 (of 480 attempted at most)", acked.len());

    let (mut child, port) = start(&config);
    for (u, user) in users.iter().enumerate() {
        let r = try_request(port, "GET", &format!("/api/v1/users/{user}/storage"), &[], b"").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let map = r.json();
        for (owner, key, value) in acked.iter().filter(|(o, _, _)| o == user) {
            assert_eq!(map[key.as_str()], value.as_str(), "acknowledged pair {key} of {owner} lost");
        }
        // The token survived too.
        let r = try_request(port, "PUT", &format!("/api/v1/users/{user}/storage/after"), &[("Authorization", &tokens[u])], &value_body("x")).unwrap();
        assert_eq!(r.status, 200);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn refuses_to_start_without_a_valid_secret() {
    let sim = Simulator::start(SimConfig { members: 3, ..SimConfig::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), "");
    for secret in [None, Some("not-hex"), Some(&"g".repeat(64)[..])] {
        let mut child = command(&config, secret).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the server started with secret {secret:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.success());
        assert!(err.contains("invalid setting `KV_TOKEN_ENCRYPTION_SECRET`"), "{err}");
        if let Some(s) = secret {
            assert!(!err.contains(s), "the secret is not echoed: {err}");
        }
    }
}

#[test]
fn commands_register_and_unregister() {
    let sim = Simulator::start(SimConfig { members: 3, ..SimConfig::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), "");
    let run = |action: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_lantern"))
            .args(["commands", action, "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env("DISCORD_BOT_TOKEN", "sim-token")
            .env_remove("KV_TOKEN_ENCRYPTION_SECRET")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run("register").trim(), "registered 3 global commands: ping, storage, privacy");
    let reqs = sim.requests();
    let put = reqs.iter().rev().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.path, format!("/api/v10/applications/{}/commands", sim.application_id()));
    assert_eq!(put.authorization.as_deref(), Some("Bot sim-token"));
    let body: Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(body[0]["name"], "ping");
    let storage = &body[1];
    assert_eq!(storage["description"], "Key-value storage commands.");
    let names: Vec<&str> = storage["options"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["create", "get", "update", "delete", "list", "reset"]);
    assert_eq!(storage["options"][1]["options"][1]["options"][0]["autocomplete"], true, "get data key autocompletes");
    let privacy = &body[2];
    let subs: Vec<&str> = privacy["options"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!((privacy["name"].as_str(), subs), (Some("privacy"), vec!["show", "set", "pause", "resume"]));
    let set: Vec<(&str, bool)> = privacy["options"][1]["options"].as_array().unwrap().iter().map(|o| (o["name"].as_str().unwrap(), o["autocomplete"] == true)).collect();
    assert_eq!(set, [("setting", true), ("value", true)], "both options of /privacy set autocomplete");
    assert_eq!(run("unregister").trim(), "removed every global command");
    let reqs = sim.requests();
    assert_eq!(reqs.iter().rev().find(|r| r.method == "PUT").unwrap().body, "[]");
}

#[test]
fn human_logs_have_no_colour_codes_when_stdout_is_not_a_terminal() {
    let sim = Simulator::start(SimConfig { members: 3, ..SimConfig::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), "");
    let toml = std::fs::read_to_string(&config).unwrap().replace("format = 'json'", "format = 'human'");
    std::fs::write(&config, toml).unwrap();
    let mut child = command(&config, Some(SECRET)).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("lantern starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let mut lines: Vec<String> = Vec::new();
    while !lines.iter().any(|l| l.contains("listening")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("the server never logged `listening`: {lines:?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.iter().all(|l| !l.contains('\x1b')), "ANSI escape codes in piped logs: {lines:?}");
    assert!(lines.iter().any(|l| l.contains(" INFO listening")), "plain human lines: {lines:?}");
}
