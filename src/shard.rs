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
use crate::fanout::{self, Dialect, EventKind, Fanout, FanoutHost};
use crate::lanyard::LanyardCache;
use crate::metrics::{self, ShardMetrics};
use crate::per_ip::{IpCounts, IpHost, Kind};
use crate::presence::privacy::{PrivacyChange, PrivacyError, PrivacySettings};
use crate::presence::{Applied, Change, IngestEvent, LastSeenWrite, Presence};
use crate::runtime::{Closed, Here, Invoke, Owned, Peers, Sharded};
use crate::storage::kv::{Auth, KvError};
use crate::storage::service::{Installed, PrivacyWriteError, Storage, StorageAnswer, StorageRequest};
use crate::storage::writer::WriteOp;
use crate::time_fmt::now_ms;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::watch;

/// Users whose replicated state is still to be sent, in the order they changed.
#[derive(Default)]
struct ReplicaBacklog {
    order: std::collections::VecDeque<Snowflake>,
    waiting: std::collections::HashSet<Snowflake>,
    /// The latest gateway mark, sent once the users before it are.
    mark: Option<crate::cluster::session::GatewaySession>,
    draining: bool,
}

impl ReplicaBacklog {
    fn is_empty(&self) -> bool {
        self.order.is_empty() && self.mark.is_none()
    }
}

/// Everything one shard runs.
pub struct Shard {
    here: Here<Shard>,
    config: Arc<Config>,
    presence: Presence,
    fanout: Fanout,
    storage: Storage,
    cards: ShardCard,
    lanyard: LanyardCache,
    ips: RefCell<IpCounts>,
    gateway: Cell<GatewayStatus>,
    shutdown: watch::Sender<bool>,
    metrics: ShardMetrics,
    /// Written by the ingest thread, read at scrape time.
    gateway_stats: Arc<metrics::GatewayStats>,
    /// This node's place in the cluster (cluster mode only).
    cluster: Option<Arc<crate::cluster::Status>>,
    /// Cluster mode: where the states this shard's gateway events produce go for replication.
    replicate: Option<crate::runtime::MailboxSender<crate::cluster::replication::Replica>>,
    /// Users whose state waits for room in the replication queue (see [`Shard::replicate`]).
    replica_backlog: RefCell<ReplicaBacklog>,
    /// Presence and user changes applied here, per second, for the server's live numbers.
    updates: RefCell<UpdateRate>,
}

/// Changes applied in each of the last [`UpdateRate::SECONDS`] seconds.
#[derive(Default)]
struct UpdateRate {
    /// (unix second, changes in it), one slot per second modulo the window.
    slots: [(i64, u32); UpdateRate::SECONDS],
    total: u64,
}

impl UpdateRate {
    const SECONDS: usize = 10;

    fn add(&mut self, now_ms: i64, n: usize) {
        let sec = now_ms.div_euclid(1000);
        let slot = &mut self.slots[sec.rem_euclid(Self::SECONDS as i64) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 = slot.1.saturating_add(n as u32);
        self.total += n as u64;
    }

    /// Changes per second over the last complete seconds of the window.
    fn per_second(&self, now_ms: i64) -> f64 {
        let sec = now_ms.div_euclid(1000);
        let window = (sec - Self::SECONDS as i64)..sec;
        self.slots.iter().filter(|(s, _)| window.contains(s)).map(|(_, n)| *n as f64).sum::<f64>() / Self::SECONDS as f64
    }
}

/// One shard's live numbers (see [`Shard::live_numbers`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveNumbers {
    pub monitored_users: usize,
    pub socket_connections: usize,
    pub updates_per_second: f64,
    pub updates_total: u64,
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

    fn render_owned(&self, dialect: Dialect, ids: &[Owned<Snowflake>]) -> Vec<Option<Bytes>> {
        match dialect {
            Dialect::Lantern => {
                let now = now_ms();
                ids.iter().map(|id| self.presence.render(*id, now)).collect()
            }
            Dialect::Lanyard => ids.iter().map(|id| self.owned_lanyard_presence(*id)).collect(),
        }
    }

