//! The key-value storage one shard owns, in memory: limits, authorization and write planning.
//!
//! Every user's pairs and token are loaded at start-up and kept here, so reads never touch
//! disk. A write is *planned* against the latest state (which includes writes still being
//! committed, so concurrent writes see each other's effects and limits hold), handed to the
//! writer thread as [`WriteOp`]s, and becomes visible to readers only once it is durable
//! ([`KvShard::finish`]). Readers see the committed state.

use super::token::{Token, TokenCipher};
use super::writer::WriteOp;
use crate::discord::Snowflake;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

/// Longest key, in characters (keys are ASCII letters and digits).
pub const MAX_KEY_LEN: usize = 255;
/// Longest value, in characters (Unicode scalar values).
pub const MAX_VALUE_CHARS: usize = 30_000;
/// Most pairs one user may store.
pub const MAX_PAIRS: usize = 512;
pub use crate::config::DEFAULT_MAX_USER_BYTES;

/// Why a storage request failed. REST and the bot word these differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The user is not a member of the base guild.
    NotMonitored,
    /// The user never created a token (or it was deleted when they left).
    NoStorage,
    /// Missing or wrong token.
    Unauthorized,
    /// The key does not exist.
    NoKey(String),
    /// A new key would exceed [`MAX_PAIRS`].
    TooManyPairs,
    /// The map's JSON would grow past this many bytes (`storage.max_user_bytes`).
    TooLarge(usize),
    InvalidKey(&'static str),
    InvalidValue(&'static str),
    /// The owner shard could not commit or could not be reached.
    Internal(String),
    /// Cluster mode: the cluster's store cannot be reached, so nothing can be written.
    Unavailable(String),
}

/// Checks a key against `^[A-Za-z0-9]{1,255}$`, with the contract's messages.
pub fn validate_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(KvError::InvalidKey("key must be 1-255 characters long."));
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KvError::InvalidKey("key must be alphanumeric."));
    }
    Ok(())
}

/// Whether `key` may be stored at all: 1-255 of `[A-Za-z0-9_]`. Lanyard's routes write such
/// keys; Lantern's routes write only alphanumeric ones ([`validate_key`]) but read and delete
/// any stored key.
pub fn is_storable_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a value's length (at most [`MAX_VALUE_CHARS`] characters; empty is fine).
pub fn validate_value(value: &str) -> Result<(), KvError> {
    // Bytes bound characters from above, so most values skip the count.
    if value.len() > MAX_VALUE_CHARS && value.chars().count() > MAX_VALUE_CHARS {
        return Err(KvError::InvalidValue("value must not exceed 30,000 characters."));
    }
    Ok(())
}

/// A user's token as loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenState {
    /// No storage: the user never ran `/storage create token`.
    #[default]
    None,
    Valid(Token),
    /// A token is stored but cannot be decrypted with the configured secret; storage exists,
    /// nothing authenticates until the user creates a new token. Kept as stored.
    Unreadable(Arc<[u8]>),
}

impl TokenState {
    /// A stored token, opened with `cipher`.
    pub fn open(cipher: &TokenCipher, sealed: &[u8]) -> TokenState {
        match cipher.open(sealed) {
            Ok(t) => TokenState::Valid(t),
            Err(_) => TokenState::Unreadable(sealed.into()),
        }
    }
}

/// One pair as it is served: `"key":"value"`, serialized once when it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    json: Bytes,
    /// Where the value's JSON string starts in `json`.
    value_at: usize,
}

impl Pair {
    pub fn new(key: &str, value: &str) -> Pair {
        let mut json = Vec::with_capacity(key.len() + value.len() + 5);
        // Strings always serialize.
        let _ = serde_json::to_writer(&mut json, key);
        json.push(b':');
        let value_at = json.len();
        let _ = serde_json::to_writer(&mut json, value);
        Pair { json: Bytes::from(json), value_at }
    }

    /// `"key":"value"`, as it appears in the map's JSON.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The value as a JSON string, quotes included.
    pub fn value_json(&self) -> Bytes {
        self.json.slice(self.value_at..)
    }

    /// The value itself.
    pub fn value(&self) -> String {
        serde_json::from_slice(&self.json[self.value_at..]).unwrap_or_default()
    }
}

