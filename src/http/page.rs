//! The web page at `/` for people: what the server is doing, live; a user lookup over
//! `/socket`; and a card configurator. A request whose `Accept` prefers `text/html` gets the
//! page; every other client (curl, `Accept: application/json`, none) keeps the JSON of
//! [`crate::http::status::info`].
//!
//! The page is self-contained: its HTML, CSS and script are compiled in (`src/http/page/`) and
//! served from `/page/*` under a strict `Content-Security-Policy` (nothing from another origin,
//! no inline script or style). Its live numbers come from `GET /page/state`
//! ([`state`]), gathered from every shard with one cross-shard call.

use crate::discord::gateway_status::GatewayState;
use crate::http::response::{ApiError, Reply};
use crate::shard::Shard;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use std::rc::Rc;

const INDEX: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");
const ICON: &str = include_str!("page/icon.svg");

/// Everything the page loads comes from this server; scripts and styles only from its files.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The q-value `accept` gives `media` (`type/subtype`), by the most specific range that matches.
fn quality(accept: &str, media: &str) -> f32 {
    let (ty, _) = media.split_once('/').unwrap_or((media, ""));
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let r = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").map(|q| q.trim().parse::<f32>().unwrap_or(0.0)))
            .next()
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        let specificity = if r == media {
            3
        } else if r.strip_suffix("/*").is_some_and(|t| t == ty) {
            2
        } else if r == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

/// Whether the request's `Accept` prefers HTML to JSON (a browser's navigation does; `*/*`,
/// a missing header or `application/json` do not).
pub fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return false };
    quality(accept, "text/html") > quality(accept, "application/json")
}

fn secure(reply: &mut Reply) {
    let h = &mut reply.headers;
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// `GET /` for a browser.
pub fn index() -> Reply {
    let mut reply = Reply::new(StatusCode::OK, "text/html; charset=utf-8", Bytes::from_static(INDEX.as_bytes()));
    secure(&mut reply);
    reply.headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    reply
}

/// `GET /page/<name>`: the page's script, style, icon and live numbers.
pub async fn serve(ctx: &Rc<Shard>, name: &str) -> Result<Reply, ApiError> {
    let (ty, body) = match name {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        "icon.svg" => ("image/svg+xml; charset=utf-8", ICON),
        "state" => return Ok(state(ctx).await),
        _ => return Err(ApiError::not_found()),
    };
    let mut reply = Reply::new(StatusCode::OK, ty, Bytes::from_static(body.as_bytes()));
    secure(&mut reply);
    Ok(reply)
}

#[derive(Serialize)]
struct Shards {
    total: usize,
    up: usize,
}

#[derive(Serialize)]
struct State {
    gateway: &'static str,
    members_loaded: bool,
    monitored_users: usize,
    socket_connections: usize,
    updates_per_second: f64,
    updates_total: u64,
    shards: Shards,
    /// Other pages this server has (the API docs, metrics), for the page's links.
    links: Links,
}

#[derive(Serialize)]
struct Links {
    docs: bool,
    openapi: bool,
    metrics: bool,
}

/// `GET /page/state`: the server's live numbers, summed over the shards that answered.
pub async fn state(ctx: &Rc<Shard>) -> Reply {
    let numbers = ctx.live_numbers().await;
    let up: Vec<_> = numbers.iter().flatten().collect();
    let gateway = ctx.gateway();
    let body = State {
        gateway: gateway.state.as_str(),
        members_loaded: gateway.members_loaded && gateway.state == GatewayState::Connected,
        monitored_users: up.iter().map(|n| n.monitored_users).sum(),
        socket_connections: up.iter().map(|n| n.socket_connections).sum(),
        updates_per_second: (up.iter().map(|n| n.updates_per_second).sum::<f64>() * 10.0).round() / 10.0,
        updates_total: up.iter().map(|n| n.updates_total).sum(),
        shards: Shards { total: numbers.len(), up: up.len() },
        links: Links {
            docs: crate::http::router::route("/docs").is_some(),
            openapi: crate::http::router::route("/openapi.json").is_some(),
            metrics: crate::http::router::route("/metrics").is_some(),
        },
    };
    let mut reply = Reply::json(StatusCode::OK, Bytes::from(serde_json::to_vec(&body).unwrap_or_default()));
    reply.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(accept: Option<&'static str>) -> bool {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert(header::ACCEPT, HeaderValue::from_static(a));
        }
        wants_html(&h)
    }

    #[test]
    fn browsers_get_the_page_and_everyone_else_the_json() {
        // Chromium's and Firefox's navigation requests.
        assert!(html(Some("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8")));
        assert!(html(Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")));
        assert!(html(Some("text/*, application/json;q=0.5")));
        // curl, fetch() defaults, API clients.
        assert!(!html(None));
        assert!(!html(Some("*/*")));
        assert!(!html(Some("application/json")));
        assert!(!html(Some("application/json, text/html")));
        assert!(!html(Some("text/html;q=0.5, application/json")));
        assert!(!html(Some("text/html;q=0")));
        assert!(!html(Some("garbage;;;q=x")));
    }
}
