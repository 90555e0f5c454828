//! Lanyard's REST dialect on the same server: `GET /v1/users/:id` (and `@me`), the key-value
//! routes under `/v1/users/:id/kv`, the avatar quicklinks `/<id>.<png|gif|webp|jpg|jpeg>`, with
//! Lanyard's envelope
//! `{"success":false,"error":{"code","message"}}` for every error.
//!
//! The key-value store is the one the Lantern routes use: a write here is a write there, with
//! the same durability, limits and events. The API key is the storage token the bot hands out
//! (`/storage create token`); it names its user, so `@me` needs no lookup, and the owner shard
//! compares it before anything else is answered. Where Lanyard answers oddly, this dialect
//! keeps the codes clients match on and fixes the rest (README, "Lanyard compatibility"):
//! validation failures are 400 (Lanyard: 404), and a write for a member who is not monitored is
//! 404 `user_not_monitored` (Lanyard: a plain-text 500).

use crate::discord::Snowflake;
use crate::http::response::Reply;
use crate::http::storage::{read_body, Refused};
use crate::shard::Shard;
use crate::storage::kv::{is_storable_key, Auth, KvError, KvOp, MAX_KEY_LEN, MAX_PAIRS, MAX_VALUE_CHARS};
use crate::storage::service::StorageRequest;
use crate::storage::token::token_owner;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use std::rc::Rc;

/// Largest `PATCH /v1/users/:id/kv` body: room for many pairs at once, far below what one
/// user may store (`storage.max_user_bytes`), so a merge is read in one piece.
pub const MAX_PATCH_BYTES: usize = 1 << 20;
/// Largest `PUT` body: a value of 30,000 characters, each up to 4 bytes of UTF-8.
pub const MAX_PUT_BYTES: usize = MAX_VALUE_CHARS * 4;

/// A path of the dialect. Every path under `/v1` is one; those that name nothing are `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanyardRoute<'a> {
    /// `/v1/users/:id`, the id still raw (`@me` included).
    User(&'a str),
    /// `/v1/users/:id/kv`
    Kv(&'a str),
    /// `/v1/users/:id/kv/:key`, the key still percent-encoded.
    KvKey(&'a str, &'a str),
    Unknown,
}

impl LanyardRoute<'_> {
    fn allowed(&self) -> &'static [Method] {
        match self {
            LanyardRoute::User(_) => &[Method::GET, Method::HEAD],
            LanyardRoute::Kv(_) => &[Method::PATCH],
            LanyardRoute::KvKey(..) => &[Method::PUT, Method::DELETE],
            LanyardRoute::Unknown => &[],
        }
    }
}

/// Matches a path of the dialect (literal segments case-insensitively, one trailing slash
/// ignored, as the Lantern routes do).
pub fn route(path: &str) -> Option<LanyardRoute<'_>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let rest = path.strip_prefix('/')?;
    let mut segs = rest.split('/');
    if !segs.next()?.eq_ignore_ascii_case("v1") {
        return None;
    }
    let s: [Option<&str>; 5] = std::array::from_fn(|_| segs.next());
    let eq = |seg: Option<&str>, lit: &str| seg.is_some_and(|s| s.eq_ignore_ascii_case(lit));
    Some(match s {
        [u, Some(id), None, ..] if eq(u, "users") && !id.is_empty() => LanyardRoute::User(id),
        [u, Some(id), k, None, ..] if eq(u, "users") && eq(k, "kv") && !id.is_empty() => LanyardRoute::Kv(id),
        [u, Some(id), k, Some(key), None] if eq(u, "users") && eq(k, "kv") && !id.is_empty() && !key.is_empty() => {
            LanyardRoute::KvKey(id, key)
        }
        _ => LanyardRoute::Unknown,
    })
}

/// An avatar quicklink: `/<id>.<ext>`, the raw id and the CDN's name for the format (`jpeg`
/// is `jpg`).
pub fn quicklink(path: &str) -> Option<(&str, &'static str)> {
    let file = path.strip_prefix('/')?;
    let (id, ext) = file.rsplit_once('.')?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    let ext = match ext.to_ascii_lowercase().as_str() {
        "png" => "png",
        "gif" => "gif",
        "webp" => "webp",
        "jpg" | "jpeg" => "jpg",
        _ => return None,
    };
    Some((id, ext))
}

