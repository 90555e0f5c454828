//! Storage requests on the owner shard, and how REST and the bot reach it.
//!
//! Every request for a user's storage is answered by the user's owner shard: directly when it
//! is the shard at hand, else through a [`ShardMsg::Storage`] and a oneshot reply. Writes are
//! planned against the shard's in-memory state, committed by its writer thread (grouped with
//! whatever else is queued), and answered only once durable; the user object then carries the
//! new map and a `Change::StorageUpdated` goes out for fan-out.

use super::kv::{Auth, KvError, KvOp, TokenState, UserKv};
use super::token::Token;
use crate::discord::Snowflake;
use crate::runtime::{shard_of, MailboxSender, ShardContext, ShardMsg};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::oneshot;

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

impl ShardContext {
    /// Runs a storage request on the owner shard of `id`, from this shard.
    pub async fn storage(&self, id: Snowflake, req: StorageRequest) -> Result<StorageAnswer, KvError> {
        let owner = shard_of(id, self.shards());
        if owner == self.index {
            self.storage_local(id, req).await
        } else {
            ask(&self.peers[owner], id, req).await
        }
    }

    /// Runs a storage request for a user this shard owns.
    pub async fn storage_local(&self, id: Snowflake, req: StorageRequest) -> Result<StorageAnswer, KvError> {
        let (auth, op) = match req {
            StorageRequest::GetAll | StorageRequest::GetKey(_) => {
                if !self.state.borrow().contains(id) {
                    return Err(KvError::NotMonitored);
                }
                let kv = self.kv.borrow();
                let Some(user) = kv.get(id).filter(|u| u.exists()) else { return Err(KvError::NoStorage) };
                return match req {
                    StorageRequest::GetKey(key) => match user.get(&key) {
                        Some(pair) => Ok(StorageAnswer::Value(pair.value_json())),
                        None => Err(KvError::NoKey(key)),
                    },
                    _ => Ok(StorageAnswer::Map(user.json())),
                };
            }
            StorageRequest::Pairs | StorageRequest::GetToken => {
                let kv = self.kv.borrow();
                let Some(user) = kv.get(id).filter(|u| u.exists()) else { return Err(KvError::NoStorage) };
                return Ok(match req {
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
                if !self.kv.borrow().authorized(id, given) {
                    return Err(KvError::Unauthorized);
                }
                if !self.state.borrow().contains(id) {
                    return Err(KvError::NotMonitored);
                }
            }
            Auth::Owner => {
                if op == KvOp::RotateToken && !self.state.borrow().contains(id) {
                    return Err(KvError::NotMonitored);
                }
            }
        }
        let planned = self.kv.borrow_mut().plan(id, &auth, op, &self.cipher)?;
        let result = self.writer.write(planned.ops).await;
        let committed = self.kv.borrow_mut().finish(id, planned.seq, planned.snapshot, result.is_ok());
        if let Err(e) = result {
            return Err(KvError::Internal(e));
        }
        if let Some(user) = committed {
            // The one copy of the map a write makes: its pairs' JSON, assembled. GET storage,
            // the user object and STORAGE_UPDATE all share it.
            self.set_storage_json(id, user.json());
        }
        Ok(StorageAnswer::Written(planned.token))
    }
}

/// Asks the owner shard through its mailbox (from any thread or runtime).
pub async fn ask(owner: &MailboxSender<ShardMsg>, id: Snowflake, req: StorageRequest) -> Result<StorageAnswer, KvError> {
    let (reply, rx) = oneshot::channel();
    owner.send(ShardMsg::Storage { id, req, reply }).map_err(|_| KvError::Internal("the owner shard has stopped".into()))?;
    rx.await.map_err(|_| KvError::Internal("the owner shard did not answer".into()))?
}

/// [`ask`], picking the owner among every shard's mailbox.
pub async fn ask_owner(shards: &[MailboxSender<ShardMsg>], id: Snowflake, req: StorageRequest) -> Result<StorageAnswer, KvError> {
    ask(&shards[shard_of(id, shards.len())], id, req).await
}
