//! The storage service: requests for a user's storage, answered on the user's owner shard.
//!
//! Writes are planned against the shard's in-memory state, committed by its writer thread
//! (grouped with whatever else is queued), and answered only once durable; the caller (the
//! shard's wiring) then gives the user object the new map, which goes out for fan-out.
//!
//! In cluster mode pairs, tokens and privacy settings are made durable in the cluster's store
//! instead ([`super::remote`]): a write goes out on the revision of the user's document this
//! shard last read, one at a time per shard, and a write that another node's beat is planned
//! again on what that node wrote. Every document the store holds comes back to its owner
//! shard on every node ([`Storage::install`]), which is how writes made elsewhere arrive.

use super::kv::{Auth, KvError, KvOp, KvShard, TokenState, UserKv};
use super::remote::{Expect, KvDocument, Part, RemoteError, RemoteStore};
use super::token::{Token, TokenCipher};
use super::writer::{WriteOp, WriterHandle};
use crate::discord::Snowflake;
use crate::runtime::Owned;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// How many times a cluster-mode write is planned again after other nodes' writes beat it.
/// Writers on several nodes hammering one user's storage each win in turn; the bound only
/// turns a livelock into a 503.
const MAX_ATTEMPTS: usize = 32;

/// What to do with one user's storage.
#[derive(Debug, Clone)]
pub enum StorageRequest {
    /// All pairs as a JSON object (REST): the user must be monitored and have storage.
    GetAll,
    /// One value (REST): monitored, storage, and the key must exist.
    GetKey(String),
    /// All pairs (the bot: list, get, autocomplete): the user must have storage.
    Pairs,
    /// The user's token (the bot): the user must have storage.
    GetToken,
    /// A mutation, authorized by `auth`. Rotating the token needs a monitored member; REST
    /// writes are authorized before anything else is checked.
    Write { auth: Auth, op: KvOp },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageAnswer {
    /// The pairs as a JSON object (shared, never re-serialized per read).
    Map(Bytes),
    /// One value as a JSON string, quotes included.
    Value(Bytes),
    /// The committed storage (shared, not copied).
    Pairs(Arc<UserKv>),
    /// `None`: storage exists but its token cannot be decrypted with the configured secret.
    Token(Option<Token>),
    /// A write is durable (`Some` token for a rotation).
    Written(Option<Token>),
}

/// The storage service of one shard: the committed key-value state of the users it owns, in
/// memory, and the writer thread that makes changes durable.
pub struct Storage {
    kv: RefCell<KvShard>,
    writer: WriterHandle,
    cipher: Arc<TokenCipher>,
    /// Cluster mode: where pairs, tokens and privacy settings are made durable.
    remote: Option<Remote>,
}

/// The cluster's store as one shard uses it.
struct Remote {
    store: RemoteStore,
    /// The revision of each document of this shard's users last read or written.
    revisions: RefCell<HashMap<(Snowflake, Part), u64>>,
    /// One key-value write at a time: each goes out on the revision the one before it made.
    writing: glommio::sync::Semaphore,
}

impl Remote {
    fn revision(&self, id: Snowflake, part: Part) -> u64 {
        self.revisions.borrow().get(&(id, part)).copied().unwrap_or(0)
    }

    /// Notes a revision read or written; `false` when one as new was already noted (what it
    /// carries is applied already, or superseded).
    fn advance(&self, id: Snowflake, part: Part, revision: u64) -> bool {
        let mut revisions = self.revisions.borrow_mut();
        let known = revisions.entry((id, part)).or_insert(0);
        if revision <= *known {
            return false;
        }
        *known = revision;
        true
    }
}

/// A document of one of this shard's users as the cluster's store holds it, applied: what
/// readers must hear about.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// Nothing changed (an older or already applied revision, or the same content).
    Nothing,
    /// The user's pairs changed: the new map's JSON.
    Map(Bytes),
    /// The user's privacy settings (JSON; `None`: the defaults).
    Privacy(Option<String>),
}

fn unavailable(e: RemoteError) -> String {
    match e {
        RemoteError::Unavailable(reason) => reason,
        RemoteError::Conflict => "the document changed".into(),
        RemoteError::TooLarge(n) => format!("the document exceeds the store's {n} bytes"),
    }
}

/// A request answered, and for a write, the user's new map (as a JSON object) once durable.
pub struct Answered {
    pub answer: StorageAnswer,
    /// The one copy of the map a write makes: its pairs' JSON, assembled. GET storage, the
    /// user object and STORAGE_UPDATE all share it.
    pub committed: Option<Bytes>,
}

impl Storage {
    pub fn new(kv: KvShard, writer: WriterHandle, cipher: Arc<TokenCipher>) -> Storage {
        Storage { kv: RefCell::new(kv), writer, cipher, remote: None }
    }

