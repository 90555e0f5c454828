//! Backups of every shard's file while the server runs, and their restore.
//!
//! **Consistency.** A backup first begins one redb read transaction on every shard's database,
//! back to back, before it copies anything. A read transaction is a snapshot of the last
//! committed transaction of that file (redb is MVCC: readers never block the writer, and the
//! writer never changes what an open reader sees). A write is acknowledged only once its
//! group commit is durable, so every write acknowledged before the backup began is in these
//! snapshots; writes that go on during the copy land in the live files only. Each user lives in
//! exactly one shard file, so no operation spans two snapshots.
//!
//! **Archive.** `lantern-<UTC time>.tar.gz`: `lantern-backup/manifest.json`
//! (`{"format":1,"shards":N,"created":"…"}`) and one freshly written redb file per shard,
//! `lantern-backup/shard-NN.redb`, holding the snapshot's rows (every table). It is written as
//! `<name>.partial` and renamed once complete, so a listed archive is always whole.
//!
//! **Restore** unpacks an archive into an empty (or new) data directory, refusing any entry
//! but those above, and optionally repartitions it for another shard count
//! ([`super::repartition`]); a server started on it with a different count repartitions anyway.

use super::{repartition, shard_path, StorageError, KV, LAST_SEEN, META, PRIVACY, TOKENS};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const ROOT: &str = "lantern-backup";
const FORMAT: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io { what, path: path.to_owned(), source }
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub path: PathBuf,
    pub shards: usize,
    pub bytes: u64,
}

/// `YYYY-MM-DDTHH-MM-SSZ` (a file-name-safe UTC time).
fn stamp(ms: i64) -> String {
    crate::time_fmt::iso_ms(ms).chars().take(19).map(|c| if c == ':' { '-' } else { c }).collect::<String>() + "Z"
}

/// Copies every table of one snapshot into a new database file at `path`.
fn copy_snapshot(rx: &ReadTransaction, path: &Path) -> Result<(), StorageError> {
    let out = Database::builder().set_cache_size(4 << 20).create(path).map_err(|source| StorageError::Open { path: path.to_owned(), source })?;
    let tx = out.begin_write().map_err(StorageError::redb)?;
    {
        let mut kv = tx.open_table(KV).map_err(StorageError::redb)?;
        for row in rx.open_table(KV).map_err(StorageError::redb)?.iter().map_err(StorageError::redb)? {
            let (k, v) = row.map_err(StorageError::redb)?;
            kv.insert(k.value(), v.value()).map_err(StorageError::redb)?;
        }
        let mut tokens = tx.open_table(TOKENS).map_err(StorageError::redb)?;
        for row in rx.open_table(TOKENS).map_err(StorageError::redb)?.iter().map_err(StorageError::redb)? {
            let (k, v) = row.map_err(StorageError::redb)?;
            tokens.insert(k.value(), v.value()).map_err(StorageError::redb)?;
        }
        let mut last_seen = tx.open_table(LAST_SEEN).map_err(StorageError::redb)?;
        for row in rx.open_table(LAST_SEEN).map_err(StorageError::redb)?.iter().map_err(StorageError::redb)? {
            let (k, v) = row.map_err(StorageError::redb)?;
            last_seen.insert(k.value(), v.value()).map_err(StorageError::redb)?;
        }
        let mut privacy = tx.open_table(PRIVACY).map_err(StorageError::redb)?;
        for row in rx.open_table(PRIVACY).map_err(StorageError::redb)?.iter().map_err(StorageError::redb)? {
            let (k, v) = row.map_err(StorageError::redb)?;
            privacy.insert(k.value(), v.value()).map_err(StorageError::redb)?;
        }
        let mut meta = tx.open_table(META).map_err(StorageError::redb)?;
        for row in rx.open_table(META).map_err(StorageError::redb)?.iter().map_err(StorageError::redb)? {
            let (k, v) = row.map_err(StorageError::redb)?;
            meta.insert(k.value(), v.value()).map_err(StorageError::redb)?;
        }
    }
    tx.commit().map_err(StorageError::redb)
}

