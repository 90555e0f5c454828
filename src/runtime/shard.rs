//! One shard: its state, its mailbox loop, and the typed asks other shards send it.

use crate::config::Config;
use crate::discord::Snowflake;
use crate::ingest::events::{GatewayStatus, IngestEvent};
use crate::presence::state::{Applied, LastSeenWrite};
use crate::presence::ShardState;
use crate::runtime::{shard_of, MailboxReceiver, MailboxSender};
use crate::storage::kv::{KvError, KvShard};
use crate::storage::service::{StorageAnswer, StorageRequest};
use crate::storage::token::TokenCipher;
use crate::storage::writer::{WriteOp, WriterHandle};
use crate::time_fmt::now_ms;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

/// A message to a shard. Cross-shard work is always one of these; no shard touches another's state.
pub enum ShardMsg {
    Ingest(IngestEvent),
    Gateway(GatewayStatus),
    /// Render these users (all owned by the receiver); `None` for users it does not monitor.
    GetUsers { ids: Vec<Snowflake>, reply: oneshot::Sender<Vec<Option<Bytes>>> },
    /// How many users the receiver monitors.
    Count { reply: oneshot::Sender<usize> },
    /// Replace a user's key-value map (owned by the receiver); see [`ShardContext::set_storage_json`].
    SetStorage { id: Snowflake, storage_json: Vec<u8> },
    /// WebSocket subscriptions and fan-out (see [`crate::socket`]).
    Socket(crate::socket::SocketMsg),
    /// A read or write of the storage of `id` (owned by the receiver). Writes are answered once
    /// durable.
    Storage { id: Snowflake, req: StorageRequest, reply: oneshot::Sender<Result<StorageAnswer, KvError>> },
    /// Render (or answer from cache, or with 304) the profile card of a user the receiver owns.
    Card { id: Snowflake, request: crate::card::CardRequest, reply: oneshot::Sender<crate::card::CardAnswer> },
    /// Stop accepting and finish in-flight requests (the mailbox keeps answering other shards).
    Shutdown,
    /// Every shard has drained: stop the mailbox loop.
    Exit,
}

/// Everything one shard owns. Lives in an `Rc` on the shard's thread only.
pub struct ShardContext {
    pub index: usize,
    pub config: Arc<Config>,
    pub state: RefCell<ShardState>,
    /// Mailboxes of every shard, by index (including this one's own).
    pub peers: Vec<MailboxSender<ShardMsg>>,
    pub gateway: Cell<GatewayStatus>,
    pub writer: WriterHandle,
    pub shutdown: watch::Sender<bool>,
    /// WebSocket connections on this shard and fan-out interest in its users.
    pub socket: RefCell<crate::socket::Hub>,
    /// The key-value storage of the users this shard owns (committed state in memory).
    pub kv: RefCell<KvShard>,
    pub cipher: Arc<TokenCipher>,
    /// Profile cards: image fetcher and the caches of fetched images and rendered cards.
    pub card: crate::card::ShardCard,
}

impl ShardContext {
    pub fn shards(&self) -> usize {
        self.peers.len()
    }

    /// The cached user object of a user this shard owns, rendered at `now` (unix ms).
    fn render_local(&self, id: Snowflake, now: i64) -> Option<Bytes> {
        self.state.borrow().get(id).map(|u| u.json.render(now))
    }

    /// One user object: read directly when this shard owns the user, else one mailbox hop.
    pub async fn get_user(&self, id: Snowflake) -> Option<Bytes> {
        let owner = shard_of(id, self.shards());
        if owner == self.index {
            return self.render_local(id, now_ms());
        }
        let (reply, rx) = oneshot::channel();
        self.peers[owner].send(ShardMsg::GetUsers { ids: vec![id], reply }).ok()?;
        rx.await.ok()?.pop().flatten()
    }

    /// The user objects of `ids`, in the same order, asking each owner shard once.
    pub async fn get_users(&self, ids: &[Snowflake]) -> Vec<Option<Bytes>> {
        let n = self.shards();
        let mut out: Vec<Option<Bytes>> = vec![None; ids.len()];
        let mut per_shard: Vec<Vec<(usize, Snowflake)>> = vec![Vec::new(); n];
        for (pos, &id) in ids.iter().enumerate() {
            per_shard[shard_of(id, n)].push((pos, id));
        }
        let mut pending = Vec::new();
        for (shard, wanted) in per_shard.into_iter().enumerate() {
            if wanted.is_empty() {
                continue;
            }
            if shard == self.index {
                let now = now_ms();
                for (pos, id) in wanted {
                    out[pos] = self.render_local(id, now);
                }
            } else {
                let (reply, rx) = oneshot::channel();
                let asked: Vec<Snowflake> = wanted.iter().map(|(_, id)| *id).collect();
                if self.peers[shard].send(ShardMsg::GetUsers { ids: asked, reply }).is_ok() {
                    pending.push((wanted, rx));
                }
            }
        }
        for (wanted, rx) in pending {
            if let Ok(answers) = rx.await {
                for ((pos, _), answer) in wanted.into_iter().zip(answers) {
                    out[pos] = answer;
                }
            }
        }
        out
    }

