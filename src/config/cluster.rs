//! The `[cluster]` table (cluster mode, `src/cluster/`): where NATS is, who this node is, and the
//! JetStream buckets it uses.

use serde::Deserialize;
use std::time::Duration;

/// Cluster mode's settings. Without a `[cluster]` table the server runs alone on redb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `nats://host:port` (several separated by commas).
    pub nats_url: String,
    /// This node's name in the lease and on `/health`; unique within the cluster.
    pub node_id: String,
    /// The KV bucket holding the gateway lease.
    pub lease_bucket: String,
    /// The KV bucket holding one key per member (presence replication).
    pub presence_bucket: String,
    /// The KV bucket holding one document per user (storage, token, privacy).
    pub storage_bucket: String,
    /// JetStream replicas of each bucket (1 on a single NATS server, 3 on a NATS cluster).
    pub replicas: usize,
    /// How long the lease lives without a refresh. The leader refreshes at a third of it and
    /// stops its gateway once two thirds have passed without a refresh.
    pub lease_ttl: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    nats_url: Option<String>,
    node_id: Option<String>,
    lease_bucket: Option<String>,
    presence_bucket: Option<String>,
    storage_bucket: Option<String>,
    replicas: Option<usize>,
    lease_ttl_ms: Option<u64>,
}

/// A refused setting: the key (as written under `[cluster]`) and why.
pub type Invalid = (&'static str, String);

impl ClusterConfig {
    pub fn from_file(f: FileCluster) -> Result<ClusterConfig, Invalid> {
        let nats_url = f.nats_url.unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        if nats_url.trim().is_empty() {
            return Err(("cluster.nats_url", "must not be empty".into()));
        }
        let node_id = match f.node_id {
            Some(id) => id,
            None => return Err(("cluster.node_id", "missing; give every node of the cluster its own name".into())),
        };
        if node_id.is_empty() || node_id.len() > 64 || !node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(("cluster.node_id", format!("{node_id:?} must be 1 to 64 letters, digits, '-' or '_'")));
        }
        let bucket = |key: &'static str, value: Option<String>, default: &str| -> Result<String, Invalid> {
            let name = value.unwrap_or_else(|| default.to_owned());
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err((key, format!("{name:?} is not a JetStream bucket name (letters, digits, '-', '_')")));
            }
            Ok(name)
        };
        let replicas = f.replicas.unwrap_or(1);
        if !(1..=5).contains(&replicas) {
            return Err(("cluster.replicas", format!("{replicas} must be between 1 and 5")));
        }
        let ttl = f.lease_ttl_ms.unwrap_or(1_500);
        if !(300..=60_000).contains(&ttl) {
            return Err(("cluster.lease_ttl_ms", format!("{ttl} must be between 300 and 60000")));
        }
        Ok(ClusterConfig {
            nats_url,
            node_id,
            lease_bucket: bucket("cluster.lease_bucket", f.lease_bucket, "lantern_lease")?,
            presence_bucket: bucket("cluster.presence_bucket", f.presence_bucket, "lantern_presence")?,
            storage_bucket: bucket("cluster.storage_bucket", f.storage_bucket, "lantern_storage")?,
            replicas,
            lease_ttl: Duration::from_millis(ttl),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, Invalid> {
        ClusterConfig::from_file(toml::from_str(text).unwrap())
    }

    #[test]
    fn defaults_need_only_a_node_id() {
        let c = parse("node_id = 'a-1'").unwrap();
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(c.lease_bucket, "lantern_lease");
        assert_eq!(c.presence_bucket, "lantern_presence");
        assert_eq!(c.storage_bucket, "lantern_storage");
        assert_eq!(c.replicas, 1);
        assert_eq!(c.lease_ttl, Duration::from_millis(1500));
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(parse("").unwrap_err().0, "cluster.node_id");
        assert_eq!(parse("node_id = 'a b'").unwrap_err().0, "cluster.node_id");
        assert_eq!(parse("node_id = 'a'\nreplicas = 0").unwrap_err(), ("cluster.replicas", "0 must be between 1 and 5".into()));
        assert_eq!(parse("node_id = 'a'\nlease_ttl_ms = 10").unwrap_err().0, "cluster.lease_ttl_ms");
        assert_eq!(parse("node_id = 'a'\nlease_bucket = 'a.b'").unwrap_err().0, "cluster.lease_bucket");
        assert!(toml::from_str::<FileCluster>("nats = 'x'").is_err());
    }
}
