//! The users one shard owns: member data, presence, last seen, and the cached user object.
//!
//! Only the owner shard touches a [`ShardState`]; everything that changes it arrives as an
//! ingest event through the shard's mailbox. Each mutation reports a [`Change`] when, and only
//! when, the user object a reader would see is different.

use crate::discord::events::GuildMemberUpdate;
use crate::discord::{Member, PartialUser, Presence, Snowflake};
use crate::presence::privacy::PrivacySettings;
use crate::presence::IngestEvent;
use crate::presence::user_object::{self, Layout, MemberJson, Previous, UserInputs, UserJson};
use bytes::Bytes;
// The shard's maps hash with foldhash: keyed per process like std's SipHash, at a fraction
// of its cost per lookup (every event and every lookup looks a user up).
use foldhash::HashMap;

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
    /// Boxed: most members' presence is kept for a while and replaced whole, and a box is
    /// moved as one pointer on its way from the ingest event into this state.
    pub presence: Option<Box<Presence>>,
    pub last_seen_ms: Option<i64>,
    /// The KV map as a JSON object (`{}` when empty), shared with the KV store.
    pub storage_json: Bytes,
    /// What the member hides (the default hides nothing).
    pub privacy: PrivacySettings,
    /// The presence readers see, when the settings change it (`None`: `presence` as is).
    /// Filtered once per change, before anything is encoded. Boxed: few members set any.
    shown: Option<Option<Box<Presence>>>,
    /// Bumped on every visible change.
    pub version: u64,
    pub json: UserJson,
    /// Where `json`'s activity pieces lie, for the next rebuild to copy the unchanged ones.
    layout: Layout,
    /// The presence `json` was built from, when a change replaced it since (moved here, not
    /// cloned): the next rebuild compares the new activities with its own, then drops it.
    replaced: Option<Option<Box<Presence>>>,
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
    /// Filtered by the member's privacy settings: no reader gets more than this.
    pub fn view(&self) -> crate::presence::UserView<'_> {
        crate::presence::UserView { member: &self.member, presence: self.shown_presence(), last_seen_ms: self.shown_last_seen(), version: self.version }
    }

    /// The presence readers see.
    pub fn shown_presence(&self) -> Option<&Presence> {
        match &self.shown {
            Some(shown) => shown.as_deref(),
            None => self.presence.as_deref(),
        }
    }

    fn shown_last_seen(&self) -> Option<i64> {
        if self.privacy.hide_last_seen {
            None
        } else {
            self.last_seen_ms
        }
    }

    /// The KV map public readers see (`{}` while the member hides it).
    pub fn shown_storage(&self) -> Bytes {
        if self.privacy.hide_kv {
            Bytes::from_static(b"{}")
        } else {
            self.storage_json.clone()
        }
    }

    /// Whether the member paused: readers answer as if they were not monitored.
    pub fn paused(&self) -> bool {
        self.privacy.paused
    }

    /// Replaces the presence. The one the object was built from is kept until the next rebuild
    /// (when it is replaced twice in between, the first is the one to keep).
    fn replace_presence(&mut self, presence: Option<Box<Presence>>) {
        let old = std::mem::replace(&mut self.presence, presence);
        if self.replaced.is_none() {
            self.replaced = Some(old);
        }
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
        let shown_before = std::mem::replace(&mut self.shown, self.privacy.filter(self.presence.as_deref()).map(|p| p.map(Box::new)));
        let replaced = self.replaced.take();
        // The presence the current object was built from: the filtered one when the settings
        // filtered it, else the presence as it was then.
        let built_from = match (&shown_before, &replaced) {
            (Some(shown), _) => shown.as_deref(),
            (None, Some(old)) => old.as_deref(),
            (None, None) => self.presence.as_deref(),
        };
        let previous = Previous { json: &self.json, layout: &self.layout, activities: built_from.map_or(&[], |p| p.activities.as_slice()) };
        let storage = self.shown_storage();
        let input = UserInputs {
            member: &self.member,
            presence: self.shown_presence(),
            last_seen_ms: self.shown_last_seen(),
            storage_json: &storage,
        };
        let (json, layout) = user_object::build_reusing(&input, &self.member_json, self.json.own_len() + 512, Some(&previous));
        // Every path that replaces the presence keeps the old one until here; tests (debug
        // builds) check that the pieces copied make the object a fresh build makes.
        debug_assert!(json == user_object::build_with(&input, &self.member_json), "copied activity pieces differ from a fresh build");
        self.layout = layout;
        if json == self.json {
            user_object::recycle(json);
            return false;
        }
        user_object::recycle(std::mem::replace(&mut self.json, json));
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
    /// Privacy settings (other than the default) of users who are not (yet) listed as members.
    privacy: HashMap<Snowflake, PrivacySettings>,
    /// Listed members who paused (left out of [`ShardState::shown_len`]).
    paused: usize,
    /// Privacy changes being written, by user (an entry lives while any is in flight).
    pending_privacy: HashMap<Snowflake, PendingPrivacy>,
    next_privacy_seq: u64,
}

