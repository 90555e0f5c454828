//! Subscriber side of fan-out: this shard's connections, what each is subscribed to, and the
//! delivery of events to them. What must be told to owner shards (a user, or All, that no local
//! connection wants any more) is returned as a [`Withdrawal`] for the caller to send.

use crate::discord::Snowflake;
use crate::fanout::close::{self, CloseReason};
use crate::fanout::frames::Frame;
use crate::fanout::outbox::Outbox;
use crate::fanout::{EventKind, SocketEvent};
use flate2::{Compress, Compression};
use crate::runtime::shard_of;
// foldhash: keyed like std's SipHash, far cheaper per lookup on the fan-out path.
use foldhash::{HashMap, HashMapExt};
use smallvec::SmallVec;
use std::collections::BTreeSet;
use std::rc::Rc;

pub type ConnId = u64;

pub struct Subscribers {
    index: usize,
    shards: usize,
    next_id: ConnId,
    conns: HashMap<ConnId, Conn>,
    /// Local connections subscribed to each user (wherever the user is owned), in the order
    /// they came.
    by_user: HashMap<Snowflake, BTreeSet<ConnId>>,
    /// Local All subscribers, in the order they came.
    all: BTreeSet<ConnId>,
    sink: Sink,
}

/// How a connection wants its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Text frames.
    Plain,
    /// permessage-deflate without context takeover.
    Deflate,
    /// Lanyard's `?compression=zlib_json`: each message a complete zlib stream in a binary
    /// frame.
    Zlib,
}

impl Encoding {
    /// Encodings other than `Plain`, each one slot of an event's [`Variants`].
    const COMPRESSED: usize = 2;

    fn slot(self) -> Option<usize> {
        match self {
            Encoding::Plain => None,
            Encoding::Deflate => Some(0),
            Encoding::Zlib => Some(1),
        }
    }

    fn encode(self, plain: &Frame, z: &mut Compress) -> Frame {
        match self {
            Encoding::Plain => plain.clone(),
            Encoding::Deflate => plain.deflated(z),
            Encoding::Zlib => plain.zlib(z),
        }
    }

    /// A frame the connection's own task sends (HELLO, an answer): in the form this encoding
    /// wants it (permessage-deflate clients also read uncompressed frames).
    pub fn direct(self, plain: &Frame) -> Frame {
        match self {
            Encoding::Zlib => plain.zlib(&mut Compress::new(Compression::default(), false)),
            _ => plain.clone(),
        }
    }
}

/// The encoded forms of one event's frames, computed on first use during one delivery and
/// shared by every connection that wants them: `[frame pick][encoding slot]`.
#[derive(Default)]
pub struct Variants([[Option<Frame>; Encoding::COMPRESSED]; 3]);

struct Conn {
    out: Rc<Outbox>,
    encoding: Encoding,
    subs: IdSet,
    all: bool,
    /// The connection speaks Lanyard: it gets the events' Lanyard frames, and a member who
    /// leaves is dropped silently.
    lanyard: bool,
    /// A subscription in flight: its users are registered, and events for this connection
    /// wait here until the ACK is queued (boxed: an idle connection has none).
    pending: Option<Box<Pending>>,
}

/// A connection's users: a sorted vector (at most `max_subscriptions`, usually one), smaller
/// than a hash set for the sizes connections have; one user is held inline, so the usual
/// connection's set costs no allocation.
#[derive(Default)]
struct IdSet(SmallVec<[Snowflake; 1]>);

impl IdSet {
    fn contains(&self, id: &Snowflake) -> bool {
        self.0.binary_search(id).is_ok()
    }
    fn insert(&mut self, id: Snowflake) {
        if let Err(at) = self.0.binary_search(&id) {
            self.0.insert(at, id);
        }
    }
    fn remove(&mut self, id: &Snowflake) {
        if let Ok(at) = self.0.binary_search(id) {
            self.0.remove(at);
        }
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn iter(&self) -> impl Iterator<Item = &Snowflake> {
        self.0.iter()
    }
}

/// A subscription whose ACK is not queued yet.
pub struct Pending {
    pub ids: Vec<Snowflake>,
    pub all: bool,
    pub held: Vec<SocketEvent>,
}

/// Interest to withdraw from owners: per owner shard, users no local connection wants; and
/// whether this shard has no All subscriber left.
#[derive(Default)]
pub struct Withdrawal {
    pub users: Vec<Vec<Snowflake>>,
    pub all: bool,
}

impl Withdrawal {
    pub fn is_empty(&self) -> bool {
        !self.all && self.users.iter().all(Vec::is_empty)
    }
}

impl Subscribers {
    pub fn new(index: usize, shards: usize) -> Subscribers {
        Subscribers { index, shards, next_id: 0, conns: HashMap::new(), by_user: HashMap::new(), all: BTreeSet::new(), sink: Sink::default() }
    }

