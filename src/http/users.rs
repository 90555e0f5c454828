//! REST handlers of the user routes: one user, several, and the gateway-state header they carry.

use crate::card::params::{self as card_params, UserQuery};
use crate::discord::Snowflake;
use crate::http::response::{ApiError, Reply};
use crate::http::router::{parse_user_id, Route};
use crate::discord::gateway_status::GatewayState;
use crate::shard::Shard;
use std::rc::Rc;
use bytes::Bytes;
use http::StatusCode;
use std::borrow::Cow;

/// Header on user-route reads while the gateway is not connected: the presence served is
/// what was last received and may be stale. Its value is `/health`'s `gateway` field
/// (`connecting`, `reconnecting` or `failed`); it is absent while connected.
pub const GATEWAY_HEADER: &str = "x-lantern-gateway";

/// Adds [`GATEWAY_HEADER`] to a read of a user route (single, bulk, card, storage) while the
/// gateway is not connected. The state is this shard's copy, so this costs one `Cell` read;
/// the route is the one the request was dispatched by.
pub fn mark_gateway_state(ctx: &Rc<Shard>, method: &http::Method, route: Option<&Route<'_>>, reply: &mut Reply) {
    let state = ctx.gateway().state;
    if state == GatewayState::Connected || !(method == http::Method::GET || method == http::Method::HEAD) {
        return;
    }
    if let Some(Route::Users | Route::User(_) | Route::Storage(_) | Route::StorageKey(..)) = route {
        reply.headers.insert(GATEWAY_HEADER, http::HeaderValue::from_static(state.as_str()));
        // Cross-origin scripts may read it too.
        reply.headers.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, http::HeaderValue::from_static(GATEWAY_HEADER));
    }
}

pub fn not_monitored(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "user_not_monitored", format!("User {id} is not being monitored by Lantern."))
}

/// Validates a path id with the contract's messages. A leading zero is "not a number" here:
/// ids are written without one, and `0123…` must not name user `123…`. The digits are read
/// once; which message applies is worked out only for an id that does not parse.
pub fn path_user_id(raw: &str) -> Result<Snowflake, ApiError> {
    if let Some(id) = parse_user_id(raw) {
        return Ok(id);
    }
    if !Snowflake::is_canonical_decimal(raw) {
        return Err(ApiError::bad_request("invalid_user_id", "user_id must be a number."));
    }
    Err(ApiError::bad_request("invalid_user_id", "user_id must be 17-19 characters long."))
}

/// `GET /api/v1/users/:id`: the user object, or the profile card with `svg=1` / `format=png`.
/// With `gzip` (the client accepts it) the object comes compressed from the owner's cache.
pub async fn user(ctx: &Rc<Shard>, raw_id: &str, query: Option<&str>, headers: &http::HeaderMap, gzip: bool) -> Result<Reply, ApiError> {
    let id = path_user_id(raw_id)?;
    // Without a query string there are no card parameters to parse.
    if query.is_some_and(|q| !q.is_empty()) {
        let query = card_params::parse(query).map_err(|e| ApiError::bad_request("invalid_query", e.0))?;
        if let UserQuery::Card(format, params) = query {
            // Boxed: the card's future is several times the size of the JSON path's, and every
            // lookup's future would carry that space (and copy it when it is created).
            return Ok(Box::pin(crate::http::card::respond(ctx, raw_id, id, format, params, headers)).await);
        }
    }
    if gzip {
        return match ctx.user_gzip(id).await {
            Some(Ok(gzipped)) => Ok(Reply::json_gzipped(StatusCode::OK, gzipped)),
            Some(Err(plain)) => Ok(Reply::json(StatusCode::OK, plain)),
            None => Err(not_monitored(raw_id)),
        };
    }
    match ctx.user(id).await {
        Some(json) => Ok(Reply::json(StatusCode::OK, json)),
        None => Err(not_monitored(raw_id)),
    }
}

/// Parses the bulk query: repeated `user_ids` (also `user_ids[]`), each possibly a
/// comma-separated list.
pub fn bulk_ids(query: Option<&str>, max: usize) -> Result<Vec<Snowflake>, ApiError> {
    let invalid =
        || ApiError::bad_request("invalid_user_ids", "user_ids must be an array of strings with 17-19 characters long.");
    let mut ids = Vec::with_capacity(max.min(32));
    let mut present = false;
    let mut count = 0usize;
    let mut first_invalid = false;
    for (k, v) in query_pairs(query.unwrap_or("")) {
        if k == "user_ids" || k == "user_ids[]" {
            present = true;
            let mut rest = Some(v.as_bytes());
            while let Some(list) = rest {
                let (raw, after) = match memchr::memchr(b',', list) {
                    Some(at) => (&list[..at], Some(&list[at + 1..])),
                    None => (list, None),
                };
                rest = after;
                count += 1;
                match bulk_id(raw) {
                    Some(id) if ids.len() < max => ids.push(id),
                    Some(_) => {}
                    None => first_invalid = true,
                }
            }
        }
    }
    if !present {
        return Err(ApiError::bad_request("missing_user_ids", "user_ids is required."));
    }
    if count > max {
        return Err(ApiError::bad_request("too_many_user_ids", format!("You can only request up to {max} users at once.")));
    }
    if first_invalid {
        return Err(invalid());
    }
    if has_duplicates(&ids) {
        return Err(ApiError::bad_request("duplicate_user_ids", "user_ids must not contain duplicates."));
    }
    Ok(ids)
}

