//! Decoding gateway frames once and deciding where each event goes.
//!
//! [`Dispatcher`] sees every raw text frame. It reads the envelope (`op`, `t`) without
//! decoding the payload, decodes only the dispatches it cares about into the project's own
//! types, drops other guilds' events, and turns the rest into [`Outbound`] actions: events for
//! owner shards, status broadcasts, and member requests (op 8) to send to the gateway.

use crate::discord::events::{Dispatch, GuildCreate, GuildMemberAdd, GuildMemberRemove, GuildMemberUpdate, GuildMembersChunk};
use crate::discord::{Member, PartialUser, Presence, Snowflake};
use crate::discord::gateway_status::{GatewayState, GatewayStatus};
use crate::presence::IngestEvent;
use crate::runtime::shard_of;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use twilight_model::gateway::event::GatewayEventDeserializer;

/// What the ingest loop must do after a frame.
#[derive(Debug)]
pub enum Outbound {
    /// Deliver to shard `.0`.
    ToShard(usize, IngestEvent),
    /// Deliver to every shard.
    Broadcast(IngestEvent),
    /// The gateway status changed; tell every shard.
    Status(GatewayStatus),
    /// Ask the gateway for the whole member list (op 8) with this nonce.
    RequestMembers { guild_id: Snowflake, nonce: String },
    /// An INTERACTION_CREATE frame, for the bot.
    Interaction(String),
}

pub struct Dispatcher {
    base_guild: Snowflake,
    shards: usize,
    request_members: bool,
    status: GatewayStatus,
    /// Member-list generation: bumped on every fresh session (READY).
    generation: u64,
    /// Chunks received for the current generation's op 8, when one is outstanding.
    chunks: Option<ChunkProgress>,
    /// Scratch space reused by every decode: simd-json parses a mutable copy of the frame,
    /// padded here so that it makes no second copy of its own.
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    /// The tape of the last decode, emptied, so that its allocation serves the next one.
    tape: Option<simd_json::Tape<'static>>,
    /// Dispatches counted by type, when the ingest loop keeps counters.
    stats: Option<std::sync::Arc<crate::metrics::GatewayStats>>,
}

struct ChunkProgress {
    nonce: String,
    received: HashSet<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not a gateway payload")]
    Envelope,
    #[error("cannot decode {event}: {message}")]
    Payload { event: String, message: String },
}

/// A dispatch's frame, and its `d` alone when the envelope has it last.
#[derive(Clone, Copy)]
struct Frame<'a> {
    text: &'a str,
    payload: Option<&'a str>,
}

/// A gateway payload's `op` and `t`, read from the keys that come before `d`.
///
/// Discord writes `t`, `s` and `op` first and `d` last, so reading them is a look at the first
/// few dozen bytes rather than a scan of the whole frame (twilight's `GatewayEventDeserializer`,
/// used when a frame is laid out any other way, searches the frame for each key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Envelope<'a> {
    op: u8,
    event: Option<&'a str>,
    /// The value of `d` alone, when `d` is the last key (as Discord writes it): decoding it
    /// skips the envelope's keys (a tenth of a presence's bytes) in both of simd-json's
    /// stages and in serde's walk. A frame whose `d` is not last leaves more than one value
    /// here, which simd-json refuses, and is then decoded whole.
    payload: Option<&'a str>,
}

