//! The WebSocket `/socket`: the Lantern protocol, and fan-out across shards.
//!
//! - A connection lives on the shard that accepted it ([`conn`]). Its subscriptions are kept in
//!   that shard's [`hub::Hub`]: local subscribers per user, and local All subscribers.
//! - The owner shard of a user keeps, per user, the set of *other shards* interested in it, and
//!   the set of shards with any All subscriber. A shard registers its interest with the owner
//!   ([`SocketMsg::Subscribe`], [`SocketMsg::SubscribeAll`]) and withdraws it when its last local
//!   subscriber goes ([`SocketMsg::Unwatch`], [`SocketMsg::UnwatchAll`]).
//! - When a user changes, the owner encodes each frame once (PRESENCE_UPDATE both as one object
//!   and as a one-element array, at most two encodings), sends one [`SocketEvent`] to each
//!   interested shard, and every shard writes the same bytes to each of its subscribers.
//! - Events carry the owner's sequence number, and a subscription's snapshot records it, so a
//!   subscriber never sees an event older than its ACK, nor misses one after it.
//!
//! Nothing here is shared between shards: everything crosses in [`SocketMsg`]s.

pub mod close;
pub mod conn;
pub mod frames;
pub mod hub;
pub mod outbox;
pub mod protocol;
pub mod upgrade;

pub use close::CloseReason;
pub use hub::Hub;

use crate::discord::Snowflake;
use bytes::Bytes;
use frames::Frame;
use tokio::sync::oneshot;

/// The current data of users, as one owner shard saw it at sequence number `seq`.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub seq: u64,
    /// The rendered user objects, in request order; `None` for users the owner does not monitor.
    pub users: Vec<Option<Bytes>>,
}

/// Socket messages between shards (carried by [`crate::runtime::ShardMsg::Socket`]).
pub enum SocketMsg {
    /// Shard `from` has subscribers for `ids` (owned by the receiver): register its interest
    /// (idempotent) and reply with their current data.
    Subscribe { from: usize, ids: Vec<Snowflake>, reply: oneshot::Sender<Snapshot> },
    /// Shard `from` has All subscribers: register it and reply with every user the receiver owns.
    SubscribeAll { from: usize, reply: oneshot::Sender<Snapshot> },
    /// Shard `from` has no subscriber left for `ids`.
    Unwatch { from: usize, ids: Vec<Snowflake> },
    /// Shard `from` has no All subscriber left.
    UnwatchAll { from: usize },
    /// A change to a user, from its owner, for the receiver's subscribers.
    Event(SocketEvent),
}

/// One change to one user, encoded once by its owner.
#[derive(Debug, Clone)]
pub struct SocketEvent {
    pub owner: usize,
    pub seq: u64,
    pub id: Snowflake,
    pub kind: EventKind,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    /// PRESENCE_UPDATE, with `d` as one object and as a one-element array.
    Updated { object: Frame, array: Frame },
    /// USER_JOINED.
    Joined(Frame),
    /// USER_LEFT.
    Left(Frame),
    /// STORAGE_UPDATE.
    Storage(Frame),
}

pub use hub::{handle, publish};
