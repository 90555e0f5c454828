//! The storage service: requests for a user's storage, answered on the user's owner shard.
//!
//! Writes are planned against the shard's in-memory state, committed by its writer thread
//! (grouped with whatever else is queued), and answered only once durable; the caller (the
//! shard's wiring) then gives the user object the new map, which goes out for fan-out.

use super::kv::{Auth, KvError, KvOp, KvShard, TokenState, UserKv};
use super::token::{Token, TokenCipher};
use super::writer::{WriteOp, WriterHandle};
use crate::discord::Snowflake;
use crate::runtime::Owned;
use bytes::Bytes;
use std::cell::RefCell;
use std::sync::Arc;

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
        Storage { kv: RefCell::new(kv), writer, cipher }
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

    /// Writes other services' rows (privacy settings) through the same group commit as
    /// key-value writes; resolves once durable.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<(), String> {
        self.writer.write(ops).await
    }

    /// Whether `given` is the user's current token (constant-time comparison).
    pub fn authorized(&self, id: Owned<Snowflake>, given: &[u8]) -> bool {
        self.kv.borrow().authorized(id.key(), given)
    }

    /// A member was removed from the guild: their pairs and token are deleted.
    pub fn forget(&self, id: Owned<Snowflake>) {
        if let Some(op) = self.kv.borrow_mut().forget(id.key()) {
            self.writer.submit(vec![op]);
        }
    }

    /// Answers a storage request for a user this shard owns; `monitored` says whether the user
    /// is a monitored member now. Writes are answered once durable.
    pub async fn handle(&self, id: Owned<Snowflake>, req: StorageRequest, monitored: bool) -> Result<Answered, KvError> {
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
        let planned = self.kv.borrow_mut().plan(user_id, &auth, op, &self.cipher)?;
        let result = self.writer.write(planned.ops).await;
        let committed = self.kv.borrow_mut().finish(user_id, planned.seq, planned.snapshot, result.is_ok());
        if let Err(e) = result {
            return Err(KvError::Internal(e));
        }
        Ok(Answered { answer: StorageAnswer::Written(planned.token), committed: committed.map(|user| user.json()) })
    }
}