/// Answers `GET /<id>.<ext>`: the user's avatar from Discord's CDN, fetched through the card's
/// image fetcher (allowlist, deadline, size cap, cache, merged fetches).
pub async fn avatar(ctx: &Rc<Shard>, raw_id: &str, ext: &'static str, method: &Method) -> Reply {
    if method == Method::OPTIONS {
        return Reply::preflight();
    }
    if method != Method::GET && method != Method::HEAD {
        let message = format!("Method {method} is not allowed on this path");
        let mut reply = LanyardError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message).into_reply();
        reply.headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        return reply;
    }
    let Some(id) = Snowflake::parse_strict(raw_id) else { return LanyardError::not_monitored().into_reply() };
    match ctx.avatar_file(id, ext).await {
        None => LanyardError::not_monitored().into_reply(),
        Some(None) => LanyardError::new(StatusCode::BAD_GATEWAY, "upstream_error", "The avatar could not be fetched from Discord's CDN").into_reply(),
        Some(Some(image)) => {
            let mut reply = Reply::new(StatusCode::OK, image.mime, image.bytes);
            let max_age = ctx.image_ttl().as_secs();
            if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
                reply.headers.insert(header::CACHE_CONTROL, v);
            }
            reply
        }
    }
}

/// An error in Lanyard's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanyardError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl LanyardError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> LanyardError {
        LanyardError { status, code, message: message.into() }
    }

    fn not_monitored() -> LanyardError {
        LanyardError::new(StatusCode::NOT_FOUND, "user_not_monitored", "User is not being monitored by Lantern")
    }

    fn no_permission() -> LanyardError {
        LanyardError::new(StatusCode::UNAUTHORIZED, "no_permission", "You do not have permission to access this resource")
    }

    fn validation(message: impl Into<String>) -> LanyardError {
        LanyardError::new(StatusCode::BAD_REQUEST, "kv_validation_failed", message)
    }

    fn not_an_object() -> LanyardError {
        LanyardError::new(StatusCode::BAD_REQUEST, "invalid_kv_value", "body must be an object")
    }

    pub fn body(&self) -> Bytes {
        #[derive(serde::Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        #[derive(serde::Serialize)]
        struct Shape<'a> {
            success: bool,
            error: Inner<'a>,
        }
        let shape = Shape { success: false, error: Inner { code: self.code, message: &self.message } };
        Bytes::from(serde_json::to_vec(&shape).unwrap_or_default())
    }

    pub fn into_reply(self) -> Reply {
        Reply::json(self.status, self.body())
    }
}

/// Maps a storage failure to this dialect.
fn kv_error(e: KvError) -> LanyardError {
    match e {
        KvError::NotMonitored => LanyardError::not_monitored(),
        // Only a token holder gets this far, and a token exists only with storage.
        KvError::Unauthorized | KvError::NoStorage => LanyardError::no_permission(),
        KvError::TooManyPairs => LanyardError::validation(format!("request would exceed the key limit ({MAX_PAIRS})")),
        KvError::TooLarge(max) => LanyardError::validation(format!("request would take the storage past {max} bytes of JSON")),
        KvError::InvalidKey(m) | KvError::InvalidValue(m) => LanyardError::validation(m),
        // A delete of a missing key succeeds, as in Lanyard; nothing else reports one.
        KvError::NoKey(key) => LanyardError::validation(format!("key {key} does not exist")),
        KvError::Internal(reason) => {
            tracing::error!(%reason, "storage request failed");
            LanyardError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal Server Error")
        }
        KvError::Unavailable(reason) => {
            tracing::warn!(%reason, "storage write refused: the cluster's store is unavailable");
            LanyardError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", crate::http::storage::STORAGE_UNAVAILABLE)
        }
    }
}

