//! One shard's socket state: its connections and their subscriptions (subscriber side), and
//! which other shards want each of its users' changes (owner side).

use crate::discord::Snowflake;
use crate::presence::Change;
use crate::runtime::{shard_of, MailboxSender, ShardContext, ShardMsg};
use crate::socket::close::{self, CloseReason};
use crate::socket::frames;
use crate::socket::outbox::Outbox;
use crate::socket::protocol::Target;
use crate::socket::{EventKind, Snapshot, SocketEvent, SocketMsg};
use crate::time_fmt::now_ms;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use tokio::sync::oneshot;

pub type ConnId = u64;

#[derive(Default)]
pub struct Hub {
    next_id: ConnId,
    conns: HashMap<ConnId, Conn>,
    /// Local connections subscribed to each user (wherever the user is owned).
    by_user: HashMap<Snowflake, HashSet<ConnId>>,
    /// Local All subscribers.
    all: HashSet<ConnId>,
    /// Owner side: sequence number of the last event published.
    seq: u64,
    /// Owner side: other shards with subscribers for each user this shard owns.
    interest: HashMap<Snowflake, Vec<usize>>,
    /// Owner side: other shards with All subscribers.
    all_shards: Vec<usize>,
}

struct Conn {
    out: Rc<Outbox>,
    subs: HashSet<Snowflake>,
    all: bool,
    /// A subscription in flight: its users are registered, and events for this connection
    /// wait here until the ACK is queued.
    pending: Option<Pending>,
}

struct Pending {
    ids: Vec<Snowflake>,
    all: bool,
    held: Vec<SocketEvent>,
}

/// Which ACK a subscription answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Init,
    Subscribe,
}

/// The shard-local things hub operations need.
struct Me<'a> {
    index: usize,
    peers: &'a [MailboxSender<ShardMsg>],
    cap: usize,
}

impl<'a> Me<'a> {
    fn of(ctx: &'a ShardContext) -> Me<'a> {
        Me { index: ctx.index, peers: &ctx.peers, cap: ctx.config.server.socket.max_queued_bytes }
    }
    fn send(&self, shard: usize, msg: SocketMsg) {
        let _ = self.peers[shard].send(ShardMsg::Socket(msg));
    }
}

fn insert_sorted(v: &mut Vec<usize>, x: usize) {
    if let Err(pos) = v.binary_search(&x) {
        v.insert(pos, x);
    }
}

fn remove_sorted(v: &mut Vec<usize>, x: usize) {
    if let Ok(pos) = v.binary_search(&x) {
        v.remove(pos);
    }
}

impl Hub {
    /// Local connections (registered and not yet closed).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Drops one local subscriber of `id`; tells the owner when it was the last.
    fn unlink_user(&mut self, me: &Me, conn: ConnId, id: Snowflake, unwatch: &mut Vec<Vec<Snowflake>>) {
        if let Some(set) = self.by_user.get_mut(&id) {
            set.remove(&conn);
            if set.is_empty() {
                self.by_user.remove(&id);
                let owner = shard_of(id, me.peers.len());
                if owner != me.index {
                    if unwatch.is_empty() {
                        unwatch.resize(me.peers.len(), Vec::new());
                    }
                    unwatch[owner].push(id);
                }
            }
        }
    }

    fn unlink_all(&mut self, me: &Me, conn: ConnId) {
        if self.all.remove(&conn) && self.all.is_empty() {
            for shard in (0..me.peers.len()).filter(|&s| s != me.index) {
                me.send(shard, SocketMsg::UnwatchAll { from: me.index });
            }
        }
    }

    fn send_unwatch(me: &Me, unwatch: Vec<Vec<Snowflake>>) {
        for (shard, ids) in unwatch.into_iter().enumerate() {
            if !ids.is_empty() {
                me.send(shard, SocketMsg::Unwatch { from: me.index, ids });
            }
        }
    }

    /// Forgets a connection and everything it subscribed to.
    fn remove(&mut self, me: &Me, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else { return };
        let mut unwatch = Vec::new();
        let pending_ids = c.pending.as_ref().map(|p| p.ids.clone()).unwrap_or_default();
        for id in c.subs.iter().copied().chain(pending_ids) {
            self.unlink_user(me, conn, id, &mut unwatch);
        }
        Self::send_unwatch(me, unwatch);
        if c.all || c.pending.as_ref().is_some_and(|p| p.all) {
            self.unlink_all(me, conn);
        }
    }

