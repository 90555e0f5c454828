//! The cluster thread: one NATS connection on a tokio current-thread runtime, running the
//! lease loop until the node stops.

use crate::config::ClusterConfig;
use super::{lease, Gateway, Status};
use std::sync::Arc;
use tokio::sync::watch;

/// The running cluster thread. Dropping it gives up leadership (gateway first) and stops.
pub struct Cluster {
    status: Arc<Status>,
    thread: crate::runtime::thread::StoppableThread,
}

impl Cluster {
    /// Starts the thread, which reports in `status` (see [`Status::new`]). It connects in the background (a node may start before NATS does)
    /// and starts `gateway` whenever it holds the lease.
    pub fn start(config: ClusterConfig, status: Arc<Status>, gateway: Box<dyn Gateway>, links: Links) -> std::io::Result<Cluster> {
        let shared = status.clone();
        let thread = crate::runtime::thread::StoppableThread::spawn("lantern-cluster", move |stop| run(config, gateway, links, shared, stop))?;
        Ok(Cluster { status, thread })
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Stops the gateway if this node leads, releases the lease and waits for the thread.
    pub fn stop(self) {
        self.thread.stop();
    }
}

/// How the cluster thread reaches the shards and the gateway: the states the shards publish,
/// how to apply what the other nodes replicate, and the gateway's session (see
/// [`super::session`]).
pub struct Links {
    pub replicas: crate::runtime::MailboxReceiver<super::replication::Replica>,
    pub apply: super::replication::Apply,
    /// The shards' requests to the cluster's store of pairs, tokens and privacy settings.
    pub storage: crate::storage::remote::RemoteRequests,
    /// Documents the node's shard files held from before the cluster, written where the store
    /// has none.
    pub seeds: Vec<crate::storage::remote::Seed>,
    /// Hands each document of that store to its owner shard.
    pub apply_stored: super::storage::ApplyStored,
    pub applied: super::replication::Applied,
    pub session: super::session::SessionCell,
}

async fn run(config: ClusterConfig, mut gateway: Box<dyn Gateway>, links: Links, status: Arc<Status>, mut stop: watch::Receiver<bool>) {
    let options = async_nats::ConnectOptions::new()
        .name(format!("lantern-{}", config.node_id))
        .retry_on_initial_connect()
        .connection_timeout(config.lease_ttl)
        // Reconnect quickly: a node away from NATS refuses writes until it is back.
        .reconnect_delay_callback(|attempts| std::time::Duration::from_millis((100 * attempts as u64).min(1_000)));
    tracing::info!(url = %config.nats_url, node = %config.node_id, "connecting to NATS");
    // Several servers, comma-separated: the client picks one and moves on when it fails.
    let servers: Result<Vec<async_nats::ServerAddr>, async_nats::Error> =
        config.nats_url.split(',').map(|url| url.trim().parse::<async_nats::ServerAddr>().map_err(Into::into)).collect();
    let client = match servers {
        Ok(servers) => tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            c = options.connect(servers) => c.map_err(async_nats::Error::from),
        },
        Err(e) => Err(e),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, url = %config.nats_url, "cannot use the NATS address; this node never leads");
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
    };
    let (publish_stop, follow_stop, serve_stop, stored_stop) = (stop.clone(), stop.clone(), stop.clone(), stop.clone());
    tokio::join!(
        lease::run(&config, &client, gateway.as_mut(), &links.session, &status, &mut stop),
        super::replication::publish(&config, &client, links.replicas, &links.session, publish_stop),
        super::replication::follow(&config, &client, links.apply, links.applied, &status, follow_stop),
        super::storage::serve(&config, &client, links.storage, links.seeds, serve_stop),
        super::storage::follow(&config, &client, links.apply_stored, stored_stop),
    );
    // Deletes and last puts go out before the connection drops (briefly: NATS may be away).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), client.flush()).await;
}

/// A KV bucket as this node needs it. Opened through its stream rather than
/// `create_key_value`, whose account query does not parse nats-server 2.9's answer; the stream
/// is the one a KV bucket is (`KV_<name>` on `$KV.<name>.>`, rollups, direct gets).
pub struct Bucket<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// Values kept per key.
    pub history: i64,
    /// How long a value lives (zero: for ever).
    pub max_age: std::time::Duration,
    /// Memory rather than file storage.
    pub memory: bool,
    pub replicas: usize,
}

