//! The HTTP request path: router, path ids, bulk `user_ids`, card parameters, storage.

use super::json::{self, encode, Json};
use arbitrary::{Arbitrary, Result, Unstructured};
use http::StatusCode;
use lantern::card::params::{self, CardParams, Format, Theme, UserQuery};
use lantern::card::text::char_count;
use lantern::http::response::{accepts_gzip, ApiError};
use lantern::http::router::{parse_user_id, route, Route};
use lantern::http::storage::{parse_body, path_key};
use lantern::http::users::{bulk_ids, path_user_id, query_pairs};
use lantern::storage::kv::{MAX_KEY_LEN, MAX_VALUE_CHARS};
use serde_json::{json, Value};

/// One request's inputs: path, query, body, the bulk limit, a header value.
#[derive(Debug, Arbitrary)]
pub struct HttpInput {
    pub path: PathInput,
    pub query: QueryInput,
    pub body: BodyInput,
    pub max_bulk: u8,
    pub header: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
pub enum PathInput {
    Raw(String),
    Segments(Vec<Segment>, bool),
}

#[derive(Debug, Arbitrary)]
pub enum Segment {
    Api,
    V1,
    Users,
    Storage,
    Health,
    Socket,
    Empty,
    Id,
    Upper(Box<Segment>),
    Text(String),
    Interesting(Interesting),
}

/// A string from [`json::string`].
#[derive(Debug)]
pub struct Interesting(pub String);

impl<'a> Arbitrary<'a> for Interesting {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        json::string(u).map(Interesting)
    }
}

impl Segment {
    fn text(&self) -> String {
        match self {
            Segment::Api => "api".into(),
            Segment::V1 => "v1".into(),
            Segment::Users => "users".into(),
            Segment::Storage => "storage".into(),
            Segment::Health => "health".into(),
            Segment::Socket => "socket".into(),
            Segment::Empty => String::new(),
            Segment::Id => "1300000000000000001".into(),
            Segment::Upper(s) => s.text().to_ascii_uppercase(),
            Segment::Text(s) => s.clone(),
            Segment::Interesting(s) => s.0.clone(),
        }
    }
}

