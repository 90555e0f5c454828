//! Presence: each shard's member and presence state, and the Lantern user object built from it.
//!
//! [`state::ShardState`] holds the users one shard owns. Every change rebuilds that user's
//! [`user_object::UserJson`] once; readers (REST, WebSocket fan-out, the card) reuse those
//! bytes instead of serializing again. [`Presence`] is the per-shard service around it: its
//! mutators take an [`Owned`] proof, so only the owner shard changes a user.

pub mod events;
pub mod flags;
pub mod state;
pub mod user_object;

pub use events::IngestEvent;
pub use state::{Applied, Change, LastSeenWrite, ShardState, UserState};
pub use user_object::UserJson;

use crate::discord::{Member, Presence as DiscordPresence, Snowflake};
use crate::runtime::Owned;
use bytes::Bytes;
use std::cell::RefCell;

/// The presence service of one shard.
pub struct Presence {
    state: RefCell<ShardState>,
}

/// What one user's state shows, for readers that are not the user object (the card).
pub struct UserView<'a> {
    pub member: &'a Member,
    pub presence: Option<&'a DiscordPresence>,
    pub last_seen_ms: Option<i64>,
    /// Bumped on every visible change.
    pub version: u64,
}

impl Presence {
    pub fn new(state: ShardState) -> Presence {
        Presence { state: RefCell::new(state) }
    }

    /// Users this shard monitors.
    pub fn len(&self) -> usize {
        self.state.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.borrow().is_empty()
    }

    /// Whether the user is a monitored member.
    pub fn contains(&self, id: Owned<Snowflake>) -> bool {
        self.state.borrow().contains(id.key())
    }

    /// The user object, rendered at `now` (unix ms); `None` when not monitored.
    pub fn render(&self, id: Owned<Snowflake>, now: i64) -> Option<Bytes> {
        self.state.borrow().get(id.key()).map(|u| u.json.render(now))
    }

    /// Every monitored user's object, rendered at `now`.
    pub fn render_all(&self, now: i64) -> Vec<Bytes> {
        let state = self.state.borrow();
        state.ids().filter_map(|id| state.get(id)).map(|u| u.json.render(now)).collect()
    }

    /// Reads one user's state through `f`; `None` when not monitored.
    pub fn with_user<R>(&self, id: Owned<Snowflake>, f: impl FnOnce(UserView<'_>) -> R) -> Option<R> {
        let state = self.state.borrow();
        let u = state.get(id.key())?;
        Some(f(UserView { member: &u.member, presence: u.presence.as_ref(), last_seen_ms: u.last_seen_ms, version: u.version }))
    }

    /// The user's KV map as served in the user object (`{}` when empty); `None` when not monitored.
    pub fn storage_json(&self, id: Owned<Snowflake>) -> Option<Bytes> {
        self.state.borrow().get(id.key()).map(|u| u.storage_json.clone())
    }

    /// Applies an ingest event whose users this shard owns (each proven by `owns`; a user it
    /// does not own is skipped and logged, as a routing bug).
    pub fn apply(&self, event: IngestEvent, now: i64, owns: impl Fn(Snowflake) -> Option<Owned<Snowflake>>) -> Applied {
        let mut applied = Applied::default();
        let mut state = self.state.borrow_mut();
        let mine = |id: Snowflake| {
            let owned = owns(id);
            if owned.is_none() {
                tracing::error!(user = %id, "an event for a user owned by another shard was routed here; dropped");
            }
            owned.is_some()
        };
        match event {
            IngestEvent::Listed { generation, members } => {
                for (member, presence) in members {
                    if mine(member.user.id) {
                        state.upsert_listed(member, presence, generation, now, &mut applied);
                    }
                }
            }
            IngestEvent::ListComplete { generation } => state.finish_snapshot(generation, &mut applied),
            IngestEvent::Presence(p) if mine(p.user.id) => state.presence_update(p, now, &mut applied),
            IngestEvent::MemberAdd { generation, member } if mine(member.user.id) => state.member_add(member, generation, now, &mut applied),
            IngestEvent::MemberUpdate(u) if mine(u.user.id) => state.member_update(u, &mut applied),
            IngestEvent::MemberRemove(id) if mine(id) => state.member_remove(id, &mut applied),
            IngestEvent::UserUpdate(u) if mine(u.id) => state.user_update(&u, &mut applied),
            _ => {}
        }
        applied
    }

    /// Replaces the user's KV map (serialized as a JSON object).
    pub fn set_storage_json(&self, id: Owned<Snowflake>, storage_json: Bytes) -> Applied {
        let mut applied = Applied::default();
        self.state.borrow_mut().set_storage_json(id.key(), storage_json, &mut applied);
        applied
    }
}
