//! Starting and stopping the whole server: shards, storage writers, HTTP listeners, ingest.

use crate::config::Config;
use crate::ingest::Ingest;
use crate::presence::{Presence, PrivacySettings, ShardState};
use crate::runtime::{run_mailbox, Envelope, MailboxReceiver, Peers};
use crate::shard::{Services, Shard};
use crate::storage::kv::KvShard;
use crate::storage::service::Storage;
use crate::storage::token::TokenCipher;
use crate::storage::writer::{self, WriterThread};
use crate::storage::{self, repartition, StorageError};
use glommio::{LocalExecutorBuilder, Placement};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

/// The depth of each shard's io_uring rings. Every idle socket keeps a readability poll armed in
/// the ring, and the kernel finds a poll to cancel in a hash table whose size follows the ring's
/// completion queue (8 buckets at glommio's default depth of 128, 256 from a depth of 4,096 on):
/// at the default, each of the reactor's cancels walked a chain of about a thousand polls per
/// 10,000 sockets.
const RING_DEPTH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("shard {shard} cannot listen on {addr}: {message}")]
    Bind { shard: usize, addr: SocketAddr, message: String },
    #[error("cannot start shard {shard}: {message}")]
    Executor { shard: usize, message: String },
    #[error("cannot open the control socket {path}: {source}")]
    Control { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot start the gateway thread: {0}")]
    Ingest(std::io::Error),
    #[error("invalid setting `KV_TOKEN_ENCRYPTION_SECRET`: {0}")]
    Secret(#[from] crate::storage::token::SecretError),
}

/// A running server. Dropping it shuts it down gracefully.
pub struct Server {
    port: u16,
    peers: Peers<Shard>,
    executors: Vec<glommio::ExecutorJoinHandle<()>>,
    writers: Vec<WriterThread>,
    ingest: Option<Ingest>,
    cluster: Option<crate::cluster::Cluster>,
    drained: std::sync::mpsc::Receiver<()>,
    control: Option<crate::control::Control>,
}

/// What a shard's thread needs to build its services. Everything in it is `Send`; the
/// services themselves are made on the shard's own thread.
struct ShardSeed {
    index: usize,
    config: Arc<Config>,
    rx: MailboxReceiver<Envelope<Shard>>,
    peers: Peers<Shard>,
    writer: writer::WriterHandle,
    state: ShardState,
    kv: KvShard,
    cipher: Arc<TokenCipher>,
    addr: SocketAddr,
    drained: std::sync::mpsc::Sender<()>,
    gateway_stats: Arc<crate::metrics::GatewayStats>,
    cluster: Option<Arc<crate::cluster::Status>>,
    replicate: Option<crate::runtime::MailboxSender<crate::cluster::replication::Replica>>,
    remote: Option<crate::storage::remote::RemoteStore>,
}

/// The gateway as the cluster's leader runs it: the ingest thread, started on taking the
/// lease and stopped (connection closed) before giving it up.
struct LeaderGateway {
    config: Arc<Config>,
    peers: Peers<Shard>,
    stats: Arc<crate::metrics::GatewayStats>,
    /// The session to resume on start, kept current while the gateway runs.
    session: crate::cluster::session::SessionCell,
    ingest: Option<Ingest>,
}

impl crate::cluster::Gateway for LeaderGateway {
    fn start(&mut self) {
        if self.ingest.is_none() {
            match Ingest::start_in_cluster(self.config.clone(), self.peers.clone(), self.stats.clone(), Some(self.session.clone())) {
                Ok(i) => self.ingest = Some(i),
                Err(e) => tracing::error!(error = %e, "cannot start the gateway thread"),
            }
        }
    }

    fn stop(&mut self) {
        if let Some(i) = self.ingest.take() {
            i.stop();
        }
    }
}

impl Server {
    /// Opens storage, starts every shard listening, then connects to the gateway. Returns once
    /// the HTTP port accepts connections (the member list may still be loading: see `/health`).
    pub fn start(config: Config) -> Result<Server, StartError> {
        let config = Arc::new(config);
        let n = config.server.shards;
        let (peers, receivers) = Peers::<Shard>::new(n, config.server.mailbox_capacity);
        let (drained_tx, drained) = std::sync::mpsc::channel();
        let gateway_stats = Arc::new(crate::metrics::GatewayStats::default());
        let cipher = Arc::new(TokenCipher::from_hex(config.kv_secret.expose())?);
        let dir = &config.storage.dir;
        // Before any shard runs: rows written under another shard count move to their owner.
        if let Some(r) = repartition::repartition(dir, n)? {
            let from = r.from.map(|f| f.to_string()).unwrap_or_else(|| "an unknown number of".into());
            tracing::info!(dir = %dir.display(), from = %from, to = r.to, moved_rows = r.moved, removed_files = r.removed_files,
                "repartitioned storage from {from} to {} shards", r.to);
        }
        let cluster_status = config.cluster.as_ref().map(|c| Arc::new(crate::cluster::Status::new(&c.node_id)));
        let (replicate, replicas) = match &config.cluster {
            Some(_) => {
                let (tx, rx) = crate::runtime::mailbox(config.server.mailbox_capacity);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        // Cluster mode: pairs, tokens and privacy settings live in the cluster's store, and
        // reach the shards from there; the shard files keep last-seen times only.
        let (remote, remote_requests) = match &config.cluster {
            Some(_) => {
                let (store, requests) = crate::storage::remote::RemoteStore::channel(config.server.mailbox_capacity);
                (Some(store), Some(requests))
            }
            None => (None, None),
        };
        let mut carried_over = Vec::new();
        let mut writers = Vec::with_capacity(n);
        let mut dbs = Vec::with_capacity(n);
        let mut seeds = Vec::with_capacity(n);
        let (mut users_with_storage, mut unreadable_tokens) = (0, 0);
        for (index, rx) in receivers.into_iter().enumerate() {
            let db = Arc::new(storage::open(dir, index)?);
            repartition::mark(&db, n)?;
            let mut loaded = storage::load(&db)?;
            if remote.is_some() {
                // What the file holds from before the cluster goes to the cluster's store where
                // it has nothing for the user yet; the shards then read it back from there.
                carried_over.extend(crate::storage::remote::Seed::from_files(
                    std::mem::take(&mut loaded.kv),
                    std::mem::take(&mut loaded.tokens),
                    std::mem::take(&mut loaded.privacy),
                ));
            }
            let (kv, unreadable) = KvShard::from_loaded(loaded.kv, loaded.tokens, &cipher, config.storage.max_user_bytes);
            users_with_storage += kv.len();
            unreadable_tokens += unreadable;
            let privacy = loaded
                .privacy
                .into_iter()
                .map(|(id, json)| (id, PrivacySettings::from_stored(id, &json)))
                .collect();
            let state = ShardState::with_last_seen(loaded.last_seen).with_storage(kv.storage_jsons()).with_privacy(privacy);
            dbs.push(db.clone());
            let (handle, thread) = writer::start(index, db)?;
            writers.push(thread);
            seeds.push(ShardSeed {
                index,
                config: config.clone(),
                rx,
                peers: peers.clone(),
                writer: handle,
                state,
                kv,
                cipher: cipher.clone(),
                addr: SocketAddr::new(config.server.host, config.server.port),
                drained: drained_tx.clone(),
                gateway_stats: gateway_stats.clone(),
                cluster: cluster_status.clone(),
                replicate: replicate.clone(),
                remote: remote.clone(),
            });
        }
        tracing::info!(shards = n, dir = %dir.display(), users_with_storage, "storage opened");
        if unreadable_tokens > 0 {
            tracing::warn!(count = unreadable_tokens,
                "storage tokens cannot be decrypted with this KV_TOKEN_ENCRYPTION_SECRET; their owners must create new tokens");
        }

        // Shard 0 binds first so that a configured port of 0 becomes one concrete port that
        // every other shard then shares through SO_REUSEPORT.
        let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
        let mut executors = Vec::with_capacity(n);
        let mut port = config.server.port;
        for mut seed in seeds {
            seed.addr.set_port(port);
            let index = seed.index;
            let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Result<u16, String>>();
            let handle = LocalExecutorBuilder::new(Placement::Fixed(index % cores))
                .name(&format!("lantern-shard-{index}"))
                .ring_depth(RING_DEPTH)
                .spawn(move || run_shard(seed, bound_tx))
                .map_err(|e| StartError::Executor { shard: index, message: e.to_string() })?;
            executors.push(handle);
            match bound_rx.recv() {
                Ok(Ok(p)) => port = p,
                Ok(Err(message)) => {
                    let addr = SocketAddr::new(config.server.host, port);
                    stop_all(&peers, executors, writers, &drained);
                    return Err(StartError::Bind { shard: index, addr, message });
                }
                Err(_) => {
                    stop_all(&peers, executors, writers, &drained);
                    return Err(StartError::Executor { shard: index, message: "exited during start-up".into() });
                }
            }
        }
        tracing::info!(port, shards = n, "listening");
        let control = match crate::control::start(&config, dbs) {
            Ok(c) => c,
            Err(e) => {
                stop_all(&peers, executors, writers, &drained);
                return Err(StartError::Control { path: config.backup.socket.clone(), source: e });
            }
        };
        drop(replicate);
        drop(remote);
        let (ingest, cluster) = match (&config.cluster, cluster_status, replicas, remote_requests) {
            // Cluster mode: the gateway runs only while this node holds the lease.
            (Some(cluster), Some(status), Some(replicas), Some(storage)) => {
                let session = crate::cluster::session::SessionCell::default();
                let links = crate::cluster::client::Links {
                    replicas,
                    apply: replicated_into(peers.clone()),
                    storage,
                    seeds: carried_over,
                    apply_stored: stored_into(peers.clone()),
                    applied: replicas_applied(peers.clone()),
                    session: session.clone(),
                };
                let gateway = LeaderGateway { config: config.clone(), peers: peers.clone(), stats: gateway_stats, session, ingest: None };
                let cluster = crate::cluster::Cluster::start(cluster.clone(), status, Box::new(gateway), links).map_err(StartError::Ingest)?;
                (None, Some(cluster))
            }
            _ => (Some(Ingest::start(config.clone(), peers.clone(), gateway_stats).map_err(StartError::Ingest)?), None),
        };
        Ok(Server { port, peers, executors, writers, ingest, cluster, drained, control: Some(control) })
    }

    /// Whether this node holds the cluster's gateway lease (never without `[cluster]`).
    pub fn is_leader(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.status().snapshot().role == crate::cluster::Role::Leader)
    }

    /// The HTTP/WebSocket port every shard listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub fn run_until_signal(self) -> std::io::Result<()> {
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        if let Some(sig) = signals.forever().next() {
            tracing::info!(signal = sig, "shutting down");
        }
        self.shutdown();
        Ok(())
    }

    /// Stops ingest, lets every shard finish its in-flight requests, then flushes storage.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(mut control) = self.control.take() {
            control.stop();
        }
        if let Some(ingest) = self.ingest.take() {
            ingest.stop();
        }
        if let Some(cluster) = self.cluster.take() {
            cluster.stop();
        }
        stop_all(&self.peers, std::mem::take(&mut self.executors), std::mem::take(&mut self.writers), &self.drained);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Cluster mode: a replicated user state goes to its owner shard as an ingest event; a removed
/// key is a member removal.
fn replicated_into(peers: Peers<Shard>) -> crate::cluster::replication::Apply {
    Box::new(move |user, state| {
        let peers = peers.clone();
        Box::pin(async move {
            let event = match state {
                None => crate::presence::IngestEvent::MemberRemove(crate::discord::Snowflake(user)),
                Some(bytes) => match serde_json::from_slice::<crate::presence::events::ReplicatedState>(&bytes) {
                    Ok(state) => state.into_event(),
                    Err(e) => {
                        tracing::warn!(user, error = %e, "skipping an unreadable replicated presence");
                        return;
                    }
                },
            };
            let _ = peers.submit(peers.owner_of(user), move |s| s.apply_replicated(event)).await;
        })
    })
}

/// Cluster mode: a document of the cluster's store goes to its user's owner shard.
fn stored_into(peers: Peers<Shard>) -> crate::cluster::storage::ApplyStored {
    Box::new(move |entry| {
        let peers = peers.clone();
        Box::pin(async move {
            let _ = peers.submit(peers.owner_of(entry.user.0), move |s| s.apply_stored(entry)).await;
        })
    })
}

/// Cluster mode: answers once every shard ran what was queued before (each mailbox runs in
/// order), so every replica handed over before is applied.
fn replicas_applied(peers: Peers<Shard>) -> crate::cluster::replication::Applied {
    Box::new(move || {
        let peers = peers.clone();
        Box::pin(async move {
            for shard in 0..peers.count() {
                let _ = peers.ask(shard, |_| ()).await;
            }
        })
    })
}

/// Two phases: every shard stops accepting and drains while the mailboxes still answer each
/// other's asks; once all have drained (or exited), the mailbox loops stop.
fn stop_all(peers: &Peers<Shard>, executors: Vec<glommio::ExecutorJoinHandle<()>>, writers: Vec<WriterThread>, drained: &std::sync::mpsc::Receiver<()>) {
    let live = (0..peers.count())
        .filter(|&shard| futures_lite::future::block_on(peers.submit(shard, |s: &Rc<Shard>| s.begin_shutdown())).is_ok())
        .count();
    for _ in 0..executors.len().min(live) {
        if drained.recv_timeout(std::time::Duration::from_secs(30)).is_err() {
            break;
        }
    }
    peers.stop_all();
    for e in executors {
        let _ = e.join();
    }
    // The shards are gone, so every writer handle is dropped: this waits for the last commits.
    for w in writers {
        w.close();
    }
}

async fn run_shard(seed: ShardSeed, bound: std::sync::mpsc::Sender<Result<u16, String>>) {
    let listener = match glommio::net::TcpListener::bind(seed.addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = bound.send(Err(e.to_string()));
            let _ = seed.drained.send(());
            return;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(seed.addr.port());
    let services = Services { presence: Presence::new(seed.state), storage: Storage::new(seed.kv, seed.writer, seed.cipher).with_remote(seed.remote) };
    let shard = Rc::new(Shard::new(seed.index, seed.peers, seed.config, services).with_gateway_stats(seed.gateway_stats).with_cluster(seed.cluster).with_replication(seed.replicate));
    let mailbox = glommio::spawn_local(run_mailbox(shard.clone(), seed.rx));
    let _ = bound.send(Ok(port));
    crate::http::serve(shard.clone(), listener).await;
    let _ = seed.drained.send(());
    mailbox.await;
}