    /// Queues DISCONNECT and the close, and forgets the connection.
    fn close(&mut self, me: &Me, conn: ConnId, reason: CloseReason, text: &str) {
        if let Some(c) = self.conns.get(&conn) {
            c.out.close(reason, text);
        }
        self.remove(me, conn);
    }

    /// Applies an event to one connection that is not pending.
    fn apply(&mut self, me: &Me, conn: ConnId, ev: &SocketEvent) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if !(c.all || c.subs.contains(&ev.id)) {
            return;
        }
        let frame = match &ev.kind {
            EventKind::Updated { object, array } => {
                if !c.all && c.subs.len() == 1 {
                    object
                } else {
                    array
                }
            }
            EventKind::Joined(f) | EventKind::Left(f) | EventKind::Storage(f) => f,
        };
        if !c.out.push(frame.clone(), Some(me.cap)) {
            self.close(me, conn, CloseReason::SlowConsumer, close::SLOW_CONSUMER);
            return;
        }
        if matches!(ev.kind, EventKind::Left(_)) && !c.all {
            c.subs.remove(&ev.id);
            let empty = c.subs.is_empty();
            if let Some(set) = self.by_user.get_mut(&ev.id) {
                set.remove(&conn);
                if set.is_empty() {
                    self.by_user.remove(&ev.id);
                }
            }
            if empty {
                self.close(me, conn, CloseReason::NoUsersLeft, close::NO_USERS_LEFT);
            }
        }
    }

    /// Delivers an event to this shard's subscribers.
    fn deliver(&mut self, me: &Me, ev: &SocketEvent) {
        let mut targets: Vec<ConnId> = self.all.iter().copied().collect();
        if let Some(set) = self.by_user.get(&ev.id) {
            targets.extend(set.iter().copied());
        }
        for conn in targets {
            match self.conns.get_mut(&conn) {
                Some(Conn { pending: Some(p), .. }) => p.held.push(ev.clone()),
                Some(_) => self.apply(me, conn, ev),
                None => {}
            }
        }
    }

    fn has_local(&self, id: Snowflake) -> bool {
        !self.all.is_empty() || self.by_user.contains_key(&id)
    }
}

/// Registers a new connection on this shard.
pub fn register(ctx: &ShardContext, out: Rc<Outbox>) -> ConnId {
    let mut hub = ctx.socket.borrow_mut();
    hub.next_id += 1;
    let id = hub.next_id;
    hub.conns.insert(id, Conn { out, subs: HashSet::new(), all: false, pending: None });
    id
}

/// Forgets a connection (idempotent).
pub fn remove(ctx: &ShardContext, conn: ConnId) {
    ctx.socket.borrow_mut().remove(&Me::of(ctx), conn);
}

/// Closes a connection with DISCONNECT `text` and the reason's code.
pub fn close(ctx: &ShardContext, conn: ConnId, reason: CloseReason, text: &str) {
    ctx.socket.borrow_mut().close(&Me::of(ctx), conn, reason, text);
}

/// What a connection is subscribed to: (All, number of users); `None` once it is gone.
pub fn subscription(ctx: &ShardContext, conn: ConnId) -> Option<(bool, Vec<Snowflake>)> {
    let hub = ctx.socket.borrow();
    hub.conns.get(&conn).map(|c| (c.all, c.subs.iter().copied().collect()))
}

fn render(state: &crate::presence::ShardState, ids: &[Snowflake], now: i64) -> Vec<Option<Bytes>> {
    ids.iter().map(|id| state.get(*id).map(|u| u.json.render(now))).collect()
}

fn render_all(state: &crate::presence::ShardState, now: i64) -> Vec<Option<Bytes>> {
    state.ids().filter_map(|id| state.get(id)).map(|u| Some(u.json.render(now))).collect()
}

