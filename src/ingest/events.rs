//! What ingest sends to the shards: decoded, already filtered to the base guild.

use crate::discord::events::GuildMemberUpdate;
use crate::discord::{Member, PartialUser, Presence, Snowflake};

/// One event for the shard that owns the users in it.
#[derive(Debug, Clone)]
pub enum IngestEvent {
    /// Members listed by GUILD_CREATE or GUILD_MEMBERS_CHUNK, each with its presence from the
    /// same snapshot (`None` = offline), part of member-list generation `generation`.
    Listed { generation: u64, members: Vec<(Member, Option<Presence>)> },
    /// Every member of `generation` has been listed: members not listed in it are gone.
    /// Sent to every shard.
    ListComplete { generation: u64 },
    Presence(Presence),
    MemberAdd { generation: u64, member: Member },
    MemberUpdate(GuildMemberUpdate),
    MemberRemove(Snowflake),
    UserUpdate(PartialUser),
}

/// Connection state of the gateway, broadcast to every shard on each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayStatus {
    pub state: GatewayState,
    /// A complete member list has been received at least once.
    pub members_loaded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayState {
    Connecting,
    /// Identified or resumed and receiving events.
    Connected,
    /// Lost; twilight is reconnecting.
    Reconnecting,
    /// Closed for good (invalid token, disallowed intents): no more events will come.
    Failed,
}

impl GatewayState {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayState::Connecting => "connecting",
            GatewayState::Connected => "connected",
            GatewayState::Reconnecting => "reconnecting",
            GatewayState::Failed => "failed",
        }
    }
}

impl Default for GatewayStatus {
    fn default() -> Self {
        GatewayStatus { state: GatewayState::Connecting, members_loaded: false }
    }
}
