//! Presence: each shard's member and presence state, and the Lantern user object built from it.
//!
//! [`state::ShardState`] holds the users one shard owns. Every change rebuilds that user's
//! [`user_object::UserJson`] once; readers (REST, WebSocket fan-out, the card) reuse those
//! bytes instead of serializing again. [`Presence`] is the per-shard service around it: its
//! mutators take an [`Owned`] proof, so only the owner shard changes a user.

pub mod events;
pub mod flags;
pub mod json_out;
pub mod privacy;
pub mod state;
pub mod user_object;

pub use events::IngestEvent;
pub use privacy::{PrivacyPatch, PrivacySettings};
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

    /// Users this shard monitors (a member who paused is not counted: readers do not see them).
    pub fn len(&self) -> usize {
        self.state.borrow().shown_len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the user is a monitored member readers see (not paused).
    pub fn contains(&self, id: Owned<Snowflake>) -> bool {
        self.state.borrow().shown(id.key()).is_some()
    }

    /// The user object, rendered at `now` (unix ms); `None` when not monitored.
    pub fn render(&self, id: Owned<Snowflake>, now: i64) -> Option<Bytes> {
        self.state.borrow().shown(id.key()).map(|u| u.json.render(now))
    }

    /// The user object at `now`, gzip-compressed (`Ok`, cached per version) or plain (`Err`)
    /// when too short to compress; `None` when not monitored.
    pub fn render_gzip(&self, id: Owned<Snowflake>, now: i64) -> Option<Result<Bytes, Bytes>> {
        self.state.borrow().shown(id.key()).map(|u| u.json.render_gzip(now))
    }

    /// Every monitored user's object, rendered at `now`.
    pub fn render_all(&self, now: i64) -> Vec<(Snowflake, Bytes)> {
        let state = self.state.borrow();
        state.shown_ids().filter_map(|id| Some((id, state.shown(id)?.json.render(now)))).collect()
    }

    /// The ids of every monitored user this shard owns.
    pub fn ids(&self) -> Vec<Snowflake> {
        self.state.borrow().shown_ids().collect()
    }

    /// Reads one user's state, as the member's privacy settings let readers see it, through
    /// `f`; `None` when not monitored.
    pub fn with_user<R>(&self, id: Owned<Snowflake>, f: impl FnOnce(UserView<'_>) -> R) -> Option<R> {
        let state = self.state.borrow();
        Some(f(state.shown(id.key())?.view()))
    }

    /// Cluster mode: the user's state as kept (not as privacy shows it), for replication.
    pub fn replica(&self, id: Owned<Snowflake>) -> Option<(Member, Option<DiscordPresence>, Option<i64>)> {
        let state = self.state.borrow();
        let u = state.get(id.key())?;
        Some((u.member.clone(), u.presence.as_deref().cloned(), u.last_seen_ms))
    }

    /// The user's KV map as served in public objects (`{}` when empty or hidden); `None` when
    /// not monitored.
    pub fn storage_json(&self, id: Owned<Snowflake>) -> Option<Bytes> {
        self.state.borrow().shown(id.key()).map(|u| u.shown_storage())
    }

    /// Whether the user is a listed member, paused or not (privacy changes need one).
    pub fn is_member(&self, id: Owned<Snowflake>) -> bool {
        self.state.borrow().is_member(id.key())
    }

    /// The user's privacy settings (the default when they set none).
    pub fn privacy(&self, id: Owned<Snowflake>) -> PrivacySettings {
        self.state.borrow().privacy(id.key())
    }

    /// Plans a change of the user's settings (see [`ShardState::plan_privacy`]).
    pub fn plan_privacy(&self, id: Owned<Snowflake>, change: impl FnOnce(&mut PrivacySettings) -> Result<(), String>) -> Result<(u64, PrivacySettings), String> {
        self.state.borrow_mut().plan_privacy(id.key(), change)
    }

    /// A planned change was written, or failed (see [`ShardState::commit_privacy`]).
    pub fn commit_privacy(&self, id: Owned<Snowflake>, seq: u64, settings: PrivacySettings, durable: bool) -> Applied {
        let mut applied = Applied::default();
        self.state.borrow_mut().commit_privacy(id.key(), seq, settings, durable, &mut applied);
        applied
    }

    /// Replaces the user's settings with ones made durable elsewhere (cluster mode).
    pub fn replace_privacy(&self, id: Owned<Snowflake>, settings: PrivacySettings) -> Applied {
        let mut applied = Applied::default();
        self.state.borrow_mut().set_privacy(id.key(), settings, &mut applied);
        applied
    }

    /// Applies an ingest event whose users this shard owns (each proven by `owns`; a user it
    /// does not own is skipped and logged, as a routing bug).
    pub fn apply(&self, event: IngestEvent, now: i64, owns: impl Fn(Snowflake) -> Option<Owned<Snowflake>>) -> Applied {
        let mine = |id: Snowflake| {
            let owned = owns(id).is_some();
            if !owned {
                tracing::error!(user = %id, "an event for a user owned by another shard was routed here; dropped");
            }
            owned
        };
        let event = match event {
            IngestEvent::Listed { generation, mut members } => {
                members.retain(|(m, _)| mine(m.user.id));
                IngestEvent::Listed { generation, members }
            }
            other => match other.user() {
                Some(id) if !mine(id) => return Applied::default(),
                _ => other,
            },
        };
        let mut applied = Applied::default();
        self.state.borrow_mut().apply(event, now, &mut applied);
        applied
    }

    /// Replaces the user's KV map (serialized as a JSON object).
    pub fn set_storage_json(&self, id: Owned<Snowflake>, storage_json: Bytes) -> Applied {
        let mut applied = Applied::default();
        self.state.borrow_mut().set_storage_json(id.key(), storage_json, &mut applied);
        applied
    }
}
