//! The cluster's store of pairs, tokens and privacy settings: a JetStream KV bucket
//! (`cluster.storage_bucket`, file storage, replicated) holding the documents that
//! `storage::remote` describes. The shards' requests are served here, each write answered once
//! JetStream acknowledged it; and every node watches the bucket (current documents first,
//! then each change) and hands each document to its owner shard.

use super::client::Bucket;
use crate::config::ClusterConfig;
use crate::storage::remote::{Expect, Part, RemoteEntry, RemoteError, RemoteOp, RemoteRequests, Seed};
use async_nats::jetstream::kv;
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::timeout;

/// Hands a document read back from the bucket to its owner shard.
pub type ApplyStored = Box<dyn Fn(RemoteEntry) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How long a request may wait for JetStream before it is answered unavailable.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Room a document leaves under the server's largest message for the message's own headers.
const HEADROOM: usize = 1024;

fn bucket(config: &ClusterConfig) -> Bucket<'_> {
    Bucket {
        name: &config.storage_bucket,
        description: "lantern storage: pairs, token and privacy settings per user",
        history: 1,
        max_age: Duration::ZERO,
        memory: false,
        replicas: config.replicas,
    }
}

/// Serves the shards' storage requests until the node stops. A request that finds NATS away
/// (or the bucket not yet open) is answered unavailable at once rather than queued: the
/// caller answers 503 and nothing is written.
pub async fn serve(config: &ClusterConfig, client: &async_nats::Client, requests: RemoteRequests, seeds: Vec<Seed>, mut stop: watch::Receiver<bool>) {
    let js = async_nats::jetstream::new(client.clone());
    if !seeds.is_empty() {
        tokio::spawn(plant(config.clone(), js.clone(), seeds, stop.clone()));
    }
    let mut store: Option<kv::Store> = None;
    loop {
        let op = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            op = requests.recv() => match op { Some(op) => op, None => return },
        };
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        if connected && store.is_none() {
            if let Ok(Ok(s)) = timeout(ANSWER_WITHIN, bucket(config).open(&js)).await {
                store = Some(s);
            }
        }
        let open = store.clone().filter(|_| connected);
        let max = client.server_info().max_payload.saturating_sub(HEADROOM);
        // Each request on its own task (of this thread's runtime): one slow answer holds up
        // no other shard.
        tokio::spawn(answer(open, op, max));
    }
}

/// Writes each seed where the bucket has no document for it (`create`: a document written
/// since, by any node, wins), retrying until NATS takes them all or the node stops.
async fn plant(config: ClusterConfig, js: async_nats::jetstream::Context, mut seeds: Vec<Seed>, mut stop: watch::Receiver<bool>) {
    let total = seeds.len();
    let mut carried = 0;
    while !seeds.is_empty() {
        if let Ok(Ok(store)) = timeout(ANSWER_WITHIN, bucket(&config).open(&js)).await {
            let mut left = Vec::new();
            for seed in seeds {
                match timeout(ANSWER_WITHIN, store.create(seed.part.key(seed.user), seed.value.clone())).await {
                    Ok(Ok(_)) => carried += 1,
                    Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                    _ => left.push(seed),
                }
            }
            seeds = left;
        }
        if !seeds.is_empty() && super::lease::stopped_within(&mut stop, config.lease_ttl).await {
            tracing::warn!(left = seeds.len(), "stopped before every document of the shard files reached the cluster's store");
            return;
        }
    }
    tracing::info!(documents = carried, of = total, "carried the shard files' storage and privacy settings into the cluster's store");
}

async fn answer(store: Option<kv::Store>, op: RemoteOp, max: usize) {
    let away = || RemoteError::Unavailable("not connected to NATS".into());
    match op {
        RemoteOp::Write { key, value, expect, ack } => {
            let result = match store {
                None => Err(away()),
                Some(store) => write(&store, &key, value, expect, max).await,
            };
            let _ = ack.send(result);
        }
        RemoteOp::Read { key, ack } => {
            let result = match store {
                None => Err(away()),
                Some(store) => match timeout(ANSWER_WITHIN, store.entry(&key)).await {
                    Ok(Ok(None)) => Ok((0, None)),
                    Ok(Ok(Some(entry))) => Ok(match entry.operation {
                        kv::Operation::Put => (entry.revision, Some(entry.value)),
                        kv::Operation::Delete | kv::Operation::Purge => (entry.revision, None),
                    }),
                    Ok(Err(e)) => Err(RemoteError::Unavailable(e.to_string())),
                    Err(_) => Err(RemoteError::Unavailable("NATS did not answer in time".into())),
                },
            };
            let _ = ack.send(result);
        }
    }
}

async fn write(store: &kv::Store, key: &str, value: Option<Bytes>, expect: Expect, max: usize) -> Result<u64, RemoteError> {
    let late = || RemoteError::Unavailable("JetStream did not acknowledge in time".into());
    let other = |e: &dyn std::fmt::Display| RemoteError::Unavailable(e.to_string());
    let Some(value) = value else {
        return match timeout(ANSWER_WITHIN, store.delete(key)).await {
            Ok(Ok(())) => Ok(0),
            Ok(Err(e)) => Err(other(&e)),
            Err(_) => Err(late()),
        };
    };
    if value.len() > max {
        return Err(RemoteError::TooLarge(max));
    }
    match expect {
        Expect::Any => match timeout(ANSWER_WITHIN, store.put(key, value)).await {
            Ok(Ok(revision)) => Ok(revision),
            Ok(Err(e)) => Err(other(&e)),
            Err(_) => Err(late()),
        },
        // Never written: only if still absent (a deleted document counts as absent).
        Expect::Revision(0) => match timeout(ANSWER_WITHIN, store.create(key, value)).await {
            Ok(Ok(revision)) => Ok(revision),
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(RemoteError::Conflict),
            Ok(Err(e)) => Err(other(&e)),
            Err(_) => Err(late()),
        },
        Expect::Revision(revision) => match timeout(ANSWER_WITHIN, store.update(key, value, revision)).await {
            Ok(Ok(revision)) => Ok(revision),
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(RemoteError::Conflict),
            Ok(Err(e)) => Err(other(&e)),
            Err(_) => Err(late()),
        },
    }
}

/// Every node's side: hands each document of the bucket (current ones first, then each
/// change, in revision order) to its owner shard, the node's own writes included.
pub async fn follow(config: &ClusterConfig, client: &async_nats::Client, apply: ApplyStored, mut stop: watch::Receiver<bool>) {
    let mut entries = super::client::Follow::new(client, bucket(config), config.lease_ttl);
    while let Some(entry) = entries.next(&mut stop).await {
        let Some((user, part)) = Part::parse(&entry.key) else { continue };
        let value = match entry.operation {
            kv::Operation::Put => Some(entry.value),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        apply(RemoteEntry { user, part, revision: entry.revision, value }).await;
    }
}
