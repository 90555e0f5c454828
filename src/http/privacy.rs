//! The privacy REST route: `GET` / `PUT` / `PATCH /api/v1/users/:user_id/privacy`.
//!
//! A member's own settings, for the holder of their storage token (`Authorization`, raw or
//! `Bearer <token>`, as for storage writes). `GET` reads them, `PUT` replaces them (fields left
//! out are off), `PATCH` changes the fields given. A change is answered once durable, with the
//! settings it made; readers of every route see it at once.

use crate::http::response::{ApiError, Reply};
use crate::http::storage::{auth, read_body, Refused};
use crate::http::users::path_user_id;
use crate::presence::privacy::{PrivacyChange, PrivacyError, PrivacyPatch};
use crate::shard::Shard;
use crate::storage::kv::Auth;
use crate::storage::token::token_owner;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use std::rc::Rc;

/// Largest accepted body: every valid settings object fits many times over.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

fn error(e: PrivacyError) -> ApiError {
    match e {
        PrivacyError::Unauthorized => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized."),
        PrivacyError::Invalid(m) => ApiError::bad_request("invalid_privacy", m),
        // Only the bot's changes need a member; a token holder always gets this far.
        PrivacyError::NotMember => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized."),
        PrivacyError::Internal(reason) => {
            tracing::error!(%reason, "privacy request failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal Server Error")
        }
        PrivacyError::Unavailable(reason) => crate::http::storage::storage_unavailable(&reason),
    }
}

/// Answers the route.
pub async fn privacy(ctx: &Rc<Shard>, raw_id: &str, req: &mut Request<Incoming>) -> Result<Reply, ApiError> {
    let id = path_user_id(raw_id)?;
    let auth = auth(req.headers())?;
    if let Auth::Token(given) = &auth {
        // A token names its user: another member's token is refused before anything is read.
        if token_owner(given).is_some_and(|owner| owner != id) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "You can only read and change your own privacy settings."));
        }
    }
    let change = if req.method() == Method::PUT || req.method() == Method::PATCH {
        let body = match read_body(req, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(Refused::TooLarge) => {
                let mut reply = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("Request body must not exceed {MAX_BODY_BYTES} bytes."))
                    .into_reply();
                reply.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok(reply);
            }
            Err(Refused::Invalid(e)) => return Err(e),
        };
        let patch = PrivacyPatch::from_json(&body).map_err(|m| {
            let code = if m.starts_with("Invalid privacy") { "invalid_privacy" } else { "invalid_json" };
            ApiError::bad_request(code, m)
        })?;
        Some(if req.method() == Method::PUT { PrivacyChange::Replace(patch) } else { PrivacyChange::Patch(patch) })
    } else {
        None
    };
    let settings = ctx.privacy(id, auth, change).await.map_err(error)?;
    Ok(Reply::json(StatusCode::OK, Bytes::from(settings.to_json())))
}