/// One user's privacy changes being written.
struct PendingPrivacy {
    /// The latest planned change: its sequence and the settings it makes (the next change is
    /// planned on these).
    latest: (u64, PrivacySettings),
    /// Changes planned and not yet durable (or failed).
    in_flight: u32,
    /// The sequence of the last change applied: an older one finishing later is not applied
    /// over it.
    applied: u64,
}

/// The write that persists `ms` as the user's last seen (`None`: none).
fn last_seen_write(id: Snowflake, ms: Option<i64>) -> LastSeenWrite {
    match ms {
        Some(ms) => LastSeenWrite::Set(id, ms),
        None => LastSeenWrite::Clear(id),
    }
}

/// Result of applying an event: what readers must hear about and what must be persisted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub changes: Vec<Change>,
    pub writes: Vec<LastSeenWrite>,
}

impl ShardState {
    /// Starts with the last-seen times persisted in the shard's storage.
    pub fn with_last_seen(last_seen: std::collections::HashMap<Snowflake, i64>) -> ShardState {
        ShardState { last_seen: last_seen.into_iter().collect(), ..ShardState::default() }
    }

    /// Also starts with the persisted privacy settings of the shard's users.
    pub fn with_privacy(mut self, privacy: std::collections::HashMap<Snowflake, PrivacySettings>) -> ShardState {
        self.privacy = privacy.into_iter().filter(|(_, p)| !p.is_default()).collect();
        self
    }

    /// Also starts with the persisted KV maps (JSON objects) of the shard's users.
    pub fn with_storage(mut self, storage: std::collections::HashMap<Snowflake, Bytes>) -> ShardState {
        self.storage = storage.into_iter().collect();
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

    /// A member as readers see them: `None` when not monitored or paused.
    pub fn shown(&self, id: Snowflake) -> Option<&UserState> {
        self.users.get(&id).filter(|u| !u.paused())
    }

    /// The members readers see (all but the paused).
    pub fn shown_ids(&self) -> impl Iterator<Item = Snowflake> + '_ {
        self.users.iter().filter(|(_, u)| !u.paused()).map(|(id, _)| *id)
    }

    /// How many members readers see.
    pub fn shown_len(&self) -> usize {
        self.users.len() - self.paused
    }

    /// Whether the user is a listed member (paused or not).
    pub fn is_member(&self, id: Snowflake) -> bool {
        self.users.contains_key(&id)
    }

    /// The user's privacy settings (member or not).
    pub fn privacy(&self, id: Snowflake) -> PrivacySettings {
        match self.users.get(&id) {
            Some(u) => u.privacy.clone(),
            None => self.privacy.get(&id).cloned().unwrap_or_default(),
        }
    }

    fn is_paused(&self, id: Snowflake) -> bool {
        match self.users.get(&id) {
            Some(u) => u.paused(),
            None => self.privacy.get(&id).is_some_and(|p| p.paused),
        }
    }

    /// Drops the changes from `from` on that concern paused users: readers hear nothing of them.
    fn drop_paused_changes(&self, applied: &mut Applied, from: usize) {
        let mut i = 0;
        applied.changes.retain(|c| {
            i += 1;
            let id = match c {
                Change::Joined(id) | Change::Updated(id) | Change::Left(id) | Change::StorageUpdated(id) => *id,
            };
            i <= from || !self.is_paused(id)
        });
    }