impl PathInput {
    pub fn text(&self) -> String {
        match self {
            PathInput::Raw(s) => s.clone(),
            PathInput::Segments(segs, slash) => {
                let mut p: String = segs.iter().map(|s| format!("/{}", s.text())).collect();
                if *slash || p.is_empty() {
                    p.push('/');
                }
                p
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum QueryInput {
    Raw(String),
    Pairs(Vec<(QueryKey, QueryValue, bool)>),
}

#[derive(Debug, Arbitrary)]
pub enum QueryKey {
    Svg,
    Format,
    Theme,
    BorderRadius,
    Hide(u8),
    NoActivityTitle,
    NoActivityMessage,
    UserIds,
    UserIdsBrackets,
    Other(String),
}

const HIDE: [&str; 6] = ["hideGlobalName", "hideStatus", "hideBadges", "hideActivity", "hideLastSeen", "hideServerTag"];
const FLAGS: [&str; 7] = ["svg", "hideGlobalName", "hideStatus", "hideBadges", "hideActivity", "hideLastSeen", "hideServerTag"];

#[derive(Debug, Arbitrary)]
pub enum QueryValue {
    Known(u8),
    Ids(Vec<IdText>),
    Repeat(char, u16),
    Float(f32),
    Text(String),
}

#[derive(Debug, Arbitrary)]
pub enum IdText {
    Valid(u64),
    Pool(u8),
    Padded(u8, u8),
    Text(String),
}

impl IdText {
    fn text(&self) -> String {
        match self {
            IdText::Valid(n) => (10_000_000_000_000_000 + n % 9_000_000_000_000_000_000).to_string(),
            IdText::Pool(n) => (1_300_000_000_000_000_000u64 + (*n % 4) as u64).to_string(),
            IdText::Padded(n, pad) => format!("{}{}", " ".repeat((*pad % 3) as usize), 1_300_000_000_000_000_000u64 + *n as u64),
            IdText::Text(s) => s.clone(),
        }
    }
}

const KNOWN_VALUES: &[&str] = &[
    "0", "1", "2", "true", "false", "", "1e3", "NaN", "inf", "-inf", "-0", "10", "10.0000001", "9.99", "-1", "dark", "light", "Dark", "png",
    "SVG", "json", "gif", " 5 ", "+1", "0x1", "1_0",
];

impl QueryValue {
    fn text(&self) -> String {
        match self {
            QueryValue::Known(i) => KNOWN_VALUES[*i as usize % KNOWN_VALUES.len()].to_owned(),
            QueryValue::Ids(ids) => ids.iter().map(IdText::text).collect::<Vec<_>>().join(","),
            QueryValue::Repeat(c, n) => c.to_string().repeat((*n % 300) as usize),
            QueryValue::Float(f) => f.to_string(),
            QueryValue::Text(s) => s.clone(),
        }
    }
}

impl QueryInput {
    pub fn text(&self) -> String {
        match self {
            QueryInput::Raw(s) => s.clone(),
            QueryInput::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v, enc)| {
                    let key = match k {
                        QueryKey::Svg => "svg".into(),
                        QueryKey::Format => "format".into(),
                        QueryKey::Theme => "theme".into(),
                        QueryKey::BorderRadius => "borderRadius".into(),
                        QueryKey::Hide(i) => HIDE[*i as usize % HIDE.len()].into(),
                        QueryKey::NoActivityTitle => "noActivityTitle".into(),
                        QueryKey::NoActivityMessage => "noActivityMessage".into(),
                        QueryKey::UserIds => "user_ids".into(),
                        QueryKey::UserIdsBrackets => "user_ids[]".into(),
                        QueryKey::Other(s) => s.clone(),
                    };
                    let v = v.text();
                    if *enc {
                        format!("{}={}", encode(&key), encode(&v))
                    } else {
                        format!("{key}={v}")
                    }
                })
                .collect::<Vec<_>>()
                .join("&"),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum BodyInput {
    Raw(Vec<u8>),
    Json(Json),
    Value(String),
    Long(char, u16),
    Spaces(u8),
}

impl BodyInput {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            BodyInput::Raw(b) => b.clone(),
            BodyInput::Json(j) => j.0.to_string().into_bytes(),
            BodyInput::Value(s) => json!({ "value": s }).to_string().into_bytes(),
            // Around the 30,000-character limit.
            BodyInput::Long(c, n) => json!({ "value": c.to_string().repeat(MAX_VALUE_CHARS - 8 + (*n % 16) as usize) }).to_string().into_bytes(),
            BodyInput::Spaces(n) => b" \t\r\n".iter().cycle().take(*n as usize).copied().collect(),
        }
    }
}

/// Checks every input of a request.
pub fn check(input: &HttpInput) {
    let path = input.path.text();
    check_route(&path);
    for seg in path.split('/') {
        check_user_id(seg);
        check_storage_key(seg);
    }
    let query = input.query.text();
    check_query_pairs(&query);
    check_card_query(&query);
    check_bulk(&query, 1 + input.max_bulk as usize % 200);
    check_storage_body(&input.body.bytes());
    if let Ok(v) = http::HeaderValue::from_bytes(&input.header) {
        accepts_gzip(Some(&v));
        if let Ok(s) = v.to_str() {
            lantern::card::etag_matches(s, "W/\"0123456789abcdef\"");
        }
    }
}

/// An error in the one error shape: 4xx/5xx, a snake_case code, and the body
/// `{"success":false,"error":<message>,"code":<code>}`.
pub fn check_error(e: &ApiError) {
    assert!(e.status.is_client_error() || e.status.is_server_error(), "{e:?}");
    assert!(!e.code.is_empty() && e.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{e:?}");
    let body: Value = serde_json::from_slice(&e.body()).expect("error body is JSON");
    assert_eq!(body, json!({ "success": false, "error": e.message, "code": e.code }));
}

/// A path that routes to `r` (`Storage` for a `StorageKey` with an empty key).
fn canonical(r: &Route<'_>) -> String {
    match r {
        Route::Info => "/".into(),
        Route::Health => "/health".into(),
        Route::Socket => "/socket".into(),
        Route::Users => "/api/v1/users".into(),
        Route::User(id) => format!("/api/v1/users/{id}"),
        Route::Storage(id) => format!("/api/v1/users/{id}/storage"),
        Route::StorageKey(id, key) => format!("/api/v1/users/{id}/storage/{key}"),
        Route::Privacy(id) => format!("/api/v1/users/{id}/privacy"),
        Route::Page(name) => format!("/page/{name}"),
        Route::OpenApi => "/openapi.json".into(),
        Route::Docs => "/docs".into(),
        Route::Deploy => "/api/v1/github_auto_deploy".into(),
        Route::Metrics => "/metrics".into(),
    }
}

fn same_kind(a: &Route<'_>, b: &Route<'_>) -> bool {
    let eq = |x: &str, y: &str| x.eq_ignore_ascii_case(y);
    match (a, b) {
        (Route::User(x), Route::User(y))
        | (Route::Storage(x), Route::Storage(y))
        | (Route::Privacy(x), Route::Privacy(y))
        | (Route::Page(x), Route::Page(y)) => eq(x, y),
        (Route::StorageKey(x, k), Route::StorageKey(y, l)) => eq(x, y) && eq(k, l),
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// `route`: no panic; ids and keys are single non-empty segments; the canonical path of a
/// route routes back to it; matching ignores ASCII case.
pub fn check_route(path: &str) {
    let Some(r) = route(path) else {
        return;
    };
    assert!(!r.allowed().is_empty());
    assert!(r.allow_header().ends_with("OPTIONS"));
    match &r {
        Route::User(id) | Route::Storage(id) | Route::Privacy(id) | Route::Page(id) => assert!(!id.is_empty() && !id.contains('/'), "{r:?}"),
        Route::StorageKey(id, key) => assert!(!id.is_empty() && !id.contains('/') && !key.contains('/'), "{r:?}"),
        _ => {}
    }
    let expected = match &r {
        Route::StorageKey(id, "") => Route::Storage(id),
        other => other.clone(),
    };
    assert_eq!(route(&canonical(&r)), Some(expected), "canonical path of {path:?}");
    let upper = path.to_ascii_uppercase();
    let ru = route(&upper).unwrap_or_else(|| panic!("{upper:?} does not route but {path:?} does"));
    assert!(same_kind(&r, &ru), "{path:?} → {r:?} but {upper:?} → {ru:?}");
}

/// `path_user_id`: 17-19 ASCII digits without a leading zero, or the documented
/// `invalid_user_id` error (a leading zero is "not a number", as `0123` names no snowflake).
pub fn check_user_id(raw: &str) {
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) && !raw.starts_with('0');
    match path_user_id(raw) {
        Ok(id) => {
            assert!(digits && (17..=19).contains(&raw.len()), "{raw:?} accepted");
            assert_eq!(raw.parse::<u64>().ok(), Some(id.0));
            assert_eq!(parse_user_id(raw), Some(id));
        }
        Err(e) => {
            check_error(&e);
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_user_id"));
            let m = if digits { "user_id must be 17-19 characters long." } else { "user_id must be a number." };
            assert_eq!(e.message, m, "{raw:?}");
            assert_eq!(parse_user_id(raw), None);
        }
    }
}

/// `query_pairs` yields exactly what `form_urlencoded::parse` does (it only skips the decoding
/// of pairs that have nothing to decode).
pub fn check_query_pairs(query: &str) {
    let reference: Vec<_> = form_urlencoded::parse(query.as_bytes()).collect();
    assert_eq!(query_pairs(query).collect::<Vec<_>>(), reference, "{query:?}");
}

/// `bulk_ids`: at most `max` unique ids that round-trip through both query forms, or one of
/// the documented errors.
pub fn check_bulk(query: &str, max: usize) {
    match bulk_ids(Some(query), max) {
        Ok(ids) => {
            assert!(!ids.is_empty() && ids.len() <= max, "{query:?} → {ids:?}");
            let mut seen = std::collections::HashSet::new();
            assert!(ids.iter().all(|id| seen.insert(*id)), "duplicates in {ids:?}");
            // Ids written back with 17+ digits (zero-padded: `0…01` is accepted as id 1).
            let text = |id: &lantern::discord::Snowflake| format!("{:017}", id.0);
            let joined = ids.iter().map(text).collect::<Vec<_>>().join(",");
            assert_eq!(bulk_ids(Some(&format!("user_ids={joined}")), max).as_ref(), Ok(&ids));
            let repeated = ids.iter().map(|id| format!("user_ids%5B%5D={}", text(id))).collect::<Vec<_>>().join("&");
            assert_eq!(bulk_ids(Some(&repeated), max).as_ref(), Ok(&ids));
        }
        Err(e) => {
            check_error(&e);
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            let expected = match e.code {
                "missing_user_ids" => "user_ids is required.".to_owned(),
                "too_many_user_ids" => format!("You can only request up to {max} users at once."),
                "invalid_user_ids" => "user_ids must be an array of strings with 17-19 characters long.".to_owned(),
                "duplicate_user_ids" => "user_ids must not contain duplicates.".to_owned(),
                other => panic!("undocumented code {other} for {query:?}"),
            };
            assert_eq!(e.message, expected);
        }
    }
    assert_eq!(bulk_ids(None, max).map_err(|e| e.code), Err("missing_user_ids"));
}

/// The query that asks for exactly this card.
pub fn card_query(format: Format, p: &CardParams) -> String {
    let b = |v: bool| if v { "1" } else { "0" };
    format!(
        "format={}&theme={}&borderRadius={}&hideGlobalName={}&hideStatus={}&hideBadges={}&hideActivity={}&hideLastSeen={}&hideServerTag={}&noActivityTitle={}&noActivityMessage={}",
        match format {
            Format::Svg => "svg",
            Format::Png => "png",
        },
        match p.theme {
            Theme::Dark => "dark",
            Theme::Light => "light",
        },
        p.border_radius,
        b(p.hide_global_name),
        b(p.hide_status),
        b(p.hide_badges),
        b(p.hide_activity),
        b(p.hide_last_seen),
        b(p.hide_server_tag),
        encode(&p.no_activity_title),
        encode(&p.no_activity_message),
    )
}

/// `card::params::parse`: parameters within their documented ranges that round-trip, or an
/// `invalid_query` error with one of the contract's messages.
pub fn check_card_query(query: &str) {
    match params::parse(Some(query)) {
        Ok(UserQuery::Json) => {}
        Ok(UserQuery::Card(format, p)) => {
            assert!(p.border_radius.is_finite() && (0.0..=params::MAX_BORDER_RADIUS).contains(&p.border_radius), "{p:?}");
            assert!((1..=64).contains(&char_count(&p.no_activity_title)), "{p:?}");
            assert!((1..=256).contains(&char_count(&p.no_activity_message)), "{p:?}");
            let again = card_query(format, &p);
            assert_eq!(params::parse(Some(&again)), Ok(UserQuery::Card(format, p)), "{again}");
        }
        Err(e) => {
            // The HTTP edge answers it as 400 invalid_query with this message.
            let e = ApiError::bad_request("invalid_query", e.0);
            check_error(&e);
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_query"));
            let mut allowed: Vec<String> = FLAGS
                .iter()
                .flat_map(|f| [format!("{f} must be either 0 or 1."), format!("{f} must be a number.")])
                .collect();
            allowed.extend(
                [
                    "format must be either \"svg\", \"png\" or \"json\".",
                    "Theme must be either \"light\" or \"dark\".",
                    "borderRadius must be a number.",
                    "borderRadius must be between 0 and 10.",
                    "noActivityTitle must be 1-64 characters long.",
                    "noActivityMessage must be 1-256 characters long.",
                ]
                .map(String::from),
            );
            assert!(allowed.contains(&e.message), "undocumented message {:?} for {query:?}", e.message);
        }
    }
}

/// `parse_body`: the body's `value` (and it round-trips), or one of the documented errors.
pub fn check_storage_body(body: &[u8]) {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match parse_body(body) {
        Ok(v) => {
            assert!(v.chars().count() <= MAX_VALUE_CHARS);
            assert_eq!(json.as_ref().and_then(|j| j.get("value")), Some(&Value::String(v.clone())));
            assert_eq!(parse_body(json!({ "value": v }).to_string().as_bytes()), Ok(v));
        }
        Err(e) => {
            check_error(&e);
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            let ok = matches!(
                (e.code, e.message.as_str()),
                ("invalid_json", "Request body must be valid JSON.")
                    | ("invalid_value", "value is required." | "value must be a string." | "value must not exceed 30,000 characters.")
            );
            assert!(ok, "undocumented error {e:?}");
            // A JSON body with a short enough string value is accepted.
            if let Some(Value::String(s)) = json.as_ref().and_then(|j| j.get("value")) {
                assert!(s.chars().count() > MAX_VALUE_CHARS, "{s:?} refused: {e:?}");
            }
        }
    }
}

/// `path_key`: a percent-decoded key of 1-255 ASCII letters and digits, or `invalid_key`.
pub fn check_storage_key(raw: &str) {
    match path_key(raw) {
        Ok(k) => {
            assert!((1..=MAX_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric()), "{k:?}");
            assert_eq!(json::decode(raw), k.as_bytes(), "{raw:?}");
            assert_eq!(path_key(&k), Ok(k.clone()));
            assert_eq!(path_key(&encode(&k)), Ok(k));
        }
        Err(e) => {
            check_error(&e);
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_key"));
            assert!(["key must be alphanumeric.", "key must be 1-255 characters long."].contains(&e.message.as_str()), "{e:?}");
        }
    }
}
