//! Gateway ingest: the `Dispatcher` on raw and structured frames, the events it routes applied
//! to shard state as the owner shards do, and the user objects rendered at any clock.

use super::json::{self, Json};
use arbitrary::{Arbitrary, Result, Unstructured};
use lantern::discord::events::{GuildCreate, GuildMemberAdd, GuildMemberRemove, GuildMemberUpdate, GuildMembersChunk};
use lantern::discord::{
    Activity, ActivityEmoji, Assets, ClientStatus, Member, PartialUser, Party, Presence, PrimaryGuild, Snowflake, Status, Timestamps, User,
};
use lantern::ingest::decode::{DecodeError, Dispatcher, Outbound};
use lantern::discord::gateway_status::GatewayStatus;
use lantern::presence::IngestEvent;
use lantern::presence::state::{Applied, Change};
use lantern::presence::{ShardState, UserJson};
use lantern::runtime::shard_of;
use serde::Serialize;
use serde_json::{json, Value};

pub const BASE_GUILD: Snowflake = Snowflake(1_200_000_000_000_000_000);
pub const OTHER_GUILD: Snowflake = Snowflake(1_200_000_000_000_000_001);

/// A user id: mostly from a small pool, so that events meet the same users.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub Snowflake);

impl<'a> Arbitrary<'a> for Id {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Id(Snowflake(if u.int_in_range(0..=3)? > 0 { 1_300_000_000_000_000_000 + u.int_in_range(0..=5)? } else { u.arbitrary()? })))
    }
}

/// A timestamp in unix milliseconds, often an extreme.
#[derive(Debug, Clone, Copy)]
pub struct Time(pub i64);

impl<'a> Arbitrary<'a> for Time {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        json::extreme_i64(u).map(Time)
    }
}

/// A string, often one that is hostile to markup or long.
#[derive(Debug, Clone)]
pub struct Text(pub String);

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Text(if u.arbitrary()? { u.arbitrary()? } else { json::string(u)? }))
    }
}

fn text<S: From<String>>(t: &Option<Text>) -> Option<S> {
    t.as_ref().map(|t| t.0.clone().into())
}

#[derive(Debug, Clone, Arbitrary)]
pub enum ArbStatus {
    Online,
    Idle,
    Dnd,
    Offline,
    Invisible,
    Unknown,
}

