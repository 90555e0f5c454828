//! Durable per-shard state: one redb file per shard (`<dir>/shard-NN.redb`).
//!
//! redb is blocking and a commit fsyncs, so nothing here runs on an executor thread after
//! start-up: each shard has a [`writer`] thread fed by a crossbeam channel, which groups
//! whatever is queued into one transaction (one fsync for many writes) and acknowledges each
//! write through an awaitable oneshot once it is durable.
//!
//! Tables of every shard file (each holds only the users that shard owns):
//!
//! | table | key | value |
//! |---|---|---|
//! | `last_seen` | user id (`u64`) | unix ms of the last transition to offline (`i64`) |
//! | `kv` | (user id, key) (`(u64, &str)`) | value (`&str`) |
//! | `kv_tokens` | user id (`u64`) | the user's storage token, AES-256-GCM encrypted: `iv(16) ‖ ciphertext ‖ tag(16)` |
//! | `privacy` | user id (`u64`) | the user's privacy settings as a JSON object (`&str`); no row = the defaults |
//! | `meta` | name (`&str`) | `u64`; `shards` = the shard count the file was partitioned for |
//!
//! A user has storage once they hold a token (`/storage create token`); the `kv` rows of a user
//! are contiguous, so one range scan reads or clears them. [`repartition`] moves rows between
//! files at start-up when the shard count changed.

pub mod backup;
pub mod kv;
pub mod remote;
pub mod repartition;
pub mod service;
pub mod token;
pub mod writer;

use crate::discord::Snowflake;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// user id → unix ms of the last transition to offline.
pub const LAST_SEEN: TableDefinition<u64, i64> = TableDefinition::new("last_seen");
/// (user id, key) → value.
pub const KV: TableDefinition<(u64, &str), &str> = TableDefinition::new("kv");
/// user id → encrypted token (`iv ‖ ciphertext ‖ tag`).
pub const TOKENS: TableDefinition<u64, &[u8]> = TableDefinition::new("kv_tokens");
/// user id → privacy settings (JSON, opaque to storage).
pub const PRIVACY: TableDefinition<u64, &str> = TableDefinition::new("privacy");
/// name → number (`shards`).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("storage error: {0}")]
    Redb(String),
}

impl StorageError {
    pub fn redb(e: impl std::fmt::Display) -> StorageError {
        StorageError::Redb(e.to_string())
    }
}

/// The file of shard `index`.
pub fn shard_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("shard-{index:02}.redb"))
}

/// Opens (or creates) a shard's database. Called once per shard at start-up.
pub fn open(dir: &Path, index: usize) -> Result<Database, StorageError> {
    std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir { path: dir.to_owned(), source })?;
    let path = shard_path(dir, index);
    let db = Database::builder()
        // redb's default cache is 1 GiB per database; one database per shard needs far less.
        .set_cache_size(16 << 20)
        .create(&path)
        .map_err(|source| StorageError::Open { path: path.clone(), source })?;
    let tx = db.begin_write().map_err(StorageError::redb)?;
    tx.open_table(LAST_SEEN).map_err(StorageError::redb)?;
    tx.open_table(KV).map_err(StorageError::redb)?;
    tx.open_table(TOKENS).map_err(StorageError::redb)?;
    tx.open_table(PRIVACY).map_err(StorageError::redb)?;
    tx.open_table(META).map_err(StorageError::redb)?;
    tx.commit().map_err(StorageError::redb)?;
    Ok(db)
}

/// What one shard file holds, read once at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    pub last_seen: HashMap<Snowflake, i64>,
    pub kv: HashMap<Snowflake, BTreeMap<String, String>>,
    /// Encrypted tokens.
    pub tokens: HashMap<Snowflake, Vec<u8>>,
    /// Privacy settings, as stored (JSON).
    pub privacy: HashMap<Snowflake, String>,
}