    /// Whether any local connection wants changes to `id`.
    pub fn wants(&self, id: Snowflake) -> bool {
        !self.all.is_empty() || self.by_user.contains_key(&id)
    }

    pub fn register(&mut self, out: Rc<Outbox>, encoding: Encoding) -> ConnId {
        self.next_id += 1;
        self.conns.insert(self.next_id, Conn { out, encoding, subs: IdSet::default(), all: false, lanyard: false, pending: None });
        self.next_id
    }

    /// What a connection is subscribed to: (All, its users); `None` once it is gone.
    pub fn subscription(&self, conn: ConnId) -> Option<(bool, Vec<Snowflake>)> {
        self.conns.get(&conn).map(|c| (c.all, c.subs.iter().copied().collect()))
    }

    /// The connection speaks Lanyard from now on.
    pub fn set_lanyard(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.lanyard = true;
        }
    }

    /// The connection's encoding.
    pub fn encoding(&self, conn: ConnId) -> Option<Encoding> {
        self.conns.get(&conn).map(|c| c.encoding)
    }

    /// Lanyard's op 4: drops what is named, silently (unknown ids are ignored; `all` leaves
    /// the All list only). The connection stays open with nothing subscribed.
    pub fn unsubscribe_quiet(&mut self, conn: ConnId, ids: &[Snowflake], all: bool) -> Withdrawal {
        let mut w = Withdrawal::default();
        let Some(c) = self.conns.get_mut(&conn) else { return w };
        if all {
            if c.all {
                c.all = false;
                self.unlink_all(conn, &mut w);
            }
            return w;
        }
        let mut gone = Vec::new();
        for id in ids {
            if c.subs.contains(id) {
                c.subs.remove(id);
                gone.push(*id);
            }
        }
        for id in gone {
            self.unlink_user(conn, id, &mut w);
        }
        w
    }

    /// Closes a connection with a close frame carrying `code` and `reason` (no DISCONNECT:
    /// Lanyard's refusals), and forgets it.
    pub fn close_lanyard(&mut self, conn: ConnId, code: u16, reason: &str) -> Withdrawal {
        if let Some(c) = self.conns.get(&conn) {
            c.out.close_with_code(code, reason);
        }
        self.remove(conn)
    }

    /// Drops one local subscriber of `id`; the owner is told when it was the last.
    fn unlink_user(&mut self, conn: ConnId, id: Snowflake, w: &mut Withdrawal) {
        if let Some(set) = self.by_user.get_mut(&id) {
            set.remove(&conn);
            if set.is_empty() {
                self.by_user.remove(&id);
                let owner = shard_of(id, self.shards);
                if owner != self.index {
                    if w.users.is_empty() {
                        w.users.resize(self.shards, Vec::new());
                    }
                    w.users[owner].push(id);
                }
            }
        }
    }

    fn unlink_all(&mut self, conn: ConnId, w: &mut Withdrawal) {
        if self.all.remove(&conn) && self.all.is_empty() {
            w.all = true;
        }
    }

    /// Forgets a connection and everything it subscribed to (idempotent).
    pub fn remove(&mut self, conn: ConnId) -> Withdrawal {
        let mut w = Withdrawal::default();
        let Some(c) = self.conns.remove(&conn) else { return w };
        let pending_ids = c.pending.as_ref().map(|p| p.ids.clone()).unwrap_or_default();
        for id in c.subs.iter().copied().chain(pending_ids) {
            self.unlink_user(conn, id, &mut w);
        }
        if c.all || c.pending.as_ref().is_some_and(|p| p.all) {
            self.unlink_all(conn, &mut w);
        }
        w
    }

    /// Queues DISCONNECT and the close, and forgets the connection.
    pub fn close(&mut self, conn: ConnId, reason: CloseReason, text: &str) -> Withdrawal {
        if let Some(c) = self.conns.get(&conn) {
            // Lanyard's clients know no DISCONNECT (and a zlib_json one reads no text frame):
            // the code and text go in the close frame alone.
            c.out.close_as(reason, text, !c.lanyard && c.encoding != Encoding::Zlib);
        }
        self.remove(conn)
    }

    /// Applies an event to one connection, and at once what it leaves to do.
    fn apply(&mut self, conn: ConnId, ev: &SocketEvent, cap: usize, write_now: bool, w: &mut Withdrawal, variants: &mut Variants) {
        let after = match self.conns.get_mut(&conn) {
            Some(c) => offer(c, ev, cap, write_now, variants, &mut self.sink),
            None => After::Nothing,
        };
        self.settle(conn, ev, after, w);
    }

