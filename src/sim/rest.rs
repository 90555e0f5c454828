//! The simulator's HTTP side on one port: Discord's REST API under `/api/v10`, the CDN under
//! `/cdn`, and the control API under `/_sim` that `lantern sim` is driven through.
//!
//! Every `/api` request is recorded (method, path with query, body, authorization) before it
//! is answered, so tests can assert exactly what a client sent.

use super::world::Scope;
use super::{images, Fault, RecordedRequest, Shared};
use crate::discord::{Member, Presence, Snowflake};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

type Resp = Response<Full<Bytes>>;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("simulator http accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

fn no_content() -> Resp {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()))
        .expect("valid")
}

fn not_found() -> Resp {
    json_resp(
        StatusCode::NOT_FOUND,
        &json!({"message": "404: Not Found", "code": 0}),
    )
}

fn bad_request(msg: &str) -> Resp {
    json_resp(
        StatusCode::BAD_REQUEST,
        &json!({"message": msg, "code": 50035}),
    )
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let path = req.uri().path().to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return bad_request("unreadable body"),
    };
    if let Some(rest) = path.strip_prefix("/api/v10/") {
        shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RecordedRequest {
                method: method.to_string(),
                path: path_q.clone(),
                body: String::from_utf8_lossy(&body).into_owned(),
                authorization: auth.clone(),
            });
        let segs: Vec<&str> = rest.split('/').collect();
        let query = path_q.split_once('?').map(|(_, q)| q).unwrap_or("");
        return api(shared, &method, &segs, query, auth.as_deref(), &body);
    }
    if let Some(rest) = path.strip_prefix("/cdn/") {
        return cdn(shared, &method, rest).await;
    }
    if let Some(rest) = path.strip_prefix("/_sim/") {
        return control(shared, &method, rest, &body);
    }
    not_found()
}

// ---- REST ----

/// Routes that take no bot token: interaction callbacks and webhook (token-in-path) routes,
/// and the unauthenticated `GET /gateway`.
fn needs_auth(segs: &[&str]) -> bool {
    !matches!(segs, ["interactions", ..] | ["webhooks", ..] | ["gateway"])
}

fn api(
    shared: &Shared,
    method: &Method,
    segs: &[&str],
    query: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Resp {
    if needs_auth(segs)
        && auth.and_then(|a| a.strip_prefix("Bot ")) != Some(shared.cfg.token.as_str())
    {
        return json_resp(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "401: Unauthorized", "code": 0}),
        );
    }
    let app = shared.cfg.application_id.to_string();
    let gw = shared.gateway_url();
    match (method, segs) {
        (&Method::GET, ["gateway"]) => json_resp(StatusCode::OK, &json!({"url": gw})),
        (&Method::GET, ["gateway", "bot"]) => json_resp(
            StatusCode::OK,
            &json!({"url": gw, "shards": 1, "session_start_limit":
                {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}}),
        ),
        (&Method::GET, ["users", "@me"]) => json_resp(StatusCode::OK, &bot_user(shared)),
        (&Method::GET, ["applications", "@me"]) => json_resp(StatusCode::OK, &application(shared)),
        (_, ["applications", a, "commands", rest @ ..])
        | (_, ["applications", a, "guilds", _, "commands", rest @ ..])
            if *a == app =>
        {
            let guild = match segs {
                [_, _, "guilds", g, ..] => match g.parse() {
                    Ok(g) => Some(Snowflake(g)),
                    Err(_) => return not_found(),
                },
                _ => None,
            };
            commands(shared, method, guild, rest, body)
        }
        (&Method::POST, ["interactions", _id, _token, "callback"]) => {
            if serde_json::from_slice::<Value>(body).is_err() && !is_multipart(body) {
                return bad_request("Invalid Form Body");
            }
            if query.split('&').any(|kv| kv == "with_response=true") {
                let id = shared.world().new_id();
                json_resp(
                    StatusCode::OK,
                    &json!({"interaction": {"id": id, "type": 2}, "resource": null}),
                )
            } else {
                no_content()
            }
        }
        // Create message (a bot posting to a channel; attachments come as multipart).
        (&Method::POST, ["channels", _channel, "messages"]) => {
            if serde_json::from_slice::<Value>(body).is_err() && !is_multipart(body) {
                return bad_request("Invalid Form Body");
            }
            json_resp(StatusCode::OK, &message(shared, body))
        }
        (&Method::POST, ["webhooks", a, _token]) if *a == app => {
            json_resp(StatusCode::OK, &message(shared, body))
        }
        (&Method::GET | &Method::PATCH, ["webhooks", a, _token, "messages", _msg]) if *a == app => {
            json_resp(StatusCode::OK, &message(shared, body))
        }
        (&Method::DELETE, ["webhooks", a, _token, "messages", _msg]) if *a == app => no_content(),
        _ => not_found(),
    }
}

fn is_multipart(body: &[u8]) -> bool {
    body.starts_with(b"--")
}