    /// Plans a change of the user's settings, made by `change` on the latest settings (those
    /// of changes still being written included). Returns the change's sequence and the
    /// settings it makes; nothing is visible until [`ShardState::commit_privacy`].
    pub fn plan_privacy(&mut self, id: Snowflake, change: impl FnOnce(&mut PrivacySettings) -> Result<(), String>) -> Result<(u64, PrivacySettings), String> {
        let mut next = match self.pending_privacy.get(&id) {
            Some(p) => p.latest.1.clone(),
            None => self.privacy(id),
        };
        change(&mut next)?;
        self.next_privacy_seq += 1;
        let seq = self.next_privacy_seq;
        let pending = self.pending_privacy.entry(id).or_insert(PendingPrivacy { latest: (seq, next.clone()), in_flight: 0, applied: 0 });
        pending.latest = (seq, next.clone());
        pending.in_flight += 1;
        Ok((seq, next))
    }

    /// A planned change was written (`durable`) or failed: once durable, readers see it.
    /// Changes are applied in the order they were planned (the writer commits them in that
    /// order); a failed one leaves the settings as they were.
    pub fn commit_privacy(&mut self, id: Snowflake, seq: u64, settings: PrivacySettings, durable: bool, applied: &mut Applied) {
        let Some(pending) = self.pending_privacy.get_mut(&id) else { return };
        pending.in_flight = pending.in_flight.saturating_sub(1);
        let newer_applied = pending.applied > seq;
        if durable && !newer_applied {
            pending.applied = seq;
        }
        if pending.in_flight == 0 {
            self.pending_privacy.remove(&id);
        } else if !durable && pending.latest.0 == seq {
            // The next change is planned on what is applied, not on what failed.
            pending.latest.1 = match self.users.get(&id) {
                Some(u) => u.privacy.clone(),
                None => self.privacy.get(&id).cloned().unwrap_or_default(),
            };
        }
        if durable && !newer_applied {
            self.set_privacy(id, settings, applied);
        }
    }

    /// Replaces the user's settings. A change is a visible change: the object is rebuilt and
    /// its version bumped; pausing is a leave for readers and resuming a join.
    pub fn set_privacy(&mut self, id: Snowflake, settings: PrivacySettings, applied: &mut Applied) {
        let Some(user) = self.users.get_mut(&id) else {
            if settings.is_default() {
                self.privacy.remove(&id);
            } else {
                self.privacy.insert(id, settings);
            }
            return;
        };
        if user.privacy == settings {
            return;
        }
        let was_paused = user.paused();
        user.privacy = settings;
        if !user.rebuild() {
            // The Lantern object may read the same (e.g. hiding last seen while online) while
            // another dialect's does not: readers' caches go by version.
            user.version += 1;
        }
        match (was_paused, user.paused()) {
            (false, true) => {
                self.paused += 1;
                applied.changes.push(Change::Left(id));
            }
            (true, false) => {
                self.paused -= 1;
                applied.changes.push(Change::Joined(id));
            }
            (false, false) => applied.changes.push(Change::Updated(id)),
            (true, true) => {}
        }
    }

    /// Inserts or refreshes a member, with its presence from the same snapshot (`None` means
    /// offline), as listed by GUILD_CREATE or GUILD_MEMBERS_CHUNK of generation `generation`.
    pub fn upsert_listed(&mut self, member: Member, presence: Option<Presence>, generation: u64, now_ms: i64, applied: &mut Applied) {
        self.upsert_listed_boxed(member, presence.map(Box::new), generation, now_ms, applied);
    }