/// Subscribes a connection to `target` atomically: on success the ACK (with the users' current
/// data) is queued, followed by any change that happened after the data was read; on failure
/// nothing stays registered and the error message is returned.
pub async fn subscribe(ctx: &ShardContext, conn: ConnId, target: &Target, ack: Ack) -> Result<(), String> {
    let n = ctx.shards();
    let all = matches!(target, Target::All);
    let ids: Vec<Snowflake> = target.ids().to_vec();
    let mut seqs = vec![0u64; n];
    let mut data: Vec<Option<Bytes>> = vec![None; ids.len()];
    let mut all_data: Vec<Vec<Option<Bytes>>> = vec![Vec::new(); n];
    let mut waits: Vec<(usize, Vec<usize>, oneshot::Receiver<Snapshot>)> = Vec::new();
    {
        let me = Me::of(ctx);
        let mut hub = ctx.socket.borrow_mut();
        let Some(c) = hub.conns.get_mut(&conn) else { return Err(close::INVALID_CONNECTION.into()) };
        c.pending = Some(Pending { ids: ids.clone(), all, held: Vec::new() });
        let now = now_ms();
        if all {
            hub.all.insert(conn);
            for shard in 0..n {
                if shard == ctx.index {
                    seqs[shard] = hub.seq;
                    all_data[shard] = render_all(&ctx.state.borrow(), now);
                } else {
                    let (reply, rx) = oneshot::channel();
                    me.send(shard, SocketMsg::SubscribeAll { from: ctx.index, reply });
                    waits.push((shard, Vec::new(), rx));
                }
            }
        } else {
            let mut per_shard: Vec<Vec<usize>> = vec![Vec::new(); n];
            for (pos, id) in ids.iter().enumerate() {
                hub.by_user.entry(*id).or_default().insert(conn);
                per_shard[shard_of(*id, n)].push(pos);
            }
            for (shard, positions) in per_shard.into_iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                let wanted: Vec<Snowflake> = positions.iter().map(|&p| ids[p]).collect();
                if shard == ctx.index {
                    seqs[shard] = hub.seq;
                    for (p, u) in positions.iter().zip(render(&ctx.state.borrow(), &wanted, now)) {
                        data[*p] = u;
                    }
                } else {
                    let (reply, rx) = oneshot::channel();
                    me.send(shard, SocketMsg::Subscribe { from: ctx.index, ids: wanted, reply });
                    waits.push((shard, positions, rx));
                }
            }
        }
    }
    let mut failed = false;
    for (shard, positions, rx) in waits {
        match rx.await {
            Ok(snap) => {
                seqs[shard] = snap.seq;
                if all {
                    all_data[shard] = snap.users;
                } else {
                    for (p, u) in positions.into_iter().zip(snap.users) {
                        data[p] = u;
                    }
                }
            }
            Err(_) => failed = true,
        }
    }

    let me = Me::of(ctx);
    let mut hub = ctx.socket.borrow_mut();
    let Some(c) = hub.conns.get_mut(&conn) else { return Err(close::INVALID_CONNECTION.into()) };
    let Some(pending) = c.pending.take() else { return Err(close::INVALID_CONNECTION.into()) };
    let missing: Vec<Snowflake> = ids.iter().zip(&data).filter(|(_, d)| d.is_none()).map(|(id, _)| *id).collect();
    if failed || !missing.is_empty() {
        let mut unwatch = Vec::new();
        for id in &ids {
            hub.unlink_user(&me, conn, *id, &mut unwatch);
        }
        Hub::send_unwatch(&me, unwatch);
        if all {
            hub.unlink_all(&me, conn);
        }
        for ev in &pending.held {
            hub.apply(&me, conn, ev);
        }
        return Err(if failed {
            close::SHUTTING_DOWN.to_string()
        } else if let Target::One(id) = target {
            format!("User {id} not found.")
        } else {
            format!("User(s) {} not found.", crate::socket::protocol::join_ids(&missing))
        });
    }

    // Commit.
    let mut dropped_lists = Vec::new();
    if all {
        c.all = true;
        dropped_lists = c.subs.drain().collect();
    } else {
        c.subs.extend(ids.iter().copied());
    }
    let single = !c.all && c.subs.len() == 1;
    let users: Vec<Bytes> =
        if all { all_data.into_iter().flatten().flatten().collect() } else { data.into_iter().flatten().collect() };
    let frame = match ack {
        Ack::Init if single => frames::with_data(frames::INIT_ACK, &users[0]),
        Ack::Init => frames::with_array(frames::INIT_ACK, users.iter().map(|u| &u[..])),
        Ack::Subscribe => frames::with_array(frames::SUBSCRIBE_ACK, users.iter().map(|u| &u[..])),
    };
    c.out.push(frame, None);
    let mut unwatch = Vec::new();
    for id in dropped_lists {
        hub.unlink_user(&me, conn, id, &mut unwatch);
    }
    Hub::send_unwatch(&me, unwatch);
    for ev in &pending.held {
        let fresh = ev.seq > seqs[ev.owner];
        let new = pending.all || pending.ids.contains(&ev.id);
        if fresh || !new {
            hub.apply(&me, conn, ev);
        }
    }
    Ok(())
}

