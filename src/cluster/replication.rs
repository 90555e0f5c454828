//! Presence replication: the leader puts each user's state under one key per user (deleted
//! when the member leaves); every follower watches the bucket, current values first and then
//! the changes, and applies them to its own shards through the normal ingest path.

use super::client::Bucket;
use crate::config::ClusterConfig;
use super::{Role, Status};
use crate::runtime::MailboxReceiver;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt as _;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::timeout;

/// One user's state for the cluster: `None` when the member left.
#[derive(Debug)]
pub struct Replica {
    pub user: u64,
    pub state: Option<Bytes>,
}

/// Applies a user's replicated state (or its removal) to this node's shards.
pub type Apply = Box<dyn Fn(u64, Option<Bytes>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn bucket(config: &ClusterConfig) -> Bucket<'_> {
    Bucket {
        name: &config.presence_bucket,
        description: "lantern presence, one key per member",
        history: 1,
        max_age: Duration::ZERO,
        memory: false,
        replicas: config.replicas,
    }
}

async fn open(config: &ClusterConfig, js: &async_nats::jetstream::Context, stop: &mut watch::Receiver<bool>) -> Option<kv::Store> {
    loop {
        if let Ok(Ok(store)) = timeout(config.lease_ttl, bucket(config).open(js)).await {
            return Some(store);
        }
        if super::lease::stopped_within(stop, config.lease_ttl / 3).await {
            return None;
        }
    }
}

/// The leader's side: writes every state the shards hand over, in order, each acknowledged
/// before the next (retried until JetStream takes it).
pub async fn publish(config: &ClusterConfig, client: &async_nats::Client, rx: MailboxReceiver<Replica>, mut stop: watch::Receiver<bool>) {
    let js = async_nats::jetstream::new(client.clone());
    let Some(mut store) = open(config, &js, &mut stop).await else { return };
    loop {
        let replica = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = rx.recv() => match r { Some(r) => r, None => return },
        };
        let key = replica.user.to_string();
        loop {
            let done = match &replica.state {
                Some(value) => timeout(config.lease_ttl, store.put(&key, value.clone())).await.map(|r| r.is_ok()),
                None => timeout(config.lease_ttl, store.delete(&key)).await.map(|r| r.is_ok()),
            };
            if done == Ok(true) {
                break;
            }
            tracing::warn!(user = %key, "cannot replicate a presence change yet; retrying");
            if super::lease::stopped_within(&mut stop, config.lease_ttl / 3).await {
                return;
            }
            if let Ok(Ok(s)) = timeout(config.lease_ttl, bucket(config).open(&js)).await {
                store = s;
            }
        }
    }
}

/// Every node's side: applies the bucket's current values, then each change, while it does
/// not lead (the leader's shards already have what it publishes). Reports the lag of the last
/// change applied.
pub async fn follow(config: &ClusterConfig, client: &async_nats::Client, apply: Apply, status: &Status, mut stop: watch::Receiver<bool>) {
    let js = async_nats::jetstream::new(client.clone());
    let mut from: Option<u64> = None;
    loop {
        let Some(store) = open(config, &js, &mut stop).await else { return };
        let watch = match from {
            None => store.watch_with_history(">").await,
            Some(revision) => store.watch_all_from_revision(revision + 1).await,
        };
        let mut entries = match watch {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the presence bucket yet; retrying");
                if super::lease::stopped_within(&mut stop, config.lease_ttl / 3).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let entry = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                e = entries.next() => e,
            };
            let Some(Ok(entry)) = entry else { break };
            from = Some(entry.revision);
            let lag = (time::OffsetDateTime::now_utc() - entry.created).whole_milliseconds().max(0) as u64;
            status.update(|s| s.replication_lag_ms = Some(lag));
            if status.snapshot().role == Role::Leader {
                continue;
            }
            let Ok(user) = entry.key.parse::<u64>() else { continue };
            match entry.operation {
                kv::Operation::Put => apply(user, Some(entry.value)).await,
                kv::Operation::Delete | kv::Operation::Purge => apply(user, None).await,
            }
        }
        tracing::warn!("the presence watch ended; watching again from the last revision applied");
        if super::lease::stopped_within(&mut stop, config.lease_ttl / 3).await {
            return;
        }
    }
}