    fn upsert_listed_boxed(&mut self, member: Member, presence: Option<Box<Presence>>, generation: u64, now_ms: i64, applied: &mut Applied) {
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

    /// Cluster mode: takes a user's state as replicated from the leader. Its last seen is
    /// the leader's, not one computed here, and is in place before the object is built, so the
    /// object is built once.
    pub fn upsert_replicated(&mut self, member: Member, presence: Option<Box<Presence>>, last_seen_ms: Option<i64>, applied: &mut Applied) {
        let id = member.user.id;
        let Some(user) = self.users.get_mut(&id) else {
            // What insert_new reads as the persisted last seen is the leader's.
            let persisted = match last_seen_ms {
                Some(ms) => self.last_seen.insert(id, ms),
                None => self.last_seen.remove(&id),
            };
            if persisted != last_seen_ms {
                applied.writes.push(last_seen_write(id, last_seen_ms));
            }
            self.insert_new(member, presence, 0, applied);
            return;
        };
        user.member = member;
        user.member_changed();
        user.replace_presence(presence);
        if user.last_seen_ms != last_seen_ms {
            user.last_seen_ms = last_seen_ms;
            applied.writes.push(last_seen_write(id, last_seen_ms));
        }
        if user.rebuild() {
            applied.changes.push(Change::Updated(id));
        }
    }

    fn insert_new(&mut self, member: Member, presence: Option<Box<Presence>>, generation: u64, applied: &mut Applied) {
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
            privacy: self.privacy.remove(&id).unwrap_or_default(),
            shown: None,
            version: 0,
            json: UserJson::empty(),
            layout: Layout::default(),
            replaced: None,
            member_json: MemberJson::default(),
            member_changed: true,
            seen_in: generation,
            builds: 0,
        };
        user.rebuild();
        if user.paused() {
            self.paused += 1;
        }
        self.users.insert(id, user);
        applied.changes.push(Change::Joined(id));
    }