    /// What [`offer`] left to do for `conn`, done once no walk over subscribers is under way.
    fn settle(&mut self, conn: ConnId, ev: &SocketEvent, after: After, w: &mut Withdrawal) {
        let close_if_empty = match after {
            After::Nothing => return,
            After::SlowConsumer => {
                merge(w, self.close(conn, CloseReason::SlowConsumer, close::SLOW_CONSUMER));
                return;
            }
            After::Unlink { close_if_empty } => close_if_empty,
        };
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.subs.remove(&ev.id);
        let empty = c.subs.is_empty();
        if let Some(set) = self.by_user.get_mut(&ev.id) {
            set.remove(&conn);
            if set.is_empty() {
                self.by_user.remove(&ev.id);
            }
        }
        if empty && close_if_empty {
            merge(w, self.close(conn, CloseReason::NoUsersLeft, close::NO_USERS_LEFT));
        }
    }

    /// Delivers an event to this shard's subscribers; slow consumers are cut off at `cap`.
    /// `write_now`: each frame is written to its socket at once rather than queued for the
    /// shard's flusher.
    pub fn deliver(&mut self, ev: &SocketEvent, cap: usize, write_now: bool) -> Withdrawal {
        let mut w = Withdrawal::default();
        let mut variants = Variants::default();
        let mut later: Vec<(ConnId, After)> = Vec::new();
        let mut count = 0;
        {
            // One walk straight over the subscriber sets, writing as it goes (the first
            // subscriber waits for no list to be built); what would change the sets (a slow
            // consumer's close, a member's departure) waits in `later`. The sets are ordered:
            // connections are walked in the order they came, which is the order their state,
            // and the kernel's sockets, were allocated in.
            let Subscribers { conns, by_user, all, sink, .. } = self;
            let by_id = by_user.get(&ev.id).into_iter().flatten();
            // A Lanyard connection may be on the All list and subscribed by id too: once only.
            let targets = all.iter().chain(by_id.filter(|c| all.is_empty() || !all.contains(c)));
            for &conn in targets {
                count += 1;
                let Some(c) = conns.get_mut(&conn) else { continue };
                match offer(c, ev, cap, write_now, &mut variants, sink) {
                    After::Nothing => {}
                    after => later.push((conn, after)),
                }
            }
        }
        crate::metrics::local::fanout(count);
        for (conn, after) in later {
            self.settle(conn, ev, after, &mut w);
        }
        w
    }