/// One user's storage. Cloning it (to plan a write) copies the keys, not the values.
#[derive(Debug, Clone, Default)]
pub struct UserKv {
    pairs: BTreeMap<String, Pair>,
    /// Total bytes of the pairs' JSON.
    pair_bytes: usize,
    /// Changes whenever the pairs do (the sequence number of the last write that changed them).
    version: u64,
    /// The map's JSON, assembled from the pairs on first use.
    json: OnceLock<Bytes>,
    pub token: TokenState,
}

impl PartialEq for UserKv {
    fn eq(&self, other: &UserKv) -> bool {
        self.pairs == other.pairs && self.token == other.token
    }
}

impl Eq for UserKv {}

impl UserKv {
    /// Whether the user has storage (a token, readable or not).
    pub fn exists(&self) -> bool {
        self.token != TokenState::None
    }

    /// No token and no pairs: nothing to keep.
    fn is_unused(&self) -> bool {
        !self.exists() && self.pairs.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Pair> {
        self.pairs.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.pairs.keys()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, values decoded (the bot's list).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.pairs.iter().map(|(k, p)| (k.clone(), p.value())).collect()
    }

    /// Bytes of the map's JSON: the braces, the pairs and a comma between each two.
    pub fn json_len(&self) -> usize {
        2 + self.pair_bytes + self.pairs.len().saturating_sub(1)
    }

    /// What [`Self::json_len`] would be with `key` set to `new` (removed if `None`).
    fn json_len_with(&self, key: &str, new: Option<&Pair>) -> usize {
        let old = self.pairs.get(key);
        let bytes = self.pair_bytes - old.map_or(0, |p| p.json.len()) + new.map_or(0, |p| p.json.len());
        let count = self.pairs.len() - usize::from(old.is_some()) + usize::from(new.is_some());
        2 + bytes + count.saturating_sub(1)
    }

    fn insert(&mut self, key: String, pair: Pair) {
        self.pair_bytes += pair.json.len();
        if let Some(old) = self.pairs.insert(key, pair) {
            self.pair_bytes -= old.json.len();
        }
        self.json = OnceLock::new();
    }

    fn remove(&mut self, key: &str) -> bool {
        let Some(old) = self.pairs.remove(key) else { return false };
        self.pair_bytes -= old.json.len();
        self.json = OnceLock::new();
        true
    }

    fn clear(&mut self) {
        self.pairs.clear();
        self.pair_bytes = 0;
        self.json = OnceLock::new();
    }

    /// The pairs as a JSON object, keys in order: assembled from the pairs' JSON once, then
    /// shared by every reader.
    pub fn json(&self) -> Bytes {
        self.json
            .get_or_init(|| {
                let mut out = Vec::with_capacity(self.json_len());
                out.push(b'{');
                for (i, pair) in self.pairs.values().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&pair.json);
                }
                out.push(b'}');
                Bytes::from(out)
            })
            .clone()
    }
}

impl UserKv {
    /// A user's storage from the cluster's document of it.
    pub fn from_document(doc: super::remote::KvDocument, cipher: &TokenCipher) -> UserKv {
        let mut user = UserKv::default();
        for (key, value) in &doc.pairs {
            user.insert(key.clone(), Pair::new(key, value));
        }
        user.token = match doc.sealed_token() {
            Some(sealed) => TokenState::open(cipher, &sealed),
            None => TokenState::None,
        };
        user
    }

    /// The cluster's document of this storage (the token sealed anew; one that cannot be
    /// read is kept as stored).
    pub fn to_document(&self, cipher: &TokenCipher) -> Result<super::remote::KvDocument, KvError> {
        let doc = super::remote::KvDocument { pairs: self.to_map(), token: None };
        Ok(match &self.token {
            TokenState::None => doc,
            TokenState::Valid(t) => doc.with_sealed_token(&cipher.seal(t).map_err(|e| KvError::Internal(e.to_string()))?),
            TokenState::Unreadable(sealed) => doc.with_sealed_token(sealed),
        })
    }
}

/// Who is asking to write.
#[derive(Debug, Clone)]
pub enum Auth {
    /// REST: the raw `Authorization` value (a `Bearer ` prefix already removed).
    Token(Vec<u8>),
    /// The bot, on behalf of the user who ran the command (Discord authenticated them).
    Owner,
}

