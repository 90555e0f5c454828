//! `GET /metrics`: the Prometheus text exposition of every shard's counters, summed.

use crate::http::response::Reply;
use crate::http::router::Route;
use crate::metrics::Snapshot;
use crate::runtime::{Invoke, Sharded};
use crate::shard::Shard;
use bytes::Bytes;
use http::StatusCode;
use std::rc::Rc;

/// The Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `route` label of a request path: the route's template, or `unmatched`.
pub fn route_label(route: Option<&Route<'_>>, path: &str) -> &'static str {
    let Some(route) = route else { return other_label(path) };
    match route {
        Route::Info => "/",
        Route::Health => "/health",
        Route::Users => "/api/v1/users",
        Route::User(_) => "/api/v1/users/{user_id}",
        Route::Storage(_) => "/api/v1/users/{user_id}/storage",
        Route::StorageKey(..) => "/api/v1/users/{user_id}/storage/{key}",
        Route::Privacy(_) => "/api/v1/users/{user_id}/privacy",
        Route::Socket => "/socket",
        Route::OpenApi => "/openapi.json",
        Route::Docs => "/docs",
        Route::Deploy => "/api/v1/github_auto_deploy",
        Route::Metrics => "/metrics",
        Route::Page(_) => "/page/{name}",
    }
}

/// The label of a path the Lantern routes do not know: Lanyard's, or `unmatched`.
fn other_label(path: &str) -> &'static str {
    use crate::http::lanyard::{self, LanyardRoute};
    if lanyard::quicklink(path).is_some() {
        return "/{user_id}.{ext}";
    }
    match lanyard::route(path) {
        Some(LanyardRoute::User(_)) => "/v1/users/{user_id}",
        Some(LanyardRoute::Kv(_)) => "/v1/users/{user_id}/kv",
        Some(LanyardRoute::KvKey(..)) => "/v1/users/{user_id}/kv/{key}",
        Some(LanyardRoute::Unknown) | None => "unmatched",
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
    total.mailbox_depths = ctx.here().mailbox_depths();
    total.read_gateway(ctx.gateway_stats());
    let gateway = ctx.gateway();
    total.gateway_state = gateway.state.as_str();
    total.members_loaded = gateway.members_loaded;
    total.cluster = ctx.cluster().map(|c| crate::metrics::ClusterGauges {
        leader: c.role == crate::cluster::Role::Leader,
        lease_changes: c.lease_changes,
        replication_lag_ms: c.replication_lag_ms,
        nats_connected: c.nats_connected,
        synced: c.synced,
    });
    Reply::new(StatusCode::OK, CONTENT_TYPE, Bytes::from(total.encode()))
}
