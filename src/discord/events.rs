//! Gateway dispatch payloads (the `d` of op 0) that the server consumes.

use super::{Member, PartialUser, Presence, Snowflake, User};
use serde::{Deserialize, Serialize};

/// `READY`: only what the server needs; the simulator writes the full shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    pub user: User,
    #[serde(default)]
    pub session_id: String,
    #[serde(default)]
    pub resume_gateway_url: Option<String>,
    #[serde(default)]
    pub guilds: Vec<UnavailableGuild>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UnavailableGuild {
    pub id: Snowflake,
    #[serde(default)]
    pub unavailable: Option<bool>,
}

/// `GUILD_CREATE`: the fields of the guild the server reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GuildCreate {
    pub id: Snowflake,
    #[serde(default)]
    pub unavailable: Option<bool>,
    #[serde(default)]
    pub member_count: Option<u64>,
    #[serde(default)]
    pub large: Option<bool>,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub presences: Vec<Presence>,
}

/// `GUILD_MEMBERS_CHUNK`, the answer to op 8.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GuildMembersChunk {
    pub guild_id: Snowflake,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub chunk_index: u32,
    #[serde(default)]
    pub chunk_count: u32,
    #[serde(default)]
    pub presences: Vec<Presence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// `GUILD_MEMBER_ADD`: a member object with the guild id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GuildMemberAdd {
    pub guild_id: Snowflake,
    #[serde(flatten)]
    pub member: Member,
}

/// `GUILD_MEMBER_UPDATE`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GuildMemberUpdate {
    pub guild_id: Snowflake,
    pub user: User,
    #[serde(default)]
    pub nick: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub roles: Vec<Snowflake>,
    #[serde(default)]
    pub joined_at: Option<String>,
}

/// `GUILD_MEMBER_REMOVE`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GuildMemberRemove {
    pub guild_id: Snowflake,
    pub user: PartialUser,
}

/// The dispatch envelope: decoding `Dispatch<T>` from the raw frame reads only `d`.
#[derive(Debug, Deserialize)]
pub struct Dispatch<T> {
    pub d: T,
}