    fn render_all_owned(&self, dialect: Dialect) -> Vec<(Snowflake, Bytes)> {
        match dialect {
            Dialect::Lantern => self.presence.render_all(now_ms()),
            Dialect::Lanyard => self
                .presence
                .ids()
                .into_iter()
                .filter_map(|id| {
                    let owned = self.here.claim(id).ok()?;
                    Some((id, self.owned_lanyard_presence(owned)?))
                })
                .collect(),
        }
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
            lanyard: LanyardCache::default(),
            config,
            presence: services.presence,
            storage: services.storage,
            ips: RefCell::default(),
            gateway: Cell::new(GatewayStatus::default()),
            shutdown: watch::channel(false).0,
            updates: RefCell::default(),
            metrics: ShardMetrics::default(),
            gateway_stats: Arc::default(),
            cluster: None,
            replicate: None,
            replica_backlog: RefCell::default(),
        }
    }

    /// Cluster mode: the node's role and lease as the cluster thread keeps them.
    pub fn with_cluster(mut self, status: Option<Arc<crate::cluster::Status>>) -> Shard {
        self.cluster = status;
        self
    }

    /// Cluster mode: the queue that replicates what this shard's gateway events change.
    pub fn with_replication(mut self, tx: Option<crate::runtime::MailboxSender<crate::cluster::replication::Replica>>) -> Shard {
        self.replicate = tx;
        self
    }

    /// Hands the new state of every user a gateway event changed to the cluster thread. While
    /// the queue is full (NATS slow or away), the users wait in a backlog, each once, and one
    /// task sends each user's state as it is when there is room: memory stays bounded by the
    /// shard's users, and no older state of a user can overtake a newer one.
    fn replicate(self: &Rc<Self>, changes: &[Change]) {
        let Some(tx) = &self.replicate else { return };
        for change in changes {
            let id = match change {
                Change::Joined(id) | Change::Updated(id) | Change::Left(id) => *id,
                Change::StorageUpdated(_) => continue,
            };
            if !self.replica_backlog.borrow().is_empty() {
                self.defer_replica(id);
                continue;
            }
            let Some(replica) = self.replica_of(id) else { continue };
            if let Err(crate::runtime::mailbox::Refused::Full(_)) = tx.try_send(replica) {
                self.defer_replica(id);
            }
        }
    }

    /// Cluster mode: every gateway event of `session` up to its sequence was applied here (the
    /// ingest thread sends this behind them); the mark follows this shard's queued states to
    /// the cluster thread, which stores the sequence once JetStream has them all.
    pub fn mark_applied(self: &Rc<Self>, session: crate::cluster::session::GatewaySession) {
        let Some(tx) = &self.replicate else { return };
        if self.replica_backlog.borrow().is_empty() {
            let mark = crate::cluster::replication::Replica::Applied { shard: self.here.index(), shards: self.here.count(), session: session.clone() };
            if tx.try_send(mark).is_ok() {
                return;
            }
        }
        self.defer_mark(session);
    }

    /// The state to replicate for `id` now: its member, presence and last seen, or a deletion
    /// once it is gone. `None` for a user another shard owns.
    fn replica_of(&self, id: Snowflake) -> Option<crate::cluster::replication::Replica> {
        let owned = self.here.claim(id).ok()?;
        let state = match self.presence.replica(owned) {
            Some((member, presence, last_seen_ms)) => {
                let state = crate::presence::events::ReplicatedState { member, presence, last_seen_ms };
                Some(bytes::Bytes::from(serde_json::to_vec(&state).ok()?))
            }
            None => None,
        };
        Some(crate::cluster::replication::Replica::User { user: id.0, state })
    }

    fn defer_replica(self: &Rc<Self>, id: Snowflake) {
        {
            let mut backlog = self.replica_backlog.borrow_mut();
            if backlog.waiting.insert(id) {
                backlog.order.push_back(id);
            }
        }
        self.drain_backlog();
    }

    /// A newer mark replaces a waiting one: it covers the same users and more.
    fn defer_mark(self: &Rc<Self>, session: crate::cluster::session::GatewaySession) {
        self.replica_backlog.borrow_mut().mark = Some(session);
        self.drain_backlog();
    }

    /// Starts the task that sends the backlog, unless it runs: each waiting user's state, then
    /// the mark once no user waits before it.
    fn drain_backlog(self: &Rc<Self>) {
        let start = !std::mem::replace(&mut self.replica_backlog.borrow_mut().draining, true);
        if start {
            let this = self.clone();
            glommio::spawn_local(async move {
                let Some(tx) = this.replicate.clone() else { return };
                loop {
                    let next = {
                        let mut backlog = this.replica_backlog.borrow_mut();
                        match backlog.order.pop_front() {
                            Some(id) => {
                                backlog.waiting.remove(&id);
                                this.replica_of(id)
                            }
                            None => match backlog.mark.take() {
                                Some(session) => Some(crate::cluster::replication::Replica::Applied {
                                    shard: this.here.index(),
                                    shards: this.here.count(),
                                    session,
                                }),
                                None => {
                                    backlog.draining = false;
                                    return;
                                }
                            },
                        }
                    };
                    if let Some(replica) = next {
                        if tx.send(replica).await.is_err() {
                            return;
                        }
                    }
                }
            })
            .detach();
        }
    }

    /// This node's view of the cluster; `None` when it runs alone.
    pub fn cluster(&self) -> Option<crate::cluster::Snapshot> {
        self.cluster.as_ref().map(|s| s.snapshot())
    }

    /// The gateway counters the ingest thread keeps (shared by every shard, for reading).
    pub fn with_gateway_stats(mut self, stats: Arc<metrics::GatewayStats>) -> Shard {
        self.gateway_stats = stats;
        self
    }

    pub fn gateway_stats(&self) -> &metrics::GatewayStats {
        &self.gateway_stats
    }

    pub fn index(&self) -> usize {
        self.here.index()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This shard's counters for `/metrics`.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    /// This shard's counters for `/metrics`, its storage writer's and its member count included.
    pub fn metrics_snapshot(&self) -> metrics::Snapshot {
        let mut s = self.metrics.snapshot();
        s.commits = self.storage.commit_stats();
        s.monitored_users = self.presence.len() as u64;
        s
    }

    /// The gateway's state as last broadcast by ingest (this shard's copy).
    pub fn gateway(&self) -> GatewayStatus {
        self.gateway.get()
    }

    pub fn set_gateway(&self, status: GatewayStatus) {
        // Every shard gets every change; shard 0 counts them.
        if self.index() == 0 && self.gateway.get().state != status.state {
            self.metrics.count(metrics::series::GATEWAY_TRANSITIONS, status.state.as_str());
        }
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

    /// One user's Lanyard presence, read on its owner shard (encoded once per change).
    pub async fn lanyard_presence(self: &Rc<Self>, id: Snowflake) -> Option<Bytes> {
        self.on_owner(id, |s, id| s.owned_lanyard_presence(id)).await.ok().flatten()
    }

    /// The Lanyard presence of `id` if `token` is its current storage token, asked of the
    /// owner shard; `Err` when the token is not the user's (or the user has none).
    pub async fn lanyard_presence_authorized(self: &Rc<Self>, id: Snowflake, token: Vec<u8>) -> Result<Option<Bytes>, KvError> {
        self.on_owner(id, move |s, id| {
            if !s.storage.authorized(id, &token) {
                return Err(KvError::Unauthorized);
            }
            Ok(s.owned_lanyard_presence(id))
        })
        .await
        .unwrap_or_else(|Closed| Err(KvError::Internal("the owner shard has stopped".into())))
    }

    fn owned_lanyard_presence(&self, id: Owned<Snowflake>) -> Option<Bytes> {
        let kv = self.presence.storage_json(id)?;
        self.presence.with_user(id, |view| self.lanyard.presence(id.key(), &view, &kv))
    }

    /// Users monitored per shard; `None` for a shard that did not answer.
    pub async fn monitored_counts(self: &Rc<Self>) -> Vec<Option<usize>> {
        self.invoke_on_all(|s| s.presence.len()).await
    }

    /// Every shard's live numbers (`None` for a shard that did not answer), for `/page/state`.
    pub async fn live_numbers(self: &Rc<Self>) -> Vec<Option<LiveNumbers>> {
        self.invoke_on_all(|s| {
            let now = now_ms();
            let updates = s.updates.borrow();
            LiveNumbers {
                monitored_users: s.presence.len(),
                socket_connections: s.ips.borrow().total(Kind::Socket),
                updates_per_second: updates.per_second(now),
                updates_total: updates.total,
            }
        })
        .await
    }

    /// Runs a storage request on the owner shard of `id`.
    pub async fn storage(self: &Rc<Self>, id: Snowflake, req: StorageRequest) -> Result<StorageAnswer, KvError> {
        self.on_owner_async(id, move |s, id| async move { s.owned_storage(id, req).await })
            .await
            .unwrap_or_else(|Closed| Err(KvError::Internal("the owner shard has stopped".into())))
    }

    /// A public storage read (REST), with the `Authorization` token if one was sent: a member
    /// who hides their map from public objects has it read by the token holder only.
    pub async fn storage_read(self: &Rc<Self>, id: Snowflake, req: StorageRequest, token: Option<Vec<u8>>) -> Result<StorageAnswer, KvError> {
        self.on_owner_async(id, move |s, id| async move {
            if s.presence.contains(id) && s.presence.privacy(id).hide_kv && !token.is_some_and(|t| s.storage.authorized(id, &t)) {
                return Err(KvError::Unauthorized);
            }
            s.owned_storage(id, req).await
        })
        .await
        .unwrap_or_else(|Closed| Err(KvError::Internal("the owner shard has stopped".into())))
    }

    /// Reads (`change` = `None`) or changes a user's privacy settings on their owner shard.
    /// `auth` is the user's storage token (REST) or [`Auth::Owner`] (the bot, for the member
    /// who ran the command). A change is answered once durable, and readers see it at once:
    /// the user object is rebuilt from the filtered view and fanned out.
    pub async fn privacy(self: &Rc<Self>, id: Snowflake, auth: Auth, change: Option<PrivacyChange>) -> Result<PrivacySettings, PrivacyError> {
        self.on_owner_async(id, move |s, id| async move { s.owned_privacy(id, auth, change).await })
            .await
            .unwrap_or_else(|Closed| Err(PrivacyError::Internal("the owner shard has stopped".into())))
    }

    /// [`Shard::privacy`] for a user this shard owns.
    pub async fn owned_privacy(self: &Rc<Self>, id: Owned<Snowflake>, auth: Auth, change: Option<PrivacyChange>) -> Result<PrivacySettings, PrivacyError> {
        if let Auth::Token(given) = &auth {
            if !self.storage.authorized(id, given) {
                return Err(PrivacyError::Unauthorized);
            }
        }
        let Some(change) = change else { return Ok(self.presence.privacy(id)) };
        // Settings are kept for members (and, once set, for members who left): anyone else
        // reaching the bot could otherwise fill the table.
        if matches!(auth, Auth::Owner) && !self.presence.is_member(id) {
            return Err(PrivacyError::NotMember);
        }
        let (seq, next) = self
            .presence
            .plan_privacy(id, |settings| match &change {
                PrivacyChange::Replace(patch) => {
                    let mut fresh = PrivacySettings::default();
                    fresh.apply(patch)?;
                    *settings = fresh;
                    Ok(())
                }
                PrivacyChange::Patch(patch) => settings.apply(patch),
            })
            .map_err(PrivacyError::Invalid)?;
        // The same writer and group commit as key-value writes: answered once durable.
        let written = self.storage.write_privacy(id, next.to_json(), next.is_default()).await;
        let applied = self.presence.commit_privacy(id, seq, next.clone(), written == Ok(true));
        self.after_apply(applied);
        written.map_err(|e| match e {
            PrivacyWriteError::Failed(reason) => PrivacyError::Internal(reason),
            PrivacyWriteError::Unavailable(reason) => PrivacyError::Unavailable(reason),
        })?;
        Ok(next)
    }

    /// A storage request for a user this shard owns: once a write is durable, the user object
    /// carries the new map and subscribers hear about it.
    pub async fn owned_storage(self: &Rc<Self>, id: Owned<Snowflake>, req: StorageRequest) -> Result<StorageAnswer, KvError> {
        let started = std::time::Instant::now();
        // A paused member is not monitored for every reader, and for token writes; the bot
        // still manages the storage of the member who runs it.
        let monitored = match &req {
            StorageRequest::Write { auth: Auth::Owner, .. } => self.presence.is_member(id),
            _ => self.presence.contains(id),
        };
        let announce = |map: Bytes| {
            let applied = self.presence.set_storage_json(id, map);
            self.after_apply(applied);
        };
        let answered = self.storage.handle(id, req, monitored, &announce).await?;
        if let Some(map) = answered.committed {
            self.metrics.kv_write(started.elapsed());
            let applied = self.presence.set_storage_json(id, map);
            self.after_apply(applied);
        }
        Ok(answered.answer)
    }

    /// The profile card of `id`, rendered (or answered from cache) by its owner shard.
    pub async fn card(self: &Rc<Self>, id: Snowflake, req: CardRequest) -> Option<CardAnswer> {
        self.on_owner_async(id, move |s, id| async move {
            let data = s.presence.with_user(id, |view| (card::model::from_view(&view), view.version));
            let answer = s.cards.serve(id.key(), data, req).await;
            let result = match &answer {
                CardAnswer::Card { .. } => "rendered",
                CardAnswer::NotModified { .. } => "not_modified",
                CardAnswer::NotMonitored => "not_monitored",
                CardAnswer::Failed => "failed",
            };
            s.metrics.count(metrics::series::CARDS, result);
            answer
        })
        .await
        .ok()
    }

    /// The avatar of `id` from Discord's CDN as a file of type `ext` (`png`, `gif`, `webp`,
    /// `jpg`), fetched and cached by its owner shard's card images. `None`: not monitored;
    /// `Some(None)`: the CDN did not give it.
    pub async fn avatar_file(self: &Rc<Self>, id: Snowflake, ext: &'static str) -> Option<Option<card::images::Image>> {
        self.on_owner_async(id, move |s, id| async move {
            let url = s.presence.with_user(id, |view| card::avatar::quicklink_url(&view.member.user, ext))?;
            Some(s.cards.image_file(&url).await)
        })
        .await
        .ok()
        .flatten()
    }

    /// How long fetched images are kept (cache headers of the images served).
    pub fn image_ttl(&self) -> std::time::Duration {
        self.cards.image_ttl()
    }

    /// Applies an ingest event from this node's gateway on the shard that owns its users.
    pub fn apply_ingest(self: &Rc<Self>, event: IngestEvent) {
        self.apply_event(event, true);
    }

    /// Cluster mode: applies a user's state (or removal) that the leader replicated. It is
    /// not replicated again, and a removal leaves storage alone: the leader deleted it from
    /// the cluster's store, and that delete arrives on its own.
    pub fn apply_replicated(self: &Rc<Self>, event: IngestEvent) {
        self.apply_event(event, false);
    }

    fn apply_event(self: &Rc<Self>, event: IngestEvent, from_gateway: bool) {
        // An explicit member-remove deletes the member's storage and token, as Lantern does.
        if let (IngestEvent::MemberRemove(id), true) = (&event, from_gateway) {
            if let Ok(owned) = self.here.claim(*id) {
                self.storage.forget(owned);
            }
        }
        let (kind, presence) = ingest_kind(&event);
        let applied = self.presence.apply(event, now_ms(), |id| self.here.claim(id).ok());
        if from_gateway {
            self.replicate(&applied.changes);
        }
        self.metrics.count(metrics::series::INGEST_EVENTS, kind);
        if presence && applied.changes.is_empty() {
            self.metrics.count(metrics::series::PRESENCE_NOOPS, "");
        }
        for change in &applied.changes {
            let name = match change {
                Change::Joined(_) => "joined",
                Change::Updated(_) => "updated",
                Change::Left(_) => "left",
                Change::StorageUpdated(_) => "storage",
            };
            self.metrics.count(metrics::series::CHANGES, name);
        }
        self.after_apply(applied);
    }

    /// Cluster mode: a document of one of this shard's users as the cluster's store holds it
    /// now (every node reads every document back, this one's own writes included): new pairs
    /// reach the user object and subscribers (STORAGE_UPDATE), new privacy settings apply.
    pub fn apply_stored(self: &Rc<Self>, entry: crate::storage::remote::RemoteEntry) {
        let Ok(id) = self.here.claim(entry.user) else {
            tracing::error!(user = %entry.user, "a storage document for a user owned by another shard was routed here; dropped");
            return;
        };
        let applied = match self.storage.install(id, entry.part, entry.revision, entry.value.as_deref()) {
            Installed::Nothing => return,
            Installed::Map(map) => self.presence.set_storage_json(id, map),
            Installed::Privacy(json) => {
                let settings = json.map_or_else(PrivacySettings::default, |json| PrivacySettings::from_stored(entry.user, &json));
                self.presence.replace_privacy(id, settings)
            }
        };
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
        if !applied.changes.is_empty() {
            self.updates.borrow_mut().add(now_ms(), applied.changes.len());
        }
        for change in applied.changes {
            let (id, left) = match change {
                Change::Left(id) => {
                    self.lanyard.forget(id);
                    (id, true)
                }
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
            }, || {
                // Lanyard's PRESENCE_UPDATE, from the presence bytes cached per user version.
                let presence = self.owned_lanyard_presence(owned)?;
                Some(fanout::frames::lanyard_event("PRESENCE_UPDATE", &presence))
            });
        }
    }
}

/// The `kind` label of an ingest event, and whether it is a presence update.
fn ingest_kind(event: &IngestEvent) -> (&'static str, bool) {
    match event {
        IngestEvent::Listed { .. } => ("member_list", false),
        IngestEvent::ListComplete { .. } => ("member_list_complete", false),
        IngestEvent::Presence(_) => ("presence", true),
        IngestEvent::MemberAdd { .. } => ("member_add", false),
        IngestEvent::MemberUpdate(_) => ("member_update", false),
        IngestEvent::MemberRemove(_) => ("member_remove", false),
        IngestEvent::UserUpdate(_) => ("user_update", false),
        IngestEvent::Replicated { .. } => ("replicated", false),
    }
}
