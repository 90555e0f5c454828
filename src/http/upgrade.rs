//! The HTTP side of `/socket`: recognising a WebSocket upgrade and answering 101.

use crate::fanout::Encoding;
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

/// What the server answers to a permessage-deflate offer it accepts: no context is carried
/// from one message to the next in either direction, so one compressed frame per change serves
/// every compressing subscriber.
pub const DEFLATE_RESPONSE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Whether one offer (`permessage-deflate; p; p=v`, RFC 7692 §7.1) can be accepted as
/// [`DEFLATE_RESPONSE`]: every parameter known, none twice, and the server's window not
/// narrowed below zlib's 15 bits.
fn deflate_offer_acceptable(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next().is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate")) {
        return false;
    }
    let mut seen: Vec<String> = Vec::new();
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"'))),
            None => (p.to_ascii_lowercase(), None),
        };
        if seen.contains(&name) {
            return false;
        }
        let bits_ok = |v: Option<&str>| v.and_then(|v| v.parse::<u8>().ok()).is_some_and(|b| (8..=15).contains(&b));
        let ok = match name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => value.is_none(),
            // Any window the client uses can be inflated; the value is optional.
            "client_max_window_bits" => value.is_none() || bits_ok(value),
            // The server's compressor uses a 15-bit window.
            "server_max_window_bits" => bits_ok(value) && value == Some("15"),
            _ => false,
        };
        if !ok {
            return false;
        }
        seen.push(name);
    }
    true
}

/// Whether the request offers permessage-deflate in a form the server accepts.
pub fn offers_deflate(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(deflate_offer_acceptable)
}

/// Whether the upgrade URL's query asks for Lanyard's `compression=zlib_json`.
pub fn wants_zlib_json(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|p| p == "compression=zlib_json"))
}

/// The 101 answer to a valid upgrade request for `/socket` (query string ignored), with the
/// encoding it negotiated; `None` for anything else, which is then routed as plain HTTP (other
/// paths answer 404). `deflate`: whether permessage-deflate may be negotiated.
pub fn accept<B>(req: &Request<B>, deflate: bool) -> Option<(Response<Body>, Encoding)> {
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
    let encoding = if wants_zlib_json(req.uri().query()) {
        // Lanyard's own compression: every message a zlib stream in a binary frame, so
        // permessage-deflate is not negotiated on top of it.
        Encoding::Zlib
    } else if deflate && offers_deflate(req.headers()) {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(DEFLATE_RESPONSE));
        Encoding::Deflate
    } else {
        Encoding::Plain
    };
    Some((resp, encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_json_query() {
        assert!(wants_zlib_json(Some("compression=zlib_json")));
        assert!(wants_zlib_json(Some("v=1&compression=zlib_json")));
        assert!(!wants_zlib_json(Some("compression=zlib")));
        assert!(!wants_zlib_json(None));
    }

    #[test]
    fn deflate_offers() {
        for ok in [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=15",
            "x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(ok));
            assert!(offers_deflate(&h), "{ok}");
        }
        for refused in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown",
            "deflate-frame",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(refused));
            assert!(!offers_deflate(&h), "{refused}");
        }
    }
}
