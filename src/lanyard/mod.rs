//! The Lanyard dialect's data: Lanyard's presence object, encoded once per change on the user's
//! owner shard and kept until the user changes again.
//!
//! Lanyard's clients (use-lanyard, lanyard-py, the README cards) read a different object from
//! Lantern's user object: `discord_user` as Discord sends it, `discord_status`, one flag per
//! platform, a derived `spotify` block, the activities as Discord sends them and `kv`.
//! [`presence::encode`] builds it from the same state the Lantern object comes from; the
//! [`LanyardCache`] of a shard keeps the bytes per user version, so a user read by many
//! Lanyard clients is serialized once. Nothing is built for users nobody reads in this dialect.

pub mod presence;

use crate::discord::Snowflake;
use crate::presence::UserView;
use bytes::Bytes;
use std::cell::RefCell;
// foldhash: keyed like std's SipHash, far cheaper per lookup.
use foldhash::HashMap;

/// One shard's Lanyard presence bytes, by user, tagged with the user version they show.
#[derive(Default)]
pub struct LanyardCache {
    users: RefCell<HashMap<Snowflake, (u64, Bytes)>>,
}

impl LanyardCache {
    /// The presence of the user in `view` (whose key-value map is `kv_json`), from the cache
    /// when it shows this version, else encoded now and kept.
    pub fn presence(&self, id: Snowflake, view: &UserView<'_>, kv_json: &[u8]) -> Bytes {
        if let Some((version, bytes)) = self.users.borrow().get(&id) {
            if *version == view.version {
                return bytes.clone();
            }
        }
        let bytes = presence::encode(view, kv_json);
        self.users.borrow_mut().insert(id, (view.version, bytes.clone()));
        bytes
    }

    /// Drops a user's bytes (the member left), so the cache holds monitored users only.
    pub fn forget(&self, id: Snowflake) {
        self.users.borrow_mut().remove(&id);
    }

    /// Users whose presence is cached.
    pub fn len(&self) -> usize {
        self.users.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.borrow().is_empty()
    }
}