impl ArbStatus {
    pub fn status(&self) -> Status {
        match self {
            ArbStatus::Online => Status::Online,
            ArbStatus::Idle => Status::Idle,
            ArbStatus::Dnd => Status::Dnd,
            ArbStatus::Offline => Status::Offline,
            ArbStatus::Invisible => Status::Invisible,
            ArbStatus::Unknown => Status::Unknown,
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct ArbTag {
    pub guild: Option<Id>,
    pub enabled: Option<bool>,
    pub tag: Option<Text>,
    pub badge: Option<Text>,
}

impl ArbTag {
    fn tag(&self) -> PrimaryGuild {
        PrimaryGuild { identity_guild_id: self.guild.map(|g| g.0), identity_enabled: self.enabled, tag: text(&self.tag), badge: text(&self.badge) }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct ArbUser {
    pub id: Id,
    pub username: Text,
    pub discriminator: Option<Text>,
    pub global_name: Option<Text>,
    pub avatar: Option<Text>,
    pub bot: bool,
    pub public_flags: Option<u64>,
    pub tag: Option<ArbTag>,
}

impl ArbUser {
    pub fn user(&self) -> User {
        User {
            id: self.id.0,
            username: self.username.0.clone(),
            discriminator: self.discriminator.as_ref().map(|d| d.0.clone()).unwrap_or_else(|| "0".into()),
            global_name: text(&self.global_name),
            avatar: text(&self.avatar),
            bot: self.bot,
            public_flags: self.public_flags,
            primary_guild: self.tag.as_ref().map(ArbTag::tag),
            clan: self.tag.as_ref().map(ArbTag::tag),
            ..User::default()
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum JoinedAt {
    Valid(u32),
    Extreme(u8),
    Text(Text),
}

impl JoinedAt {
    fn text(&self) -> String {
        match self {
            JoinedAt::Valid(s) => lantern::time_fmt::iso_ms(*s as i64 * 1000),
            JoinedAt::Extreme(i) => [
                "9999-12-31T23:59:59.999999999+00:00",
                "0000-01-01T00:00:00Z",
                "2021-05-03T00:00:00-23:59",
                "9999-12-31T23:59:59-23:59",
                "2021-05-03T00:00:00.123456+00:00",
            ][*i as usize % 5]
                .into(),
            JoinedAt::Text(t) => t.0.clone(),
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct ArbMember {
    pub user: ArbUser,
    pub nick: Option<Text>,
    pub joined_at: Option<JoinedAt>,
    pub roles: Vec<Id>,
    pub flags: u64,
    pub pending: bool,
}

impl ArbMember {
    pub fn member(&self) -> Member {
        Member {
            user: self.user.user(),
            nick: text(&self.nick),
            roles: self.roles.iter().map(|r| r.0).collect(),
            joined_at: self.joined_at.as_ref().map(JoinedAt::text),
            flags: self.flags,
            pending: self.pending,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct ArbPartialUser {
    pub id: Id,
    pub username: Option<Text>,
    pub global_name: Option<Option<Text>>,
    pub avatar: Option<Option<Text>>,
    pub bot: Option<bool>,
    pub public_flags: Option<u64>,
    pub primary_guild: Option<Option<ArbTag>>,
}

impl ArbPartialUser {
    pub fn partial(&self) -> PartialUser {
        PartialUser {
            id: self.id.0,
            username: text(&self.username),
            discriminator: None,
            global_name: self.global_name.as_ref().map(text),
            avatar: self.avatar.as_ref().map(text),
            bot: self.bot,
            public_flags: self.public_flags,
            primary_guild: self.primary_guild.as_ref().map(|g| g.as_ref().map(|t| Box::new(t.tag()))),
            clan: self.primary_guild.as_ref().map(|g| g.as_ref().map(|t| Box::new(t.tag()))),
            ..PartialUser::default()
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Asset {
    Mp(Text),
    Spotify(Text),
    Youtube(Text),
    Twitch(Text),
    Hash(Text),
}

impl Asset {
    fn text(&self) -> String {
        match self {
            Asset::Mp(t) => format!("mp:{}", t.0),
            Asset::Spotify(t) => format!("spotify:{}", t.0),
            Asset::Youtube(t) => format!("youtube:{}", t.0),
            Asset::Twitch(t) => format!("twitch:{}", t.0),
            Asset::Hash(t) => t.0.clone(),
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct ArbActivity {
    pub spotify: bool,
    pub custom: bool,
    pub name: Text,
    pub kind: u8,
    pub id: Option<Text>,
    pub created_at: Option<Time>,
    pub timestamps: Option<(Option<Time>, Option<Time>)>,
    pub details: Option<Text>,
    pub state: Option<Text>,
    pub emoji: Option<(Text, Option<Id>, Option<bool>)>,
    pub assets: Option<(Option<Asset>, Option<Text>, Option<Asset>, Option<Text>)>,
    pub sync_id: Option<Text>,
    pub application_id: Option<Id>,
    pub url: Option<Text>,
    pub buttons: Vec<Text>,
    pub flags: Option<u64>,
    pub party: Option<(Option<Text>, Option<[u64; 2]>)>,
}

impl ArbActivity {
    pub fn activity(&self) -> Activity {
        let (name, kind) = match (self.spotify, self.custom) {
            (true, _) => ("Spotify".to_owned(), 2),
            (_, true) => ("Custom Status".to_owned(), 4),
            _ => (self.name.0.clone(), self.kind % 8),
        };
        Activity {
            id: text(&self.id),
            name: name.into(),
            kind,
            url: text(&self.url),
            created_at: self.created_at.map(|t| t.0),
            timestamps: self.timestamps.map(|(s, e)| Timestamps { start: s.map(|t| t.0), end: e.map(|t| t.0) }),
            application_id: self.application_id.map(|a| a.0),
            details: text(&self.details),
            state: text(&self.state),
            emoji: self.emoji.as_ref().map(|(n, id, a)| ActivityEmoji { name: n.0.clone().into(), id: id.map(|i| i.0), animated: *a }),
            assets: self.assets.as_ref().map(|(li, lt, si, st)| Assets {
                large_image: li.as_ref().map(|a| a.text().into()),
                large_text: text(lt),
                small_image: si.as_ref().map(|a| a.text().into()),
                small_text: text(st),
            }),
            sync_id: text(&self.sync_id),
            session_id: None,
            party: self.party.as_ref().map(|(id, size)| Party { id: text(id), size: *size }),
            buttons: self.buttons.iter().map(|b| b.0.clone()).collect(),
            flags: self.flags,
            platform: None,
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct ArbPresence {
    pub user: ArbPartialUser,
    pub status: ArbStatus,
    pub activities: Vec<ArbActivity>,
    pub desktop: Option<ArbStatus>,
    pub mobile: Option<ArbStatus>,
    pub web: Option<ArbStatus>,
}

impl ArbPresence {
    pub fn presence(&self, guild: Option<Snowflake>) -> Presence {
        Presence {
            user: self.user.partial(),
            guild_id: guild,
            status: self.status.status(),
            activities: self.activities.iter().map(ArbActivity::activity).collect(),
            client_status: ClientStatus {
                desktop: self.desktop.as_ref().map(ArbStatus::status),
                mobile: self.mobile.as_ref().map(ArbStatus::status),
                web: self.web.as_ref().map(ArbStatus::status),
                embedded: None,
                vr: None,
            },
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum Guild {
    Base,
    Other,
}

impl Guild {
    fn id(&self) -> Snowflake {
        match self {
            Guild::Base => BASE_GUILD,
            Guild::Other => OTHER_GUILD,
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum Typed {
    Ready,
    Resumed,
    GuildCreate { guild: Guild, unavailable: Option<bool>, member_count: Option<u64>, members: Vec<ArbMember>, presences: Vec<ArbPresence> },
    Chunk { guild: Guild, members: Vec<ArbMember>, presences: Vec<ArbPresence>, index: u32, count: u32, nonce: Option<Result2<u8, Text>> },
    Presence(Guild, ArbPresence),
    MemberAdd(Guild, ArbMember),
    MemberUpdate(Guild, ArbMember),
    MemberRemove(Guild, Id),
    UserUpdate(ArbPartialUser),
}

/// Either of two things (the nonce of the current request, or any text).
#[derive(Debug, Arbitrary)]
pub enum Result2<A, B> {
    A(A),
    B(B),
}

const EVENTS: &[&str] = &[
    "READY", "RESUMED", "GUILD_CREATE", "GUILD_MEMBERS_CHUNK", "PRESENCE_UPDATE", "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE",
    "GUILD_MEMBER_REMOVE", "USER_UPDATE", "INTERACTION_CREATE", "MESSAGE_CREATE",
];

#[derive(Debug, Arbitrary)]
pub enum FrameInput {
    Raw(String),
    /// A dispatch with any `d`.
    Dispatch { event: u8, d: Json, s: Option<u64> },
    /// Another opcode.
    Op { op: u8, d: Json },
    Typed(Typed),
}

#[derive(Debug, Arbitrary)]
pub struct GatewayCase {
    pub shards: u8,
    pub request_members: bool,
    pub frames: Vec<FrameInput>,
    /// Clocks the shards apply events at and user objects are rendered at.
    pub clocks: Vec<Time>,
}

fn dispatch_frame(t: &str, d: &impl Serialize) -> String {
    json!({ "op": 0, "s": 1, "t": t, "d": d }).to_string()
}

/// What a typed frame must produce (when it is for the base guild).
enum Expect {
    Nothing,
    Any,
    One(usize, Value),
    Listed(usize),
}

fn typed_frame(t: &Typed, shards: usize) -> (String, Expect) {
    let owner = |id: Snowflake| shard_of(id, shards);
    let value = |e: &IngestEvent| ingest_value(e);
    match t {
        Typed::Ready => (dispatch_frame("READY", &json!({ "user": { "id": "1" }, "session_id": "s" })), Expect::Any),
        Typed::Resumed => (dispatch_frame("RESUMED", &json!({})), Expect::Any),
        Typed::GuildCreate { guild, unavailable, member_count, members, presences } => {
            let g = GuildCreate {
                id: guild.id(),
                unavailable: *unavailable,
                member_count: *member_count,
                large: None,
                members: members.iter().map(ArbMember::member).collect(),
                presences: presences.iter().map(|p| p.presence(Some(guild.id()))).collect(),
            };
            let expect = if g.id == BASE_GUILD && g.unavailable != Some(true) { Expect::Listed(g.members.len()) } else { Expect::Nothing };
            (dispatch_frame("GUILD_CREATE", &g), expect)
        }
        Typed::Chunk { guild, members, presences, index, count, nonce } => {
            let c = GuildMembersChunk {
                guild_id: guild.id(),
                members: members.iter().map(ArbMember::member).collect(),
                chunk_index: *index % 4,
                chunk_count: *count % 4,
                presences: presences.iter().map(|p| p.presence(Some(guild.id()))).collect(),
                nonce: nonce.as_ref().map(|n| match n {
                    Result2::A(g) => format!("lantern-{}", g % 3),
                    Result2::B(t) => t.0.clone(),
                }),
            };
            let expect = if c.guild_id == BASE_GUILD { Expect::Listed(c.members.len()) } else { Expect::Nothing };
            (dispatch_frame("GUILD_MEMBERS_CHUNK", &c), expect)
        }
        Typed::Presence(guild, p) => {
            let p = p.presence(Some(guild.id()));
            let expect = if guild.id() == BASE_GUILD { Expect::One(owner(p.user.id), value(&IngestEvent::Presence(Box::new(p.clone())))) } else { Expect::Nothing };
            (dispatch_frame("PRESENCE_UPDATE", &p), expect)
        }
        Typed::MemberAdd(guild, m) => {
            let add = GuildMemberAdd { guild_id: guild.id(), member: m.member() };
            let expect = if guild.id() == BASE_GUILD {
                Expect::One(owner(add.member.user.id), value(&IngestEvent::MemberAdd { generation: 0, member: Box::new(add.member.clone()) }))
            } else {
                Expect::Nothing
            };
            (dispatch_frame("GUILD_MEMBER_ADD", &add), expect)
        }
        Typed::MemberUpdate(guild, m) => {
            let m = m.member();
            let up = GuildMemberUpdate { guild_id: guild.id(), user: m.user, nick: m.nick, avatar: m.avatar, roles: m.roles, joined_at: m.joined_at };
            let expect =
                if guild.id() == BASE_GUILD { Expect::One(owner(up.user.id), value(&IngestEvent::MemberUpdate(Box::new(up.clone())))) } else { Expect::Nothing };
            (dispatch_frame("GUILD_MEMBER_UPDATE", &up), expect)
        }
        Typed::MemberRemove(guild, id) => {
            let r = GuildMemberRemove { guild_id: guild.id(), user: PartialUser { id: id.0, ..Default::default() } };
            let expect = if guild.id() == BASE_GUILD { Expect::One(owner(id.0), value(&IngestEvent::MemberRemove(id.0))) } else { Expect::Nothing };
            (dispatch_frame("GUILD_MEMBER_REMOVE", &r), expect)
        }
        Typed::UserUpdate(p) => {
            let p = p.partial();
            (dispatch_frame("USER_UPDATE", &p), Expect::One(owner(p.id), value(&IngestEvent::UserUpdate(Box::new(p.clone())))))
        }
    }
}

/// An ingest event as JSON, for comparing what was decoded with what was sent (generations
/// are left out: they are the dispatcher's own).
fn ingest_value(e: &IngestEvent) -> Value {
    let v = |x: &dyn erased::Ser| x.value();
    match e {
        IngestEvent::Presence(p) => json!({ "presence": v(p) }),
        IngestEvent::MemberAdd { member, .. } => json!({ "add": v(member) }),
        IngestEvent::MemberUpdate(u) => json!({ "update": v(u) }),
        IngestEvent::MemberRemove(id) => json!({ "remove": id }),
        IngestEvent::UserUpdate(u) => json!({ "user": v(u) }),
        IngestEvent::Listed { members, .. } => json!({ "listed": members.iter().map(|(m, p)| json!([v(m), p.as_ref().map(|p| v(p))])).collect::<Vec<_>>() }),
        IngestEvent::ListComplete { .. } => json!("complete"),
        IngestEvent::Replicated { member, presence, last_seen_ms } => {
            json!({ "replicated": [v(member), presence.as_ref().map(|p| v(p)), last_seen_ms] })
        }
    }
}

mod erased {
    pub trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("serializes")
        }
    }
}

/// The user ids an event is about (they must all belong to the shard it is sent to).
fn users_of(e: &IngestEvent) -> Vec<Snowflake> {
    match e {
        IngestEvent::Presence(p) => vec![p.user.id],
        IngestEvent::MemberAdd { member, .. } => vec![member.user.id],
        IngestEvent::MemberUpdate(u) => vec![u.user.id],
        IngestEvent::MemberRemove(id) => vec![*id],
        IngestEvent::UserUpdate(u) => vec![u.id],
        IngestEvent::Listed { members, .. } => members.iter().map(|(m, _)| m.user.id).collect(),
        IngestEvent::ListComplete { .. } => vec![],
        IngestEvent::Replicated { member, .. } => vec![member.user.id],
    }
}

/// Runs the frames through one dispatcher and the shards' state.
pub fn check(case: &GatewayCase) {
    let shards = 1 + case.shards as usize % 8;
    let mut d = Dispatcher::new(BASE_GUILD, shards, case.request_members);
    let mut states: Vec<ShardState> = (0..shards).map(|_| ShardState::default()).collect();
    let clocks: Vec<i64> = case.clocks.iter().map(|t| t.0).take(4).collect();
    let mut last_status = d.status();
    for (n, frame) in case.frames.iter().enumerate() {
        let (text, expect) = match frame {
            FrameInput::Raw(s) => (s.clone(), Expect::Any),
            FrameInput::Dispatch { event, d, s } => {
                let t = EVENTS[*event as usize % EVENTS.len()];
                (json!({ "op": 0, "s": s, "t": t, "d": d.0 }).to_string(), Expect::Any)
            }
            FrameInput::Op { op, d } => {
                let op = if *op == 0 { 1 } else { *op };
                (json!({ "op": op, "d": d.0 }).to_string(), Expect::Nothing)
            }
            FrameInput::Typed(t) => typed_frame(t, shards),
        };
        let mut out = Vec::new();
        let result = d.frame(&text, &mut out);
        if let Err(e) = &result {
            assert!(!matches!(frame, FrameInput::Typed(_)), "a well-formed frame failed to decode ({e}): {text}");
            if let DecodeError::Payload { event, .. } = e {
                assert!(text.contains(event.as_str()));
            }
        }
        let routed: Vec<(usize, &IngestEvent)> = out
            .iter()
            .filter_map(|o| match o {
                Outbound::ToShard(i, e) => Some((*i, e)),
                _ => None,
            })
            .collect();
        match expect {
            Expect::Nothing => assert!(routed.is_empty(), "{text} routed {routed:?}"),
            Expect::Any => {}
            Expect::One(shard, v) => {
                assert_eq!(routed.len(), 1, "{text} → {out:?}");
                assert_eq!(routed[0].0, shard);
                assert_eq!(ingest_value(routed[0].1), v, "decoded differently from what was sent: {text}");
            }
            Expect::Listed(n) => {
                let listed: usize = routed.iter().map(|(_, e)| users_of(e).len()).sum();
                assert_eq!(listed, n, "{text}");
            }
        }
        for o in &out {
            match o {
                Outbound::ToShard(i, e) => {
                    assert!(*i < shards);
                    for id in users_of(e) {
                        assert_eq!(shard_of(id, shards), *i, "{e:?} sent to shard {i}");
                    }
                    match e {
                        IngestEvent::Presence(p) => assert_eq!(p.guild_id, Some(BASE_GUILD)),
                        IngestEvent::Listed { members, .. } => {
                            for (m, p) in members {
                                assert!(p.as_ref().is_none_or(|p| p.user.id == m.user.id));
                            }
                        }
                        _ => {}
                    }
                }
                Outbound::Status(s) => {
                    assert_ne!(*s, last_status, "a status broadcast without a change");
                    assert!(!last_status.members_loaded || s.members_loaded, "members_loaded went back");
                    last_status = *s;
                }
                Outbound::RequestMembers { guild_id, nonce } => {
                    assert_eq!(*guild_id, BASE_GUILD);
                    assert!(nonce.starts_with("lantern-"));
                }
                Outbound::Broadcast(e) => assert!(matches!(e, IngestEvent::ListComplete { .. })),
                Outbound::Interaction(t) => assert_eq!(t, &text),
            }
        }
        let now = clocks.get(n % clocks.len().max(1)).copied().unwrap_or(json::NOW_MS);
        apply(&mut states, out, now, &clocks);
    }
    let _: GatewayStatus = d.status();
}

/// Applies routed events to the shards' state, as the owner shards do, and checks every user
/// object a change produced.
pub fn apply(states: &mut [ShardState], out: Vec<Outbound>, now: i64, clocks: &[i64]) {
    for o in out {
        let targets: Vec<(usize, IngestEvent)> = match o {
            Outbound::ToShard(i, e) => vec![(i, e)],
            Outbound::Broadcast(e) => (0..states.len()).map(|i| (i, e.clone())).collect(),
            _ => continue,
        };
        for (i, e) in targets {
            let mut applied = Applied::default();
            states[i].apply(e, now, &mut applied);
            for c in &applied.changes {
                match c {
                    Change::Joined(id) | Change::Updated(id) | Change::StorageUpdated(id) => {
                        let u = states[i].get(*id).expect("a changed user is there");
                        for &at in clocks.iter().chain([i64::MIN, i64::MAX, 0, json::NOW_MS].iter()) {
                            check_user_json(&u.json, *id, at);
                        }
                    }
                    Change::Left(id) => assert!(!states[i].contains(*id)),
                }
            }
        }
    }
}

/// A user object renders to JSON with the contract's top-level fields at any clock, the same
/// bytes whether rendered alone or into a buffer.
pub fn check_user_json(json: &UserJson, id: Snowflake, now: i64) {
    let bytes = json.render(now);
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("user object is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    for key in ["metadata", "active_platforms", "activities", "storage", "server_tag", "status", "last_seen_at"] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["metadata"]["id"], json!(id.to_string()));
    assert!(["online", "idle", "dnd", "offline"].contains(&v["status"].as_str().unwrap_or("")), "{v}");
    if let Some(t) = v["active_platforms"]["spotify"].get("time") {
        for k in ["start_human_readable", "end_human_readable"] {
            let s = t[k].as_str().expect("a clock string");
            assert!(!s.starts_with('-') && s.contains(':'), "{k} = {s:?}");
        }
    }
    let mut into = Vec::new();
    json.render_into(now, &mut into);
    assert_eq!(into, bytes.to_vec());
}
