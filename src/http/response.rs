//! Response building: the one error shape, JSON bodies, CORS and gzip.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

pub type Body = Full<Bytes>;

/// Methods and headers a browser may use cross-origin (the storage API needs them).
pub const CORS_METHODS: &str = "GET, HEAD, PUT, PATCH, DELETE, OPTIONS";
pub const CORS_HEADERS: &str = "Authorization, Content-Type";

/// Bodies smaller than this are not worth compressing (the user object's threshold too).
const GZIP_MIN: usize = crate::presence::user_object::COMPRESS_MIN;

/// The header naming the shard that answered.
pub const SHARD_HEADER: HeaderName = HeaderName::from_static("x-lantern-shard");

/// Room for the headers an answer carries (content type, CORS, shard, vary, encoding, one a
/// handler adds) without the map growing. No more: a map sized for 8 holds 12 entries, over a
/// kilobyte, which glibc no longer serves from its per-thread cache, and its allocation and
/// free cost more than the map's every other operation.
const HEADERS_CAPACITY: usize = 6;

// Header values made at compile time: `HeaderValue::from_static` checks every byte when it is
// called at run time, which for the JSON content type cost more than the map's insert.
const JSON_TYPE: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
const VARY_ENCODING: HeaderValue = HeaderValue::from_static("Accept-Encoding");
const GZIP: HeaderValue = HeaderValue::from_static("gzip");

/// `x-lantern-shard` values, made once: a static value is cloned without allocating.
pub fn shard_value(shard: usize) -> HeaderValue {
    const NAMES: [&str; 64] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21",
        "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "36", "37", "38", "39", "40", "41",
        "42", "43", "44", "45", "46", "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61",
        "62", "63",
    ];
    match NAMES.get(shard) {
        Some(name) => HeaderValue::from_static(name),
        None => HeaderValue::from(shard),
    }
}

/// An error answer: `{"success":false,"error":<message>,"code":<code>}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "Resource not found.")
    }

    pub fn body(&self) -> Bytes {
        #[derive(serde::Serialize)]
        struct Shape<'a> {
            success: bool,
            error: &'a str,
            code: &'a str,
        }
        Bytes::from(serde_json::to_vec(&Shape { success: false, error: &self.message, code: self.code }).unwrap_or_default())
    }

    pub fn into_reply(self) -> Reply {
        Reply::json(self.status, self.body())
    }
}

/// The bytes of a complete HTTP/1.1 error answer that ends the connection, for answers written
/// to the socket outside hyper (a refused connection, a request head past its deadline). It
/// carries the headers of every answer (CORS, shard) and `Connection: close`.
pub fn closing_answer(err: &ApiError, shard: usize) -> Vec<u8> {
    let body = err.body();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json; charset=utf-8\r\naccess-control-allow-origin: *\r\n\
         x-lantern-shard: {shard}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        err.status.as_u16(),
        err.status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A handler's answer, before the common headers and compression are applied.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn new(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
        Reply::typed(status, HeaderValue::from_static(content_type), body)
    }

    fn typed(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Reply {
        let mut headers = HeaderMap::with_capacity(HEADERS_CAPACITY);
        headers.insert(header::CONTENT_TYPE, content_type);
        Reply { status, headers, body }
    }

    pub fn json(status: StatusCode, body: Bytes) -> Reply {
        Reply::typed(status, JSON_TYPE, body)
    }

    /// A JSON body already gzip-compressed (a cached user object): served as it is.
    pub fn json_gzipped(status: StatusCode, gzipped: Bytes) -> Reply {
        let mut reply = Reply::json(status, gzipped);
        reply.headers.insert(header::CONTENT_ENCODING, GZIP);
        reply
    }

    /// Answer to a CORS preflight.
    pub fn preflight() -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(CORS_METHODS));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(CORS_HEADERS));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        Reply { status: StatusCode::NO_CONTENT, headers, body: Bytes::new() }
    }

    /// JSON and SVG compress well (and vary with `Accept-Encoding`); anything else (binary)
    /// is left alone.
    fn compressible_type(&self) -> bool {
        self.headers.get(header::CONTENT_TYPE).is_some_and(|t| {
            let t = t.as_bytes();
            t.starts_with(b"application/json") || t.starts_with(b"image/svg")
        })
    }

    /// Adds the headers every response carries and gzips when the client asked and the body
    /// is worth it (a body that arrives already encoded is not compressed again).
    pub fn finish(mut self, gzip: bool, shard: usize) -> Response<Body> {
        self.headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
        self.headers.insert(SHARD_HEADER, shard_value(shard));
        let compressible = self.compressible_type();
        let mut body = self.body;
        if compressible {
            self.headers.insert(header::VARY, VARY_ENCODING);
            if gzip && body.len() >= GZIP_MIN && !self.headers.contains_key(header::CONTENT_ENCODING) {
                if let Some(z) = crate::presence::user_object::gzip(&body) {
                    self.headers.insert(header::CONTENT_ENCODING, GZIP);
                    body = z;
                }
            }
        }
        let mut res = Response::new(Full::new(body));
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers;
        res
    }
}

/// Whether the client accepts gzip (`Accept-Encoding` lists it without `q=0`).
pub fn accepts_gzip(accept_encoding: Option<&HeaderValue>) -> bool {
    let Some(v) = accept_encoding.and_then(|v| v.to_str().ok()) else { return false };
    v.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        let q_zero = it.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().map(|q| q == 0.0).unwrap_or(false))
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(accepts_gzip(Some(&v("gzip, deflate, br"))));
        assert!(accepts_gzip(Some(&v("br;q=1.0, gzip;q=0.8"))));
        assert!(!accepts_gzip(Some(&v("gzip;q=0"))));
        assert!(!accepts_gzip(Some(&v("br"))));
        assert!(!accepts_gzip(None));
    }
}
