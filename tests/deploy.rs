//! The deploy webhook, `POST /api/v1/github_auto_deploy`: off by default; when on, a correctly
//! signed push touching server files runs the configured command once, and a wrong signature,
//! a missing one or a replayed body with one byte changed runs nothing.

mod support;

use hmac::{Hmac, KeyInit, Mac};
use lantern::config::Secret;
use lantern::sim::SimConfig;
use serde_json::json;
use sha2::Sha256;
use std::path::{Path, PathBuf};
use support::{wait_for, Env, DEADLINE};

const SECRET: &str = "webhook secret for tests";
const ROUTE: &str = "/api/v1/github_auto_deploy";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn small() -> SimConfig {
    SimConfig { members: 5, ..SimConfig::default() }
}

/// A server whose deploy command appends a line (with the ref and commit it was given) to
/// `runs` in `dir`.
fn deploying_env(dir: &Path) -> Env {
    let script = dir.join("deploy.sh");
    std::fs::write(&script, "echo \"$LANTERN_DEPLOY_REF $LANTERN_DEPLOY_COMMIT $*\" >> runs\n").unwrap();
    let command = vec!["/bin/sh".to_owned(), script.display().to_string(), "--from-config".to_owned()];
    let dir: PathBuf = dir.to_owned();
    Env::start_tweaked(small(), 2, |_| {}, move |c| {
        c.deploy.enabled = true;
        c.deploy.secret = Some(Secret::new(SECRET));
        c.deploy.command = command.clone();
        c.deploy.dir = Some(dir.clone());
    })
}

fn runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("runs")).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn push(files: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main", "before": "0".repeat(40), "after": "ab".repeat(20),
        "commits": [{"id": "ab".repeat(20), "added": [], "removed": [], "modified": files}],
        "head_commit": {"id": "ab".repeat(20)}
    }))
    .unwrap()
}

#[test]
fn the_webhook_is_off_by_default() {
    let env = Env::start(small(), 1);
    let body = push(&["src/main.rs"]);
    let r = env.request("POST", ROUTE, &[("X-Hub-Signature-256", &sign(&body)), ("Content-Type", "application/json")], &body);
    assert_eq!((r.status, r.text()), (404, r#"{"success":false,"error":"Resource not found.","code":"not_found"}"#.to_owned()));
}

#[test]
fn only_a_correctly_signed_push_runs_the_deploy_command_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = deploying_env(dir.path());
    let body = push(&["src/main.rs"]);
    let json = ("Content-Type", "application/json");

    let missing = env.request("POST", ROUTE, &[json], &body);
    assert_eq!((missing.status, missing.text()), (400, r#"{"success":false,"error":"No signature provided.","code":"missing_signature"}"#.to_owned()));
    let forbidden = r#"{"success":false,"error":"Invalid signature.","code":"invalid_signature"}"#.to_owned();
    let wrong = env.request("POST", ROUTE, &[json, ("X-Hub-Signature-256", &sign(b"another body"))], &body);
    assert_eq!((wrong.status, wrong.text()), (403, forbidden.clone()));
    let garbage = env.request("POST", ROUTE, &[json, ("X-Hub-Signature-256", "sha256=not-hex")], &body);
    assert_eq!((garbage.status, garbage.text()), (403, forbidden.clone()));
    // A captured delivery replayed with one byte changed: its signature no longer matches.
    let mut tampered = body.clone();
    let at = tampered.windows(4).position(|w| w == b"main").unwrap();
    tampered[at] = b'M';
    let replayed = env.request("POST", ROUTE, &[json, ("X-Hub-Signature-256", &sign(&body))], &tampered);
    assert_eq!((replayed.status, replayed.text()), (403, forbidden));
    // Signed, but touching no server file, or on another branch: nothing to do.
    let docs = push(&["README.md", "docs/x.png"]);
    let r = env.request("POST", ROUTE, &[json, ("X-Hub-Signature-256", &sign(&docs))], &docs);
    assert_eq!((r.status, r.text()), (200, r#"{"success":true,"deployed":false,"message":"No server files modified."}"#.to_owned()));
    assert_eq!(runs(dir.path()), Vec::<String>::new(), "nothing ran before the signed push");

    let ok = env.request("POST", ROUTE, &[json, ("X-Hub-Signature-256", &sign(&body))], &body);
    assert_eq!((ok.status, ok.text()), (202, r#"{"success":true,"deployed":true}"#.to_owned()));
    assert!(wait_for(DEADLINE, || !runs(dir.path()).is_empty()), "the deploy command never ran");
    // Its arguments are the configured ones; the pushed ref and commit come as variables.
    assert_eq!(runs(dir.path()), vec![format!("refs/heads/main {} --from-config", "ab".repeat(20))]);
}
