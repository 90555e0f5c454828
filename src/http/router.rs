//! Request routing: path → [`Route`], with the method checked per route.
//!
//! Paths match case-insensitively and ignore one trailing slash; HEAD is served as GET (hyper
//! drops the body).

use crate::discord::Snowflake;
use http::Method;

/// A recognised path. Ids are kept as the raw text so that handlers can report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Info,
    Health,
    Users,
    User(&'a str),
    /// `/api/v1/users/:id/storage`
    Storage(&'a str),
    /// `/api/v1/users/:id/privacy`
    Privacy(&'a str),
    /// `/api/v1/users/:id/storage/:key` (the key still percent-encoded)
    StorageKey(&'a str, &'a str),
    Socket,
    /// `/page/:name`: the web page's files and live numbers.
    Page(&'a str),
    /// `/openapi.json`
    OpenApi,
    /// `/docs`
    Docs,
    /// `/api/v1/github_auto_deploy`
    Deploy,
    /// `/metrics`
    Metrics,
}

impl Route<'_> {
    /// Methods this route answers (besides OPTIONS, which every route answers).
    pub fn allowed(&self) -> &'static [Method] {
        match self {
            Route::Info | Route::Health | Route::Users | Route::User(_) | Route::Socket | Route::Page(_) | Route::OpenApi | Route::Docs | Route::Metrics => {
                &[Method::GET, Method::HEAD]
            }
            Route::Deploy => &[Method::POST],
            Route::Storage(_) => &[Method::GET, Method::HEAD, Method::DELETE],
            Route::StorageKey(..) => &[Method::GET, Method::HEAD, Method::PUT, Method::PATCH, Method::DELETE],
            Route::Privacy(_) => &[Method::GET, Method::HEAD, Method::PUT, Method::PATCH],
        }
    }

    pub fn allow_header(&self) -> String {
        let mut v: Vec<&str> = self.allowed().iter().map(Method::as_str).collect();
        v.push("OPTIONS");
        v.join(", ")
    }
}

/// The most segments a route has (`/api/v1/users/:id/storage/:key`).
const MAX_SEGMENTS: usize = 6;

/// Matches a request path (without the query string).
///
/// The segments are cut by `memchr` into a fixed array and matched as a slice: the `split`
/// iterator this replaced cost more than the rest of the lookup's handler.
pub fn route(path: &str) -> Option<Route<'_>> {
    let path = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
    let mut rest = path.strip_prefix('/')?;
    let mut segs = [""; MAX_SEGMENTS];
    let mut n = 0;
    loop {
        if n == MAX_SEGMENTS {
            return None;
        }
        match memchr::memchr(b'/', rest.as_bytes()) {
            // `/` is ASCII: both sides are char boundaries.
            Some(at) => {
                segs[n] = &rest[..at];
                rest = &rest[at + 1..];
                n += 1;
            }
            None => {
                segs[n] = rest;
                n += 1;
                break;
            }
        }
    }
    let eq = |seg: &str, lit: &str| seg.eq_ignore_ascii_case(lit);
    let users = |a: &str, b: &str, c: &str| eq(a, "api") && eq(b, "v1") && eq(c, "users");
    match &segs[..n] {
        [""] => Some(Route::Info),
        [h] if eq(h, "health") => Some(Route::Health),
        [h] if eq(h, "socket") => Some(Route::Socket),
        [a, name] if eq(a, "page") && !name.is_empty() => Some(Route::Page(name)),
        [h] if eq(h, "openapi.json") => Some(Route::OpenApi),
        [h] if eq(h, "docs") => Some(Route::Docs),
        [h] if eq(h, "metrics") => Some(Route::Metrics),
        [a, b, h] if eq(a, "api") && eq(b, "v1") && eq(h, "github_auto_deploy") => Some(Route::Deploy),
        [a, b, c] if users(a, b, c) => Some(Route::Users),
        [a, b, c, id] if users(a, b, c) && !id.is_empty() => Some(Route::User(id)),
        [a, b, c, id, d] if users(a, b, c) && eq(d, "storage") && !id.is_empty() => Some(Route::Storage(id)),
        [a, b, c, id, d] if users(a, b, c) && eq(d, "privacy") && !id.is_empty() => Some(Route::Privacy(id)),
        [a, b, c, id, d, key] if users(a, b, c) && eq(d, "storage") && !id.is_empty() => Some(Route::StorageKey(id, key)),
        _ => None,
    }
}

/// Parses a user id from a path segment or query value: digits only, 17-19 of them, no leading zero.
pub fn parse_user_id(raw: &str) -> Option<Snowflake> {
    Snowflake::parse_strict(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn routes() {
        assert_eq!(route("/"), Some(Route::Info));
        assert_eq!(route("/health/"), Some(Route::Health));
        assert_eq!(route("/API/v1/Users"), Some(Route::Users));
        assert_eq!(route("/api/v1/users/123/"), Some(Route::User("123")));
        assert_eq!(route("/api/v1/users/123/createSvg"), None);
        assert_eq!(route("/api/v1/users//"), None);
        assert_eq!(route("/api/v1/users/123/Storage/"), Some(Route::Storage("123")));
        assert_eq!(route("/api/v1/users/123/storage/myKey"), Some(Route::StorageKey("123", "myKey")));
        assert_eq!(route("/api/v1/users/123/storage/"), Some(Route::Storage("123")));
        assert_eq!(route("/api/v1/users/123/storage/a/b"), None);
        assert_eq!(route("/api/v1/users/123/Privacy/"), Some(Route::Privacy("123")));
        assert_eq!(route("/nope"), None);
        assert_eq!(route("/openapi.json"), Some(Route::OpenApi));
        assert_eq!(route("/docs/"), Some(Route::Docs));
        assert_eq!(route("/page/app.js"), Some(Route::Page("app.js")));
        assert_eq!(route("/page/"), None);
        assert_eq!(route("/api/v1/users/123/storage/a/b/c"), None);
        assert_eq!(route("/api/v1/users/123/storage/"), Some(Route::Storage("123")));
        assert_eq!(route("/api/v1/users/123/storage//"), Some(Route::StorageKey("123", "")), "one trailing slash is ignored, not two");
        assert_eq!(route("*"), None);
        assert_eq!(route(""), None);
        assert_eq!(route("//"), Some(Route::Info));
        assert_eq!(route("/api/v1/github_auto_deploy"), Some(Route::Deploy));
    }
}
