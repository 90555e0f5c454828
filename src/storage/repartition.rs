//! Start-up repartitioning: when the data directory was written with a different shard count,
//! every row moves to the file of its new owner (`shard_of(user, shards)`) before any shard runs.
//!
//! Each move copies the rows into the target file and commits, then deletes them from the
//! source and commits. Rows are keyed by user (and key), so copying is an upsert: a crash
//! between the two commits leaves a row in both files, and the next start-up (whatever its
//! shard count) finds the misplaced copy and folds it into the right file. Every pair ends up
//! exactly once. A file's `meta.shards` is written only once the whole directory is
//! partitioned for that count; files past the new count are removed once empty.

use super::{open, StorageError, KV, LAST_SEEN, META, PRIVACY, TOKENS};
use crate::discord::Snowflake;
use crate::runtime::shard_of;
use redb::{Database, ReadableDatabase, ReadableTable};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a repartition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The shard count the directory was written with, when it is known.
    pub from: Option<usize>,
    pub to: usize,
    /// Rows moved (pairs, tokens, last-seen times and privacy settings).
    pub moved: usize,
    /// Files past the new shard count that were removed.
    pub removed_files: usize,
}

/// The shard files in `dir`, by index.
pub fn shard_files(dir: &Path) -> Result<Vec<(usize, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StorageError::redb(format!("cannot list {}: {e}", dir.display()))),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name.strip_prefix("shard-").and_then(|n| n.strip_suffix(".redb")) else { continue };
        if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(i) = num.parse::<usize>() {
                out.push((i, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn meta_shards(db: &Database) -> Result<Option<usize>, StorageError> {
    let rx = db.begin_read().map_err(StorageError::redb)?;
    let Ok(meta) = rx.open_table(META) else { return Ok(None) };
    Ok(meta.get("shards").map_err(StorageError::redb)?.map(|v| v.value() as usize))
}

/// Rows of one file that belong elsewhere, grouped by target shard.
#[derive(Default)]
struct Misplaced {
    kv: Vec<(u64, String, String)>,
    tokens: Vec<(u64, Vec<u8>)>,
    last_seen: Vec<(u64, i64)>,
    privacy: Vec<(u64, String)>,
}

impl Misplaced {
    fn len(&self) -> usize {
        self.kv.len() + self.tokens.len() + self.last_seen.len() + self.privacy.len()
    }
}

fn misplaced(db: &Database, index: usize, shards: usize) -> Result<BTreeMap<usize, Misplaced>, StorageError> {
    let owner = |user: u64| shard_of(Snowflake(user), shards);
    let mut out: BTreeMap<usize, Misplaced> = BTreeMap::new();
    let rx = db.begin_read().map_err(StorageError::redb)?;
    let kv = rx.open_table(KV).map_err(StorageError::redb)?;
    for row in kv.iter().map_err(StorageError::redb)? {
        let (k, v) = row.map_err(StorageError::redb)?;
        let (user, key) = k.value();
        if owner(user) != index {
            out.entry(owner(user)).or_default().kv.push((user, key.to_owned(), v.value().to_owned()));
        }
    }
    let tokens = rx.open_table(TOKENS).map_err(StorageError::redb)?;
    for row in tokens.iter().map_err(StorageError::redb)? {
        let (k, v) = row.map_err(StorageError::redb)?;
        if owner(k.value()) != index {
            out.entry(owner(k.value())).or_default().tokens.push((k.value(), v.value().to_vec()));
        }
    }
    let last_seen = rx.open_table(LAST_SEEN).map_err(StorageError::redb)?;
    for row in last_seen.iter().map_err(StorageError::redb)? {
        let (k, v) = row.map_err(StorageError::redb)?;
        if owner(k.value()) != index {
            out.entry(owner(k.value())).or_default().last_seen.push((k.value(), v.value()));
        }
    }
    let privacy = rx.open_table(PRIVACY).map_err(StorageError::redb)?;
    for row in privacy.iter().map_err(StorageError::redb)? {
        let (k, v) = row.map_err(StorageError::redb)?;
        if owner(k.value()) != index {
            out.entry(owner(k.value())).or_default().privacy.push((k.value(), v.value().to_owned()));
        }
    }
    Ok(out)
}

fn insert_rows(db: &Database, rows: &Misplaced) -> Result<(), StorageError> {
    let tx = db.begin_write().map_err(StorageError::redb)?;
    {
        let mut kv = tx.open_table(KV).map_err(StorageError::redb)?;
        for (user, key, value) in &rows.kv {
            kv.insert((*user, key.as_str()), value.as_str()).map_err(StorageError::redb)?;
        }
        let mut tokens = tx.open_table(TOKENS).map_err(StorageError::redb)?;
        for (user, sealed) in &rows.tokens {
            tokens.insert(*user, sealed.as_slice()).map_err(StorageError::redb)?;
        }
        let mut last_seen = tx.open_table(LAST_SEEN).map_err(StorageError::redb)?;
        for (user, ms) in &rows.last_seen {
            last_seen.insert(*user, *ms).map_err(StorageError::redb)?;
        }
        let mut privacy = tx.open_table(PRIVACY).map_err(StorageError::redb)?;
        for (user, json) in &rows.privacy {
            privacy.insert(*user, json.as_str()).map_err(StorageError::redb)?;
        }
    }
    tx.commit().map_err(StorageError::redb)
}

fn remove_rows(db: &Database, rows: &Misplaced) -> Result<(), StorageError> {
    let tx = db.begin_write().map_err(StorageError::redb)?;
    {
        let mut kv = tx.open_table(KV).map_err(StorageError::redb)?;
        for (user, key, _) in &rows.kv {
            kv.remove((*user, key.as_str())).map_err(StorageError::redb)?;
        }
        let mut tokens = tx.open_table(TOKENS).map_err(StorageError::redb)?;
        for (user, _) in &rows.tokens {
            tokens.remove(*user).map_err(StorageError::redb)?;
        }
        let mut last_seen = tx.open_table(LAST_SEEN).map_err(StorageError::redb)?;
        for (user, _) in &rows.last_seen {
            last_seen.remove(*user).map_err(StorageError::redb)?;
        }
        let mut privacy = tx.open_table(PRIVACY).map_err(StorageError::redb)?;
        for (user, _) in &rows.privacy {
            privacy.remove(*user).map_err(StorageError::redb)?;
        }
    }
    tx.commit().map_err(StorageError::redb)
}

fn set_meta(db: &Database, shards: usize) -> Result<(), StorageError> {
    let tx = db.begin_write().map_err(StorageError::redb)?;
    tx.open_table(META).map_err(StorageError::redb)?.insert("shards", shards as u64).map_err(StorageError::redb)?;
    tx.commit().map_err(StorageError::redb)
}

/// Makes `dir` partitioned for `shards` shards. Returns `None` when it already was (or is
/// empty); otherwise what moved. Runs before the shards start; blocking.
pub fn repartition(dir: &Path, shards: usize) -> Result<Option<Report>, StorageError> {
    let files = shard_files(dir)?;
    if files.is_empty() {
        return Ok(None);
    }
    let mut dbs: BTreeMap<usize, Database> = BTreeMap::new();
    for &(index, _) in &files {
        dbs.insert(index, open(dir, index)?);
    }
    let mut needed = files.iter().any(|&(i, _)| i >= shards);
    for db in dbs.values() {
        needed |= meta_shards(db)? != Some(shards);
    }
    if !needed {
        return Ok(None);
    }
    let from = match dbs.get(&0).map(meta_shards).transpose()?.flatten() {
        Some(n) => Some(n),
        None if files.iter().all(|&(i, _)| i < files.len()) => Some(files.len()),
        None => None,
    };
    for index in 0..shards {
        if let std::collections::btree_map::Entry::Vacant(e) = dbs.entry(index) {
            e.insert(open(dir, index)?);
        }
    }
    // Until every file is marked again at the end, an interrupted run is redone at the next
    // start-up, whatever its shard count.
    for db in dbs.values() {
        clear_meta(db)?;
    }
    let mut moved = 0;
    let sources: Vec<usize> = dbs.keys().copied().collect();
    for source in sources {
        let groups = misplaced(&dbs[&source], source, shards)?;
        for (target, rows) in groups {
            insert_rows(&dbs[&target], &rows)?;
            remove_rows(&dbs[&source], &rows)?;
            moved += rows.len();
        }
    }
    let mut removed_files = 0;
    for &(index, ref path) in &files {
        if index >= shards {
            drop(dbs.remove(&index));
            std::fs::remove_file(path).map_err(|e| StorageError::redb(format!("cannot remove {}: {e}", path.display())))?;
            removed_files += 1;
        }
    }
    for db in dbs.values() {
        set_meta(db, shards)?;
    }
    Ok(Some(Report { from, to: shards, moved, removed_files }))
}

/// Records in a shard file opened after [`repartition`] that it is partitioned for `shards`
/// (new files get it here, so the next start-up need not scan them).
pub fn mark(db: &Database, shards: usize) -> Result<(), StorageError> {
    if meta_shards(db)? != Some(shards) {
        set_meta(db, shards)?;
    }
    Ok(())
}

fn clear_meta(db: &Database) -> Result<(), StorageError> {
    let tx = db.begin_write().map_err(StorageError::redb)?;
    tx.open_table(META).map_err(StorageError::redb)?.remove("shards").map_err(StorageError::redb)?;
    tx.commit().map_err(StorageError::redb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, shards: usize, users: u64) {
        for index in 0..shards {
            let db = open(dir, index).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut kv = tx.open_table(KV).unwrap();
                let mut tokens = tx.open_table(TOKENS).unwrap();
                let mut ls = tx.open_table(LAST_SEEN).unwrap();
                let mut privacy = tx.open_table(PRIVACY).unwrap();
                for u in 0..users {
                    let id = 1_300_000_000_000_000_000 + u;
                    if shard_of(Snowflake(id), shards) == index {
                        for k in 0..3 {
                            kv.insert((id, format!("k{k}").as_str()), format!("{id}-{k}").as_str()).unwrap();
                        }
                        tokens.insert(id, [1u8, 2, 3].as_slice()).unwrap();
                        ls.insert(id, id as i64).unwrap();
                        privacy.insert(id, format!("{{\"u\":{id}}}").as_str()).unwrap();
                    }
                }
            }
            tx.commit().unwrap();
            set_meta(&db, shards).unwrap();
        }
    }

    fn check(dir: &Path, shards: usize, users: u64) {
        let rows = crate::storage::kv_rows(dir).unwrap();
        assert_eq!(rows.len() as u64, users * 3, "every pair exactly once");
        for (file, user, key, value) in &rows {
            assert_eq!(*file, shard_of(*user, shards));
            assert_eq!(*value, format!("{}-{}", user.0, &key[1..]));
        }
        let ls = crate::storage::last_seen_rows(dir).unwrap();
        assert_eq!(ls.len() as u64, users);
        assert!(ls.iter().all(|(f, u, ms)| *f == shard_of(*u, shards) && *ms == u.0 as i64));
        let privacy = crate::storage::privacy_rows(dir).unwrap();
        assert_eq!(privacy.len() as u64, users);
        assert!(privacy.iter().all(|(f, u, json)| *f == shard_of(*u, shards) && *json == format!("{{\"u\":{}}}", u.0)));
        assert_eq!(shard_files(dir).unwrap().len(), shards);
    }

    #[test]
    fn moves_every_row_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 2, 50);
        assert_eq!(repartition(dir.path(), 2).unwrap(), None);
        let r = repartition(dir.path(), 3).unwrap().unwrap();
        assert_eq!((r.from, r.to), (Some(2), 3));
        assert!(r.moved > 0);
        check(dir.path(), 3, 50);
        let r = repartition(dir.path(), 1).unwrap().unwrap();
        assert_eq!(r.removed_files, 2);
        check(dir.path(), 1, 50);
        assert_eq!(repartition(dir.path(), 1).unwrap(), None);
    }

    #[test]
    fn an_interrupted_move_is_folded_in_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 2, 30);
        // Simulate a crash after the copy, before the delete: every row of file 1 also in file 0.
        {
            let src = open(dir.path(), 1).unwrap();
            let dst = open(dir.path(), 0).unwrap();
            let rows = misplaced(&src, 1, 1).unwrap().remove(&0).unwrap();
            insert_rows(&dst, &rows).unwrap();
            clear_meta(&dst).unwrap();
            clear_meta(&src).unwrap();
        }
        // Restarting with the old count still finds and folds the duplicates.
        repartition(dir.path(), 2).unwrap().unwrap();
        check(dir.path(), 2, 30);
        repartition(dir.path(), 3).unwrap().unwrap();
        check(dir.path(), 3, 30);
    }
}
