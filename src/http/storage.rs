//! The storage REST API: `/api/v1/users/:user_id/storage[/:key]`.
//!
//! Reads are public; writes need the user's token in `Authorization` (raw, or `Bearer <token>`).
//! Requests are validated here (path, body, limits), then answered by the owner shard, which
//! checks the token before anything that would reveal whether storage exists, and answers a
//! write only once it is durable.

use crate::discord::Snowflake;
use crate::http::response::{ApiError, Reply};
use crate::http::users::{not_monitored, path_user_id};
use crate::shard::Shard;
use std::rc::Rc;
use crate::storage::kv::{is_storable_key, validate_key, validate_value, Auth, KvError, KvOp};
use crate::storage::service::{StorageAnswer, StorageRequest};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

/// Largest accepted request body (384 KiB): every valid request fits in its most expensive
/// encoding. A 30,000-character value whose characters are all outside the BMP, each written
/// as a surrogate pair of `\uXXXX` escapes, takes 360,000 bytes; the envelope `{"value":""}`
/// (even with `value` itself escaped) under 40 more, which leaves over 33,000 bytes of
/// whitespace to spare.
pub const MAX_BODY_BYTES: usize = 384 * 1024;

/// Maps a storage failure to the one error shape, with the contract's messages.
pub fn api_error(e: KvError, raw_id: &str) -> ApiError {
    match e {
        KvError::NotMonitored => not_monitored(raw_id),
        KvError::NoStorage => ApiError::new(StatusCode::NOT_FOUND, "storage_not_found", format!("User {raw_id} does not have any storage.")),
        KvError::Unauthorized => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized."),
        KvError::NoKey(key) => ApiError::new(StatusCode::NOT_FOUND, "key_not_found", format!("Key {key} does not exist in the storage.")),
        KvError::TooManyPairs => ApiError::bad_request(
            "too_many_pairs",
            format!("A storage can hold at most {} key-value pairs.", crate::storage::kv::MAX_PAIRS),
        ),
        KvError::TooLarge(max) => ApiError::bad_request("storage_too_large", format!("A storage can hold at most {max} bytes of JSON.")),
        KvError::InvalidKey(m) => ApiError::bad_request("invalid_key", m),
        KvError::InvalidValue(m) => ApiError::bad_request("invalid_value", m),
        KvError::Internal(reason) => {
            tracing::error!(%reason, "storage request failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal Server Error")
        }
        KvError::Unavailable(reason) => storage_unavailable(&reason),
    }
}

/// What a refused write says when the cluster's store cannot be reached (both dialects).
pub const STORAGE_UNAVAILABLE: &str = "Storage is unavailable on this node right now; nothing was written. Try again shortly.";

/// Cluster mode: the cluster's store cannot be reached; nothing was written.
pub fn storage_unavailable(reason: &str) -> ApiError {
    tracing::warn!(%reason, "storage write refused: the cluster's store is unavailable");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", STORAGE_UNAVAILABLE)
}

fn success() -> Reply {
    Reply::json(StatusCode::OK, Bytes::from_static(b"{\"success\":true}"))
}

/// The token from `Authorization`: the raw value, or what follows `Bearer `.
pub fn auth(headers: &HeaderMap) -> Result<Auth, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Err(api_error(KvError::Unauthorized, "")) };
    let raw = v.as_bytes();
    let token = match raw.get(..7) {
        Some(p) if p.eq_ignore_ascii_case(b"bearer ") => &raw[7..],
        _ => raw,
    };
    if token.is_empty() {
        return Err(api_error(KvError::Unauthorized, ""));
    }
    Ok(Auth::Token(token.to_vec()))
}

/// Percent-decodes a path segment (so `a%2Eb` is checked as `a.b`); `None` if it is not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw).decode_utf8().ok().map(|k| k.into_owned())
}

/// Validates a `:key` path segment (still percent-encoded) and returns the decoded key, or the
/// `invalid_key` error the API answers with.
pub fn path_key(raw: &str) -> Result<String, ApiError> {
    let key = percent_decode(raw).ok_or_else(|| ApiError::bad_request("invalid_key", "key must be alphanumeric."))?;
    validate_key(&key).map_err(|e| api_error(e, ""))?;
    Ok(key)
}

/// Like [`path_key`], for a read or delete: any key that can be stored (Lanyard's routes also
/// write keys with `_`) is accepted.
fn path_key_stored(raw: &str) -> Result<String, ApiError> {
    match percent_decode(raw) {
        Some(key) if is_storable_key(&key) => Ok(key),
        _ => path_key(raw),
    }
}

/// The 413 for a body over [`MAX_BODY_BYTES`]. It closes the connection: what is left of the
/// body is never read, so the connection cannot carry another request.
fn too_large() -> Reply {
    let mut reply =
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("Request body must not exceed {MAX_BODY_BYTES} bytes."))
            .into_reply();
    reply.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    reply
}

/// Whether the client waits for `100 Continue` before it sends the body.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Why a body was not taken.
pub enum Refused {
    /// Over the limit: answered with 413 and the connection closed.
    TooLarge,
    Invalid(ApiError),
}