    /// Users monitored per shard; `None` for a shard that did not answer.
    pub async fn counts(&self) -> Vec<Option<usize>> {
        let mut out = vec![None; self.shards()];
        let mut pending = Vec::new();
        for (shard, peer) in self.peers.iter().enumerate() {
            if shard == self.index {
                out[shard] = Some(self.state.borrow().len());
            } else {
                let (reply, rx) = oneshot::channel();
                if peer.send(ShardMsg::Count { reply }).is_ok() {
                    pending.push((shard, rx));
                }
            }
        }
        for (shard, rx) in pending {
            out[shard] = rx.await.ok();
        }
        out
    }

    /// Replaces a user's key-value map (serialized as a JSON object) on its owner shard, which
    /// must be this one; readers see the new user object and subscribers hear about it.
    pub fn set_storage_json(&self, id: Snowflake, storage_json: Vec<u8>) {
        debug_assert_eq!(shard_of(id, self.shards()), self.index, "storage is set on the owner shard");
        let mut applied = Applied::default();
        self.state.borrow_mut().set_storage_json(id, storage_json, &mut applied);
        self.after_apply(applied);
    }

    /// Persists what an applied event asks for, then publishes its changes.
    fn after_apply(&self, applied: Applied) {
        let ops: Vec<WriteOp> = applied
            .writes
            .into_iter()
            .map(|w| match w {
                LastSeenWrite::Set(id, ms) => WriteOp::SetLastSeen(id, ms),
                LastSeenWrite::Clear(id) => WriteOp::ClearLastSeen(id),
            })
            .collect();
        self.writer.submit(ops);
        self.publish(&applied.changes);
    }

    /// Tells subscribers about changes to users this shard owns.
    fn publish(&self, changes: &[crate::presence::Change]) {
        crate::socket::publish(self, changes);
    }

    fn apply(&self, event: IngestEvent) {
        let now = now_ms();
        let mut applied = Applied::default();
        let removed = match &event {
            IngestEvent::MemberRemove(id) => Some(*id),
            _ => None,
        };
        self.state.borrow_mut().apply(event, now, &mut applied);
        // An explicit member-remove deletes the member's storage and token, as Lantern does.
        if let Some(op) = removed.and_then(|id| self.kv.borrow_mut().forget(id)) {
            self.writer.submit(vec![op]);
        }
        self.after_apply(applied);
    }

    /// Handles one message; returns false on exit.
    fn handle(self: &Rc<Self>, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Ingest(event) => self.apply(event),
            ShardMsg::Gateway(status) => self.gateway.set(status),
            ShardMsg::GetUsers { ids, reply } => {
                let now = now_ms();
                let _ = reply.send(ids.iter().map(|id| self.render_local(*id, now)).collect());
            }
            ShardMsg::Count { reply } => {
                let _ = reply.send(self.state.borrow().len());
            }
            ShardMsg::SetStorage { id, storage_json } => self.set_storage_json(id, storage_json),
            ShardMsg::Socket(msg) => crate::socket::handle(self, msg),
            ShardMsg::Storage { id, req, reply } => {
                let ctx = self.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(ctx.storage_local(id, req).await);
                })
                .detach();
            }
            ShardMsg::Card { id, request, reply } => {
                // Rendering awaits image fetches: run it as its own task, not in the mailbox loop.
                let ctx = self.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(crate::card::serve_owned(&ctx, id, request).await);
                })
                .detach();
            }
            ShardMsg::Shutdown => {
                let _ = self.shutdown.send(true);
            }
            ShardMsg::Exit => return false,
        }
        true
    }

    /// The shard's mailbox loop: runs until [`ShardMsg::Exit`].
    pub async fn run_mailbox(self: Rc<Self>, rx: MailboxReceiver<ShardMsg>) {
        while let Some(msg) = rx.recv().await {
            if !self.handle(msg) {
                break;
            }
            // Drain what is already queued before yielding back to the executor.
            let mut budget = 256;
            while budget > 0 {
                let Some(msg) = rx.try_recv() else { break };
                if !self.handle(msg) {
                    return;
                }
                budget -= 1;
            }
            glommio::yield_if_needed().await;
        }
    }
}
