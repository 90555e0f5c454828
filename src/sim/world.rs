//! The simulated world: the guild's members and presences, registered application commands, the
//! live connections, and the gateway sessions with their sequence numbers and dispatch logs.
//!
//! Every dispatch goes through [`Session::push`] under the world lock, so each session's `s`
//! increases in the order frames are queued, and a session without a connection still logs
//! what it misses (RESUME replays it).

use super::generator;
use super::{Fault, Shared, SimConfig};
use crate::discord::events::{GuildMemberAdd, GuildMemberRemove, GuildMembersChunk};
use crate::discord::{Member, PartialUser, Presence, Snowflake, Status, User};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Dispatches kept per session for RESUME.
const LOG_CAP: usize = 10_000;
/// A session without a connection is forgotten after this long.
const SESSION_TTL: Duration = Duration::from_secs(300);
/// Members per GUILD_MEMBERS_CHUNK, as on Discord.
const CHUNK_SIZE: usize = 1000;

pub(crate) const INTENT_GUILDS: u64 = 1;
pub(crate) const INTENT_GUILD_MEMBERS: u64 = 1 << 1;
pub(crate) const INTENT_GUILD_PRESENCES: u64 = 1 << 8;

/// What a connection task is told to do.
#[derive(Debug)]
pub(crate) enum Out {
    /// An op 0 frame.
    Dispatch(String),
    /// Any other frame (op 7, op 9, op 11).
    Raw(String),
    /// Close the socket without a close frame.
    Drop,
    /// Close with a close frame.
    Close(u16),
}

/// Which sessions an event reaches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    /// Every session (raw dispatches).
    Any,
    /// Sessions that hold the guild and have this intent.
    Guild(u64),
}

pub(crate) struct Session {
    seq: u64,
    log: VecDeque<(u64, String)>,
    conn: Option<(u64, UnboundedSender<Out>)>,
    detached_at: Instant,
    intents: u64,
    has_guild: bool,
}

impl Session {
    /// Assigns the next sequence number, logs the frame and sends it if connected.
    fn push(&mut self, t: &str, d: &str) {
        self.seq += 1;
        // Discord's layout: the envelope's keys first, the payload last.
        let frame = format!(r#"{{"t":"{}","s":{},"op":0,"d":{}}}"#, t, self.seq, d);
        if let Some((_, tx)) = &self.conn {
            let _ = tx.send(Out::Dispatch(frame.clone()));
        }
        self.log.push_back((self.seq, frame));
        if self.log.len() > LOG_CAP {
            self.log.pop_front();
        }
    }

    fn reaches(&self, scope: Scope) -> bool {
        match scope {
            Scope::Any => true,
            Scope::Guild(intent) => self.has_guild && self.intents & intent != 0,
        }
    }

    fn detach(&mut self) -> Option<UnboundedSender<Out>> {
        self.detached_at = Instant::now();
        self.conn.take().map(|(_, tx)| tx)
    }
}

/// What IDENTIFY asked for.
pub(crate) struct Identify {
    pub intents: u64,
    pub large_threshold: u64,
    pub shard: Option<[u64; 2]>,
}

pub(crate) struct World {
    guild_id: Snowflake,
    application_id: Snowflake,
    gateway_url: String,
    bot: User,
    owner_id: Snowflake,
    guild_joined_at: String,
    members: BTreeMap<Snowflake, (Member, Option<Presence>)>,
    /// Application commands per scope: `None` global, `Some(guild)` guild commands.
    pub commands: HashMap<Option<Snowflake>, Vec<Value>>,
    sessions: HashMap<String, Session>,
    conns: HashMap<u64, UnboundedSender<Out>>,
    next_conn: u64,
    pub rng: StdRng,
}

impl World {
    pub fn new(cfg: &SimConfig, gateway_port: u16) -> World {
        let generated = generator::generate_guild(cfg.members, cfg.seed, cfg.guild_id);
        let owner_id = generated
            .first()
            .map(|(m, _)| m.user.id)
            .unwrap_or(cfg.application_id);
        let bot = User {
            id: cfg.application_id,
            username: "Lantern".into(),
            discriminator: "0".into(),
            global_name: None,
            avatar: Some(format!(
                "{:032x}",
                cfg.application_id.0 as u128 * 0x9e37_79b9
            )),
            bot: true,
            public_flags: Some(1 << 19), // BOT_HTTP_INTERACTIONS
            ..User::default()
        };
        let now = crate::time_fmt::now_ms();
        let guild_joined_at = generator::discord_iso(now - 86_400_000);
        let bot_member = Member {
            user: bot.clone(),
            roles: vec![Snowflake(cfg.guild_id.0 + 1)],
            joined_at: Some(guild_joined_at.clone()),
            ..Member::default()
        };
        let mut members: BTreeMap<_, _> = generated
            .into_iter()
            .map(|(m, p)| (m.user.id, (m, p)))
            .collect();
        members.insert(bot.id, (bot_member, None));
        World {
            guild_id: cfg.guild_id,
            application_id: cfg.application_id,
            gateway_url: format!("ws://127.0.0.1:{gateway_port}"),
            bot,
            owner_id,
            guild_joined_at,
            members,
            commands: HashMap::new(),
            sessions: HashMap::new(),
            conns: HashMap::new(),
            next_conn: 1,
            rng: StdRng::seed_from_u64(cfg.seed.rotate_left(17)),
        }
    }

