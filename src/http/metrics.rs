//! `GET /metrics`: the Prometheus text exposition of every shard's counters, summed.

use crate::http::response::Reply;
use crate::http::router::{self, Route};
use crate::metrics::Snapshot;
use crate::runtime::Invoke;
use crate::shard::Shard;
use bytes::Bytes;
use http::StatusCode;
use std::rc::Rc;

/// The Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `route` label of a request path: the route's template, or `unmatched`.
pub fn route_label(path: &str) -> &'static str {
    use crate::http::lanyard::{self, LanyardRoute};
    if lanyard::quicklink(path).is_some() {
        return "/{user_id}.{ext}";
    }
    if let Some(r) = lanyard::route(path) {
        return match r {
            LanyardRoute::User(_) => "/v1/users/{user_id}",
            LanyardRoute::Kv(_) => "/v1/users/{user_id}/kv",
            LanyardRoute::KvKey(..) => "/v1/users/{user_id}/kv/{key}",
            LanyardRoute::Unknown => "unmatched",
        };
    }
    match router::route(path) {
        None => "unmatched",
        Some(Route::Info) => "/",
        Some(Route::Health) => "/health",
        Some(Route::Users) => "/api/v1/users",
        Some(Route::User(_)) => "/api/v1/users/{user_id}",
        Some(Route::Storage(_)) => "/api/v1/users/{user_id}/storage",
        Some(Route::StorageKey(..)) => "/api/v1/users/{user_id}/storage/{key}",
        Some(Route::Socket) => "/socket",
        Some(Route::OpenApi) => "/openapi.json",
        Some(Route::Docs) => "/docs",
        Some(Route::Deploy) => "/api/v1/github_auto_deploy",
        Some(Route::Metrics) => "/metrics",
        Some(Route::Page(_)) => "/page/{name}",
    }
}

/// `GET /metrics`.
pub async fn metrics(ctx: &Rc<Shard>) -> Reply {
    let snapshots = ctx.invoke_on_all(|s| s.metrics_snapshot()).await;
    let mut total = Snapshot::default();
    for snapshot in snapshots.iter().flatten() {
        total.merge(snapshot);
        total.monitored_users += snapshot.monitored_users;
        total.shards_up += 1;
    }
    total.shards = snapshots.len() as u64;
    let gateway = ctx.gateway();
    total.gateway_state = gateway.state.as_str();
    total.members_loaded = gateway.members_loaded;
    Reply::new(StatusCode::OK, CONTENT_TYPE, Bytes::from(total.encode()))
}
