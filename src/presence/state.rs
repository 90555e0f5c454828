//! The users one shard owns: member data, presence, last seen, and the cached user object.
//!
//! Only the owner shard touches a [`ShardState`]; everything that changes it arrives as an
//! ingest event through the shard's mailbox. Each mutation reports a [`Change`] when, and only
//! when, the user object a reader would see is different.

use crate::discord::events::GuildMemberUpdate;
use crate::discord::{Member, PartialUser, Presence, Snowflake};
use crate::presence::IngestEvent;
use crate::presence::user_object::{self, MemberJson, UserInputs, UserJson};
use bytes::Bytes;
use std::collections::HashMap;

/// A visible change to one user, for fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new member is monitored.
    Joined(Snowflake),
    /// The user object changed.
    Updated(Snowflake),
    /// The member left (or vanished from a complete member list) and is no longer monitored.
    Left(Snowflake),
    /// The user's key-value map changed (the user object changed with it).
    StorageUpdated(Snowflake),
}

/// A last-seen transition to persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastSeenWrite {
    Set(Snowflake, i64),
    Clear(Snowflake),
}

pub struct UserState {
    pub member: Member,
    pub presence: Option<Presence>,
    pub last_seen_ms: Option<i64>,
    /// The KV map as a JSON object (`{}` when empty), shared with the KV store.
    pub storage_json: Bytes,
    /// Bumped on every visible change.
    pub version: u64,
    pub json: UserJson,
    /// The member's own pieces of `json`, kept for the rebuilds that leave the member as it is.
    member_json: MemberJson,
    /// Set by every change to `member`: the next rebuild serializes its pieces again.
    member_changed: bool,
    /// The member-list generation that last listed this user (see [`ShardState::finish_snapshot`]).
    seen_in: u64,
    /// How many times the user object was built (tests check that a no-op builds nothing).
    builds: u64,
}

impl UserState {
    /// What this user's state shows, for readers that are not the user object.
    pub fn view(&self) -> crate::presence::UserView<'_> {
        crate::presence::UserView { member: &self.member, presence: self.presence.as_ref(), last_seen_ms: self.last_seen_ms, version: self.version }
    }

    /// Marks the member as changed (or possibly changed) since the last rebuild.
    fn member_changed(&mut self) {
        self.member_changed = true;
    }

    fn rebuild(&mut self) -> bool {
        self.builds += 1;
        if std::mem::take(&mut self.member_changed) {
            self.member_json = user_object::member_json(&self.member);
        }
        // Every path that changes the member says so; tests (debug builds) check each rebuild.
        debug_assert_eq!(self.member_json, user_object::member_json(&self.member), "member changed without member_changed()");
        let json = user_object::build_with(
            &UserInputs {
                member: &self.member,
                presence: self.presence.as_ref(),
                last_seen_ms: self.last_seen_ms,
                storage_json: &self.storage_json,
            },
            &self.member_json,
        );
        if json == self.json {
            return false;
        }
        self.json = json;
        self.version += 1;
        true
    }

    fn is_offline(&self) -> bool {
        self.presence.as_ref().map(|p| p.status.is_offline()).unwrap_or(true)
    }
}

/// All users owned by one shard.
#[derive(Default)]
pub struct ShardState {
    users: HashMap<Snowflake, UserState>,
    /// Last-seen times loaded from disk for users not (yet) listed as members.
    last_seen: HashMap<Snowflake, i64>,
    /// KV maps (JSON objects) of users with stored pairs who are not (yet) listed as members.
    storage: HashMap<Snowflake, Bytes>,
}

/// Result of applying an event: what readers must hear about and what must be persisted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub changes: Vec<Change>,
    pub writes: Vec<LastSeenWrite>,
}

impl ShardState {
    /// Starts with the last-seen times persisted in the shard's storage.
    pub fn with_last_seen(last_seen: HashMap<Snowflake, i64>) -> ShardState {
        ShardState { users: HashMap::new(), last_seen, storage: HashMap::new() }
    }