    pub fn bot(&self) -> &User {
        &self.bot
    }

    /// A fresh snowflake minted now (command ids, message ids).
    pub fn new_id(&mut self) -> Snowflake {
        generator::snowflake_at(&mut self.rng, crate::time_fmt::now_ms() as u64)
    }

    pub fn members(&self) -> Vec<(Member, Option<Presence>)> {
        self.members.values().cloned().collect()
    }

    pub fn member(&self, id: Snowflake) -> Option<(Member, Option<Presence>)> {
        self.members.get(&id).cloned()
    }

    pub fn live_and_sessions(&self) -> (usize, usize) {
        (self.conns.len(), self.sessions.len())
    }

    // ---- connections and sessions ----

    pub fn register_conn(&mut self, tx: UnboundedSender<Out>) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, tx);
        id
    }

    /// The connection ended: forget it and detach it from its session (if still attached).
    pub fn unregister_conn(&mut self, conn_id: u64, session: Option<&str>) {
        self.conns.remove(&conn_id);
        if let Some(s) = session.and_then(|id| self.sessions.get_mut(id)) {
            if s.conn.as_ref().is_some_and(|(c, _)| *c == conn_id) {
                s.detach();
            }
        }
    }

    /// Creates a session for an IDENTIFY and queues READY and GUILD_CREATE. Returns the
    /// session id.
    pub fn identify(&mut self, conn_id: u64, tx: UnboundedSender<Out>, ident: &Identify) -> String {
        let session_id = format!("{:032x}", self.rng.random::<u128>());
        // Discord places a guild on shard (guild_id >> 22) % num_shards.
        let has_guild = ident
            .shard
            .is_none_or(|[id, n]| (self.guild_id.0 >> 22) % n == id);
        let mut session = Session {
            seq: 0,
            log: VecDeque::new(),
            conn: Some((conn_id, tx)),
            detached_at: Instant::now(),
            intents: ident.intents,
            has_guild,
        };
        let guilds: Vec<Value> = if has_guild {
            vec![json!({"id": self.guild_id, "unavailable": true})]
        } else {
            Vec::new()
        };
        let mut ready = json!({
            "v": 10,
            "user_settings": {},
            "user": {
                "id": self.bot.id, "username": self.bot.username, "discriminator": self.bot.discriminator,
                "global_name": null, "avatar": self.bot.avatar, "bot": true, "verified": true,
                "mfa_enabled": false, "flags": self.bot.public_flags, "email": null,
            },
            "guilds": guilds,
            "presences": [],
            "private_channels": [],
            "relationships": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam", "frankfurt", "london"],
            "session_type": "normal",
            "session_id": session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.application_id, "flags": 8953856},
            "auth": {},
            "_trace": ["[\"gateway-sim\",{\"micros\":0}]"],
        });
        if let Some(shard) = ident.shard {
            ready["shard"] = json!(shard);
        }
        session.push("READY", &ready.to_string());
        if has_guild && ident.intents & INTENT_GUILDS != 0 {
            session.push("GUILD_CREATE", &self.guild_create(ident).to_string());
        }
        self.sessions.insert(session_id.clone(), session);
        session_id
    }

    /// RESUME: reattaches the session, replays what the client missed and sends RESUMED.
    /// Returns false when the session cannot be resumed (the caller sends op 9).
    pub fn resume(
        &mut self,
        conn_id: u64,
        tx: UnboundedSender<Out>,
        session_id: &str,
        seq: u64,
    ) -> bool {
        let Some(s) = self.sessions.get_mut(session_id) else {
            return false;
        };
        let oldest = s.log.front().map(|(n, _)| *n).unwrap_or(s.seq + 1);
        if seq > s.seq || seq + 1 < oldest {
            return false;
        }
        if let Some((_, old)) = s.conn.take() {
            // A client resuming means its old connection is dead, whatever we thought.
            let _ = old.send(Out::Drop);
        }
        for (n, frame) in &s.log {
            if *n > seq {
                let _ = tx.send(Out::Dispatch(frame.clone()));
            }
        }
        s.conn = Some((conn_id, tx));
        s.push(
            "RESUMED",
            r#"{"_trace":["[\"gateway-sim\",{\"micros\":0}]"]}"#,
        );
        true
    }

    pub fn session_intents(&self, session_id: &str) -> u64 {
        self.sessions
            .get(session_id)
            .map(|s| s.intents)
            .unwrap_or(0)
    }

    /// Applies a connection-level fault to every live connection. Sessions are detached here,
    /// synchronously, so whatever is dispatched after the call is only logged, not sent.
    pub fn fault(&mut self, f: Fault) {
        let out = || match f {
            Fault::DropConnections => Out::Drop,
            Fault::Close(code) => Out::Close(code),
            Fault::Reconnect => Out::Raw(r#"{"op":7,"d":null,"s":null,"t":null}"#.into()),
            Fault::InvalidSession { resumable } => {
                Out::Raw(format!(r#"{{"op":9,"d":{resumable},"s":null,"t":null}}"#))
            }
            Fault::StopHeartbeatAcks(_) => unreachable!("handled by Shared::fault"),
        };
        for tx in self.conns.values() {
            let _ = tx.send(out());
        }
        let ends_sessions = match f {
            Fault::InvalidSession { resumable } => !resumable,
            Fault::Close(code) => !super::gateway::session_survives(code),
            _ => false,
        };
        if ends_sessions {
            // Only sessions that had a connection were told; detached ones stay resumable.
            self.sessions.retain(|_, s| s.conn.is_none());
        }
        for s in self.sessions.values_mut() {
            s.detach();
        }
    }

    /// Forgets a session: it can no longer be resumed (a RESUME gets op 9 `false`).
    pub fn end_session(&mut self, session_id: &str) {
        self.sessions.remove(session_id);
    }

    /// Forgets sessions that have had no connection for [`SESSION_TTL`].
    fn expire_sessions(&mut self) {
        self.sessions
            .retain(|_, s| s.conn.is_some() || s.detached_at.elapsed() < SESSION_TTL);
    }

    // ---- dispatches ----

    pub fn broadcast(&mut self, t: &str, d: &str, scope: Scope) {
        for s in self.sessions.values_mut().filter(|s| s.reaches(scope)) {
            s.push(t, d);
        }
    }

    pub fn dispatch_to(&mut self, session_id: &str, t: &str, d: &str) {
        if let Some(s) = self.sessions.get_mut(session_id) {
            s.push(t, d);
        }
    }

    /// The GUILD_CREATE payload as Discord shapes it for this IDENTIFY.
    fn guild_create(&self, ident: &Identify) -> Value {
        let count = self.members.len() as u64;
        let large = count > ident.large_threshold;
        let presences_on = ident.intents & INTENT_GUILD_PRESENCES != 0;
        // A large guild carries only the bot's own member and no presences: the client
        // must request the rest with op 8.
        let (members, presences): (Vec<&Member>, Vec<Value>) = if large {
            (
                self.members
                    .get(&self.bot.id)
                    .map(|(m, _)| m)
                    .into_iter()
                    .collect(),
                Vec::new(),
            )
        } else {
            let presences = if presences_on {
                self.members
                    .values()
                    .filter_map(|(_, p)| p.as_ref())
                    .map(presence_in_list)
                    .collect()
            } else {
                Vec::new()
            };
            (self.members.values().map(|(m, _)| m).collect(), presences)
        };
        let g = self.guild_id.0;
        let role = |n: u64, name: &str, color: u32, perms: &str, hoist: bool| {
            json!({
                "id": Snowflake(g + n), "name": name, "description": null, "color": color,
                "colors": {"primary_color": color, "secondary_color": null, "tertiary_color": null},
                "hoist": hoist, "icon": null, "unicode_emoji": null, "position": n, "permissions": perms,
                "managed": false, "mentionable": n != 0, "flags": 0,
            })
        };
        let mut roles = vec![role(0, "@everyone", 0, "2248473465835073", false)];
        for (i, name) in generator::ROLE_NAMES.iter().enumerate() {
            roles.push(role(
                i as u64 + 1,
                name,
                [0xe67e22, 0x3498db, 0x9b59b6, 0x2ecc71][i],
                "0",
                i == 0,
            ));
        }
        let mut guild = json!({
            "id": self.guild_id,
            "name": "Lantern Simulated Guild",
            "icon": null, "splash": null, "discovery_splash": null, "banner": null, "description": null,
            "owner_id": self.owner_id,
            "region": "deprecated",
            "afk_channel_id": null, "afk_timeout": 300,
            "widget_enabled": false, "widget_channel_id": null,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "roles": roles,
            "emojis": [], "stickers": [],
            "features": ["COMMUNITY", "NEWS", "GUILD_TAGS"],
            "mfa_level": 0,
            "application_id": null,
            "system_channel_id": null, "system_channel_flags": 0,
            "rules_channel_id": null, "public_updates_channel_id": null, "safety_alerts_channel_id": null,
            "max_presences": null, "max_members": 500000,
            "vanity_url_code": null,
            "premium_tier": 1, "premium_subscription_count": 4,
            "preferred_locale": "en-US",
            "max_video_channel_users": 25, "max_stage_video_channel_users": 50,
            "nsfw": false, "nsfw_level": 0,
            "premium_progress_bar_enabled": false,
            "hub_type": null,
        });
        // The gateway-only part of GUILD_CREATE (split: one json! this size hits the macro recursion limit).
        let state = json!({
            "lazy": true,
            "joined_at": self.guild_joined_at,
            "large": large,
            "unavailable": false,
            "member_count": count,
            "voice_states": [],
            "members": members,
            "channels": [],
            "threads": [],
            "presences": presences,
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "application_command_counts": {},
        });
        if let (Some(g), Value::Object(extra)) = (guild.as_object_mut(), state) {
            g.extend(extra);
        }
        guild
    }

    /// Answers op 8 with GUILD_MEMBERS_CHUNK dispatches to the asking session.
    pub fn request_members(&mut self, session_id: &str, req: &MemberRequest) {
        if req.guild_ids.iter().all(|g| *g != self.guild_id) {
            return;
        }
        let presences_on =
            req.presences && self.session_intents(session_id) & INTENT_GUILD_PRESENCES != 0;
        let mut not_found = Vec::new();
        let selected: Vec<&(Member, Option<Presence>)> = if let Some(ids) = &req.user_ids {
            ids.iter()
                .filter_map(|id| {
                    let m = self.members.get(id);
                    if m.is_none() {
                        not_found.push(*id);
                    }
                    m
                })
                .collect()
        } else {
            let q = req.query.to_lowercase();
            let limit = if req.limit == 0 {
                usize::MAX
            } else {
                req.limit as usize
            };
            self.members
                .values()
                .filter(|(m, _)| {
                    q.is_empty()
                        || m.user.username.to_lowercase().starts_with(&q)
                        || m.nick
                            .as_deref()
                            .is_some_and(|n| n.to_lowercase().starts_with(&q))
                })
                .take(limit)
                .collect()
        };
        let chunks: Vec<&[&(Member, Option<Presence>)]> = if selected.is_empty() {
            vec![&[]]
        } else {
            selected.chunks(CHUNK_SIZE).collect()
        };
        let count = chunks.len() as u32;
        let frames: Vec<String> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let body = GuildMembersChunk {
                    guild_id: self.guild_id,
                    members: chunk.iter().map(|(m, _)| m.clone()).collect(),
                    chunk_index: i as u32,
                    chunk_count: count,
                    presences: Vec::new(),
                    nonce: req.nonce.clone(),
                };
                let mut v = serde_json::to_value(&body).unwrap_or(Value::Null);
                if presences_on {
                    v["presences"] = chunk
                        .iter()
                        .filter_map(|(_, p)| p.as_ref())
                        .map(presence_in_list)
                        .collect();
                } else if let Some(o) = v.as_object_mut() {
                    o.remove("presences");
                }
                if i == 0 && !not_found.is_empty() {
                    v["not_found"] = json!(not_found);
                }
                v.to_string()
            })
            .collect();
        for f in frames {
            self.dispatch_to(session_id, "GUILD_MEMBERS_CHUNK", &f);
        }
    }

    // ---- world changes ----

    pub fn set_presence(&mut self, mut p: Presence) {
        if let Some((member, stored)) = self.members.get_mut(&p.user.id) {
            p.user.apply_to(&mut member.user);
            *stored = (!p.status.is_offline()).then(|| Presence {
                user: PartialUser {
                    id: p.user.id,
                    ..PartialUser::default()
                },
                guild_id: None,
                ..p.clone()
            });
        }
        if p.status.is_offline() {
            // Discord sends offline presences without activities.
            p.status = Status::Offline;
            p.activities.clear();
        }
        p.guild_id = Some(self.guild_id);
        let d = serde_json::to_string(&p).unwrap_or_default();
        self.broadcast("PRESENCE_UPDATE", &d, Scope::Guild(INTENT_GUILD_PRESENCES));
    }

    pub fn add_member(&mut self, m: Member, p: Option<Presence>) {
        let id = m.user.id;
        let d = serde_json::to_string(&GuildMemberAdd {
            guild_id: self.guild_id,
            member: m.clone(),
        })
        .unwrap_or_default();
        self.members.insert(id, (m, None));
        self.broadcast("GUILD_MEMBER_ADD", &d, Scope::Guild(INTENT_GUILD_MEMBERS));
        if let Some(mut p) = p {
            p.user.id = id;
            self.set_presence(p);
        }
    }

    pub fn update_member(&mut self, m: Member) {
        // GUILD_MEMBER_UPDATE carries the whole member; the add shape (member + guild_id) is it.
        let d = serde_json::to_string(&GuildMemberAdd {
            guild_id: self.guild_id,
            member: m.clone(),
        })
        .unwrap_or_default();
        match self.members.get_mut(&m.user.id) {
            Some((stored, _)) => *stored = m,
            None => {
                self.members.insert(m.user.id, (m, None));
            }
        }
        self.broadcast(
            "GUILD_MEMBER_UPDATE",
            &d,
            Scope::Guild(INTENT_GUILD_MEMBERS),
        );
    }

    pub fn remove_member(&mut self, id: Snowflake) {
        let user = match self.members.remove(&id) {
            Some((m, _)) => PartialUser::from(&m.user),
            None => PartialUser {
                id,
                ..PartialUser::default()
            },
        };
        let d = serde_json::to_string(&GuildMemberRemove {
            guild_id: self.guild_id,
            user,
        })
        .unwrap_or_default();
        self.broadcast(
            "GUILD_MEMBER_REMOVE",
            &d,
            Scope::Guild(INTENT_GUILD_MEMBERS),
        );
    }

    /// One random presence change (churn).
    fn churn_one(&mut self) {
        let n = self.members.len();
        if n == 0 {
            return;
        }
        let idx = self.rng.random_range(0..n);
        let Some((member, current)) = self.members.values().nth(idx) else {
            return;
        };
        if member.user.id == self.bot.id {
            return;
        }
        let next = generator::churn(
            &mut self.rng,
            &member.user,
            current.as_ref(),
            crate::time_fmt::now_ms(),
        );
        self.set_presence(next);
    }
}

/// A presence inside GUILD_CREATE or a chunk: Discord leaves out `guild_id` there.
fn presence_in_list(p: &Presence) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("guild_id");
    }
    v
}

/// A parsed op 8.
pub(crate) struct MemberRequest {
    pub guild_ids: Vec<Snowflake>,
    pub query: String,
    pub limit: u64,
    pub presences: bool,
    pub user_ids: Option<Vec<Snowflake>>,
    pub nonce: Option<String>,
}

/// Forgets stale sessions now and then.
pub(crate) async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        shared.world().expire_sessions();
    }
}

/// Applies `churn_per_sec` random presence changes per second, in 50 ms batches.
pub(crate) async fn churn(shared: Arc<Shared>) {
    let step = Duration::from_millis(50);
    let mut tick = tokio::time::interval(step);
    let mut owed = 0.0;
    loop {
        tick.tick().await;
        owed += shared.cfg.churn_per_sec * step.as_secs_f64();
        let mut world = shared.world();
        while owed >= 1.0 {
            world.churn_one();
            owed -= 1.0;
        }
    }
}