/// Reads a request body of at most `limit` bytes. A larger declared length is refused before
/// anything is read; a body without one (chunked) is counted as it arrives and cut there.
pub async fn read_body(req: &mut Request<Incoming>, limit: usize) -> Result<Bytes, Refused> {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        // Decided from the header alone, before the body is polled: hyper sends `100 Continue`
        // on the first poll, so a client waiting for it is refused without sending anything.
        // A client already sending a body of at most DRAIN_LIMIT bytes has it read and
        // discarded first, so that it reads this answer rather than a connection reset.
        if !expects_continue(req.headers()) && n <= DRAIN_LIMIT as u64 {
            drain(req.body_mut()).await;
        }
        return Err(Refused::TooLarge);
    }
    match http_body_util::Limited::new(req.body_mut(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refused::TooLarge),
        Err(_) => Err(Refused::Invalid(ApiError::bad_request("invalid_body", "The request body could not be read."))),
    }
}

/// Reads the body (at most [`MAX_BODY_BYTES`]) and takes its `value`.
async fn body_value(req: &mut Request<Incoming>) -> Result<String, Refused> {
    let body = read_body(req, MAX_BODY_BYTES).await?;
    parse_body(&body).map_err(Refused::Invalid)
}

/// Takes the `value` of a `PUT`/`PATCH` body (`{"value":"..."}`) and checks its length, with
/// the API's `invalid_json` / `invalid_value` errors. The size limit is checked before.
pub fn parse_body(body: &[u8]) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("invalid_value", "value is required."));
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ApiError::bad_request("invalid_json", "Request body must be valid JSON."))?;
    let value = match json.get("value") {
        None => return Err(ApiError::bad_request("invalid_value", "value is required.")),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("invalid_value", "value must be a string.")),
    };
    validate_value(&value).map_err(|e| api_error(e, ""))?;
    Ok(value)
}

/// A declared body over the limit but at most this size, from a client that does not wait for
/// `100 Continue`, is read and discarded before the 413; larger ones are refused unread.
const DRAIN_LIMIT: usize = 4 << 20;

async fn drain(body: &mut Incoming) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while seen <= DRAIN_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

async fn run(ctx: &Rc<Shard>, id: Snowflake, raw_id: &str, req: StorageRequest) -> Result<StorageAnswer, ApiError> {
    ctx.storage(id, req).await.map_err(|e| api_error(e, raw_id))
}

/// A public read; the token, when one is sent, lets its holder read a map the member hides.
async fn read(ctx: &Rc<Shard>, id: Snowflake, raw_id: &str, req: StorageRequest, headers: &HeaderMap) -> Result<StorageAnswer, ApiError> {
    let token = match auth(headers) {
        Ok(Auth::Token(t)) => Some(t),
        _ => None,
    };
    ctx.storage_read(id, req, token).await.map_err(|e| api_error(e, raw_id))
}

/// `GET` / `DELETE /api/v1/users/:id/storage`.
pub async fn storage(ctx: &Rc<Shard>, raw_id: &str, req: &mut Request<Incoming>) -> Result<Reply, ApiError> {
    let id = path_user_id(raw_id)?;
    if req.method() == Method::DELETE {
        let auth = auth(req.headers())?;
        run(ctx, id, raw_id, StorageRequest::Write { auth, op: KvOp::Clear }).await?;
        return Ok(success());
    }
    match read(ctx, id, raw_id, StorageRequest::GetAll, req.headers()).await? {
        StorageAnswer::Map(json) => Ok(Reply::json(StatusCode::OK, json)),
        _ => Err(api_error(KvError::Internal("unexpected storage answer".into()), raw_id)),
    }
}

/// `GET` / `PUT` / `PATCH` / `DELETE /api/v1/users/:id/storage/:key`.
pub async fn storage_key(ctx: &Rc<Shard>, raw_id: &str, raw_key: &str, req: &mut Request<Incoming>) -> Result<Reply, ApiError> {
    let id = path_user_id(raw_id)?;
    let method = req.method().clone();
    let key = if method == Method::PUT || method == Method::PATCH { path_key(raw_key)? } else { path_key_stored(raw_key)? };
    if method == Method::GET || method == Method::HEAD {
        return match read(ctx, id, raw_id, StorageRequest::GetKey(key), req.headers()).await? {
            StorageAnswer::Value(value_json) => {
                let mut body = Vec::with_capacity(value_json.len() + 10);
                body.extend_from_slice(b"{\"value\":");
                body.extend_from_slice(&value_json);
                body.push(b'}');
                Ok(Reply::json(StatusCode::OK, Bytes::from(body)))
            }
            _ => Err(api_error(KvError::Internal("unexpected storage answer".into()), raw_id)),
        };
    }
    let op = if method == Method::DELETE {
        KvOp::Delete { key }
    } else {
        let value = match body_value(req).await {
            Ok(value) => value,
            Err(Refused::TooLarge) => return Ok(too_large()),
            Err(Refused::Invalid(e)) => return Err(e),
        };
        if method == Method::PATCH {
            KvOp::Patch { key, value }
        } else {
            KvOp::Put { key, value }
        }
    };
    let auth = auth(req.headers())?;
    run(ctx, id, raw_id, StorageRequest::Write { auth, op }).await?;
    Ok(success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("abc").as_deref(), Some("abc"));
        assert_eq!(percent_decode("a%62c").as_deref(), Some("abc"));
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn authorization_header_forms() {
        let mut h = HeaderMap::new();
        assert!(auth(&h).is_err());
        h.insert(header::AUTHORIZATION, "tok".parse().unwrap());
        assert!(matches!(auth(&h), Ok(Auth::Token(t)) if t == b"tok"));
        h.insert(header::AUTHORIZATION, "Bearer tok".parse().unwrap());
        assert!(matches!(auth(&h), Ok(Auth::Token(t)) if t == b"tok"));
    }
}
