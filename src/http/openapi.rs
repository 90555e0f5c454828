//! The API described: `GET /openapi.json` (the OpenAPI 3.1 document) and `GET /docs` (a page
//! that renders it, self-contained: no CDN, nothing fetched but the document).
//!
//! The document is a committed file (`src/http/openapi.json`) served as it is: a reviewer reads
//! the exact text clients get, schemathesis and the test that validates live responses read the
//! same file, and nothing is generated at build or request time. `tests/openapi.rs` keeps it
//! true (every route answered as documented, every documented route answering).

use crate::http::response::Reply;
use bytes::Bytes;
use http::StatusCode;

/// The OpenAPI 3.1 document.
pub const DOCUMENT: &str = include_str!("openapi.json");
/// The page at `/docs`.
pub const PAGE: &str = include_str!("docs.html");

/// `GET /openapi.json`.
pub fn document() -> Reply {
    Reply::json(StatusCode::OK, Bytes::from_static(DOCUMENT.as_bytes()))
}

/// `GET /docs`.
pub fn page() -> Reply {
    Reply::new(StatusCode::OK, "text/html; charset=utf-8", Bytes::from_static(PAGE.as_bytes()))
}