    /// Cluster mode: pairs, tokens and privacy settings are made durable in `store`.
    pub fn with_remote(mut self, store: Option<RemoteStore>) -> Storage {
        self.remote = store.map(|store| Remote { store, revisions: RefCell::default(), writing: glommio::sync::Semaphore::new(1) });
        self
    }

    /// Whether pairs, tokens and privacy settings live in the cluster's store.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Applies a document of one of this shard's users as the cluster's store holds it at
    /// `revision` (`None`: deleted). Revisions arrive in order; one already applied (this
    /// shard's own write coming back) changes nothing.
    pub fn install(&self, id: Owned<Snowflake>, part: Part, revision: u64, value: Option<&[u8]>) -> Installed {
        let Some(remote) = &self.remote else { return Installed::Nothing };
        if !remote.advance(id.key(), part, revision) {
            return Installed::Nothing;
        }
        match part {
            Part::Kv => {
                let stored = match value.map(KvDocument::from_bytes) {
                    None => None,
                    Some(Ok(doc)) => Some(UserKv::from_document(doc, &self.cipher)),
                    Some(Err(e)) => {
                        tracing::error!(user = %id.key(), revision, error = %e, "skipping an unreadable storage document");
                        return Installed::Nothing;
                    }
                };
                match self.kv.borrow_mut().install(id.key(), stored) {
                    Some(user) => Installed::Map(user.json()),
                    None => Installed::Nothing,
                }
            }
            Part::Privacy => Installed::Privacy(value.map(|v| String::from_utf8_lossy(v).into_owned())),
        }
    }

    /// The group commits of this shard's writer, for `/metrics`.
    pub fn commit_stats(&self) -> crate::metrics::CommitStats {
        self.writer.stats().snapshot()
    }

    /// Queues writes that need no answer (last-seen times).
    pub fn submit(&self, ops: Vec<WriteOp>) {
        if !ops.is_empty() {
            self.writer.submit(ops);
        }
    }

    /// Writes a user's privacy settings (their JSON; `default`: they are the defaults, which
    /// a shard file keeps as no row) through the same group commit as key-value writes, or to
    /// the cluster's store; resolves once durable. `Ok(false)`: durable, but a newer change
    /// already applied supersedes it.
    pub async fn write_privacy(&self, id: Owned<Snowflake>, json: String, default: bool) -> Result<bool, PrivacyWriteError> {
        let user = id.key();
        let Some(remote) = &self.remote else {
            let op = if default { WriteOp::ClearPrivacy(user) } else { WriteOp::SetPrivacy(user, json) };
            return self.writer.write(vec![op]).await.map(|()| true).map_err(PrivacyWriteError::Failed);
        };
        // Always a put, never a delete: a put answers its revision, which orders it against
        // the changes other nodes make.
        match remote.store.write(user, Part::Privacy, Some(Bytes::from(json)), Expect::Any).await {
            Ok(revision) => Ok(remote.advance(user, Part::Privacy, revision)),
            Err(e) => Err(PrivacyWriteError::Unavailable(unavailable(e))),
        }
    }

    /// Whether `given` is the user's current token (constant-time comparison).
    pub fn authorized(&self, id: Owned<Snowflake>, given: &[u8]) -> bool {
        self.kv.borrow().authorized(id.key(), given)
    }

    /// A member was removed from the guild: their pairs and token are deleted (in cluster
    /// mode from the cluster's store, retried until it takes the delete).
    pub fn forget(&self, id: Owned<Snowflake>) {
        let Some(op) = self.kv.borrow_mut().forget(id.key()) else { return };
        let Some(remote) = &self.remote else {
            self.writer.submit(vec![op]);
            return;
        };
        let store = remote.store.clone();
        let user = id.key();
        glommio::spawn_local(async move {
            while let Err(e) = store.write(user, Part::Kv, None, Expect::Any).await {
                tracing::warn!(user = %user, reason = %unavailable(e), "cannot delete a departed member's storage yet; retrying");
                glommio::timer::sleep(std::time::Duration::from_millis(500)).await;
            }
        })
        .detach();
    }