    /// Applies last-seen transitions and stores the new presence.
    fn set_presence(user: &mut UserState, mut presence: Option<Box<Presence>>, now_ms: i64, applied: &mut Applied) {
        let id = user.member.user.id;
        let was_offline = user.is_offline();
        if let Some(p) = presence.as_mut() {
            // Presence updates may carry user fields; they are applied to the member.
            if p.user.apply_to(&mut user.member.user) {
                user.member_changed();
            }
        }
        user.replace_presence(presence);
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
                self.keep_privacy(id, u.privacy);
            }
            applied.changes.push(Change::Left(id));
        }
    }

    /// PRESENCE_UPDATE. Presences of users who are not members are ignored.
    pub fn presence_update(&mut self, presence: Box<Presence>, now_ms: i64, applied: &mut Applied) {
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
            self.upsert_listed_boxed(member, presence, generation, now_ms, applied);
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
            // The member's choices outlive a leave: they hold again if they come back.
            self.keep_privacy(id, u.privacy);
            applied.changes.push(Change::Left(id));
        }
    }

    /// Keeps the settings of a member no longer listed.
    fn keep_privacy(&mut self, id: Snowflake, privacy: PrivacySettings) {
        if privacy.paused {
            self.paused -= 1;
        }
        if !privacy.is_default() {
            self.privacy.insert(id, privacy);
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
            if user.rebuild() && !user.paused() {
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
        let from = applied.changes.len();
        self.apply_event(event, now_ms, applied);
        self.drop_paused_changes(applied, from);
    }

    fn apply_event(&mut self, event: IngestEvent, now_ms: i64, applied: &mut Applied) {
        match event {
            IngestEvent::Listed { generation, members } => {
                for (member, presence) in members {
                    self.upsert_listed(member, presence, generation, now_ms, applied);
                }
            }
            IngestEvent::ListComplete { generation } => self.finish_snapshot(generation, applied),
            IngestEvent::Presence(p) => self.presence_update(p, now_ms, applied),
            IngestEvent::MemberAdd { generation, member } => self.member_add(*member, generation, now_ms, applied),
            IngestEvent::MemberUpdate(u) => self.member_update(*u, applied),
            IngestEvent::MemberRemove(id) => self.member_remove(id, applied),
            IngestEvent::UserUpdate(u) => self.user_update(&u, applied),
            IngestEvent::Replicated { member, presence, last_seen_ms } => self.upsert_replicated(*member, presence, last_seen_ms, applied),
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
        state.presence_update(Box::new(playing()), 10, &mut applied);
        assert_eq!(applied.changes, [Change::Updated(ID)]);
        let (builds, version) = (state.get(ID).unwrap().builds, state.get(ID).unwrap().version);

        let mut again = Applied::default();
        state.presence_update(Box::new(playing()), 20, &mut again);
        assert_eq!(again, Applied::default(), "nothing to tell or persist");
        assert_eq!(state.get(ID).unwrap().builds, builds, "the user object is not rebuilt");
        assert_eq!(state.get(ID).unwrap().version, version);
    }

    #[test]
    fn a_repeated_presence_carrying_a_changed_user_field_is_applied() {
        let mut state = listed();
        let mut p = playing();
        p.user.username = Some("alicia".into());
        state.presence_update(Box::new(p.clone()), 10, &mut Applied::default());
        // The member's name changes elsewhere; the same presence again renames it back.
        state.user_update(&PartialUser { id: ID, username: Some("al".into()), ..PartialUser::default() }, &mut Applied::default());
        let mut applied = Applied::default();
        state.presence_update(Box::new(p), 20, &mut applied);
        assert_eq!(applied.changes, [Change::Updated(ID)]);
        assert_eq!(state.get(ID).unwrap().member.user.username, "alicia");
    }

    #[test]
    fn a_presence_changing_only_what_the_object_does_not_show_reports_no_change() {
        let mut state = listed();
        state.presence_update(Box::new(playing()), 10, &mut Applied::default());
        let mut p = playing();
        p.activities[0].session_id = Some("s2".into());
        let mut applied = Applied::default();
        state.presence_update(Box::new(p), 20, &mut applied);
        assert_eq!(applied.changes, []);
    }

    fn spotify(track: &str) -> Activity {
        Activity {
            name: "Spotify".into(),
            kind: crate::discord::activity_type::LISTENING,
            sync_id: Some(track.into()),
            details: Some(format!("song {track}").into()),
            state: Some("A; B".into()),
            timestamps: Some(crate::discord::Timestamps { start: Some(1_000), end: Some(200_000) }),
            assets: Some(crate::discord::Assets { large_image: Some(format!("spotify:{track}").into()), ..Default::default() }),
            ..Activity::default()
        }
    }

    /// The object as a fresh build makes it from what the state shows.
    fn fresh(user: &UserState) -> UserJson {
        let storage = user.shown_storage();
        user_object::build(&UserInputs { member: &user.member, presence: user.shown_presence(), last_seen_ms: user.shown_last_seen(), storage_json: &storage })
    }

    #[test]
    fn unchanged_activities_are_copied_and_the_object_is_what_a_fresh_build_makes() {
        let mut state = listed();
        let mut p = playing();
        p.activities.push(spotify("t1"));
        let steps: Vec<Box<dyn Fn(&mut Presence)>> = vec![
            Box::new(|p| p.status = Status::Idle),
            Box::new(|p| p.activities[0].name = "Go".into()),
            Box::new(|p| p.activities.reverse()),
            Box::new(|p| p.activities[1] = spotify("t2")),
            Box::new(|p| p.activities.insert(0, Activity { name: "Custom Status".into(), kind: 4, state: Some("hi".into()), ..Activity::default() })),
            Box::new(|p| p.status = Status::Offline),
            Box::new(|p| p.status = Status::Dnd),
            Box::new(|p| p.activities.clear()),
            Box::new(|p| p.activities.push(spotify("t3"))),
        ];
        state.presence_update(Box::new(p.clone()), 10, &mut Applied::default());
        for (i, step) in steps.iter().enumerate() {
            step(&mut p);
            let mut applied = Applied::default();
            state.presence_update(Box::new(p.clone()), 20 + i as i64, &mut applied);
            let user = state.get(ID).unwrap();
            assert_eq!(user.json, fresh(user), "step {i}");
            assert_eq!(applied.changes, [Change::Updated(ID)], "step {i}");
        }
        // A settings change filters the activities the pieces were copied from, and back.
        for settings in [PrivacySettings { hide_spotify: true, ..PrivacySettings::default() }, PrivacySettings::default()] {
            state.set_privacy(ID, settings, &mut Applied::default());
            let user = state.get(ID).unwrap();
            assert_eq!(user.json, fresh(user));
        }
        // So does a replicated state replacing the presence, and a listing.
        let member = state.get(ID).unwrap().member.clone();
        p.activities.push(spotify("t4"));
        state.upsert_replicated(member.clone(), Some(Box::new(p.clone())), None, &mut Applied::default());
        assert_eq!(state.get(ID).unwrap().json, fresh(state.get(ID).unwrap()));
        p.activities.remove(0);
        state.upsert_listed(member, Some(p), 2, 30, &mut Applied::default());
        assert_eq!(state.get(ID).unwrap().json, fresh(state.get(ID).unwrap()));
    }

    fn paused() -> PrivacySettings {
        PrivacySettings { paused: true, ..PrivacySettings::default() }
    }

    #[test]
    fn pausing_is_a_leave_for_readers_and_resuming_a_join() {
        let mut state = listed();
        let mut applied = Applied::default();
        state.set_privacy(ID, paused(), &mut applied);
        assert_eq!(applied.changes, [Change::Left(ID)]);
        assert_eq!((state.shown_len(), state.shown(ID).is_none(), state.is_member(ID)), (0, true, true));
        // Whatever happens meanwhile reaches nobody, and is not lost.
        let mut meanwhile = Applied::default();
        state.apply(IngestEvent::Presence(Box::new(playing())), 10, &mut meanwhile);
        state.set_storage_json(ID, Bytes::from_static(b"{\"k\":\"v\"}"), &mut meanwhile);
        assert_eq!(meanwhile.changes, []);
        let mut resumed = Applied::default();
        state.set_privacy(ID, PrivacySettings::default(), &mut resumed);
        assert_eq!(resumed.changes, [Change::Joined(ID)]);
        assert_eq!(state.shown_len(), 1);
        assert_eq!(state.shown(ID).unwrap().view().presence.map(|p| p.activities.len()), Some(1));
    }

    #[test]
    fn settings_outlive_a_leave_and_hold_again_when_the_member_is_listed() {
        let mut state = listed();
        state.set_privacy(ID, paused(), &mut Applied::default());
        let mut applied = Applied::default();
        state.apply(IngestEvent::MemberRemove(ID), 10, &mut applied);
        assert_eq!(applied.changes, [], "a paused member's leave was already told");
        assert_eq!((state.shown_len(), state.privacy(ID).paused), (0, true));
        let member = Member { user: User { id: ID, username: "alice".into(), ..User::default() }, ..Member::default() };
        let mut applied = Applied::default();
        state.apply(IngestEvent::MemberAdd { generation: 2, member: Box::new(member) }, 20, &mut applied);
        assert_eq!(applied.changes, [], "nor is the return of a paused member");
        assert_eq!((state.shown_len(), state.len()), (0, 1));
    }

    #[test]
    fn a_settings_change_bumps_the_version_even_when_the_object_reads_the_same() {
        let mut state = listed();
        let version = state.get(ID).unwrap().version;
        let mut applied = Applied::default();
        state.set_privacy(ID, PrivacySettings { hide_last_seen: true, ..PrivacySettings::default() }, &mut applied);
        assert_eq!(applied.changes, [Change::Updated(ID)]);
        assert_eq!(state.get(ID).unwrap().version, version + 1);
        let mut again = Applied::default();
        state.set_privacy(ID, PrivacySettings { hide_last_seen: true, ..PrivacySettings::default() }, &mut again);
        assert_eq!(again, Applied::default(), "the same settings again change nothing");
    }

    #[test]
    fn privacy_changes_apply_in_order_and_a_failed_one_changes_nothing() {
        let mut state = listed();
        let hide = |field: &str| {
            let field = field.to_owned();
            move |s: &mut PrivacySettings| {
                match field.as_str() {
                    "spotify" => s.hide_spotify = true,
                    _ => s.hide_kv = true,
                }
                Ok(())
            }
        };
        let (a, sa) = state.plan_privacy(ID, hide("spotify")).unwrap();
        let (b, sb) = state.plan_privacy(ID, hide("kv")).unwrap();
        assert!(sb.hide_spotify && sb.hide_kv, "planned on the change still being written");
        // The later one finishes first: the earlier one is then not applied over it.
        state.commit_privacy(ID, b, sb.clone(), true, &mut Applied::default());
        state.commit_privacy(ID, a, sa, true, &mut Applied::default());
        assert_eq!(state.privacy(ID), sb);
        assert!(state.pending_privacy.is_empty());
        let (c, sc) = state.plan_privacy(ID, |s| {
            s.paused = true;
            Ok(())
        })
        .unwrap();
        let mut applied = Applied::default();
        state.commit_privacy(ID, c, sc, false, &mut applied);
        assert_eq!((state.privacy(ID), applied), (sb, Applied::default()));
        assert!(state.plan_privacy(ID, |_| Err("no".into())).is_err());
        assert!(state.pending_privacy.is_empty());
    }

}