/// A mutation of one user's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// Create or replace.
    Put { key: String, value: String },
    /// Replace an existing key only.
    Patch { key: String, value: String },
    /// Create or replace several pairs at once (all or none).
    Merge(Vec<(String, String)>),
    /// Remove an existing key.
    Delete { key: String },
    /// Remove every pair.
    Clear,
    /// Create or replace the token (creates the storage).
    RotateToken,
}

/// A write accepted against the latest state, to be committed and then [`KvShard::finish`]ed.
#[derive(Debug)]
pub struct Planned {
    pub seq: u64,
    pub ops: Vec<WriteOp>,
    pub snapshot: Arc<UserKv>,
    /// The new token, for [`KvOp::RotateToken`].
    pub token: Option<Token>,
}

#[derive(Default)]
struct Entry {
    committed: Arc<UserKv>,
    committed_seq: u64,
    latest: Arc<UserKv>,
    in_flight: usize,
}

/// The storage of every user one shard owns.
pub struct KvShard {
    users: HashMap<Snowflake, Entry>,
    /// The last sequence number handed out (committed state loaded from disk counts as 0).
    next_seq: u64,
    /// `storage.max_user_bytes`.
    max_user_bytes: usize,
}

impl Default for KvShard {
    fn default() -> KvShard {
        KvShard { users: HashMap::new(), next_seq: 0, max_user_bytes: DEFAULT_MAX_USER_BYTES }
    }
}

impl KvShard {
    /// Builds the shard's storage from what its file holds. Tokens that cannot be decrypted
    /// are kept as [`TokenState::Unreadable`]; returns how many there were. Maps already larger
    /// than `max_user_bytes` are kept; writes that would grow them are refused.
    pub fn from_loaded(
        kv: HashMap<Snowflake, BTreeMap<String, String>>,
        tokens: HashMap<Snowflake, Vec<u8>>,
        cipher: &TokenCipher,
        max_user_bytes: usize,
    ) -> (KvShard, usize) {
        let mut users: HashMap<Snowflake, UserKv> = HashMap::new();
        for (id, pairs) in kv {
            let user = users.entry(id).or_default();
            for (key, value) in pairs {
                let pair = Pair::new(&key, &value);
                user.insert(key, pair);
            }
        }
        let mut unreadable = 0;
        for (id, sealed) in tokens {
            let token = TokenState::open(cipher, &sealed);
            unreadable += usize::from(matches!(token, TokenState::Unreadable(_)));
            users.entry(id).or_default().token = token;
        }
        let users = users
            .into_iter()
            .map(|(id, u)| {
                let u = Arc::new(u);
                (id, Entry { committed: u.clone(), committed_seq: 0, latest: u, in_flight: 0 })
            })
            .collect();
        (KvShard { users, next_seq: 0, max_user_bytes }, unreadable)
    }

    /// The committed storage of a user.
    pub fn get(&self, id: Snowflake) -> Option<&Arc<UserKv>> {
        self.users.get(&id).map(|e| &e.committed).filter(|u| !u.is_unused())
    }

    /// The storage JSON of every user with pairs (to seed the user objects).
    pub fn storage_jsons(&self) -> HashMap<Snowflake, Bytes> {
        self.users.iter().filter(|(_, e)| !e.committed.pairs.is_empty()).map(|(id, e)| (*id, e.committed.json())).collect()
    }

