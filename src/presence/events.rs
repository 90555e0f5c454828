//! The events that change presence: decoded by ingest once, already filtered to the base guild,
//! and routed to the shard that owns their users.

use crate::discord::events::GuildMemberUpdate;
use crate::discord::{Member, PartialUser, Presence, Snowflake};

/// Cluster mode: one user's state as replicated between nodes (JSON in the presence bucket).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReplicatedState {
    pub member: Member,
    pub presence: Option<Presence>,
    pub last_seen_ms: Option<i64>,
}

impl ReplicatedState {
    pub fn into_event(self) -> IngestEvent {
        IngestEvent::Replicated { member: Box::new(self.member), presence: self.presence.map(Box::new), last_seen_ms: self.last_seen_ms }
    }
}

/// One event for the shard that owns the users in it.
///
/// The user and presence payloads are boxed: a `Presence` or a `Member` is several hundred
/// bytes, and an event is moved five times or more between the decoder and the owner's state
/// (the dispatcher's output, the mailbox, the apply), where a box moves as one pointer.
#[derive(Debug, Clone)]
pub enum IngestEvent {
    /// Members listed by GUILD_CREATE or GUILD_MEMBERS_CHUNK, each with its presence from the
    /// same snapshot (`None` = offline), part of member-list generation `generation`.
    Listed { generation: u64, members: Vec<(Member, Option<Presence>)> },
    /// Every member of `generation` has been listed: members not listed in it are gone.
    /// Sent to every shard.
    ListComplete { generation: u64 },
    Presence(Box<Presence>),
    MemberAdd { generation: u64, member: Box<Member> },
    MemberUpdate(Box<GuildMemberUpdate>),
    MemberRemove(Snowflake),
    UserUpdate(Box<PartialUser>),
    /// Cluster mode: a user's whole state as the gateway's node keeps it, read from the
    /// cluster (replaces what this node has; last seen as the leader recorded it).
    Replicated { member: Box<Member>, presence: Option<Box<Presence>>, last_seen_ms: Option<i64> },
}

impl IngestEvent {
    /// The one user an event is about; `None` for the member list's batches and its end.
    pub fn user(&self) -> Option<Snowflake> {
        match self {
            IngestEvent::Listed { .. } | IngestEvent::ListComplete { .. } => None,
            IngestEvent::Presence(p) => Some(p.user.id),
            IngestEvent::MemberAdd { member, .. } => Some(member.user.id),
            IngestEvent::MemberUpdate(u) => Some(u.user.id),
            IngestEvent::MemberRemove(id) => Some(*id),
            IngestEvent::UserUpdate(u) => Some(u.id),
            IngestEvent::Replicated { member, .. } => Some(member.user.id),
        }
    }
}
