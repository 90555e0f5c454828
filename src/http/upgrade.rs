//! The HTTP side of `/socket`: recognising a WebSocket upgrade and answering 101.

use crate::http::response::Body;
use crate::http::router::{route, Route};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Whether the request asks for a WebSocket upgrade (any path).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    has_token(req.headers(), header::UPGRADE, "websocket") && has_token(req.headers(), header::CONNECTION, "upgrade")
}

/// The 101 answer to a valid upgrade request for `/socket` (query string ignored); `None` for
/// anything else, which is then routed as plain HTTP (other paths answer 404).
pub fn accept<B>(req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::GET || route(req.uri().path()) != Some(Route::Socket) || !is_upgrade(req) {
        return None;
    }
    if req.headers().get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return None;
    }
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).ok()?);
    Some(resp)
}
