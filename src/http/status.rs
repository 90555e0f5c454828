//! The server's own status: `GET /` (what this is, how many users are monitored, or the web
//! page for a browser) and
//! `GET /health` (whether the gateway, the member list and every shard are up).

use crate::discord::gateway_status::GatewayState;
use crate::http::response::Reply;
use crate::shard::Shard;
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use std::rc::Rc;

pub const INFO: &str =
    "Lantern provides Discord presences as an API and WebSocket. Find out more here: https://github.com/discordplace/lantern";
pub const DISCORD_INVITE: &str = "https://invite.lantern.rest";

/// `GET /`: the info sentence and how many users are monitored; a browser (whose `Accept`
/// prefers HTML) gets the web page instead ([`crate::http::page`]).
pub async fn info(ctx: &Rc<Shard>, headers: &http::HeaderMap) -> Reply {
    if crate::http::page::wants_html(headers) {
        return crate::http::page::index();
    }
    #[derive(Serialize)]
    struct Data {
        info: &'static str,
        discord_invite: &'static str,
        currently_monitoring_users: usize,
    }
    #[derive(Serialize)]
    struct Info {
        data: Data,
    }
    let total: usize = ctx.monitored_counts().await.into_iter().flatten().sum();
    let body = Info { data: Data { info: INFO, discord_invite: DISCORD_INVITE, currently_monitoring_users: total } };
    Reply::json(StatusCode::OK, Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}

/// `GET /health`: 200 once the gateway is connected, the member list is loaded and every
/// shard answers; 503 otherwise, with the same body saying what is missing.
pub async fn health(ctx: &Rc<Shard>) -> Reply {
    // Read before the counts: once it says synced, the counts include every replicated user.
    let cluster = ctx.cluster();
    let counts = ctx.monitored_counts().await;
    let up = counts.iter().filter(|c| c.is_some()).count();
    let total: usize = counts.iter().flatten().sum();
    let gateway = ctx.gateway();
    let gateway_ready = gateway.state == GatewayState::Connected && gateway.members_loaded;
    let ready = up == counts.len()
        && match &cluster {
            None => gateway_ready,
            // A follower has no gateway of its own; it needs NATS and every replicated user.
            Some(c) => c.nats_connected && c.synced && (c.role == crate::cluster::Role::Follower || gateway_ready),
        };
    #[derive(Serialize)]
    struct Shards {
        total: usize,
        up: usize,
    }
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        gateway: &'static str,
        members_loaded: bool,
        shards: Shards,
        monitored_users: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        cluster: Option<crate::cluster::Snapshot>,
    }
    let body = Health {
        status: if ready { "ok" } else { "unavailable" },
        gateway: gateway.state.as_str(),
        members_loaded: gateway.members_loaded,
        shards: Shards { total: counts.len(), up },
        monitored_users: total,
        cluster,
    };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Reply::json(status, Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}