    /// Users with storage.
    pub fn len(&self) -> usize {
        self.users.values().filter(|e| e.committed.exists()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `given` is the user's current token (constant-time comparison).
    pub fn authorized(&self, id: Snowflake, given: &[u8]) -> bool {
        match self.users.get(&id).map(|e| &e.latest.token) {
            Some(TokenState::Valid(t)) => t.matches(given),
            _ => false,
        }
    }

    /// Sets `key` to `value` in `next` unless that would take the map past the byte bound
    /// (a write that does not grow a map already past it is allowed). Returns whether the
    /// pairs changed.
    fn set(&self, next: &mut UserKv, key: &str, value: &str) -> Result<bool, KvError> {
        let pair = Pair::new(key, value);
        if next.pairs.get(key) == Some(&pair) {
            return Ok(false);
        }
        let after = next.json_len_with(key, Some(&pair));
        if after > self.max_user_bytes && after > next.json_len() {
            return Err(KvError::TooLarge(self.max_user_bytes));
        }
        next.insert(key.to_owned(), pair);
        Ok(true)
    }

    /// Checks authorization and the op against the latest state; on success the latest state
    /// includes the op and the returned ops must be committed, then passed to [`Self::finish`].
    /// Only the changed pair is serialized; the rest of the map is shared with the old state.
    pub fn plan(&mut self, id: Snowflake, auth: &Auth, op: KvOp, cipher: &TokenCipher) -> Result<Planned, KvError> {
        let empty = UserKv::default();
        let base: &UserKv = self.users.get(&id).map(|e| &*e.latest).unwrap_or(&empty);
        match auth {
            Auth::Token(given) => match &base.token {
                TokenState::Valid(t) if t.matches(given) => {}
                _ => return Err(KvError::Unauthorized),
            },
            Auth::Owner => {
                if op != KvOp::RotateToken && !base.exists() {
                    return Err(KvError::NoStorage);
                }
            }
        }
        let mut next = base.clone();
        let seq = self.next_seq + 1;
        let mut token = None;
        let (ops, changed) = match op {
            KvOp::Put { key, value } => {
                if !next.pairs.contains_key(&key) && next.pairs.len() >= MAX_PAIRS {
                    return Err(KvError::TooManyPairs);
                }
                let changed = self.set(&mut next, &key, &value)?;
                (vec![WriteOp::PutKv(id, key, value)], changed)
            }
            KvOp::Patch { key, value } => {
                if !next.pairs.contains_key(&key) {
                    return Err(KvError::NoKey(key));
                }
                let changed = self.set(&mut next, &key, &value)?;
                (vec![WriteOp::PutKv(id, key, value)], changed)
            }
            KvOp::Merge(pairs) => {
                let new_keys = pairs.iter().filter(|(k, _)| !next.pairs.contains_key(k)).map(|(k, _)| k).collect::<std::collections::HashSet<_>>().len();
                if next.pairs.len() + new_keys > MAX_PAIRS {
                    return Err(KvError::TooManyPairs);
                }
                let mut changed = false;
                for (key, value) in &pairs {
                    changed |= self.set(&mut next, key, value)?;
                }
                (pairs.into_iter().map(|(key, value)| WriteOp::PutKv(id, key, value)).collect(), changed)
            }
            KvOp::Delete { key } => {
                if !next.remove(&key) {
                    return Err(KvError::NoKey(key));
                }
                (vec![WriteOp::DeleteKv(id, key)], true)
            }
            KvOp::Clear => {
                let changed = !next.pairs.is_empty();
                next.clear();
                (vec![WriteOp::ClearKv(id)], changed)
            }
            KvOp::RotateToken => {
                let t = Token::generate(id);
                let sealed = cipher.seal(&t).map_err(|e| KvError::Internal(e.to_string()))?;
                next.token = TokenState::Valid(t.clone());
                token = Some(t);
                (vec![WriteOp::SetToken(id, sealed)], false)
            }
        };
        if changed {
            next.version = seq;
        }
        self.next_seq = seq;
        let snapshot = Arc::new(next);
        let entry = self.users.entry(id).or_default();
        entry.latest = snapshot.clone();
        entry.in_flight += 1;
        Ok(Planned { seq, ops, snapshot, token })
    }

    /// Records the outcome of a planned write. Returns the user's new committed storage when
    /// readers must see a change (its pairs changed; a new token alone is not one).
    pub fn finish(&mut self, id: Snowflake, seq: u64, snapshot: Arc<UserKv>, ok: bool) -> Option<Arc<UserKv>> {
        let entry = self.users.get_mut(&id)?;
        entry.in_flight = entry.in_flight.saturating_sub(1);
        // Commits are applied in order, so a later one that is durable includes every earlier
        // one; an acknowledgement that arrives late for an older write is ignored.
        let newer = ok && seq > entry.committed_seq;
        let mut changed = false;
        if newer {
            changed = snapshot.version != entry.committed.version;
            entry.committed = snapshot;
            entry.committed_seq = seq;
        }
        if entry.in_flight == 0 {
            // Drops the effect of failed writes from what the next write builds on.
            entry.latest = entry.committed.clone();
        }
        let committed = entry.committed.clone();
        if entry.in_flight == 0 && committed.is_unused() {
            self.users.remove(&id);
        }
        changed.then_some(committed)
    }

    /// Replaces a user's storage with what the cluster's store holds (`None`: nothing), as
    /// every node reads it back. Returns the new committed storage when readers must see a
    /// change (its pairs changed). A write of this shard still in flight is planned on the
    /// state it replaces; the store refuses it (its revision is stale) and it is planned again.
    pub fn install(&mut self, id: Snowflake, stored: Option<UserKv>) -> Option<Arc<UserKv>> {
        let mut next = stored.unwrap_or_default();
        self.next_seq += 1;
        let entry = self.users.entry(id).or_default();
        let changed = next.pairs != entry.committed.pairs;
        next.version = if changed { self.next_seq } else { entry.committed.version };
        let next = Arc::new(next);
        entry.committed = next.clone();
        entry.committed_seq = self.next_seq;
        entry.latest = next.clone();
        if entry.in_flight == 0 && next.is_unused() {
            self.users.remove(&id);
        }
        changed.then_some(next)
    }

    /// Deletes a user's storage and token at once (the member left). Returns the write to
    /// persist, if there was anything.
    pub fn forget(&mut self, id: Snowflake) -> Option<WriteOp> {
        let entry = self.users.get_mut(&id)?;
        let had = !entry.latest.is_unused() || !entry.committed.is_unused();
        // Writes still in flight commit before this delete and their acknowledgements, being
        // older, are ignored.
        entry.committed = Arc::new(UserKv::default());
        entry.latest = entry.committed.clone();
        self.next_seq += 1;
        entry.committed_seq = self.next_seq;
        if entry.in_flight == 0 {
            self.users.remove(&id);
        }
        had.then_some(WriteOp::DeleteStorage(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::token::generate_secret;

    const U: Snowflake = Snowflake(1_300_000_000_000_000_001);

    fn cipher() -> TokenCipher {
        TokenCipher::from_hex(&generate_secret()).unwrap()
    }

    fn put(k: &str, v: &str) -> KvOp {
        KvOp::Put { key: k.into(), value: v.into() }
    }

    /// Plans and commits at once.
    fn apply(kv: &mut KvShard, auth: &Auth, op: KvOp, c: &TokenCipher) -> Result<Planned, KvError> {
        let p = kv.plan(U, auth, op, c)?;
        kv.finish(U, p.seq, p.snapshot.clone(), true);
        Ok(p)
    }

    #[test]
    fn key_and_value_limits() {
        assert!(validate_key("abcXYZ019").is_ok());
        assert_eq!(validate_key(""), Err(KvError::InvalidKey("key must be 1-255 characters long.")));
        assert!(validate_key(&"a".repeat(255)).is_ok());
        assert_eq!(validate_key(&"a".repeat(256)), Err(KvError::InvalidKey("key must be 1-255 characters long.")));
        assert_eq!(validate_key("a.b"), Err(KvError::InvalidKey("key must be alphanumeric.")));
        assert_eq!(validate_key("é"), Err(KvError::InvalidKey("key must be alphanumeric.")));
        assert!(validate_value("").is_ok());
        assert!(validate_value(&"é".repeat(30_000)).is_ok());
        assert!(validate_value(&"a".repeat(30_001)).is_err());
    }

    #[test]
    fn a_merge_is_applied_whole_or_not_at_all() {
        let c = cipher();
        let mut kv = KvShard::default();
        let rotated = apply(&mut kv, &Auth::Owner, KvOp::RotateToken, &c).unwrap();
        let auth = Auth::Token(rotated.token.unwrap().expose().as_bytes().to_vec());
        for i in 0..MAX_PAIRS - 1 {
            apply(&mut kv, &auth, put(&format!("k{i}"), "v"), &c).unwrap();
        }
        let two_new = KvOp::Merge(vec![("k0".into(), "w".into()), ("n1".into(), "x".into()), ("n2".into(), "y".into())]);
        assert_eq!(kv.plan(U, &auth, two_new, &c).unwrap_err(), KvError::TooManyPairs);
        let user = kv.users.get(&U).unwrap();
        assert_eq!(user.latest.get("k0").map(Pair::value).as_deref(), Some("v"), "nothing of a refused merge applies");
        let one_new = KvOp::Merge(vec![("k0".into(), "w".into()), ("n1".into(), "x".into()), ("n1".into(), "x".into())]);
        let planned = apply(&mut kv, &auth, one_new, &c).unwrap();
        assert_eq!(planned.snapshot.len(), MAX_PAIRS);
        assert_eq!(planned.snapshot.get("k0").map(Pair::value).as_deref(), Some("w"));
    }

    #[test]
    fn storable_keys_allow_underscores_that_lantern_writes_refuse() {
        assert!(is_storable_key("a_b") && is_storable_key(&"x".repeat(255)));
        assert!(!is_storable_key("") && !is_storable_key("a-b") && !is_storable_key(&"x".repeat(256)));
        assert!(validate_key("a_b").is_err());
    }

    #[test]
    fn auth_ops_and_limits() {
        let c = cipher();
        let mut kv = KvShard::default();
        assert_eq!(kv.plan(U, &Auth::Owner, put("a", "1"), &c).unwrap_err(), KvError::NoStorage);
        assert_eq!(kv.plan(U, &Auth::Token(b"x".to_vec()), put("a", "1"), &c).unwrap_err(), KvError::Unauthorized);
        let token = apply(&mut kv, &Auth::Owner, KvOp::RotateToken, &c).unwrap().token.unwrap();
        let auth = Auth::Token(token.expose().as_bytes().to_vec());
        assert_eq!(kv.plan(U, &Auth::Token(b"x".to_vec()), put("a", "1"), &c).unwrap_err(), KvError::Unauthorized);
        apply(&mut kv, &auth, put("a", ""), &c).unwrap();
        assert_eq!(kv.get(U).unwrap().get("a").unwrap().value(), "");
        assert_eq!(kv.plan(U, &auth, KvOp::Patch { key: "b".into(), value: "x".into() }, &c).unwrap_err(), KvError::NoKey("b".into()));
        assert_eq!(kv.plan(U, &auth, KvOp::Delete { key: "b".into() }, &c).unwrap_err(), KvError::NoKey("b".into()));
        for i in 1..MAX_PAIRS {
            apply(&mut kv, &auth, put(&format!("k{i}"), "v"), &c).unwrap();
        }
        assert_eq!(kv.get(U).unwrap().pairs.len(), MAX_PAIRS);
        assert_eq!(kv.plan(U, &auth, put("one", "more"), &c).unwrap_err(), KvError::TooManyPairs);
        apply(&mut kv, &auth, put("a", "replaced"), &c).unwrap();
        apply(&mut kv, &auth, KvOp::Clear, &c).unwrap();
        assert!(kv.get(U).unwrap().pairs.is_empty());
        assert!(kv.get(U).unwrap().exists());

        // Rotation refuses the old token at once.
        let new = apply(&mut kv, &Auth::Owner, KvOp::RotateToken, &c).unwrap().token.unwrap();
        assert_eq!(kv.plan(U, &auth, put("a", "1"), &c).unwrap_err(), KvError::Unauthorized);
        apply(&mut kv, &Auth::Token(new.expose().as_bytes().to_vec()), put("a", "1"), &c).unwrap();
    }

    #[test]
    fn writes_become_visible_when_committed_and_limits_count_in_flight_writes() {
        let c = cipher();
        let mut kv = KvShard::default();
        apply(&mut kv, &Auth::Owner, KvOp::RotateToken, &c).unwrap();
        let a = kv.plan(U, &Auth::Owner, put("a", "1"), &c).unwrap();
        let b = kv.plan(U, &Auth::Owner, KvOp::Patch { key: "a".into(), value: "2".into() }, &c).unwrap();
        assert!(kv.get(U).unwrap().pairs.is_empty(), "nothing visible before the commit");
        // Acknowledgements may be seen out of order: the later commit wins.
        assert_eq!(kv.finish(U, b.seq, b.snapshot, true).unwrap().get("a").unwrap().value(), "2");
        assert!(kv.finish(U, a.seq, a.snapshot, true).is_none());
        assert_eq!(kv.get(U).unwrap().get("a").unwrap().value(), "2");

        // A failed commit leaves nothing behind.
        let f = kv.plan(U, &Auth::Owner, put("f", "1"), &c).unwrap();
        assert!(kv.finish(U, f.seq, f.snapshot, false).is_none());
        assert!(!kv.get(U).unwrap().pairs.contains_key("f"));
        assert!(kv.plan(U, &Auth::Owner, KvOp::Delete { key: "f".into() }, &c).is_err());
    }

    #[test]
    fn the_byte_bound_counts_the_map_as_served_and_unchanged_writes_change_nothing() {
        let c = cipher();
        let mut kv = KvShard { max_user_bytes: 30, ..KvShard::default() };
        assert!(apply_changed(&mut kv, KvOp::RotateToken, &c).is_none(), "a token alone does not change the map");
        let user = apply_changed(&mut kv, put("a", "\0"), &c).expect("a change");
        assert_eq!(&user.json()[..], br#"{"a":"\u0000"}"#);
        assert_eq!(user.json_len(), 14);
        // Braces, two pairs and a comma: 2 + 12 + 1 + 16 = 31 bytes is one too many; 30 fits.
        assert_eq!(kv.plan(U, &Auth::Owner, put("b", "1234567890"), &c).unwrap_err(), KvError::TooLarge(30));
        let user = apply_changed(&mut kv, put("b", "123456789"), &c).unwrap();
        assert_eq!(&user.json()[..], br#"{"a":"\u0000","b":"123456789"}"#);
        assert_eq!(user.json_len(), 30);
        assert!(apply_changed(&mut kv, put("a", "\0"), &c).is_none(), "the same value again is no change");
        let grow = KvOp::Patch { key: "a".into(), value: "\0\0".into() };
        assert_eq!(kv.plan(U, &Auth::Owner, grow, &c).unwrap_err(), KvError::TooLarge(30));
        assert_eq!(kv.plan(U, &Auth::Owner, put("c", ""), &c).unwrap_err(), KvError::TooLarge(30));
        let user = apply_changed(&mut kv, KvOp::Delete { key: "b".into() }, &c).unwrap();
        assert_eq!((&user.json()[..], user.json_len()), (&br#"{"a":"\u0000"}"#[..], 14));
        assert_eq!(apply_changed(&mut kv, KvOp::Clear, &c).unwrap().json_len(), 2);
        assert!(apply_changed(&mut kv, KvOp::Clear, &c).is_none());

        // A map loaded past a smaller bound may shrink, not grow.
        let loaded = HashMap::from([(U, BTreeMap::from([("a".to_string(), "x".repeat(20))]))]);
        let tokens = HashMap::from([(U, c.seal(&Token::generate(U)).unwrap())]);
        let (mut kv, _) = KvShard::from_loaded(loaded, tokens, &c, 10);
        assert_eq!(kv.get(U).unwrap().json_len(), 28);
        assert_eq!(kv.plan(U, &Auth::Owner, put("a", &"x".repeat(21)), &c).unwrap_err(), KvError::TooLarge(10));
        assert_eq!(kv.plan(U, &Auth::Owner, put("b", ""), &c).unwrap_err(), KvError::TooLarge(10));
        assert_eq!(apply_changed(&mut kv, put("a", &"x".repeat(19)), &c).unwrap().json_len(), 27);
    }

    /// Plans and commits as the owner; the new storage if readers must see a change.
    fn apply_changed(kv: &mut KvShard, op: KvOp, c: &TokenCipher) -> Option<Arc<UserKv>> {
        let p = kv.plan(U, &Auth::Owner, op, c).unwrap();
        kv.finish(U, p.seq, p.snapshot, true)
    }

    #[test]
    fn forget_wins_over_writes_in_flight() {
        let c = cipher();
        let mut kv = KvShard::default();
        apply(&mut kv, &Auth::Owner, KvOp::RotateToken, &c).unwrap();
        let a = kv.plan(U, &Auth::Owner, put("a", "1"), &c).unwrap();
        assert_eq!(kv.forget(U), Some(WriteOp::DeleteStorage(U)));
        assert!(kv.finish(U, a.seq, a.snapshot, true).is_none());
        assert!(kv.get(U).is_none());
        assert_eq!(kv.forget(U), None);
    }

    #[test]
    fn unreadable_tokens_keep_the_storage() {
        let c = cipher();
        let mut kv = HashMap::new();
        kv.insert(U, BTreeMap::from([("a".to_string(), "1".to_string())]));
        let tokens = HashMap::from([(U, vec![0u8; 40])]);
        let (mut shard, unreadable) = KvShard::from_loaded(kv, tokens, &c, DEFAULT_MAX_USER_BYTES);
        assert_eq!(unreadable, 1);
        assert!(shard.get(U).unwrap().exists());
        assert_eq!(shard.plan(U, &Auth::Token(b"x".to_vec()), KvOp::Clear, &c).unwrap_err(), KvError::Unauthorized);
        assert_eq!(shard.storage_jsons()[&U], Bytes::from_static(br#"{"a":"1"}"#));
    }
}
