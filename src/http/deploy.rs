//! `POST /api/v1/github_auto_deploy`: GitHub's push webhook runs the operator's deploy command.
//!
//! Off unless `[deploy] enabled = true` (then the route answers 404 like any unknown path). Every
//! delivery is checked in this order, and nothing runs unless all of it holds:
//!
//! 1. `X-Hub-Signature-256` is present (400 `missing_signature` otherwise, before the body is
//!    read);
//! 2. the body fits `[deploy] max_body_bytes` (413);
//! 3. the header is `sha256=` and the HMAC-SHA256 of the raw body under `GITHUB_WEBHOOK_SECRET`,
//!    compared in constant time (403 `invalid_signature`);
//! 4. the body is JSON (400 `invalid_json`);
//! 5. it is a push to `[deploy] branch` whose commits add, remove or modify a path under one of
//!    `[deploy] paths` (200 with `deployed: false` and why, otherwise).
//!
//! Then the configured program is started with its configured arguments, never through a shell
//! and with nothing from the request in its command line (the pushed ref and commit are given in
//! `LANTERN_DEPLOY_REF` and `LANTERN_DEPLOY_COMMIT`, validated), and the answer is 202. The
//! program runs on its own thread, which logs how it exited; while it runs, another delivery for
//! the same command is answered 409 `deploy_in_progress`.