fn bot_user(shared: &Shared) -> Value {
    let world = shared.world();
    let bot = world.bot();
    json!({
        "id": bot.id, "username": bot.username, "discriminator": bot.discriminator, "global_name": null,
        "avatar": bot.avatar, "bot": true, "verified": true, "mfa_enabled": false, "flags": bot.public_flags,
        "public_flags": bot.public_flags, "banner": null, "accent_color": null, "locale": "en-US",
        "email": null, "premium_type": 0,
    })
}

fn application(shared: &Shared) -> Value {
    let user = bot_user(shared);
    json!({
        "id": shared.cfg.application_id, "name": user["username"], "icon": null, "description": "",
        "summary": "", "type": null, "hook": true, "bot_public": true, "bot_require_code_grant": false,
        "verify_key": format!("{:064x}", shared.cfg.application_id.0 as u128 * 0x2545_f491),
        "flags": 8953856, "owner": user, "bot": user, "team": null, "rpc_origins": [], "tags": [],
        "redirect_uris": [], "interactions_endpoint_url": null, "approximate_guild_count": 1,
        "integration_types_config": {"0": {}},
    })
}

/// Fills in what Discord adds to a submitted command.
fn complete_command(shared: &Shared, mut cmd: Value, guild: Option<Snowflake>) -> Value {
    let id = shared.world().new_id();
    if let Some(o) = cmd.as_object_mut() {
        o.insert("id".into(), json!(id));
        o.insert("application_id".into(), json!(shared.cfg.application_id));
        o.insert("version".into(), json!(id));
        o.entry("type").or_insert(json!(1));
        o.entry("options").or_insert(json!([]));
        o.entry("default_member_permissions").or_insert(Value::Null);
        o.entry("nsfw").or_insert(json!(false));
        if let Some(g) = guild {
            o.insert("guild_id".into(), json!(g));
        }
    }
    cmd
}

fn commands(
    shared: &Shared,
    method: &Method,
    guild: Option<Snowflake>,
    rest: &[&str],
    body: &[u8],
) -> Resp {
    match (method, rest) {
        (&Method::GET, []) => {
            let list = shared
                .world()
                .commands
                .get(&guild)
                .cloned()
                .unwrap_or_default();
            json_resp(StatusCode::OK, &Value::Array(list))
        }
        (&Method::PUT, []) => {
            let Ok(Value::Array(list)) = serde_json::from_slice::<Value>(body) else {
                return bad_request("Invalid Form Body");
            };
            let list: Vec<Value> = list
                .into_iter()
                .map(|c| complete_command(shared, c, guild))
                .collect();
            shared.world().commands.insert(guild, list.clone());
            json_resp(StatusCode::OK, &Value::Array(list))
        }
        (&Method::POST, []) => {
            let Ok(cmd @ Value::Object(_)) = serde_json::from_slice::<Value>(body) else {
                return bad_request("Invalid Form Body");
            };
            let cmd = complete_command(shared, cmd, guild);
            let mut world = shared.world();
            let list = world.commands.entry(guild).or_default();
            // Creating a command with an existing name overwrites it, as on Discord.
            list.retain(|c| c["name"] != cmd["name"]);
            list.push(cmd.clone());
            json_resp(StatusCode::CREATED, &cmd)
        }
        (&Method::GET, [id]) => {
            let world = shared.world();
            match world
                .commands
                .get(&guild)
                .and_then(|l| l.iter().find(|c| c["id"] == *id))
            {
                Some(c) => json_resp(StatusCode::OK, c),
                None => not_found(),
            }
        }
        (&Method::DELETE, [id]) => {
            let mut world = shared.world();
            let list = world.commands.entry(guild).or_default();
            let before = list.len();
            list.retain(|c| c["id"] != *id);
            if list.len() == before {
                not_found()
            } else {
                no_content()
            }
        }
        _ => not_found(),
    }
}

/// A message object for webhook answers, with the content the client sent.
fn message(shared: &Shared, body: &[u8]) -> Value {
    let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut world = shared.world();
    let id = world.new_id();
    let bot = world.bot().clone();
    json!({
        "id": id, "type": 20, "channel_id": Snowflake(shared.cfg.guild_id.0 + 100),
        "author": {"id": bot.id, "username": bot.username, "discriminator": bot.discriminator,
                   "global_name": null, "avatar": bot.avatar, "bot": true, "public_flags": bot.public_flags},
        "content": sent.get("content").cloned().unwrap_or(json!("")),
        "timestamp": super::generator::discord_iso(crate::time_fmt::now_ms()),
        "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": sent.get("embeds").cloned().unwrap_or(json!([])), "pinned": false,
        "flags": sent.get("flags").cloned().unwrap_or(json!(0)), "components": [],
        "webhook_id": shared.cfg.application_id, "application_id": shared.cfg.application_id,
    })
}

// ---- CDN ----

