//! Durable per-shard state: one redb file per shard (`<dir>/shard-NN.redb`).
//!
//! redb is blocking and a commit fsyncs, so nothing here runs on an executor thread after
//! start-up: each shard has a [`writer::Writer`] thread fed by a crossbeam channel, which groups
//! whatever is queued into one transaction (one fsync for many writes) and acknowledges each
//! write through an awaitable oneshot once it is durable.

pub mod writer;

use crate::discord::Snowflake;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// user id → unix ms of the last transition to offline.
pub const LAST_SEEN: TableDefinition<u64, i64> = TableDefinition::new("last_seen");

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
    tx.commit().map_err(StorageError::redb)?;
    Ok(db)
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