impl Bucket<'_> {
    pub async fn open(&self, js: &async_nats::jetstream::Context) -> Result<async_nats::jetstream::kv::Store, async_nats::Error> {
        use async_nats::jetstream::stream;
        let config = stream::Config {
            name: format!("KV_{}", self.name),
            description: Some(self.description.to_owned()),
            subjects: vec![format!("$KV.{}.>", self.name)],
            max_messages_per_subject: self.history,
            max_age: self.max_age,
            // Duplicate detection may not outlast the values themselves.
            duplicate_window: if self.max_age.is_zero() { std::time::Duration::from_secs(120) } else { self.max_age.min(std::time::Duration::from_secs(120)) },
            storage: if self.memory { stream::StorageType::Memory } else { stream::StorageType::File },
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            num_replicas: self.replicas.max(1),
            ..Default::default()
        };
        js.get_or_create_stream(config).await?;
        Ok(js.get_key_value(self.name).await?)
    }
}

/// How long setting up a watch may take before it is asked for again.
const WATCH_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// Every entry of a bucket in revision order, for as long as the node runs: the current value
/// of every key first, then each change. When the watch fails or ends (NATS away, the bucket
/// gone) it opens the bucket again and goes on from the revision after the last one read.
pub struct Follow<'a> {
    js: async_nats::jetstream::Context,
    bucket: Bucket<'a>,
    /// Waited between attempts, and the bound on each.
    retry: std::time::Duration,
    from: Option<u64>,
    entries: Option<async_nats::jetstream::kv::Watch>,
}

impl<'a> Follow<'a> {
    pub fn new(client: &async_nats::Client, bucket: Bucket<'a>, retry: std::time::Duration) -> Follow<'a> {
        Follow { js: async_nats::jetstream::new(client.clone()), bucket, retry, from: None, entries: None }
    }

    /// Whether a watch is running (false before the first entry and after a failure).
    pub fn is_watching(&self) -> bool {
        self.entries.is_some()
    }

    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.js
    }

    /// The next entry; `None` once the node is told to stop.
    pub async fn next(&mut self, stop: &mut watch::Receiver<bool>) -> Option<async_nats::jetstream::kv::Entry> {
        use futures_util::StreamExt as _;
        loop {
            let Some(entries) = &mut self.entries else {
                self.entries = self.start().await;
                if self.entries.is_none() && lease::stopped_within(stop, self.retry / 3).await {
                    return None;
                }
                continue;
            };
            let entry = tokio::select! {
                _ = stop.wait_for(|s| *s) => return None,
                e = entries.next() => e,
            };
            if let Some(Ok(entry)) = entry {
                self.from = Some(entry.revision);
                return Some(entry);
            }
            tracing::warn!(bucket = self.bucket.name, "the watch ended; watching again from the last revision read");
            self.entries = None;
            if lease::stopped_within(stop, self.retry / 3).await {
                return None;
            }
        }
    }

    async fn start(&self) -> Option<async_nats::jetstream::kv::Watch> {
        let store = tokio::time::timeout(self.retry, self.bucket.open(&self.js)).await.ok()?.ok()?;
        let watch = async {
            match self.from {
                None => store.watch_with_history(">").await,
                Some(revision) => store.watch_all_from_revision(revision + 1).await,
            }
        };
        // A watch is an ephemeral consumer, and nats-server before 2.12 may place one on a
        // replica that is down: that request is never answered. Asking again soon picks a
        // peer afresh, where the client's own 10 s request timeout would leave the node
        // unsynced for as long.
        match tokio::time::timeout(self.retry.max(WATCH_BOUND), watch).await {
            Ok(Ok(watch)) => Some(watch),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, bucket = self.bucket.name, "cannot watch the bucket yet; retrying");
                None
            }
            Err(_) => {
                tracing::warn!(bucket = self.bucket.name, "the watch was not set up in time; asking again");
                None
            }
        }
    }
}