/// Checks a key by Lanyard's rule, with its messages.
fn check_key(key: &str) -> Result<(), LanyardError> {
    if key.len() > MAX_KEY_LEN {
        return Err(LanyardError::validation(format!("key must be {MAX_KEY_LEN} characters or less")));
    }
    if !is_storable_key(key) {
        return Err(LanyardError::validation("key must be alphanumeric (a-zA-Z0-9_)"));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), LanyardError> {
    if value.len() > MAX_VALUE_CHARS && value.chars().count() > MAX_VALUE_CHARS {
        return Err(LanyardError::validation(format!("value must be {MAX_VALUE_CHARS} characters or less")));
    }
    Ok(())
}

fn success(presence: Bytes) -> Reply {
    let mut body = Vec::with_capacity(presence.len() + 24);
    body.extend_from_slice(b"{\"success\":true,\"data\":");
    body.extend_from_slice(&presence);
    body.push(b'}');
    Reply::json(StatusCode::OK, Bytes::from(body))
}

fn no_content() -> Reply {
    Reply { status: StatusCode::NO_CONTENT, headers: http::HeaderMap::new(), body: Bytes::new() }
}

/// The raw `Authorization` value (Lanyard sends the key with no scheme), and the user it names.
fn api_key(req: &Request<Incoming>) -> Result<(Vec<u8>, Snowflake), LanyardError> {
    let given = req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes).unwrap_or_default();
    let owner = token_owner(given).ok_or_else(LanyardError::no_permission)?;
    Ok((given.to_vec(), owner))
}

/// The user a KV path names: the key's owner for `@me`, else the path's id, which must be it.
fn kv_user(raw_id: &str, owner: Snowflake) -> Result<Snowflake, LanyardError> {
    if raw_id == "@me" || Snowflake::parse_strict(raw_id) == Some(owner) {
        Ok(owner)
    } else {
        Err(LanyardError::no_permission())
    }
}

/// Answers one request on a path of the dialect.
pub async fn handle(ctx: &Rc<Shard>, route: LanyardRoute<'_>, req: &mut Request<Incoming>) -> Reply {
    if req.method() == Method::OPTIONS {
        return Reply::preflight();
    }
    if route == LanyardRoute::Unknown {
        return LanyardError::new(StatusCode::NOT_FOUND, "not_found", "Route does not exist").into_reply();
    }
    if !route.allowed().contains(req.method()) {
        let mut v: Vec<&str> = route.allowed().iter().map(Method::as_str).collect();
        v.push("OPTIONS");
        let message = format!("Method {} is not allowed on this path", req.method());
        let mut reply = LanyardError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message).into_reply();
        if let Ok(allow) = HeaderValue::from_str(&v.join(", ")) {
            reply.headers.insert(header::ALLOW, allow);
        }
        return reply;
    }
    match answer(ctx, route, req).await {
        Ok(reply) => reply,
        Err(e) => {
            let too_large = e.status == StatusCode::PAYLOAD_TOO_LARGE;
            let mut reply = e.into_reply();
            // What is left of the body is never read, so the connection cannot carry another
            // request.
            if too_large {
                reply.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            reply
        }
    }
}

async fn answer(ctx: &Rc<Shard>, route: LanyardRoute<'_>, req: &mut Request<Incoming>) -> Result<Reply, LanyardError> {
    match route {
        LanyardRoute::User("@me") => {
            let (given, owner) = api_key(req)?;
            match ctx.lanyard_presence_authorized(owner, given).await {
                Ok(Some(presence)) => Ok(success(presence)),
                Ok(None) => Err(LanyardError::not_monitored()),
                Err(e) => Err(kv_error(e)),
            }
        }
        // Lanyard does not check the id's form: anything that is not a monitored user's id is
        // not monitored.
        LanyardRoute::User(raw_id) => match Snowflake::parse_strict(raw_id) {
            Some(id) => ctx.lanyard_presence(id).await.map(success).ok_or_else(LanyardError::not_monitored),
            None => Err(LanyardError::not_monitored()),
        },
        LanyardRoute::KvKey(raw_id, raw_key) => {
            let (given, owner) = api_key(req)?;
            let id = kv_user(raw_id, owner)?;
            let key = percent_encoding::percent_decode_str(raw_key)
                .decode_utf8()
                .map_err(|_| LanyardError::validation("key must be alphanumeric (a-zA-Z0-9_)"))?
                .into_owned();
            check_key(&key)?;
            let op = if req.method() == Method::DELETE {
                KvOp::Delete { key }
            } else {
                let body = body(req, MAX_PUT_BYTES).await?;
                let value = String::from_utf8(body.to_vec()).map_err(|_| LanyardError::validation("value must be UTF-8 text"))?;
                check_value(&value)?;
                KvOp::Put { key, value }
            };
            match ctx.storage(id, StorageRequest::Write { auth: Auth::Token(given), op }).await {
                Ok(_) | Err(KvError::NoKey(_)) => Ok(no_content()),
                Err(e) => Err(kv_error(e)),
            }
        }
        LanyardRoute::Kv(raw_id) => {
            let (given, owner) = api_key(req)?;
            let id = kv_user(raw_id, owner)?;
            let body = body(req, MAX_PATCH_BYTES).await?;
            let pairs = parse_pairs(&body)?;
            ctx.storage(id, StorageRequest::Write { auth: Auth::Token(given), op: KvOp::Merge(pairs) }).await.map_err(kv_error)?;
            Ok(no_content())
        }
        LanyardRoute::Unknown => Err(LanyardError::new(StatusCode::NOT_FOUND, "not_found", "Route does not exist")),
    }
}

