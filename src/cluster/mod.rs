//! Cluster mode: several lantern nodes sharing one Discord gateway session through NATS
//! JetStream (see `docs/cluster.md`).
//!
//! NATS runs on its own thread ([`client`]) with a tokio current-thread runtime; nothing here
//! runs on a glommio executor. The module knows nothing of shards or the gateway: the server
//! hands it a [`Gateway`] to start and stop as leadership comes and goes, and reads the node's
//! [`Status`] for `/health`.

pub mod client;
pub mod lease;
pub mod replication;
pub mod session;
pub mod storage;

pub use client::Cluster;
pub use crate::config::ClusterConfig;

use serde::Serialize;
use std::sync::Mutex;

/// What the leader runs and a follower does not: the gateway connection. `stop` returns once
/// the connection is closed, so that no two nodes ever hold it.
pub trait Gateway: Send + 'static {
    fn start(&mut self);
    fn stop(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
}

/// This node's view of the cluster, as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub node_id: String,
    pub role: Role,
    /// The node holding the gateway lease, as last read (`None`: nobody, or not known).
    pub lease_holder: Option<String>,
    pub nats_connected: bool,
    /// How old the last replicated presence change was when this node read it.
    pub replication_lag_ms: Option<u64>,
    /// Whether this node has applied the presence bucket as it was when it began watching it
    /// (until then it neither reports healthy nor tries to lead).
    pub synced: bool,
    /// Times this node saw the lease go to a node other than the one it last saw holding it
    /// (itself included), for `/metrics`.
    #[serde(skip)]
    pub lease_changes: u64,
    /// The presence bucket's revision this node last read (applied, or its own as leader).
    #[serde(skip)]
    pub presence_revision: u64,
}

/// Shared between the cluster thread (writes) and the shards (read on `/health`).
#[derive(Debug)]
pub struct Status(Mutex<Snapshot>);

impl Status {
    pub fn new(node_id: &str) -> Status {
        Status(Mutex::new(Snapshot { node_id: node_id.to_owned(), role: Role::Follower, lease_holder: None, nats_connected: false, replication_lag_ms: None, synced: false, lease_changes: 0, presence_revision: 0 }))
    }

    pub fn snapshot(&self) -> Snapshot {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
