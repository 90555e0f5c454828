//! Starting and stopping the whole server: shards, storage writers, HTTP listeners, ingest.

use crate::config::Config;
use crate::ingest::Ingest;
use crate::presence::ShardState;
use crate::runtime::{mailbox, MailboxReceiver, MailboxSender, ShardContext, ShardMsg};
use crate::storage::writer::{self, WriterHandle, WriterThread};
use crate::storage::kv::KvShard;
use crate::storage::token::TokenCipher;
use crate::storage::{self, repartition, StorageError};
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("shard {shard} cannot listen on {addr}: {message}")]
    Bind { shard: usize, addr: SocketAddr, message: String },
    #[error("cannot start shard {shard}: {message}")]
    Executor { shard: usize, message: String },
    #[error("cannot start the gateway thread: {0}")]
    Ingest(std::io::Error),
    #[error("invalid setting `KV_TOKEN_ENCRYPTION_SECRET`: {0}")]
    Secret(#[from] crate::storage::token::SecretError),
}

/// A running server. Dropping it shuts it down gracefully.
pub struct Server {
    port: u16,
    mailboxes: Vec<MailboxSender<ShardMsg>>,
    executors: Vec<glommio::ExecutorJoinHandle<()>>,
    writers: Vec<WriterThread>,
    ingest: Option<Ingest>,
    drained: std::sync::mpsc::Receiver<()>,
}

struct ShardSeed {
    index: usize,
    config: Arc<Config>,
    rx: MailboxReceiver<ShardMsg>,
    peers: Vec<MailboxSender<ShardMsg>>,
    writer: WriterHandle,
    last_seen: HashMap<crate::discord::Snowflake, i64>,
    kv: KvShard,
    storage_json: HashMap<crate::discord::Snowflake, Vec<u8>>,
    cipher: Arc<TokenCipher>,
    addr: SocketAddr,
    drained: std::sync::mpsc::Sender<()>,
}

impl Server {
    /// Opens storage, starts every shard listening, then connects to the gateway. Returns once
    /// the HTTP port accepts connections (the member list may still be loading: see `/health`).
    pub fn start(config: Config) -> Result<Server, StartError> {
        let config = Arc::new(config);
        let n = config.server.shards;
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| mailbox::<ShardMsg>()).unzip();
        let (drained_tx, drained) = std::sync::mpsc::channel();
        let cipher = Arc::new(TokenCipher::from_hex(config.kv_secret.expose())?);
        let dir = &config.storage.dir;
        // Before any shard runs: rows written under another shard count move to their owner.
        if let Some(r) = repartition::repartition(dir, n)? {
            let from = r.from.map(|f| f.to_string()).unwrap_or_else(|| "an unknown number of".into());
            tracing::info!(dir = %dir.display(), from = %from, to = r.to, moved_rows = r.moved, removed_files = r.removed_files,
                "repartitioned storage from {from} to {} shards", r.to);
        }
        let mut writers = Vec::with_capacity(n);
        let mut seeds = Vec::with_capacity(n);
        let (mut users_with_storage, mut unreadable_tokens) = (0, 0);
        for (index, rx) in receivers.into_iter().enumerate() {
            let db = Arc::new(storage::open(dir, index)?);
            repartition::mark(&db, n)?;
            let loaded = storage::load(&db)?;
            let (kv, unreadable) = KvShard::from_loaded(loaded.kv, loaded.tokens, &cipher);
            users_with_storage += kv.len();
            unreadable_tokens += unreadable;
            let storage_json = kv.storage_jsons();
            let (handle, thread) = writer::start(index, db)?;
            writers.push(thread);
            seeds.push(ShardSeed {
                index,
                config: config.clone(),
                rx,
                peers: senders.clone(),
                writer: handle,
                last_seen: loaded.last_seen,
                kv,
                storage_json,
                cipher: cipher.clone(),
                addr: SocketAddr::new(config.server.host, config.server.port),
                drained: drained_tx.clone(),
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
                .spawn(move || run_shard(seed, bound_tx))
                .map_err(|e| StartError::Executor { shard: index, message: e.to_string() })?;
            executors.push(handle);
            match bound_rx.recv() {
                Ok(Ok(p)) => port = p,
                Ok(Err(message)) => {
                    let addr = SocketAddr::new(config.server.host, port);
                    stop_all(&senders, executors, writers, &drained);
                    return Err(StartError::Bind { shard: index, addr, message });
                }
                Err(_) => {
                    stop_all(&senders, executors, writers, &drained);
                    return Err(StartError::Executor { shard: index, message: "exited during start-up".into() });
                }
            }
        }
        tracing::info!(port, shards = n, "listening");
        let ingest = Ingest::start(config.clone(), senders.clone()).map_err(StartError::Ingest)?;
        Ok(Server { port, mailboxes: senders, executors, writers, ingest: Some(ingest), drained })
    }

    /// Replaces user `id`'s key-value map (a JSON object, e.g. `{"key":"value"}`) in its owner
    /// shard's memory: the user object's `storage` changes and WebSocket subscribers get
    /// STORAGE_UPDATE. Nothing is persisted — durable writes go through the KV store, which calls
    /// [`crate::runtime::ShardContext::set_storage_json`] on the owner after each commit. This
    /// entry drives the fan-out directly, for tests and load generation.
    pub fn set_storage_json(&self, id: crate::discord::Snowflake, storage_json: Vec<u8>) {
        let owner = crate::runtime::shard_of(id, self.mailboxes.len());
        let _ = self.mailboxes[owner].send(ShardMsg::SetStorage { id, storage_json });
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
        if let Some(ingest) = self.ingest.take() {
            ingest.stop();
        }
        stop_all(&self.mailboxes, std::mem::take(&mut self.executors), std::mem::take(&mut self.writers), &self.drained);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two phases: every shard stops accepting and drains while the mailboxes still answer each
/// other's asks; once all have drained (or exited), the mailbox loops stop.
fn stop_all(
    mailboxes: &[MailboxSender<ShardMsg>],
    executors: Vec<glommio::ExecutorJoinHandle<()>>,
    writers: Vec<WriterThread>,
    drained: &std::sync::mpsc::Receiver<()>,
) {
    let live: Vec<_> = mailboxes.iter().filter(|m| m.send(ShardMsg::Shutdown).is_ok()).collect();
    for _ in 0..executors.len().min(live.len()) {
        if drained.recv_timeout(std::time::Duration::from_secs(30)).is_err() {
            break;
        }
    }
    for m in mailboxes {
        let _ = m.send(ShardMsg::Exit);
    }
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
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let card = crate::card::ShardCard::new(seed.index, &seed.config.card);
    let ctx = Rc::new(ShardContext {
        index: seed.index,
        config: seed.config,
        state: RefCell::new(ShardState::with_last_seen(seed.last_seen).with_storage(seed.storage_json)),
        peers: seed.peers,
        gateway: Cell::new(Default::default()),
        writer: seed.writer,
        shutdown,
        socket: Default::default(),
        ips: Default::default(),
        kv: RefCell::new(seed.kv),
        cipher: seed.cipher,
        card,
    });
    let mailbox = glommio::spawn_local(ctx.clone().run_mailbox(seed.rx));
    let _ = bound.send(Ok(port));
    crate::http::serve(ctx.clone(), listener).await;
    let _ = seed.drained.send(());
    mailbox.await;
}
