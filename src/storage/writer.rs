//! The group-commit writer thread of one shard's database.

use super::{StorageError, KV, LAST_SEEN, PRIVACY, TOKENS};
use crate::discord::Snowflake;
use crossbeam_channel::{Receiver, Sender};
use redb::{Database, Durability, ReadableTable};
use crate::metrics::{CommitStats, Histogram, GROUP_BUCKETS, LATENCY_BUCKETS};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

/// One durable mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    SetLastSeen(Snowflake, i64),
    ClearLastSeen(Snowflake),
    /// Creates or replaces one key-value pair.
    PutKv(Snowflake, String, String),
    /// Removes one key-value pair.
    DeleteKv(Snowflake, String),
    /// Removes every key-value pair of the user (the token stays).
    ClearKv(Snowflake),
    /// Stores the user's encrypted token, replacing any previous one.
    SetToken(Snowflake, Vec<u8>),
    /// Removes the user's pairs and token (the member left the guild).
    DeleteStorage(Snowflake),
    /// Stores the user's privacy settings (JSON), replacing any previous ones.
    SetPrivacy(Snowflake, String),
    /// Removes the user's privacy settings (back to the defaults).
    ClearPrivacy(Snowflake),
}

struct Batch {
    ops: Vec<WriteOp>,
    ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// The sending side of a shard's writer, held by the shard. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: Sender<Batch>,
    stats: Arc<WriterStats>,
}

/// Counters of one writer thread, for `/metrics`: only that thread writes them (relaxed
/// atomics, one writer per shard), its shard reads them at scrape time.
#[derive(Debug, Default)]
pub struct WriterStats {
    commits: AtomicU64,
    failures: AtomicU64,
    /// Batches per commit, by [`GROUP_BUCKETS`] (a last bucket for more).
    group: [AtomicU64; GROUP_BUCKETS.len() + 1],
    batches: AtomicU64,
    /// Commit time, by [`LATENCY_BUCKETS`] (a last `+Inf` bucket), and its sum in microseconds.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_micros: AtomicU64,
}

impl WriterStats {
    fn record(&self, batches: usize, took: std::time::Duration, ok: bool) {
        let counter = if ok { &self.commits } else { &self.failures };
        counter.fetch_add(1, Relaxed);
        let g = GROUP_BUCKETS.iter().position(|&b| batches as f64 <= b).unwrap_or(GROUP_BUCKETS.len());
        self.group[g].fetch_add(1, Relaxed);
        self.batches.fetch_add(batches as u64, Relaxed);
        let s = took.as_secs_f64();
        let l = LATENCY_BUCKETS.iter().position(|&b| s <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.latency[l].fetch_add(1, Relaxed);
        self.latency_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// The counters as plain numbers.
    pub fn snapshot(&self) -> CommitStats {
        let load = |a: &AtomicU64| a.load(Relaxed);
        let commits = load(&self.commits) + load(&self.failures);
        CommitStats {
            commits: load(&self.commits),
            failures: load(&self.failures),
            group: std::array::from_fn(|i| load(&self.group[i])),
            batches: load(&self.batches),
            latency: Histogram {
                buckets: std::array::from_fn(|i| load(&self.latency[i])),
                sum: load(&self.latency_micros) as f64 / 1e6,
                count: commits,
            },
        }
    }
}

/// The writer thread itself, held by whoever joins the shard. [`WriterThread::close`] waits
/// until every write queued by every handle is durable.
pub struct WriterThread {
    thread: Option<JoinHandle<()>>,
}

/// Most batches merged into one transaction.
const MAX_GROUP: usize = 1024;

/// Starts the writer thread of shard `index`.
pub fn start(index: usize, db: Arc<Database>) -> Result<(WriterHandle, WriterThread), StorageError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let stats = Arc::new(WriterStats::default());
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name(format!("lantern-writer-{index}"))
        .spawn(move || run(db, rx, &thread_stats))
        .map_err(StorageError::redb)?;
    Ok((WriterHandle { tx, stats }, WriterThread { thread: Some(thread) }))
}

impl WriterHandle {
    /// The writer thread's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Queues writes without waiting for them (e.g. last seen: nobody waits on it).
    pub fn submit(&self, ops: Vec<WriteOp>) {
        if !ops.is_empty() {
            let _ = self.tx.send(Batch { ops, ack: None });
        }
    }