async fn body(req: &mut Request<Incoming>, limit: usize) -> Result<Bytes, LanyardError> {
    read_body(req, limit).await.map_err(|e| match e {
        Refused::TooLarge => {
            LanyardError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("Request body must not exceed {limit} bytes"))
        }
        Refused::Invalid(e) => LanyardError::new(e.status, e.code, e.message),
    })
}

/// A `PATCH` body: a flat JSON object of strings, each key and value checked.
pub fn parse_pairs(body: &[u8]) -> Result<Vec<(String, String)>, LanyardError> {
    let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) else {
        return Err(LanyardError::not_an_object());
    };
    let mut pairs = Vec::with_capacity(map.len());
    for (key, value) in map {
        let serde_json::Value::String(value) = value else { return Err(LanyardError::not_an_object()) };
        check_key(&key)?;
        check_value(&value)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_of_the_dialect() {
        assert_eq!(route("/v1/users/123"), Some(LanyardRoute::User("123")));
        assert_eq!(route("/V1/Users/@me/"), Some(LanyardRoute::User("@me")));
        assert_eq!(route("/v1/users/123/kv"), Some(LanyardRoute::Kv("123")));
        assert_eq!(route("/v1/users/123/kv/a_b"), Some(LanyardRoute::KvKey("123", "a_b")));
        assert_eq!(route("/v1/users/123/kv/a/b"), Some(LanyardRoute::Unknown));
        assert_eq!(route("/v1"), Some(LanyardRoute::Unknown));
        assert_eq!(route("/v1/nope"), Some(LanyardRoute::Unknown));
        assert_eq!(route("/api/v1/users/123"), None);
        assert_eq!(route("/v10/users/1"), None);
        assert_eq!(route("/"), None);
    }

    #[test]
    fn quicklinks_name_an_id_and_an_image_format() {
        assert_eq!(quicklink("/94490510688792576.png"), Some(("94490510688792576", "png")));
        assert_eq!(quicklink("/94490510688792576.JPEG"), Some(("94490510688792576", "jpg")));
        assert_eq!(quicklink("/x.gif"), Some(("x", "gif")));
        assert_eq!(quicklink("/a/b.png"), None);
        assert_eq!(quicklink("/.png"), None);
        assert_eq!(quicklink("/openapi.json"), None);
        assert_eq!(quicklink("/icon.svg"), None);
    }

    #[test]
    fn patch_bodies_are_flat_objects_of_strings() {
        assert_eq!(parse_pairs(br#"{"a":"1","b_c":""}"#).unwrap(), vec![("a".to_owned(), "1".to_owned()), ("b_c".to_owned(), String::new())]);
        for bad in [&br#"{"a":1}"#[..], b"[]", b"nope", br#"{"a":{"b":"c"}}"#, b"\"s\""] {
            assert_eq!(parse_pairs(bad).unwrap_err(), LanyardError::not_an_object(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_pairs(br#"{"a-b":"1"}"#).unwrap_err().message, "key must be alphanumeric (a-zA-Z0-9_)");
        let long = format!(r#"{{"{}":"1"}}"#, "k".repeat(256));
        assert_eq!(parse_pairs(long.as_bytes()).unwrap_err().message, "key must be 255 characters or less");
    }

    #[test]
    fn errors_use_lanyards_envelope() {
        assert_eq!(
            &LanyardError::not_monitored().body()[..],
            br#"{"success":false,"error":{"code":"user_not_monitored","message":"User is not being monitored by Lantern"}}"#
        );
    }
}
