//! Gateway leadership: one key in a JetStream KV bucket whose messages live `lease_ttl`.
//!
//! A follower tries `create` (which succeeds only when the key is absent: never written,
//! deleted, or aged out) every sixth of the TTL. The leader `update`s the key on the revision
//! it last wrote every third of the TTL; if two thirds pass since the last refresh was sent
//! without one being acknowledged, it stops its gateway before the key can expire and another
//! node can take it. A node that stops deletes the key (on its revision) so the next leader
//! need not wait for the TTL.

use crate::config::ClusterConfig;
use super::{Gateway, Role, Status};
use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// The lease's key in its bucket.
pub const KEY: &str = "gateway";

/// What the lease holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    pub node_id: String,
}

impl LeaseValue {
    fn bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Opens (or creates) the lease bucket, retrying until NATS answers or the node stops.
async fn open_bucket(
    config: &ClusterConfig,
    client: &async_nats::Client,
    status: &Status,
    stop: &mut watch::Receiver<bool>,
) -> Option<kv::Store> {
    let js = async_nats::jetstream::new(client.clone());
    let bucket = super::client::Bucket {
        name: &config.lease_bucket,
        description: "lantern gateway lease",
        history: 1,
        max_age: config.lease_ttl,
        memory: true,
        replicas: config.replicas,
    };
    let mut logged = false;
    loop {
        status.update(|s| s.nats_connected = client.connection_state() == async_nats::connection::State::Connected);
        match timeout(config.lease_ttl, bucket.open(&js)).await {
            Ok(Ok(store)) => return Some(store),
            Ok(Err(e)) if !logged => {
                tracing::warn!(error = %e, bucket = %config.lease_bucket, "cannot open the lease bucket yet; retrying");
                logged = true;
            }
            _ => {}
        }
        if stopped_within(stop, config.lease_ttl / 3).await {
            return None;
        }
    }
}

/// Waits `d`, or less if the node is told to stop; says whether it was.
pub(crate) async fn stopped_within(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let told = tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        _ = tokio::time::sleep(d) => false,
    };
    told || *stop.borrow()
}

/// Runs the lease until the node stops. `gateway` runs exactly while this node holds it.
pub async fn run(config: &ClusterConfig, client: &async_nats::Client, gateway: &mut dyn Gateway, status: &Status, stop: &mut watch::Receiver<bool>) {
    let connected = || client.connection_state() == async_nats::connection::State::Connected;
    let Some(mut store) = open_bucket(config, client, status, stop).await else { return };
    let ttl = config.lease_ttl;
    let call = ttl / 3;
    let value = LeaseValue { node_id: config.node_id.clone() };
    // While leading: the revision last written and when the refresh that wrote it was sent.
    let mut held: Option<(u64, Instant)> = None;
    loop {
        status.update(|s| s.nats_connected = connected());
        match held {
            None => {
                // The lease's life starts no earlier than the request is sent.
                let sent = Instant::now();
                match timeout(call, store.create(KEY, value.bytes())).await {
                    Ok(Ok(revision)) => {
                        tracing::info!(node = %config.node_id, revision, "took the gateway lease; starting the gateway");
                        held = Some((revision, sent));
                        status.update(|s| {
                            s.role = Role::Leader;
                            s.lease_holder = Some(config.node_id.clone());
                        });
                        gateway.start();
                        continue;
                    }
                    Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                        // Held by another node: note which.
                        if let Ok(Ok(entry)) = timeout(call, store.get(KEY)).await {
                            let holder = entry.and_then(|b| serde_json::from_slice::<LeaseValue>(&b).ok()).map(|v| v.node_id);
                            status.update(|s| s.lease_holder = holder);
                        }
                    }
                    // No answer, or not the answer that the key exists: the bucket may be gone (a
                    // NATS server restarted without it, and a publish to no stream is never
                    // acknowledged), so open it again; that is idempotent.
                    _ => {
                        tracing::debug!("cannot create the lease; reopening its bucket");
                        match open_bucket(config, client, status, stop).await {
                            Some(s) => store = s,
                            None => return,
                        }
                        continue;
                    }
                }
                if stopped_within(stop, ttl / 6).await {
                    return;
                }
            }
            Some((revision, last)) => {
                // Refresh a third of the TTL after the last one was sent; retry quickly after a failure.
                let next = last + ttl / 3;
                let wait = next.saturating_duration_since(Instant::now());
                if stopped_within(stop, wait).await {
                    gateway.stop();
                    status.update(|s| s.role = Role::Follower);
                    let _ = timeout(call, store.delete_expect_revision(KEY, Some(revision))).await;
                    tracing::info!(node = %config.node_id, "released the gateway lease");
                    return;
                }
                let deadline = last + ttl * 2 / 3;
                let sent = Instant::now();
                let budget = deadline.saturating_duration_since(sent);
                match timeout(budget, store.update(KEY, value.bytes(), revision)).await {
                    Ok(Ok(revision)) => held = Some((revision, sent)),
                    outcome => {
                        if Instant::now() < deadline {
                            // A refused update means another node holds the key: give up now.
                            if matches!(&outcome, Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision) {
                                tracing::warn!(node = %config.node_id, "the gateway lease was lost; stopping the gateway");
                            } else {
                                tokio::time::sleep(Duration::from_millis(50).min(budget)).await;
                                continue;
                            }
                        } else {
                            tracing::warn!(node = %config.node_id, "cannot refresh the gateway lease in time; stopping the gateway");
                        }
                        gateway.stop();
                        held = None;
                        status.update(|s| {
                            s.role = Role::Follower;
                            s.lease_holder = None;
                        });
                    }
                }
            }
        }
    }
}

