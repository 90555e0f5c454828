//! The wiring: which services one shard runs, and the operations that span them.
//!
//! A [`Shard`] is one value per executor, owned by that executor's thread. Each service keeps
//! its state private behind its methods: [`Presence`] (members, presence, user objects),
//! [`Fanout`] (WebSocket subscribers and interest), [`Storage`] (key-value pairs, tokens, the
//! writer), [`ShardCard`] (card caches and image fetches) and the per-address connection counts.
//! The edges (HTTP routes, socket connections, ingest, the bot) call the operations below;
//! each one that needs another shard names it at the call site (`on_owner`, `gather_by_owner`,
//! `invoke_on_all`).

use crate::card::{self, CardAnswer, CardRequest, ShardCard};
use crate::config::Config;
use crate::discord::gateway_status::GatewayStatus;
use crate::discord::Snowflake;
use crate::fanout::{self, EventKind, Fanout, FanoutHost};
use crate::per_ip::{IpCounts, IpHost, Kind};
use crate::presence::{Applied, Change, IngestEvent, LastSeenWrite, Presence};
use crate::runtime::{Closed, Here, Invoke, Owned, Peers, Sharded};
use crate::storage::kv::KvError;
use crate::storage::service::{Storage, StorageAnswer, StorageRequest};
use crate::storage::writer::WriteOp;
use crate::time_fmt::now_ms;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::watch;

/// Everything one shard runs.
pub struct Shard {
    here: Here<Shard>,
    config: Arc<Config>,
    presence: Presence,
    fanout: Fanout,
    storage: Storage,
    cards: ShardCard,
    ips: RefCell<IpCounts>,
    gateway: Cell<GatewayStatus>,
    shutdown: watch::Sender<bool>,
}

/// The services a shard starts with.
pub struct Services {
    pub presence: Presence,
    pub storage: Storage,
}

impl Sharded for Shard {
    fn here(&self) -> &Here<Shard> {
        &self.here
    }
}

impl FanoutHost for Shard {
    fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    fn render_owned(&self, ids: &[Owned<Snowflake>]) -> Vec<Option<Bytes>> {
        let now = now_ms();
        ids.iter().map(|id| self.presence.render(*id, now)).collect()
    }

    fn render_all_owned(&self) -> Vec<Bytes> {
        self.presence.render_all(now_ms())
    }
}

impl IpHost for Shard {
    fn ip_counts(&self) -> &RefCell<IpCounts> {
        &self.ips
    }

    fn ip_cap(&self, kind: Kind) -> usize {
        match kind {
            Kind::Connection => self.config.server.max_connections_per_ip,
            Kind::Socket => self.config.server.socket.max_connections_per_ip,
        }
    }
}

impl Shard {
    pub fn new(index: usize, peers: Peers<Shard>, config: Arc<Config>, services: Services) -> Shard {
        let shards = peers.count();
        Shard {
            here: Here::new(index, peers),
            fanout: Fanout::new(index, shards, config.server.socket.max_queued_bytes),
            cards: ShardCard::new(index, &config.card),
            config,
            presence: services.presence,
            storage: services.storage,
            ips: RefCell::default(),
            gateway: Cell::new(GatewayStatus::default()),
            shutdown: watch::channel(false).0,
        }
    }

    pub fn index(&self) -> usize {
        self.here.index()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The gateway's state as last broadcast by ingest (this shard's copy).
    pub fn gateway(&self) -> GatewayStatus {
        self.gateway.get()
    }

    pub fn set_gateway(&self, status: GatewayStatus) {
        self.gateway.set(status);
    }

    /// Fires once the server is shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stop accepting and finish in-flight requests (the mailbox keeps answering other shards).
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// One user object, read on its owner shard.
    pub async fn user(self: &Rc<Self>, id: Snowflake) -> Option<Bytes> {
        self.on_owner(id, |s, id| s.presence.render(id, now_ms())).await.ok().flatten()
    }