/// Writes one consistent archive of `dbs` (shard `i` at index `i`) into `out_dir`. Blocking
/// (file I/O, fsync): run it on its own thread, never on an executor.
pub fn backup(dbs: &[Arc<Database>], out_dir: &Path, now_ms: i64) -> Result<Archive, BackupError> {
    std::fs::create_dir_all(out_dir).map_err(io("cannot create", out_dir))?;
    // Every snapshot first, back to back: the backup's point in time.
    let snapshots = dbs.iter().map(|db| db.begin_read().map_err(StorageError::redb)).collect::<Result<Vec<_>, _>>()?;
    let name = format!("lantern-{}.tar.gz", stamp(now_ms));
    let path = out_dir.join(&name);
    if path.exists() {
        return Err(BackupError::Invalid(format!("a backup named {name} already exists in {}", out_dir.display())));
    }
    let staging = out_dir.join(format!(".{name}.staging"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io("cannot create", &staging))?;
    let result = (|| {
        for (i, rx) in snapshots.iter().enumerate() {
            copy_snapshot(rx, &shard_path(&staging, i))?;
        }
        drop(snapshots);
        let partial = out_dir.join(format!("{name}.partial"));
        let file = std::fs::File::create(&partial).map_err(io("cannot create", &partial))?;
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
        // Plain entries (redb files have holes, which gzip compresses anyway), readable by any tar.
        tar.sparse(false);
        let manifest = serde_json::json!({"format": FORMAT, "shards": dbs.len(), "created": crate::time_fmt::iso_ms(now_ms)}).to_string();
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(now_ms.max(0) as u64 / 1000);
        header.set_cksum();
        tar.append_data(&mut header, format!("{ROOT}/manifest.json"), manifest.as_bytes()).map_err(io("cannot write", &partial))?;
        for i in 0..dbs.len() {
            let shard = shard_path(&staging, i);
            let entry = format!("{ROOT}/{}", shard.file_name().and_then(|n| n.to_str()).unwrap_or_default());
            tar.append_path_with_name(&shard, entry).map_err(io("cannot write", &partial))?;
        }
        let file = tar.into_inner().and_then(|gz| gz.finish()).map_err(io("cannot write", &partial))?;
        file.sync_all().map_err(io("cannot sync", &partial))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        std::fs::rename(&partial, &path).map_err(io("cannot rename", &partial))?;
        Ok(Archive { path: path.clone(), shards: dbs.len(), bytes })
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Deletes the oldest `lantern-*.tar.gz` archives in `dir` beyond the newest `keep`.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("cannot read", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("lantern-") && n.ends_with(".tar.gz")))
        .collect();
    // The names sort as their times.
    archives.sort();
    let excess = archives.len().saturating_sub(keep);
    let removed: Vec<PathBuf> = archives.into_iter().take(excess).collect();
    for p in &removed {
        std::fs::remove_file(p).map_err(io("cannot remove", p))?;
    }
    Ok(removed)
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The shard count of the archive.
    pub from: usize,
    /// The shard count of the directory now.
    pub to: usize,
}

/// Unpacks `archive` into `dir`, which must be empty or missing, then repartitions it for
/// `shards` when given.
pub fn restore(archive: &Path, dir: &Path, shards: Option<usize>) -> Result<Restored, BackupError> {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(BackupError::Invalid(format!("{} is not empty: restore into an empty or new directory", dir.display())));
        }
    }
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let file = std::fs::File::open(archive).map_err(io("cannot open", archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut manifest: Option<serde_json::Value> = None;
    let mut files = Vec::new();
    for entry in tar.entries().map_err(io("cannot read", archive))? {
        let mut entry = entry.map_err(io("cannot read", archive))?;
        let name = entry.path().map_err(io("cannot read", archive))?.to_string_lossy().into_owned();
        let Some(base) = name.strip_prefix(&format!("{ROOT}/")) else {
            return Err(BackupError::Invalid(format!("unexpected entry {name:?} in the archive")));
        };
        if base == "manifest.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(io("cannot read", archive))?;
            manifest = Some(serde_json::from_str(&text).map_err(|e| BackupError::Invalid(format!("invalid manifest: {e}")))?);
            continue;
        }
        let kind = entry.header().entry_type();
        let index = base
            .strip_prefix("shard-")
            .and_then(|b| b.strip_suffix(".redb"))
            .filter(|n| n.len() >= 2 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|_| kind.is_file())
            .ok_or_else(|| BackupError::Invalid(format!("unexpected entry {name:?} ({kind:?}) in the archive")))?;
        let target = shard_path(dir, index);
        let mut out = std::fs::File::create(&target).map_err(io("cannot create", &target))?;
        std::io::copy(&mut entry, &mut out).map_err(io("cannot write", &target))?;
        out.flush().and_then(|_| out.sync_all()).map_err(io("cannot sync", &target))?;
        files.push(index);
    }
    let manifest = manifest.ok_or_else(|| BackupError::Invalid("the archive has no manifest.json".into()))?;
    if manifest["format"].as_u64() != Some(FORMAT) {
        return Err(BackupError::Invalid(format!("unknown archive format {}", manifest["format"])));
    }
    let from = manifest["shards"].as_u64().unwrap_or(0) as usize;
    files.sort_unstable();
    if from == 0 || files != (0..from).collect::<Vec<_>>() {
        return Err(BackupError::Invalid(format!("the archive should hold {from} shard files, it holds {}", files.len())));
    }
    let to = shards.unwrap_or(from);
    if to != from {
        repartition::repartition(dir, to)?;
    }
    Ok(Restored { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_file_safe_utc_times() {
        assert_eq!(stamp(1_700_000_000_123), "2023-11-14T22-13-20Z");
    }
}