    /// Answers a storage request for a user this shard owns; `monitored` says whether the user
    /// is a monitored member now. Writes are answered once durable. In cluster mode, a write
    /// beaten by another node's first applies that node's document, whose new map goes to
    /// `announce` (for readers and subscribers), then is planned again.
    pub async fn handle(&self, id: Owned<Snowflake>, req: StorageRequest, monitored: bool, announce: &dyn Fn(Bytes)) -> Result<Answered, KvError> {
        let user_id = id.key();
        let read = |answer| Ok(Answered { answer, committed: None });
        let (auth, op) = match req {
            StorageRequest::GetAll | StorageRequest::GetKey(_) => {
                if !monitored {
                    return Err(KvError::NotMonitored);
                }
                let kv = self.kv.borrow();
                let Some(user) = kv.get(user_id).filter(|u| u.exists()) else { return Err(KvError::NoStorage) };
                return match req {
                    StorageRequest::GetKey(key) => match user.get(&key) {
                        Some(pair) => read(StorageAnswer::Value(pair.value_json())),
                        None => Err(KvError::NoKey(key)),
                    },
                    _ => read(StorageAnswer::Map(user.json())),
                };
            }
            StorageRequest::Pairs | StorageRequest::GetToken => {
                let kv = self.kv.borrow();
                let Some(user) = kv.get(user_id).filter(|u| u.exists()) else { return Err(KvError::NoStorage) };
                return read(match req {
                    StorageRequest::Pairs => StorageAnswer::Pairs(user.clone()),
                    _ => StorageAnswer::Token(match &user.token {
                        TokenState::Valid(t) => Some(t.clone()),
                        _ => None,
                    }),
                });
            }
            StorageRequest::Write { auth, op } => (auth, op),
        };
        match &auth {
            Auth::Token(given) => {
                // Authorization first: an unauthorized caller learns nothing else.
                if !self.kv.borrow().authorized(user_id, given) {
                    return Err(KvError::Unauthorized);
                }
                if !monitored {
                    return Err(KvError::NotMonitored);
                }
            }
            Auth::Owner => {
                if op == KvOp::RotateToken && !monitored {
                    return Err(KvError::NotMonitored);
                }
            }
        }
        if let Some(remote) = &self.remote {
            return self.write_remote(remote, id, &auth, op, announce).await;
        }
        let planned = self.kv.borrow_mut().plan(user_id, &auth, op, &self.cipher)?;
        let result = self.writer.write(planned.ops).await;
        let committed = self.kv.borrow_mut().finish(user_id, planned.seq, planned.snapshot, result.is_ok());
        if let Err(e) = result {
            return Err(KvError::Internal(e));
        }
        Ok(Answered { answer: StorageAnswer::Written(planned.token), committed: committed.map(|user| user.json()) })
    }

    /// A key-value write in cluster mode: the whole document on the revision last read.
    async fn write_remote(&self, remote: &Remote, id: Owned<Snowflake>, auth: &Auth, op: KvOp, announce: &dyn Fn(Bytes)) -> Result<Answered, KvError> {
        let user = id.key();
        let _turn = remote.writing.acquire_permit(1).await.map_err(|e| KvError::Internal(e.to_string()))?;
        for _ in 0..MAX_ATTEMPTS {
            let planned = self.kv.borrow_mut().plan(user, auth, op.clone(), &self.cipher)?;
            let doc = match planned.snapshot.to_document(&self.cipher) {
                Ok(doc) => doc,
                Err(e) => {
                    self.kv.borrow_mut().finish(user, planned.seq, planned.snapshot, false);
                    return Err(e);
                }
            };
            let expect = Expect::Revision(remote.revision(user, Part::Kv));
            let result = remote.store.write(user, Part::Kv, Some(doc.to_bytes()), expect).await;
            let newer = match &result {
                Ok(revision) => remote.advance(user, Part::Kv, *revision),
                Err(_) => false,
            };
            // Not newer: this very revision came back from the store first and is applied.
            let committed = self.kv.borrow_mut().finish(user, planned.seq, planned.snapshot, newer);
            match result {
                Ok(_) => return Ok(Answered { answer: StorageAnswer::Written(planned.token), committed: committed.map(|u| u.json()) }),
                Err(RemoteError::Conflict) => {
                    let (revision, value) = remote.store.read(user, Part::Kv).await.map_err(|e| KvError::Unavailable(unavailable(e)))?;
                    if let Installed::Map(map) = self.install(id, Part::Kv, revision, value.as_deref()) {
                        announce(map);
                    }
                    // A short random pause, so that writers that keep colliding drift apart.
                    glommio::timer::sleep(std::time::Duration::from_micros(rand::random_range(0..2_000))).await;
                }
                Err(RemoteError::TooLarge(max)) => return Err(KvError::TooLarge(max)),
                Err(e) => return Err(KvError::Unavailable(unavailable(e))),
            }
        }
        Err(KvError::Unavailable("the storage kept changing under this write; try again".into()))
    }
}

/// Why a privacy change was not made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivacyWriteError {
    /// The writer could not commit.
    Failed(String),
    /// Cluster mode: the cluster's store cannot be reached.
    Unavailable(String),
}