/// Reads everything a shard keeps in memory (start-up only, before the shard runs).
pub fn load(db: &Database) -> Result<Loaded, StorageError> {
    let mut out = Loaded { last_seen: load_last_seen(db)?, ..Loaded::default() };
    let rx = db.begin_read().map_err(StorageError::redb)?;
    let kv = rx.open_table(KV).map_err(StorageError::redb)?;
    for row in kv.iter().map_err(StorageError::redb)? {
        let (k, v) = row.map_err(StorageError::redb)?;
        let (user, key) = k.value();
        out.kv.entry(Snowflake(user)).or_default().insert(key.to_owned(), v.value().to_owned());
    }
    let tokens = rx.open_table(TOKENS).map_err(StorageError::redb)?;
    for row in tokens.iter().map_err(StorageError::redb)? {
        let (k, v) = row.map_err(StorageError::redb)?;
        out.tokens.insert(Snowflake(k.value()), v.value().to_vec());
    }
    let privacy = rx.open_table(PRIVACY).map_err(StorageError::redb)?;
    for row in privacy.iter().map_err(StorageError::redb)? {
        let (k, v) = row.map_err(StorageError::redb)?;
        out.privacy.insert(Snowflake(k.value()), v.value().to_owned());
    }
    Ok(out)
}

/// Every privacy row of every shard file in `dir`, as `(file index, user, settings JSON)`
/// (diagnostics and tests; only while no server uses the directory).
pub fn privacy_rows(dir: &Path) -> Result<Vec<(usize, Snowflake, String)>, StorageError> {
    let mut out = Vec::new();
    for (index, path) in repartition::shard_files(dir)? {
        let db = Database::builder().set_cache_size(1 << 20).create(&path).map_err(|source| StorageError::Open { path, source })?;
        let rx = db.begin_read().map_err(StorageError::redb)?;
        let Ok(table) = rx.open_table(PRIVACY) else { continue };
        for row in table.iter().map_err(StorageError::redb)? {
            let (k, v) = row.map_err(StorageError::redb)?;
            out.push((index, Snowflake(k.value()), v.value().to_owned()));
        }
    }
    Ok(out)
}

/// Every KV row of every shard file in `dir`, as `(file index, user, key, value)` (diagnostics
/// and tests; opens the files, so only while no server uses the directory).
pub fn kv_rows(dir: &Path) -> Result<Vec<(usize, Snowflake, String, String)>, StorageError> {
    let mut out = Vec::new();
    for (index, path) in repartition::shard_files(dir)? {
        let db = Database::builder().set_cache_size(1 << 20).create(&path).map_err(|source| StorageError::Open { path, source })?;
        let rx = db.begin_read().map_err(StorageError::redb)?;
        let Ok(kv) = rx.open_table(KV) else { continue };
        for row in kv.iter().map_err(StorageError::redb)? {
            let (k, v) = row.map_err(StorageError::redb)?;
            let (user, key) = k.value();
            out.push((index, Snowflake(user), key.to_owned(), v.value().to_owned()));
        }
    }
    Ok(out)
}

/// Every last-seen row of every shard file in `dir`, as `(file index, user, ms)`.
pub fn last_seen_rows(dir: &Path) -> Result<Vec<(usize, Snowflake, i64)>, StorageError> {
    let mut out = Vec::new();
    for (index, path) in repartition::shard_files(dir)? {
        let db = Database::builder().set_cache_size(1 << 20).create(&path).map_err(|source| StorageError::Open { path, source })?;
        for (id, ms) in load_last_seen(&db).unwrap_or_default() {
            out.push((index, id, ms));
        }
    }
    Ok(out)
}

/// Reads every persisted last-seen time (start-up only).
pub fn load_last_seen(db: &Database) -> Result<HashMap<Snowflake, i64>, StorageError> {
    let rx = db.begin_read().map_err(StorageError::redb)?;
    let table = rx.open_table(LAST_SEEN).map_err(StorageError::redb)?;
    let mut out = HashMap::new();
    for row in table.iter().map_err(StorageError::redb)? {
        let (k, v) = row.map_err(StorageError::redb)?;
        out.insert(Snowflake(k.value()), v.value());
    }
    Ok(out)
}