/// Whether `path` (below `/cdn/`) is one of the image routes Discord's CDNs serve.
fn cdn_route(path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').collect();
    let ext_in = |file: &str, exts: &[&str]| {
        file.rsplit_once('.')
            .is_some_and(|(stem, e)| !stem.is_empty() && exts.contains(&e))
    };
    match segs.as_slice() {
        ["avatars", _user, file] => ext_in(file, &["png", "gif", "webp", "jpg"]),
        ["guilds", _g, "users", _u, "avatars", file] => ext_in(file, &["png", "gif", "webp"]),
        ["embed", "avatars", file] => file
            .strip_suffix(".png")
            .is_some_and(|n| n.parse::<u8>().is_ok_and(|n| n < 6)),
        ["app-assets", _app, file] => ext_in(file, &["png", "webp", "jpg"]),
        ["emojis", file] => ext_in(file, &["png", "gif", "webp"]),
        ["guild-tag-badges", _g, file] => ext_in(file, &["png", "webp"]),
        ["external", rest @ ..] => !rest.is_empty() && rest.iter().all(|s| !s.is_empty()),
        ["image", id] => !id.is_empty(),
        // Stream previews (YouTube's and Twitch's hosts, mapped here in demo mode and tests).
        ["vi", id, file] => !id.is_empty() && ext_in(file, &["jpg"]),
        ["previews-ttv", file] => file.starts_with("live_user_") && ext_in(file, &["png", "jpg"]),
        _ => false,
    }
}

async fn cdn(shared: &Shared, method: &Method, path: &str) -> Resp {
    shared
        .cdn_hits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("/{path}"));
    let delay = shared.cdn_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if (method != Method::GET && method != Method::HEAD) || !cdn_route(path) {
        return respond(StatusCode::NOT_FOUND, "text/plain", "404: Not Found");
    }
    let mut r = respond(StatusCode::OK, "image/png", images::png_for(path));
    r.headers_mut().insert(
        "cache-control",
        "public, max-age=31536000".parse().expect("valid header"),
    );
    r
}

// ---- control API ----

fn control(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Resp {
    let segs: Vec<&str> = path.split('/').collect();
    let parsed = || serde_json::from_slice::<Value>(body);
    match (method, segs.as_slice()) {
        (&Method::GET, ["members"]) => {
            let list: Vec<Value> = shared
                .world()
                .members()
                .into_iter()
                .map(|(m, p)| json!({"member": m, "presence": p}))
                .collect();
            json_resp(StatusCode::OK, &Value::Array(list))
        }
        (&Method::POST, ["members"]) => {
            let Ok(v) = parsed() else {
                return bad_request("invalid JSON");
            };
            let Ok(member) = serde_json::from_value::<Member>(v["member"].clone()) else {
                return bad_request("member: invalid member object");
            };
            let presence = match v.get("presence") {
                None | Some(Value::Null) => None,
                Some(p) => match serde_json::from_value::<Presence>(p.clone()) {
                    Ok(p) => Some(p),
                    Err(_) => return bad_request("presence: invalid presence object"),
                },
            };
            shared.world().add_member(member, presence);
            no_content()
        }
        (&Method::DELETE, ["members", id]) => match Snowflake::parse_strict(id) {
            Some(id) => {
                shared.world().remove_member(id);
                no_content()
            }
            None => bad_request("invalid id"),
        },
        (&Method::POST, ["presence"]) => match serde_json::from_slice::<Presence>(body) {
            Ok(p) => {
                shared.world().set_presence(p);
                no_content()
            }
            Err(_) => bad_request("invalid presence object"),
        },
        (&Method::POST, ["dispatch"]) => {
            let Ok(v) = parsed() else {
                return bad_request("invalid JSON");
            };
            let Some(t) = v.get("t").and_then(Value::as_str) else {
                return bad_request("t: string required");
            };
            let d = v.get("d").cloned().unwrap_or(Value::Null);
            shared.world().broadcast(t, &d.to_string(), Scope::Any);
            no_content()
        }
        (&Method::POST, ["fault"]) => {
            let Ok(v) = parsed() else {
                return bad_request("invalid JSON");
            };
            let fault = match v.get("kind").and_then(Value::as_str) {
                Some("drop") => Fault::DropConnections,
                Some("stop_acks") => Fault::StopHeartbeatAcks(true),
                Some("resume_acks") => Fault::StopHeartbeatAcks(false),
                Some("close") => {
                    Fault::Close(v.get("code").and_then(Value::as_u64).unwrap_or(4000) as u16)
                }
                Some("reconnect") => Fault::Reconnect,
                Some("invalid_session") => Fault::InvalidSession {
                    resumable: v.get("resumable").and_then(Value::as_bool).unwrap_or(false),
                },
                _ => return bad_request(
                    "kind: one of drop, stop_acks, resume_acks, close, reconnect, invalid_session",
                ),
            };
            shared.fault(fault);
            no_content()
        }
        (&Method::GET, ["stats"]) => json_resp(StatusCode::OK, &json!(shared.stats())),
        (&Method::GET, ["requests"]) => {
            let reqs = shared
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            json_resp(StatusCode::OK, &json!(reqs))
        }
        _ => not_found(),
    }
}