    /// One user object gzip-compressed (`Ok`), or plain (`Err`) when too short to be worth it;
    /// read on its owner shard, which compresses each version once.
    pub async fn user_gzip(self: &Rc<Self>, id: Snowflake) -> Option<Result<Bytes, Bytes>> {
        self.on_owner(id, |s, id| s.presence.render_gzip(id, now_ms())).await.ok().flatten()
    }

    /// The user objects of `ids`, in the same order, asking each owner shard once.
    pub async fn users(self: &Rc<Self>, ids: &[Snowflake]) -> Vec<Option<Bytes>> {
        let answers = self
            .gather_by_owner(ids, |s, owned| {
                let now = now_ms();
                owned.iter().map(|id| s.presence.render(*id, now)).collect()
            })
            .await;
        answers.into_iter().map(Option::flatten).collect()
    }

    /// Users monitored per shard; `None` for a shard that did not answer.
    pub async fn monitored_counts(self: &Rc<Self>) -> Vec<Option<usize>> {
        self.invoke_on_all(|s| s.presence.len()).await
    }

    /// Runs a storage request on the owner shard of `id`.
    pub async fn storage(self: &Rc<Self>, id: Snowflake, req: StorageRequest) -> Result<StorageAnswer, KvError> {
        self.on_owner_async(id, move |s, id| async move { s.owned_storage(id, req).await })
            .await
            .unwrap_or_else(|Closed| Err(KvError::Internal("the owner shard has stopped".into())))
    }

    /// A storage request for a user this shard owns: once a write is durable, the user object
    /// carries the new map and subscribers hear about it.
    pub async fn owned_storage(self: &Rc<Self>, id: Owned<Snowflake>, req: StorageRequest) -> Result<StorageAnswer, KvError> {
        let answered = self.storage.handle(id, req, self.presence.contains(id)).await?;
        if let Some(map) = answered.committed {
            let applied = self.presence.set_storage_json(id, map);
            self.after_apply(applied);
        }
        Ok(answered.answer)
    }

    /// The profile card of `id`, rendered (or answered from cache) by its owner shard.
    pub async fn card(self: &Rc<Self>, id: Snowflake, req: CardRequest) -> Option<CardAnswer> {
        self.on_owner_async(id, move |s, id| async move {
            let data = s.presence.with_user(id, |view| (card::model::from_view(&view), view.version));
            s.cards.serve(id.key(), data, req).await
        })
        .await
        .ok()
    }

    /// Applies an ingest event on the shard that owns its users.
    pub fn apply_ingest(self: &Rc<Self>, event: IngestEvent) {
        // An explicit member-remove deletes the member's storage and token, as Lantern does.
        if let IngestEvent::MemberRemove(id) = &event {
            if let Ok(owned) = self.here.claim(*id) {
                self.storage.forget(owned);
            }
        }
        let applied = self.presence.apply(event, now_ms(), |id| self.here.claim(id).ok());
        self.after_apply(applied);
    }

    /// Persists what an applied change asks for, then tells subscribers.
    fn after_apply(self: &Rc<Self>, applied: Applied) {
        let ops = applied
            .writes
            .into_iter()
            .map(|w| match w {
                LastSeenWrite::Set(id, ms) => WriteOp::SetLastSeen(id, ms),
                LastSeenWrite::Clear(id) => WriteOp::ClearLastSeen(id),
            })
            .collect();
        self.storage.submit(ops);
        for change in applied.changes {
            let (id, left) = match change {
                Change::Left(id) => (id, true),
                Change::Joined(id) | Change::Updated(id) | Change::StorageUpdated(id) => (id, false),
            };
            let Ok(owned) = self.here.claim(id) else { continue };
            fanout::publish(self, owned, left, || {
                let now = now_ms();
                Some(match change {
                    Change::Left(_) => EventKind::Left(fanout::frames::user_left(id)),
                    Change::StorageUpdated(_) => EventKind::Storage(fanout::frames::storage_update(id, &self.presence.storage_json(owned)?)),
                    Change::Joined(_) => EventKind::Joined(fanout::frames::with_data(fanout::frames::USER_JOINED, &self.presence.render(owned, now)?)),
                    Change::Updated(_) => fanout::updated(&self.presence.render(owned, now)?),
                })
            });
        }
    }
}
