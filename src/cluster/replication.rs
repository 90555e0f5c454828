//! Presence replication: the leader puts each user's state under one key per user (deleted
//! when the member leaves); every follower watches the bucket, current values first and then
//! the changes, and applies them to its own shards through the normal ingest path.
//!
//! Each shard also sends, behind the states it queued, a mark of the gateway sequence its
//! events reached ([`Replica::Applied`]); once every shard's mark is written past, the
//! publisher moves the gateway session's sequence ([`SessionCell`]) to the lowest of them.
//! That is the sequence stored for the next leader, so a session resumed there replays every
//! event whose state was not yet acknowledged by JetStream, whatever became of this node.

use super::client::Bucket;
use crate::config::ClusterConfig;
use super::session::{GatewaySession, SessionCell};
use super::{Role, Status};
use crate::runtime::MailboxReceiver;
use async_nats::jetstream::kv;
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::timeout;

/// What a shard hands the cluster thread.
#[derive(Debug)]
pub enum Replica {
    /// One user's state: `None` when the member left.
    User { user: u64, state: Option<Bytes> },
    /// Shard `shard` (of `shards`) applied every gateway event of `session` up to its
    /// sequence, and queued their states before this.
    Applied { shard: usize, shards: usize, session: GatewaySession },
}

/// The latest mark of each shard; the session whose every event is acknowledged.
#[derive(Debug, Default)]
pub struct Marks(Vec<Option<GatewaySession>>);

impl Marks {
    /// Notes a shard's mark; returns the session acknowledged on every shard, once all of them
    /// marked the same session.
    pub fn note(&mut self, shard: usize, shards: usize, session: GatewaySession) -> Option<GatewaySession> {
        if self.0.len() != shards {
            self.0 = vec![None; shards];
        }
        *self.0.get_mut(shard)? = Some(session);
        let first = self.0.first()?.as_ref()?;
        let mut low = first.clone();
        for mark in &self.0 {
            let mark = mark.as_ref()?;
            if mark.session_id != low.session_id {
                return None;
            }
            low.sequence = low.sequence.min(mark.sequence);
        }
        Some(low)
    }
}

/// Applies a user's replicated state (or its removal) to this node's shards.
pub type Apply = Box<dyn Fn(u64, Option<Bytes>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Returns once every state handed to [`Apply`] before it was applied.
pub type Applied = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How many messages the presence bucket holds now and its last revision (`None`: no
/// answer within `within`).
pub(crate) async fn bucket_state(config: &ClusterConfig, js: &async_nats::jetstream::Context, within: Duration) -> Option<(u64, u64)> {
    let mut stream = timeout(within, js.get_stream(format!("KV_{}", config.presence_bucket))).await.ok()?.ok()?;
    let info = timeout(within, stream.info()).await.ok()?.ok()?;
    Some((info.state.messages, info.state.last_sequence))
}

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
/// before the next (retried until JetStream takes it), and moves `session` to the sequence
/// acknowledged on every shard.
pub async fn publish(
    config: &ClusterConfig,
    client: &async_nats::Client,
    rx: MailboxReceiver<Replica>,
    session: &SessionCell,
    mut stop: watch::Receiver<bool>,
) {
    let js = async_nats::jetstream::new(client.clone());
    let Some(mut store) = open(config, &js, &mut stop).await else { return };
    let mut marks = Marks::default();
    loop {
        let replica = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = rx.recv() => match r { Some(r) => r, None => return },
        };
        let (user, state) = match replica {
            Replica::User { user, state } => (user, state),
            Replica::Applied { shard, shards, session: mark } => {
                if let Some(acknowledged) = marks.note(shard, shards, mark) {
                    session.set(Some(acknowledged));
                }
                continue;
            }
        };
        let key = user.to_string();
        loop {
            let done = match &state {
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
/// change applied, and `synced` once the values the bucket held when the watch began are
/// applied (at once for an empty bucket).
pub async fn follow(config: &ClusterConfig, client: &async_nats::Client, apply: Apply, applied: Applied, status: &Status, mut stop: watch::Receiver<bool>) {
    let mut entries = super::client::Follow::new(client, bucket(config), config.lease_ttl);
    loop {
        if !entries.is_watching() && !status.snapshot().synced {
            // Before the watch begins: an empty bucket (created here if need be) is synced at
            // once, since no entry will say so; a put after this is read like any change.
            if open(config, entries.jetstream(), &mut stop).await.is_none() {
                return;
            }
            match bucket_state(config, entries.jetstream(), config.lease_ttl).await.map(|(messages, _)| messages) {
                Some(0) => status.update(|s| s.synced = true),
                Some(_) => {}
                None => {
                    if super::lease::stopped_within(&mut stop, config.lease_ttl / 3).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(entry) = entries.next(&mut stop).await else { return };
        let lag = (time::OffsetDateTime::now_utc() - entry.created).whole_milliseconds().max(0) as u64;
        // The last value the bucket held when the watch began (or any after it).
        let current = entry.delta == 0 || entry.seen_current;
        if status.snapshot().role != Role::Leader {
            if let Ok(user) = entry.key.parse::<u64>() {
                match entry.operation {
                    kv::Operation::Put => apply(user, Some(entry.value)).await,
                    kv::Operation::Delete | kv::Operation::Purge => apply(user, None).await,
                }
            }
        }
        status.update(|s| {
            s.replication_lag_ms = Some(lag);
            s.presence_revision = entry.revision;
        });
        if current && !status.snapshot().synced {
            applied().await;
            tracing::info!(revision = entry.revision, "applied every replicated user");
            status.update(|s| s.synced = true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{GatewaySession, Marks};

    fn at(id: &str, sequence: u64) -> GatewaySession {
        GatewaySession { session_id: id.into(), resume_gateway_url: None, sequence }
    }

    #[test]
    fn the_acknowledged_sequence_is_the_lowest_once_every_shard_marked_the_session() {
        let mut marks = Marks::default();
        assert_eq!(marks.note(0, 2, at("s", 10)), None);
        assert_eq!(marks.note(1, 2, at("s", 7)), Some(at("s", 7)));
        assert_eq!(marks.note(1, 2, at("s", 12)), Some(at("s", 10)));
        // A new session counts once every shard reached it.
        assert_eq!(marks.note(0, 2, at("t", 3)), None);
        assert_eq!(marks.note(1, 2, at("t", 2)), Some(at("t", 2)));
        assert_eq!(marks.note(5, 2, at("t", 9)), None);
    }
}