/// One id of a bulk query as sent (an item of a comma-separated list): plain digits read as
/// they are, anything else trimmed of whitespace first.
fn bulk_id(raw: &[u8]) -> Option<Snowflake> {
    Snowflake::parse_strict_bytes(raw).or_else(|| std::str::from_utf8(raw).ok().and_then(|s| parse_user_id(s.trim())))
}

/// The `name=value` pairs of a query string, decoded as `application/x-www-form-urlencoded`
/// (what `form_urlencoded::parse` yields), borrowed where a pair has nothing to decode: a bulk
/// query is a run of plain digits, and decoding each pair cost more than the lookups.
pub fn query_pairs(query: &str) -> QueryPairs<'_> {
    QueryPairs { rest: query }
}

/// The iterator of [`query_pairs`]: a pair's end, its `=` and whether anything in it needs
/// decoding are each found by a `memchr` (a bulk query is a few hundred bytes).
pub struct QueryPairs<'a> {
    rest: &'a str,
}

impl<'a> Iterator for QueryPairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let bytes = self.rest.as_bytes();
            let end = memchr::memchr(b'&', bytes).unwrap_or(bytes.len());
            let (equals, encoded) = (memchr::memchr(b'=', &bytes[..end]), memchr::memchr2(b'%', b'+', &bytes[..end]).is_some());
            // `&`, `=` are ASCII, so these are char boundaries.
            let pair = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            if pair.is_empty() {
                continue;
            }
            if encoded {
                return form_urlencoded::parse(pair.as_bytes()).next();
            }
            return Some(match equals {
                Some(at) => (Cow::Borrowed(&pair[..at]), Cow::Borrowed(&pair[at + 1..])),
                None => (Cow::Borrowed(pair), Cow::Borrowed("")),
            });
        }
    }
}

/// Whether an id appears twice: pairwise for the handful a request usually names (no hashing,
/// no allocation), sorted beyond that.
fn has_duplicates(ids: &[Snowflake]) -> bool {
    if ids.len() <= 32 {
        return ids.iter().enumerate().any(|(i, id)| ids[..i].contains(id));
    }
    let mut sorted: Vec<u64> = ids.iter().map(|id| id.0).collect();
    sorted.sort_unstable();
    sorted.windows(2).any(|w| w[0] == w[1])
}

/// `GET /api/v1/users?user_ids=…`: the monitored ones, in request order.
pub async fn users(ctx: &Rc<Shard>, query: Option<&str>) -> Result<Reply, ApiError> {
    let ids = bulk_ids(query, ctx.config().max_bulk_get_users_size)?;
    // The answers are joined where they lie (collecting the found ones into a vector first
    // grew it four times for ten ids).
    let answers = ctx.users(&ids).await;
    let (found, len) = answers.iter().flatten().fold((0, 0), |(n, len), user| (n + 1, len + user.len() + 1));
    if found == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "users_not_monitored", "Users you requested are not monitored by Lantern."));
    }
    // `[`, the objects and a comma after each but the last, `]`: exactly, since a vector
    // with room to spare becomes `Bytes` through one more allocation.
    let mut body = Vec::with_capacity(len + 1);
    body.push(b'[');
    for (i, user) in answers.iter().flatten().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(user);
    }
    body.push(b']');
    Ok(Reply::json(StatusCode::OK, Bytes::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past 32 ids the duplicate check sorts instead of comparing pairwise: both ways agree.
    #[test]
    fn duplicates_are_found_in_short_and_long_lists() {
        for n in [2usize, 32, 33, 100] {
            let ids: Vec<Snowflake> = (0..n as u64).map(|i| Snowflake(1_300_000_000_000_000_000 + i)).collect();
            assert!(!has_duplicates(&ids), "{n} distinct ids");
            let mut twice = ids.clone();
            twice[n - 1] = ids[0];
            assert!(has_duplicates(&twice), "{n} ids, the first again at the end");
            let query = twice.iter().map(|id| format!("user_ids={id}")).collect::<Vec<_>>().join("&");
            assert_eq!(bulk_ids(Some(&query), 100).map_err(|e| e.code), Err("duplicate_user_ids"));
        }
    }
}