    /// Also starts with the persisted KV maps (JSON objects) of the shard's users.
    pub fn with_storage(mut self, storage: HashMap<Snowflake, Bytes>) -> ShardState {
        self.storage = storage;
        self
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn get(&self, id: Snowflake) -> Option<&UserState> {
        self.users.get(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = Snowflake> + '_ {
        self.users.keys().copied()
    }

    /// Inserts or refreshes a member, with its presence from the same snapshot (`None` means
    /// offline), as listed by GUILD_CREATE or GUILD_MEMBERS_CHUNK of generation `generation`.
    pub fn upsert_listed(&mut self, member: Member, presence: Option<Presence>, generation: u64, now_ms: i64, applied: &mut Applied) {
        let id = member.user.id;
        match self.users.get_mut(&id) {
            Some(user) => {
                user.seen_in = generation;
                user.member = member;
                user.member_changed();
                Self::set_presence(user, presence, now_ms, applied);
                if user.rebuild() {
                    applied.changes.push(Change::Updated(id));
                }
            }
            None => self.insert_new(member, presence, generation, applied),
        }
    }

    fn insert_new(&mut self, member: Member, presence: Option<Presence>, generation: u64, applied: &mut Applied) {
        let id = member.user.id;
        let mut last_seen_ms = self.last_seen.remove(&id);
        let online = presence.as_ref().is_some_and(|p| !p.status.is_offline());
        if online && last_seen_ms.is_some() {
            last_seen_ms = None;
            applied.writes.push(LastSeenWrite::Clear(id));
        }
        let mut user = UserState {
            member,
            presence,
            last_seen_ms,
            storage_json: self.storage.remove(&id).unwrap_or_else(|| Bytes::from_static(b"{}")),
            version: 0,
            json: UserJson::empty(),
            member_json: MemberJson::default(),
            member_changed: true,
            seen_in: generation,
            builds: 0,
        };
        user.rebuild();
        self.users.insert(id, user);
        applied.changes.push(Change::Joined(id));
    }

    /// Applies last-seen transitions and stores the new presence.
    fn set_presence(user: &mut UserState, mut presence: Option<Presence>, now_ms: i64, applied: &mut Applied) {
        let id = user.member.user.id;
        let was_offline = user.is_offline();
        if let Some(p) = presence.as_mut() {
            // Presence updates may carry user fields; they are applied to the member.
            if p.user.apply_to(&mut user.member.user) {
                user.member_changed();
            }
        }
        user.presence = presence;
        let now_offline = user.is_offline();
        if !was_offline && now_offline {
            user.last_seen_ms = Some(now_ms);
            applied.writes.push(LastSeenWrite::Set(id, now_ms));
        } else if was_offline && !now_offline && user.last_seen_ms.take().is_some() {
            applied.writes.push(LastSeenWrite::Clear(id));
        }
    }

    /// Removes users that the complete member list of `generation` did not include: they left
    /// while the gateway was away. Their persisted data is kept (only an explicit member-remove
    /// deletes it).
    pub fn finish_snapshot(&mut self, generation: u64, applied: &mut Applied) {
        let gone: Vec<Snowflake> = self.users.iter().filter(|(_, u)| u.seen_in < generation).map(|(id, _)| *id).collect();
        for id in gone {
            if let Some(u) = self.users.remove(&id) {
                if let Some(ms) = u.last_seen_ms {
                    self.last_seen.insert(id, ms);
                }
                if u.storage_json[..] != b"{}"[..] {
                    self.storage.insert(id, u.storage_json);
                }
            }
            applied.changes.push(Change::Left(id));
        }
    }

    /// PRESENCE_UPDATE. Presences of users who are not members are ignored.
    pub fn presence_update(&mut self, presence: Presence, now_ms: i64, applied: &mut Applied) {
        let id = presence.user.id;
        if let Some(user) = self.users.get_mut(&id) {
            // The same presence again (the gateway repeats presences): when the user fields it
            // carries change nothing either, the object is the same, so it is not rebuilt and
            // nobody hears about it. Compared in place, before anything is cloned.
            if user.presence.as_ref() == Some(&presence) {
                if !presence.user.apply_to(&mut user.member.user) {
                    return;
                }
                user.member_changed();
            }
            Self::set_presence(user, Some(presence), now_ms, applied);
            if user.rebuild() {
                applied.changes.push(Change::Updated(id));
            }
        }
    }

    /// GUILD_MEMBER_ADD.
    pub fn member_add(&mut self, member: Member, generation: u64, now_ms: i64, applied: &mut Applied) {
        let id = member.user.id;
        if self.users.contains_key(&id) {
            // A repeated add (e.g. replayed on resume) refreshes the member and keeps the presence.
            let presence = self.users[&id].presence.clone();
            self.upsert_listed(member, presence, generation, now_ms, applied);
        } else {
            self.insert_new(member, None, generation, applied);
        }
    }

    /// GUILD_MEMBER_UPDATE.
    pub fn member_update(&mut self, update: GuildMemberUpdate, applied: &mut Applied) {
        let id = update.user.id;
        if let Some(user) = self.users.get_mut(&id) {
            user.member_changed();
            user.member.user = update.user;
            user.member.nick = update.nick;
            user.member.avatar = update.avatar;
            user.member.roles = update.roles;
            if update.joined_at.is_some() {
                user.member.joined_at = update.joined_at;
            }
            if user.rebuild() {
                applied.changes.push(Change::Updated(id));
            }
        }
    }

    /// GUILD_MEMBER_REMOVE: the member is no longer monitored and its last seen is forgotten.
    pub fn member_remove(&mut self, id: Snowflake, applied: &mut Applied) {
        self.last_seen.remove(&id);
        self.storage.remove(&id);
        if let Some(u) = self.users.remove(&id) {
            if u.last_seen_ms.is_some() {
                applied.writes.push(LastSeenWrite::Clear(id));
            }
            applied.changes.push(Change::Left(id));
        }
    }

    /// USER_UPDATE (or any partial user change).
    pub fn user_update(&mut self, partial: &PartialUser, applied: &mut Applied) {
        if let Some(user) = self.users.get_mut(&partial.id) {
            if partial.apply_to(&mut user.member.user) {
                user.member_changed();
                if user.rebuild() {
                    applied.changes.push(Change::Updated(partial.id));
                }
            }
        }
    }

    /// Replaces the user's KV map (already serialized as a JSON object). For a user who is not
    /// a member now, the map is kept for when they are listed again. A large map is kept in
    /// the user object as its own piece (see [`UserJson`]), so this does not copy it.
    pub fn set_storage_json(&mut self, id: Snowflake, storage_json: Bytes, applied: &mut Applied) {
        if let Some(user) = self.users.get_mut(&id) {
            user.storage_json = storage_json;
            if user.rebuild() {
                applied.changes.push(Change::StorageUpdated(id));
            }
        } else if storage_json[..] == b"{}"[..] {
            self.storage.remove(&id);
        } else {
            self.storage.insert(id, storage_json);
        }
    }

    /// Applies one ingest event at `now_ms`, as the owner shard does for every event routed to
    /// it.
    pub fn apply(&mut self, event: IngestEvent, now_ms: i64, applied: &mut Applied) {
        match event {
            IngestEvent::Listed { generation, members } => {
                for (member, presence) in members {
                    self.upsert_listed(member, presence, generation, now_ms, applied);
                }
            }
            IngestEvent::ListComplete { generation } => self.finish_snapshot(generation, applied),
            IngestEvent::Presence(p) => self.presence_update(p, now_ms, applied),
            IngestEvent::MemberAdd { generation, member } => self.member_add(member, generation, now_ms, applied),
            IngestEvent::MemberUpdate(u) => self.member_update(u, applied),
            IngestEvent::MemberRemove(id) => self.member_remove(id, applied),
            IngestEvent::UserUpdate(u) => self.user_update(&u, applied),
        }
    }

    /// Whether the user is a monitored member.
    pub fn contains(&self, id: Snowflake) -> bool {
        self.users.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::{Activity, PartialUser, Status, User};

    const ID: Snowflake = Snowflake(1_300_000_000_000_000_001);

    fn listed() -> ShardState {
        let mut state = ShardState::default();
        let member = Member { user: User { id: ID, username: "alice".into(), ..User::default() }, ..Member::default() };
        state.upsert_listed(member, None, 1, 0, &mut Applied::default());
        state
    }

    fn playing() -> Presence {
        Presence {
            user: PartialUser { id: ID, ..PartialUser::default() },
            status: Status::Online,
            activities: vec![Activity { name: "Chess".into(), ..Activity::default() }],
            ..Presence::default()
        }
    }

    #[test]
    fn a_repeated_presence_update_rebuilds_nothing_and_reports_no_change() {
        let mut state = listed();
        let mut applied = Applied::default();
        state.presence_update(playing(), 10, &mut applied);
        assert_eq!(applied.changes, [Change::Updated(ID)]);
        let (builds, version) = (state.get(ID).unwrap().builds, state.get(ID).unwrap().version);

        let mut again = Applied::default();
        state.presence_update(playing(), 20, &mut again);
        assert_eq!(again, Applied::default(), "nothing to tell or persist");
        assert_eq!(state.get(ID).unwrap().builds, builds, "the user object is not rebuilt");
        assert_eq!(state.get(ID).unwrap().version, version);
    }

    #[test]
    fn a_repeated_presence_carrying_a_changed_user_field_is_applied() {
        let mut state = listed();
        let mut p = playing();
        p.user.username = Some("alicia".into());
        state.presence_update(p.clone(), 10, &mut Applied::default());
        // The member's name changes elsewhere; the same presence again renames it back.
        state.user_update(&PartialUser { id: ID, username: Some("al".into()), ..PartialUser::default() }, &mut Applied::default());
        let mut applied = Applied::default();
        state.presence_update(p, 20, &mut applied);
        assert_eq!(applied.changes, [Change::Updated(ID)]);
        assert_eq!(state.get(ID).unwrap().member.user.username, "alicia");
    }

    #[test]
    fn a_presence_changing_only_what_the_object_does_not_show_reports_no_change() {
        let mut state = listed();
        state.presence_update(playing(), 10, &mut Applied::default());
        let mut p = playing();
        p.activities[0].session_id = Some("s2".into());
        let mut applied = Applied::default();
        state.presence_update(p, 20, &mut applied);
        assert_eq!(applied.changes, []);
    }
}