    /// The shard's flusher waits here for connections with frames to write.
    pub fn poll_dirty(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Vec<Rc<Outbox>>> {
        if self.sink.dirty.is_empty() {
            self.sink.flusher = Some(cx.waker().clone());
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(std::mem::take(&mut self.sink.dirty))
    }

    /// Starts a subscription: registers its users (or All) so that events are held for it
    /// until [`Subscribers::commit`]. False when the connection is gone.
    pub fn begin(&mut self, conn: ConnId, ids: &[Snowflake], all: bool) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        c.pending = Some(Box::new(Pending { ids: ids.to_vec(), all, held: Vec::new() }));
        if all {
            self.all.insert(conn);
        } else {
            for id in ids {
                self.by_user.entry(*id).or_default().insert(conn);
            }
        }
        true
    }

    /// Undoes a subscription that failed; events held for it are applied.
    pub fn abort(&mut self, conn: ConnId, cap: usize) -> Withdrawal {
        let mut w = Withdrawal::default();
        let Some(pending) = self.conns.get_mut(&conn).and_then(|c| c.pending.take()) else { return w };
        for id in &pending.ids {
            self.unlink_user(conn, *id, &mut w);
        }
        if pending.all {
            self.unlink_all(conn, &mut w);
        }
        for ev in &pending.held {
            self.apply(conn, ev, cap, false, &mut w, &mut Variants::default());
        }
        w
    }

    /// Completes a subscription: `ack` (built by `make_ack` from whether the connection now
    /// has exactly one user) is queued, then the held events that are newer than the owners'
    /// snapshots (`seqs`, per owner shard) or for users the connection already had.
    pub fn commit(&mut self, conn: ConnId, seqs: &[u64], cap: usize, make_ack: impl FnOnce(bool) -> crate::fanout::frames::Frame) -> Option<Withdrawal> {
        let mut w = Withdrawal::default();
        let c = self.conns.get_mut(&conn)?;
        let pending = c.pending.take()?;
        let mut dropped_lists = IdSet::default();
        if pending.all {
            c.all = true;
            dropped_lists = std::mem::take(&mut c.subs);
        } else {
            for id in &pending.ids {
                c.subs.insert(*id);
            }
        }
        let single = !c.all && c.subs.len() == 1;
        c.out.push(&c.encoding.direct(&make_ack(single)), None);
        for id in dropped_lists.0 {
            self.unlink_user(conn, id, &mut w);
        }
        for ev in &pending.held {
            let fresh = ev.seq > seqs[ev.owner];
            let new = pending.all || pending.ids.contains(&ev.id);
            if fresh || !new {
                self.apply(conn, ev, cap, false, &mut w, &mut Variants::default());
            }
        }
        Some(w)
    }

    /// Removes users (or All) from a connection's subscription. `Ok(true)` when nothing is left
    /// (the caller disconnects); an error message for what is not subscribed.
    pub fn unsubscribe(&mut self, conn: ConnId, target: &crate::fanout::Target) -> Result<(bool, Withdrawal), String> {
        use crate::fanout::Target;
        let mut w = Withdrawal::default();
        let Some(c) = self.conns.get_mut(&conn) else { return Err(close::INVALID_CONNECTION.into()) };
        match (c.all, target) {
            (true, Target::All) => {
                c.all = false;
                self.unlink_all(conn, &mut w);
                return Ok((true, w));
            }
            (true, _) => return Err("You are subscribed to all users.".into()),
            (false, Target::All) => return Err("You are not subscribed to all users.".into()),
            (false, Target::One(id)) if !c.subs.contains(id) => return Err(format!("You are not subscribed to user {id}.")),
            (false, Target::Many(ids)) => {
                let missing: Vec<Snowflake> = ids.iter().filter(|id| !c.subs.contains(id)).copied().collect();
                if !missing.is_empty() {
                    return Err(format!("You are not subscribed to user(s) {}.", crate::fanout::join_ids(&missing)));
                }
            }
            _ => {}
        }
        for id in target.ids() {
            c.subs.remove(id);
        }
        let empty = c.subs.is_empty();
        for id in target.ids() {
            self.unlink_user(conn, *id, &mut w);
        }
        Ok((empty, w))
    }
}

/// What one connection's delivery leaves to do to the subscriber sets.
enum After {
    Nothing,
    /// The frame would pass the queue's cap: the connection is closed.
    SlowConsumer,
    /// The user left: dropped from the connection's users (and the connection closed when
    /// none is left and `close_if_empty`).
    Unlink { close_if_empty: bool },
}

/// The shard's side of writing: its compressor and the connections its flusher is to write.
#[derive(Default)]
struct Sink {
    /// Made on first use: each change is compressed once here.
    z: Option<Box<Compress>>,
    /// Connections with frames queued by deliveries, for the shard's flusher.
    dirty: Vec<Rc<Outbox>>,
    flusher: Option<std::task::Waker>,
}

/// Offers an event to one connection: held while its subscription is in flight, otherwise
/// written (or queued) in the form it wants, when it is subscribed to the event's user.
fn offer(c: &mut Conn, ev: &SocketEvent, cap: usize, write_now: bool, variants: &mut Variants, sink: &mut Sink) -> After {
    if let Some(p) = &mut c.pending {
        p.held.push(ev.clone());
        return After::Nothing;
    }
    if !(c.all || c.subs.contains(&ev.id)) {
        return After::Nothing;
    }
    let left = matches!(ev.kind, EventKind::Left(_)) && !c.all;
    let (pick, plain) = match &ev.kind {
        _ if c.lanyard => match &ev.lanyard {
            Some(f) => (2, f),
            // A member who left: Lanyard says nothing, the subscription is dropped.
            None if left => return After::Unlink { close_if_empty: false },
            None => return After::Nothing,
        },
        EventKind::Updated { object, array } => {
            if !c.all && c.subs.len() == 1 {
                (0, object)
            } else {
                (1, array)
            }
        }
        EventKind::Joined(f) | EventKind::Left(f) | EventKind::Storage(f) => (0, f),
    };
    let frame = match c.encoding.slot() {
        None => plain,
        Some(slot) => {
            let encoding = c.encoding;
            let z = sink.z.get_or_insert_with(|| Box::new(Compress::new(Compression::default(), false)));
            &*variants.0[pick][slot].get_or_insert_with(|| encoding.encode(plain, z))
        }
    };
    let queued = if write_now {
        // Written at once (what the kernel does not take waits for the connection's task).
        if c.out.push(frame, Some(cap)) { Ok(false) } else { Err(()) }
    } else {
        c.out.queue(frame, cap)
    };
    match queued {
        Err(()) => After::SlowConsumer,
        Ok(dirty) => {
            if dirty {
                sink.dirty.push(c.out.clone());
                if let Some(w) = sink.flusher.take() {
                    w.wake();
                }
            }
            if left { After::Unlink { close_if_empty: true } } else { After::Nothing }
        }
    }
}

fn merge(into: &mut Withdrawal, other: Withdrawal) {
    into.all |= other.all;
    if into.users.is_empty() {
        into.users = other.users;
    } else {
        for (a, b) in into.users.iter_mut().zip(other.users) {
            a.extend(b);
        }
    }
}