impl<'a> Envelope<'a> {
    /// `None` when the keys before `d` are not exactly some of `op`, `s` and `t`, with plain
    /// values (an integer `op`, an integer or null `s`, an escape-free string or null `t`), or
    /// when `op` is missing: the caller then reads the frame the general way.
    fn peek(text: &'a str) -> Option<Envelope<'a>> {
        let b = text.as_bytes();
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        let (mut op, mut event, mut seen_t) = (None, None, false);
        loop {
            i = skip_ws(b, i + 1);
            let (key, after) = plain_string(text, i)?;
            i = skip_ws(b, after);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(b, i + 1);
            match key {
                // A dispatch's name after its payload: only the general reader finds it.
                "d" if op == Some(0) && !seen_t => return None,
                "d" => {
                    let end = text.trim_end().strip_suffix('}').map(str::len);
                    let payload = end.filter(|&end| i < end).map(|end| &text[i..end]);
                    return Some(Envelope { op: op?, event, payload });
                }
                "op" => {
                    let (n, after) = integer(b, i)?;
                    op = Some(u8::try_from(n).ok()?);
                    i = after;
                }
                "s" => i = if b[i..].starts_with(b"null") { i + 4 } else { integer(b, i)?.1 },
                "t" => {
                    seen_t = true;
                    if b[i..].starts_with(b"null") {
                        i += 4;
                    } else {
                        let (t, after) = plain_string(text, i)?;
                        event = Some(t);
                        i = after;
                    }
                }
                _ => return None,
            }
            i = skip_ws(b, i);
            if b.get(i) != Some(&b',') {
                // `d` always follows in a dispatch; a payload without one ends here.
                return (b.get(i) == Some(&b'}')).then_some(Envelope { op: op?, event, payload: None });
            }
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The string starting at `text[i]` (a `"`) when it has no escape, and the index after it.
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let len = b[i + 1..].iter().position(|&c| c == b'"' || c == b'\\')?;
    let end = i + 1 + len;
    (b[end] == b'"').then(|| (&text[i + 1..end], end + 1))
}

/// The unsigned integer starting at `b[i]`, and the index after it.
fn integer(b: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let start = i;
    let mut n: u64 = 0;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        i += 1;
    }
    (i > start).then_some((n, i))
}

impl Dispatcher {
    pub fn new(base_guild: Snowflake, shards: usize, request_members: bool) -> Dispatcher {
        Dispatcher {
            base_guild,
            shards,
            request_members,
            status: GatewayStatus::default(),
            generation: 0,
            chunks: None,
            scratch: Vec::new(),
            buffers: simd_json::Buffers::default(),
            tape: None,
            stats: None,
        }
    }

    /// Counts every dispatch in `stats`, by type.
    pub fn with_stats(mut self, stats: std::sync::Arc<crate::metrics::GatewayStats>) -> Dispatcher {
        self.stats = Some(stats);
        self
    }

    /// For a session resumed from another process: its member list was loaded there (and
    /// reached this node by replication), so none is requested and none is awaited.
    pub fn with_members_loaded(mut self) -> Dispatcher {
        self.status.members_loaded = true;
        self
    }

    pub fn status(&self) -> GatewayStatus {
        self.status
    }

    fn owner(&self, id: Snowflake) -> usize {
        shard_of(id, self.shards)
    }

    /// Records a connection state change; returns the broadcast if it is one.
    pub fn set_state(&mut self, state: GatewayState, out: &mut Vec<Outbound>) {
        if self.status.state != state {
            self.status.state = state;
            out.push(Outbound::Status(self.status));
        }
    }

    /// Handles one text frame from the gateway.
    pub fn frame(&mut self, text: &str, out: &mut Vec<Outbound>) -> Result<(), DecodeError> {
        let (op, event, payload) = match Envelope::peek(text) {
            Some(envelope) => (envelope.op, envelope.event.map(Cow::Borrowed), envelope.payload),
            None => {
                let (op, _, event) = GatewayEventDeserializer::from_json(text).ok_or(DecodeError::Envelope)?.into_parts();
                (op, event, None)
            }
        };
        let frame = Frame { text, payload };
        if op != 0 {
            return Ok(());
        }
        let Some(event) = event else { return Ok(()) };
        let event: &str = &event;
        if let Some(s) = &self.stats { s.event(event) }
        match event {
            "READY" => {
                // A fresh session: the member list that follows is a new generation.
                self.generation += 1;
                self.chunks = None;
                self.set_state(GatewayState::Connected, out);
            }
            "RESUMED" => self.set_state(GatewayState::Connected, out),
            "GUILD_CREATE" => {
                let guild: GuildCreate = self.decode(event, frame)?;
                if guild.id == self.base_guild && guild.unavailable != Some(true) {
                    self.guild_create(guild, out);
                }
            }
            "GUILD_MEMBERS_CHUNK" => {
                let chunk: GuildMembersChunk = self.decode(event, frame)?;
                if chunk.guild_id == self.base_guild {
                    self.members_chunk(chunk, out);
                }
            }
            "PRESENCE_UPDATE" => {
                let p: Box<Presence> = self.decode(event, frame)?;
                if p.guild_id == Some(self.base_guild) {
                    out.push(Outbound::ToShard(self.owner(p.user.id), IngestEvent::Presence(p)));
                }
            }
            "GUILD_MEMBER_ADD" => {
                let add: GuildMemberAdd = self.decode(event, frame)?;
                if add.guild_id == self.base_guild {
                    let generation = self.generation;
                    out.push(Outbound::ToShard(self.owner(add.member.user.id), IngestEvent::MemberAdd { generation, member: Box::new(add.member) }));
                }
            }
            "GUILD_MEMBER_UPDATE" => {
                let update: Box<GuildMemberUpdate> = self.decode(event, frame)?;
                if update.guild_id == self.base_guild {
                    out.push(Outbound::ToShard(self.owner(update.user.id), IngestEvent::MemberUpdate(update)));
                }
            }
            "GUILD_MEMBER_REMOVE" => {
                let remove: GuildMemberRemove = self.decode(event, frame)?;
                if remove.guild_id == self.base_guild {
                    out.push(Outbound::ToShard(self.owner(remove.user.id), IngestEvent::MemberRemove(remove.user.id)));
                }
            }
            "USER_UPDATE" => {
                let user: Box<PartialUser> = self.decode(event, frame)?;
                out.push(Outbound::ToShard(self.owner(user.id), IngestEvent::UserUpdate(user)));
            }
            "INTERACTION_CREATE" => out.push(Outbound::Interaction(frame.text.to_owned())),
            // Channel, role, thread and other guild events carry nothing the server serves.
            _ => {}
        }
        Ok(())
    }

    /// Decodes the `d` of a dispatch into the project's own types: from `d` alone when the
    /// envelope has it last, else from the whole frame.
    fn decode<T: DeserializeOwned>(&mut self, event: &str, frame: Frame<'_>) -> Result<T, DecodeError> {
        if let Some(Ok(d)) = frame.payload.map(|d| self.parse::<T>(d)) {
            return Ok(d);
        }
        // The frame whole: a `d` that is not last, or an error to report as it reads there.
        self.parse::<Dispatch<T>>(frame.text)
            .map(|dispatch| dispatch.d)
            .map_err(|e| DecodeError::Payload { event: event.to_owned(), message: e.to_string() })
    }

    /// Decodes JSON text with simd-json, which measured about 30% faster than serde_json for
    /// these types (`cargo bench --bench decode`); it needs a mutable, padded copy of the text
    /// and a tape, both kept from one decode to the next (a tape is a few kilobytes: allocated
    /// per frame, it was a large `malloc` and `free` every event).
    fn parse<T: DeserializeOwned>(&mut self, text: &str) -> Result<T, simd_json::Error> {
        let len = text.len();
        self.scratch.clear();
        self.scratch.reserve(len + simd_json::INPUT_PADDING);
        self.scratch.extend_from_slice(text.as_bytes());
        self.scratch.resize(len + simd_json::INPUT_PADDING, b' ');
        let mut tape = self.tape.take().unwrap_or_else(simd_json::Tape::null).reset();
        let decoded = match simd_json::fill_tape_padded(&mut self.scratch, len, &mut self.buffers, &mut tape) {
            Ok(()) => {
                let mut deserializer = simd_json::Deserializer::from_tape(tape);
                let decoded = T::deserialize(&mut deserializer);
                tape = deserializer.into_tape();
                decoded
            }
            Err(e) => Err(e),
        };
        self.tape = Some(tape.reset());
        decoded
    }

    /// Splits listed members by owner shard, pairing each with its presence.
    fn list(&self, members: Vec<Member>, presences: Vec<Presence>, out: &mut Vec<Outbound>) {
        let mut presences: HashMap<Snowflake, Presence> = presences.into_iter().map(|p| (p.user.id, p)).collect();
        let mut per_shard: Vec<Vec<(Member, Option<Presence>)>> = (0..self.shards).map(|_| Vec::new()).collect();
        for m in members {
            let p = presences.remove(&m.user.id);
            per_shard[self.owner(m.user.id)].push((m, p));
        }
        for (shard, members) in per_shard.into_iter().enumerate() {
            if !members.is_empty() {
                out.push(Outbound::ToShard(shard, IngestEvent::Listed { generation: self.generation, members }));
            }
        }
    }

    fn complete(&mut self, out: &mut Vec<Outbound>) {
        self.chunks = None;
        out.push(Outbound::Broadcast(IngestEvent::ListComplete { generation: self.generation }));
        if !self.status.members_loaded {
            self.status.members_loaded = true;
            out.push(Outbound::Status(self.status));
        }
    }

    fn guild_create(&mut self, guild: GuildCreate, out: &mut Vec<Outbound>) {
        let listed = guild.members.len() as u64;
        let total = guild.member_count.unwrap_or(listed);
        self.list(guild.members, guild.presences, out);
        if listed >= total || !self.request_members {
            self.complete(out);
        } else {
            // A large guild: GUILD_CREATE lists only some members, so ask for all of them.
            let nonce = format!("lantern-{}", self.generation);
            self.chunks = Some(ChunkProgress { nonce: nonce.clone(), received: HashSet::new() });
            out.push(Outbound::RequestMembers { guild_id: guild.id, nonce });
        }
    }

    fn members_chunk(&mut self, chunk: GuildMembersChunk, out: &mut Vec<Outbound>) {
        let current = match (&self.chunks, chunk.nonce.as_deref()) {
            (Some(progress), Some(nonce)) => progress.nonce == nonce,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.list(chunk.members, chunk.presences, out);
        if !current {
            // Chunks of an earlier session's request still carry valid members.
            return;
        }
        let done = {
            let progress = self.chunks.as_mut().expect("checked above");
            progress.received.insert(chunk.chunk_index);
            progress.received.len() as u32 >= chunk.chunk_count.max(1)
        };
        if done {
            self.complete(out);
        }
    }
}



#[cfg(test)]
mod tests {
    use super::*;

    /// What twilight's general reader makes of the same frame.
    fn general(text: &str) -> Option<(u8, Option<String>)> {
        GatewayEventDeserializer::from_json(text).map(|e| (e.op(), e.event_type().map(str::to_owned)))
    }

    #[test]
    fn the_envelope_is_read_from_the_keys_before_d() {
        for (frame, op, event, payload) in [
            (r#"{"t":"PRESENCE_UPDATE","s":42,"op":0,"d":{"t":"X","op":3}}"#, 0, Some("PRESENCE_UPDATE"), Some(r#"{"t":"X","op":3}"#)),
            (r#"{"op":0,"s":7,"t":"READY","d":{}}"#, 0, Some("READY"), Some("{}")),
            (r#"{ "t" : "RESUMED" , "s" : 1 , "op" : 0 , "d" : null }"#, 0, Some("RESUMED"), Some("null ")),
            // `d` before other keys: what is left after it is no single value (never decoded
            // alone: simd-json refuses it, and the frame is decoded whole).
            (r#"{"op":10,"d":{"heartbeat_interval":41250},"s":null,"t":null}"#, 10, None, Some(r#"{"heartbeat_interval":41250},"s":null,"t":null"#)),
            (r#"{"t":null,"s":null,"op":11,"d":null}"#, 11, None, Some("null")),
            (r#"{"op":11}"#, 11, None, None),
        ] {
            assert_eq!(Envelope::peek(frame), Some(Envelope { op, event, payload }), "{frame}");
            if !frame.contains(' ') {
                // (twilight's reader expects no space around the envelope's colons)
                assert_eq!(general(frame), Some((op, event.map(str::to_owned))), "twilight agrees on {frame}");
            }
        }
    }

    #[test]
    fn a_dispatch_decodes_the_same_whatever_the_order_of_its_keys() {
        let d = r#"{"user":{"id":"7"},"guild_id":"1","status":"dnd","activities":[{"name":"Chess","type":0}],"client_status":{"web":"dnd"}}"#;
        for frame in [
            format!(r#"{{"t":"PRESENCE_UPDATE","s":2,"op":0,"d":{d}}}"#),
            format!(r#"{{"t":"PRESENCE_UPDATE","s":2,"op":0,"d":{d} }} "#),
            format!(r#"{{"t":"PRESENCE_UPDATE","op":0,"d":{d},"s":2}}"#),
            format!(r#"{{"op":0,"d":{d},"t":"PRESENCE_UPDATE","s":2}}"#),
            format!(r#"{{"d":{d},"op":0,"s":2,"t":"PRESENCE_UPDATE"}}"#),
        ] {
            let mut dispatcher = Dispatcher::new(Snowflake(1), 1, false);
            let mut out = Vec::new();
            dispatcher.frame(&frame, &mut out).expect("decodes");
            let [Outbound::ToShard(0, IngestEvent::Presence(p))] = out.as_slice() else { panic!("{frame}: {out:?}") };
            assert_eq!((p.user.id, p.status, p.activities[0].name.as_str()), (Snowflake(7), crate::discord::Status::Dnd, "Chess"), "{frame}");
        }
    }

    #[test]
    fn frames_laid_out_otherwise_are_left_to_the_general_reader() {
        for frame in [
            // `d` first (serde_json's alphabetical order): the envelope is after the payload.
            r#"{"d":{"op":1},"op":0,"s":3,"t":"PRESENCE_UPDATE"}"#,
            // An escaped event name, an unknown key, a non-integer op, op out of range, no op.
            r#"{"t":"PRESENCE\u005fUPDATE","op":0,"d":{}}"#,
            r#"{"x":1,"op":0,"t":"READY","d":{}}"#,
            r#"{"op":"0","t":"READY","d":{}}"#,
            r#"{"op":256,"d":{}}"#,
            r#"{"t":"READY","d":{}}"#,
            "",
            "[]",
            r#"{"op":0,"t":"READY""#,
        ] {
            assert_eq!(Envelope::peek(frame), None, "{frame}");
        }
    }

    #[test]
    fn a_frame_that_fails_to_decode_leaves_the_kept_tape_fit_for_the_next() {
        let mut dispatcher = Dispatcher::new(Snowflake(1), 1, false);
        let mut out = Vec::new();
        let good = |user: u64| format!(r#"{{"t":"PRESENCE_UPDATE","s":2,"op":0,"d":{{"user":{{"id":"{user}"}},"guild_id":"1","status":"online","activities":[{{"name":"Chess","type":0}}],"client_status":{{"web":"online"}}}}}}"#);
        // A long frame first, so that the tape and scratch buffer are larger than what follows.
        let long = format!(r#"{{"t":"PRESENCE_UPDATE","s":1,"op":0,"d":{{"user":{{"id":"4"}},"guild_id":"1","status":"idle","activities":[{}],"client_status":{{}}}}}}"#, vec![r#"{"name":"Chess","type":0,"state":"a state that is longer than twenty-four bytes"}"#; 20].join(","));
        dispatcher.frame(&long, &mut out).expect("decodes");
        assert_eq!(out.len(), 1);
        for bad in [
            r#"{"t":"PRESENCE_UPDATE","s":3,"op":0,"d":{"user":{"id":"5"},"guild_id":"1","status":"online","activities":[{"name":"Chess","type":"#.to_owned(),
            r#"{"t":"PRESENCE_UPDATE","s":3,"op":0,"d":{"user":{"id":"x5"},"guild_id":"1","status":"online"}}"#.to_owned(),
        ] {
            assert!(matches!(dispatcher.frame(&bad, &mut out), Err(DecodeError::Payload { .. })), "{bad}");
        }
        out.clear();
        dispatcher.frame(&good(6), &mut out).expect("decodes after the failures");
        let [Outbound::ToShard(0, IngestEvent::Presence(p))] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!((p.user.id, p.activities.len(), p.activities[0].name.as_str()), (Snowflake(6), 1, "Chess"));
    }

    #[test]
    fn a_dispatch_is_routed_the_same_whichever_way_its_envelope_is_read() {
        let guild = Snowflake(1);
        let d = r#"{"user":{"id":"5"},"guild_id":"1","status":"online","activities":[],"client_status":{"web":"online"}}"#;
        let mut routed = Vec::new();
        for frame in [format!(r#"{{"t":"PRESENCE_UPDATE","s":2,"op":0,"d":{d}}}"#), format!(r#"{{"d":{d},"op":0,"s":2,"t":"PRESENCE_UPDATE"}}"#)] {
            let mut dispatcher = Dispatcher::new(guild, 4, false);
            let mut out = Vec::new();
            dispatcher.frame(&frame, &mut out).expect("decodes");
            routed.push(format!("{out:?}"));
        }
        assert!(routed[0].starts_with("[ToShard("), "{}", routed[0]);
        assert_eq!(routed[0], routed[1]);
    }
}