use crate::config::DeployConfig;
use crate::http::response::{ApiError, Reply};
use crate::shard::Shard;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use sha2::Sha256;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Mutex;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Whether `signature` (the header's value, `sha256=<64 hex>`) is the HMAC-SHA256 of `body`
/// under `secret`. The comparison takes the same time wherever the first difference is.
pub fn signature_matches(secret: &[u8], body: &[u8], signature: &[u8]) -> bool {
    let Some(hex) = signature.strip_prefix(b"sha256=") else { return false };
    let Some(given) = decode_hex(hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// What a verified delivery asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to deploy, and why.
    Skip(&'static str),
    /// Deploy this ref (and head commit, when it is a commit id).
    Deploy { git_ref: String, commit: Option<String> },
}

/// Decides from a verified push payload whether to deploy.
pub fn decide(payload: &serde_json::Value, cfg: &DeployConfig) -> Decision {
    let Some(git_ref) = payload.get("ref").and_then(|r| r.as_str()) else { return Decision::Skip("Not a push.") };
    if !cfg.branch.is_empty() && git_ref != cfg.branch {
        return Decision::Skip("Not the deployed branch.");
    }
    let touched = payload.get("commits").and_then(|c| c.as_array()).into_iter().flatten().any(|commit| {
        ["added", "removed", "modified"].iter().any(|list| {
            commit.get(list).and_then(|l| l.as_array()).into_iter().flatten().filter_map(|p| p.as_str()).any(|path| {
                cfg.paths.iter().any(|prefix| path.starts_with(prefix.as_str()))
            })
        })
    });
    if !touched {
        return Decision::Skip("No server files modified.");
    }
    let commit = payload
        .get("after")
        .and_then(|a| a.as_str())
        .filter(|a| a.len() == 40 && a.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    // The ref goes into an environment variable: keep it to what a ref name can hold.
    let git_ref = git_ref.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    Decision::Deploy { git_ref, commit }
}

/// Deploy commands running now (by their command line), so that one runs at a time.
static RUNNING: Mutex<Option<HashSet<Vec<String>>>> = Mutex::new(None);

#[derive(Debug)]
pub enum StartError {
    Running,
    Spawn(String),
}

/// Starts the command on its own thread; resolves once it has started (or failed to).
pub async fn start(cfg: &DeployConfig, git_ref: String, commit: Option<String>) -> Result<(), StartError> {
    let command = cfg.command.clone();
    {
        let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        if !running.get_or_insert_with(HashSet::new).insert(command.clone()) {
            return Err(StartError::Running);
        }
    }
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Result<u32, String>>();
    let dir = cfg.dir.clone();
    let spawned = std::thread::Builder::new().name("deploy".into()).spawn({
        let command = command.clone();
        move || {
            let mut cmd = std::process::Command::new(&command[0]);
            cmd.args(&command[1..]).stdin(std::process::Stdio::null()).env("LANTERN_DEPLOY_REF", &git_ref);
            if let Some(c) = &commit {
                cmd.env("LANTERN_DEPLOY_COMMIT", c);
            }
            if let Some(d) = &dir {
                cmd.current_dir(d);
            }
            match cmd.spawn() {
                Err(e) => {
                    let _ = started_tx.send(Err(e.to_string()));
                }
                Ok(mut child) => {
                    let pid = child.id();
                    let _ = started_tx.send(Ok(pid));
                    match child.wait() {
                        Ok(status) if status.success() => tracing::info!(pid, "deploy command finished"),
                        Ok(status) => tracing::error!(pid, %status, "deploy command failed"),
                        Err(e) => tracing::error!(pid, error = %e, "deploy command could not be waited for"),
                    }
                }
            }
            finish(&command);
        }
    });
    if let Err(e) = spawned {
        finish(&command);
        return Err(StartError::Spawn(e.to_string()));
    }
    match started_rx.await {
        Ok(Ok(pid)) => {
            tracing::info!(pid, "deploy command started");
            Ok(())
        }
        Ok(Err(e)) => Err(StartError::Spawn(e)),
        Err(_) => Err(StartError::Spawn("the deploy thread ended".into())),
    }
}

fn finish(command: &Vec<String>) {
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(set) = running.as_mut() {
        set.remove(command);
    }
}

/// The answer to a verified delivery: `{"success":true,"deployed":…[,"message":…]}`.
fn answer(status: StatusCode, deployed: bool, message: Option<&str>) -> Reply {
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        success: bool,
        deployed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a str>,
    }
    Reply::json(status, Bytes::from(serde_json::to_vec(&Answer { success: true, deployed, message }).unwrap_or_default()))
}

/// Reads at most `max` bytes of body; `None` when it is longer (or unreadable).
async fn read_body(req: &mut Request<Incoming>, max: usize) -> Result<Bytes, bool> {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(true);
    }
    match http_body_util::Limited::new(req.body_mut(), max).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(e.is::<http_body_util::LengthLimitError>()),
    }
}

/// `POST /api/v1/github_auto_deploy`.
pub async fn webhook(ctx: &Rc<Shard>, req: &mut Request<Incoming>) -> Reply {
    let cfg = &ctx.config().deploy;
    let Some(secret) = cfg.secret.as_ref().filter(|_| cfg.enabled) else { return ApiError::not_found().into_reply() };
    let Some(signature) = req.headers().get(SIGNATURE_HEADER).map(|v| v.as_bytes().to_vec()) else {
        return ApiError::bad_request("missing_signature", "No signature provided.").into_reply();
    };
    let body = match read_body(req, cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(true) => {
            let mut reply = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("Request body must not exceed {} bytes.", cfg.max_body_bytes),
            )
            .into_reply();
            reply.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            return reply;
        }
        Err(false) => return ApiError::bad_request("invalid_body", "The request body could not be read.").into_reply(),
    };
    if !signature_matches(secret.expose().as_bytes(), &body, &signature) {
        tracing::warn!("deploy webhook: invalid signature");
        return ApiError::new(StatusCode::FORBIDDEN, "invalid_signature", "Invalid signature.").into_reply();
    }
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return ApiError::bad_request("invalid_json", "Request body must be valid JSON.").into_reply();
    };
    match decide(&payload, cfg) {
        Decision::Skip(message) => answer(StatusCode::OK, false, Some(message)),
        Decision::Deploy { git_ref, commit } => match start(cfg, git_ref, commit).await {
            Ok(()) => answer(StatusCode::ACCEPTED, true, None),
            Err(StartError::Running) => {
                ApiError::new(StatusCode::CONFLICT, "deploy_in_progress", "A deploy is already running.").into_reply()
            }
            Err(StartError::Spawn(e)) => {
                tracing::error!(error = %e, "deploy command could not be started");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "deploy_failed", format!("Error while starting the deploy command: {e}"))
                    .into_reply()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signature_matches_githubs_documented_example() {
        // The example of GitHub's "Validating webhook deliveries".
        let secret = b"It's a Secret to Everybody";
        let sig = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_matches(secret, b"Hello, World!", sig));
        assert!(!signature_matches(secret, b"Hello, World?", sig));
        assert!(!signature_matches(b"another secret", b"Hello, World!", sig));
        assert!(!signature_matches(secret, b"Hello, World!", &sig[7..]), "without the sha256= prefix");
        assert!(!signature_matches(secret, b"Hello, World!", b"sha256=zz"));
        assert!(!signature_matches(secret, b"Hello, World!", &sig[..sig.len() - 2]), "truncated");
    }

    fn cfg() -> DeployConfig {
        DeployConfig {
            enabled: true,
            secret: None,
            command: vec!["true".into()],
            dir: None,
            branch: "refs/heads/main".into(),
            paths: vec!["src/".into(), "Cargo.lock".into()],
            max_body_bytes: 1 << 20,
        }
    }

    #[test]
    fn only_pushes_to_the_branch_touching_server_paths_deploy() {
        let push = |r: &str, files: serde_json::Value| json!({"ref": r, "after": "a".repeat(40), "commits": [{"modified": [], "added": files, "removed": []}]});
        assert_eq!(decide(&json!({"zen": "ping"}), &cfg()), Decision::Skip("Not a push."));
        assert_eq!(decide(&push("refs/heads/dev", json!(["src/main.rs"])), &cfg()), Decision::Skip("Not the deployed branch."));
        assert_eq!(decide(&push("refs/heads/main", json!(["README.md", "docs/src/x"])), &cfg()), Decision::Skip("No server files modified."));
        assert_eq!(
            decide(&push("refs/heads/main", json!(["README.md", "Cargo.lock"])), &cfg()),
            Decision::Deploy { git_ref: "refs/heads/main".into(), commit: Some("a".repeat(40)) }
        );
        let odd = json!({"ref": "refs/heads/main", "after": "$(reboot)", "commits": [{"removed": ["src/x.rs"]}]});
        assert_eq!(decide(&odd, &cfg()), Decision::Deploy { git_ref: "refs/heads/main".into(), commit: None });
    }
}
