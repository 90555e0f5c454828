//! The profile card as an HTTP answer: the owner shard's [`CardAnswer`] turned into a response
//! with its caching and safety headers.

use crate::card::params::{CardParams, Format};
use crate::card::{self, CardAnswer, CardRequest};
use crate::discord::Snowflake;
use crate::http::response::{ApiError, Reply};
use crate::http::status::DISCORD_INVITE;
use crate::http::users::not_monitored;
use crate::shard::Shard;
use std::rc::Rc;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use std::time::Duration;

fn card_headers(reply: &mut Reply, format: Format, etag: &str, max_age: Duration) {
    let h = &mut reply.headers;
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={}", max_age.as_secs())) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if format == Format::Svg {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; img-src data:; style-src 'unsafe-inline'"));
    }
}

/// Answers a card request for `id` on any shard: the owner renders it.
pub async fn respond(ctx: &Rc<Shard>, raw_id: &str, id: Snowflake, format: Format, params: CardParams, headers: &HeaderMap) -> Reply {
    let theme = params.theme;
    let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let max_age = ctx.config().card.max_age;
    let req = CardRequest { format, params, if_none_match };
    match ctx.card(id, req).await {
        None => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shard_unavailable", "The shard that owns this user is not answering.").into_reply(),
        Some(CardAnswer::NotMonitored) => match card::not_monitored_card(raw_id, format, theme, DISCORD_INVITE).await {
            // An image, not JSON that would show as a broken image.
            Some(body) => {
                let mut reply = Reply::new(StatusCode::NOT_FOUND, format.content_type(), body);
                reply.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
                reply.headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                reply
            }
            None => not_monitored(raw_id).into_reply(),
        },
        Some(CardAnswer::Failed) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "card_failed", "The card could not be rendered.").into_reply()
        }
        Some(CardAnswer::NotModified { etag }) => {
            let mut reply = Reply { status: StatusCode::NOT_MODIFIED, headers: HeaderMap::new(), body: Bytes::new() };
            card_headers(&mut reply, format, &etag, max_age);
            reply
        }
        Some(CardAnswer::Card { etag, body, timing }) => {
            let mut reply = Reply::new(StatusCode::OK, format.content_type(), body);
            card_headers(&mut reply, format, &etag, max_age);
            if let Ok(v) = HeaderValue::from_str(&timing) {
                reply.headers.insert("server-timing", v);
            }
            reply
        }
    }
}