/// Removes `target` from a connection's subscription. `Ok(true)` when nothing is left (the
/// caller disconnects); an error message for what is not subscribed.
pub fn unsubscribe(ctx: &ShardContext, conn: ConnId, target: &Target) -> Result<bool, String> {
    let me = Me::of(ctx);
    let mut hub = ctx.socket.borrow_mut();
    let Some(c) = hub.conns.get_mut(&conn) else { return Err(close::INVALID_CONNECTION.into()) };
    match (c.all, target) {
        (true, Target::All) => {
            c.all = false;
            hub.unlink_all(&me, conn);
            return Ok(true);
        }
        (true, _) => return Err("You are subscribed to all users.".into()),
        (false, Target::All) => return Err("You are not subscribed to all users.".into()),
        (false, Target::One(id)) if !c.subs.contains(id) => return Err(format!("You are not subscribed to user {id}.")),
        (false, Target::Many(ids)) => {
            let missing: Vec<Snowflake> = ids.iter().filter(|id| !c.subs.contains(id)).copied().collect();
            if !missing.is_empty() {
                return Err(format!("You are not subscribed to user(s) {}.", crate::socket::protocol::join_ids(&missing)));
            }
        }
        _ => {}
    }
    for id in target.ids() {
        c.subs.remove(id);
    }
    let empty = c.subs.is_empty();
    let mut unwatch = Vec::new();
    for id in target.ids() {
        hub.unlink_user(&me, conn, *id, &mut unwatch);
    }
    Hub::send_unwatch(&me, unwatch);
    Ok(empty)
}

/// Owner side: tells subscribers (here and on interested shards) about changes to users this
/// shard owns. Frames are encoded once per change; nothing is encoded when nobody listens.
pub fn publish(ctx: &ShardContext, changes: &[Change]) {
    if changes.is_empty() {
        return;
    }
    let me = Me::of(ctx);
    let now = now_ms();
    for change in changes {
        let id = match change {
            Change::Joined(id) | Change::Updated(id) | Change::Left(id) | Change::StorageUpdated(id) => *id,
        };
        let mut hub = ctx.socket.borrow_mut();
        let mut remote: Vec<usize> = hub.all_shards.clone();
        if let Some(shards) = hub.interest.get(&id) {
            for &s in shards {
                insert_sorted(&mut remote, s);
            }
        }
        if matches!(change, Change::Left(_)) {
            hub.interest.remove(&id);
        }
        if remote.is_empty() && !hub.has_local(id) {
            continue;
        }
        let kind = {
            let state = ctx.state.borrow();
            match change {
                Change::Left(_) => EventKind::Left(frames::user_left(id)),
                _ => {
                    let Some(user) = state.get(id) else { continue };
                    match change {
                        Change::StorageUpdated(_) => EventKind::Storage(frames::storage_update(id, &user.storage_json)),
                        Change::Joined(_) => EventKind::Joined(frames::with_data(frames::USER_JOINED, &user.json.render(now))),
                        _ => {
                            let json = user.json.render(now);
                            EventKind::Updated {
                                object: frames::with_data(frames::PRESENCE_UPDATE, &json),
                                array: frames::with_array(frames::PRESENCE_UPDATE, [&json[..]]),
                            }
                        }
                    }
                }
            }
        };
        hub.seq += 1;
        let ev = SocketEvent { owner: ctx.index, seq: hub.seq, id, kind };
        for shard in remote {
            me.send(shard, SocketMsg::Event(ev.clone()));
        }
        hub.deliver(&me, &ev);
    }
}

/// Handles a socket message from another shard.
pub fn handle(ctx: &ShardContext, msg: SocketMsg) {
    let me = Me::of(ctx);
    let now = now_ms();
    let mut hub = ctx.socket.borrow_mut();
    match msg {
        SocketMsg::Subscribe { from, ids, reply } => {
            let users = render(&ctx.state.borrow(), &ids, now);
            for (id, u) in ids.iter().zip(&users) {
                if u.is_some() {
                    insert_sorted(hub.interest.entry(*id).or_default(), from);
                }
            }
            let _ = reply.send(Snapshot { seq: hub.seq, users });
        }
        SocketMsg::SubscribeAll { from, reply } => {
            insert_sorted(&mut hub.all_shards, from);
            let _ = reply.send(Snapshot { seq: hub.seq, users: render_all(&ctx.state.borrow(), now) });
        }
        SocketMsg::Unwatch { from, ids } => {
            for id in ids {
                if let Some(shards) = hub.interest.get_mut(&id) {
                    remove_sorted(shards, from);
                    if shards.is_empty() {
                        hub.interest.remove(&id);
                    }
                }
            }
        }
        SocketMsg::UnwatchAll { from } => remove_sorted(&mut hub.all_shards, from),
        SocketMsg::Event(ev) => hub.deliver(&me, &ev),
    }
}