    /// Queues writes and resolves once they are durable. Never blocks the calling thread.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Batch { ops, ack: Some(ack) }).map_err(|_| "storage writer stopped".to_string())?;
        done.await.map_err(|_| "storage writer stopped".to_string())?
    }
}

impl WriterThread {
    /// Blocks until every handle is dropped and everything queued is committed.
    pub fn close(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(db: Arc<Database>, rx: Receiver<Batch>, stats: &WriterStats) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(b) => group.push(b),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = commit(&db, &group).map_err(|e| {
            tracing::error!(error = %e, "storage commit failed");
            e.to_string()
        });
        stats.record(group.len(), started.elapsed(), result.is_ok());
        for b in group {
            if let Some(ack) = b.ack {
                let _ = ack.send(result.clone());
            }
        }
    }
}

fn commit(db: &Database, group: &[Batch]) -> Result<(), StorageError> {
    let mut tx = db.begin_write().map_err(StorageError::redb)?;
    tx.set_durability(Durability::Immediate).map_err(StorageError::redb)?;
    {
        let mut last_seen = tx.open_table(LAST_SEEN).map_err(StorageError::redb)?;
        let mut kv = tx.open_table(KV).map_err(StorageError::redb)?;
        let mut tokens = tx.open_table(TOKENS).map_err(StorageError::redb)?;
        let mut privacy = tx.open_table(PRIVACY).map_err(StorageError::redb)?;
        for op in group.iter().flat_map(|b| &b.ops) {
            match op {
                WriteOp::SetLastSeen(id, ms) => {
                    last_seen.insert(id.0, *ms).map_err(StorageError::redb)?;
                }
                WriteOp::ClearLastSeen(id) => {
                    last_seen.remove(id.0).map_err(StorageError::redb)?;
                }
                WriteOp::PutKv(id, key, value) => {
                    kv.insert((id.0, key.as_str()), value.as_str()).map_err(StorageError::redb)?;
                }
                WriteOp::DeleteKv(id, key) => {
                    kv.remove((id.0, key.as_str())).map_err(StorageError::redb)?;
                }
                WriteOp::ClearKv(id) => clear_user(&mut kv, *id)?,
                WriteOp::SetToken(id, sealed) => {
                    tokens.insert(id.0, sealed.as_slice()).map_err(StorageError::redb)?;
                }
                WriteOp::DeleteStorage(id) => {
                    clear_user(&mut kv, *id)?;
                    tokens.remove(id.0).map_err(StorageError::redb)?;
                }
                WriteOp::SetPrivacy(id, json) => {
                    privacy.insert(id.0, json.as_str()).map_err(StorageError::redb)?;
                }
                WriteOp::ClearPrivacy(id) => {
                    privacy.remove(id.0).map_err(StorageError::redb)?;
                }
            }
        }
    }
    tx.commit().map_err(StorageError::redb)
}

/// Removes every `kv` row of one user (its rows are contiguous: `(id, "")..(id + 1, "")`).
pub(crate) fn clear_user(kv: &mut redb::Table<(u64, &'static str), &'static str>, id: Snowflake) -> Result<(), StorageError> {
    let keys: Vec<String> = {
        let mut keys = Vec::new();
        for row in kv.range((id.0, "")..).map_err(StorageError::redb)? {
            let (k, _) = row.map_err(StorageError::redb)?;
            let (user, key) = k.value();
            if user != id.0 {
                break;
            }
            keys.push(key.to_owned());
        }
        keys
    };
    for key in keys {
        kv.remove((id.0, key.as_str())).map_err(StorageError::redb)?;
    }
    Ok(())
}
