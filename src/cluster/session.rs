//! The leader's gateway session, kept so that the next leader resumes it rather than
//! identifying anew.
//!
//! The cluster thread keeps the session in a [`SessionCell`] at the last sequence whose events'
//! states JetStream acknowledged (see [`super::replication`]); the lease loop reads it at each
//! refresh and writes it with the lease and under [`KEY`] in the session
//! bucket, which has no TTL: the lease key has no value once it is deleted or aged out, but the
//! session outlives it. A node taking the lease puts the last session it can find into its cell
//! before starting its gateway, which then sends RESUME with it.

use super::client::Bucket;
use crate::config::ClusterConfig;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The session's key in the session bucket.
pub const KEY: &str = "gateway";

/// What RESUME needs: the session, where to resume it and the last sequence number applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySession {
    pub session_id: String,
    pub resume_gateway_url: Option<String>,
    pub sequence: u64,
}

impl GatewaySession {
    pub fn bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn parse(bytes: &[u8]) -> Option<GatewaySession> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The session shared between the ingest thread (which reads the one to resume when it
/// starts) and the cluster thread (which sets it before then, and advances it as states are
/// acknowledged). Held only to copy a few fields in or out, never across an await.
#[derive(Debug, Clone, Default)]
pub struct SessionCell(Arc<Mutex<Option<GatewaySession>>>);

impl SessionCell {
    pub fn get(&self) -> Option<GatewaySession> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, session: Option<GatewaySession>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = session;
    }
}

/// The session bucket: one key, no TTL, named after the lease bucket.
pub fn bucket_name(config: &ClusterConfig) -> String {
    format!("{}_session", config.lease_bucket)
}

pub fn bucket<'a>(config: &'a ClusterConfig, name: &'a str) -> Bucket<'a> {
    Bucket {
        name,
        description: "lantern gateway session, for the next leader to resume",
        history: 1,
        max_age: std::time::Duration::ZERO,
        memory: false,
        replicas: config.replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_session_reads_back() {
        let s = GatewaySession { session_id: "abc".into(), resume_gateway_url: Some("wss://gateway".into()), sequence: 42 };
        assert_eq!(GatewaySession::parse(&s.bytes()), Some(s));
        assert_eq!(GatewaySession::parse(b"{}"), None);
    }
}
