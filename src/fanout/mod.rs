//! Fan-out of user changes to WebSocket subscribers, across shards.
//!
//! - A connection lives on the shard that accepted it; its subscriptions are kept in that
//!   shard's [`subscribers::Subscribers`]: local subscribers per user, and local All subscribers.
//! - The owner shard of a user keeps, in its [`interest::Interest`], the *other shards*
//!   interested in each of its users and the shards with any All subscriber. A shard registers
//!   its interest with the owner while subscribing and withdraws it when its last local
//!   subscriber goes.
//! - When a user changes, the owner encodes each frame once (PRESENCE_UPDATE both as one object
//!   and as a one-element array), sends one [`SocketEvent`] to each interested shard, and every
//!   shard writes the same bytes to each of its subscribers.
//! - Events carry the owner's sequence number, and a subscription's snapshot records it, so a
//!   subscriber never sees an event older than its ACK, nor misses one after it.
//!
//! The service knows the runtime and the model only: what a user object is comes from the
//! shard it runs on, through [`FanoutHost`]. Every step to another shard is an explicit
//! `invoke_on`, `gather_by_owner` or `send_to`.

pub mod close;
pub mod frames;
pub mod interest;
pub mod outbox;
pub mod subscribers;

pub use close::CloseReason;
pub use subscribers::{ConnId, Encoding};

use crate::discord::Snowflake;
use crate::runtime::{Invoke, Owned, Sharded};
use bytes::Bytes;
use frames::Frame;
use interest::Interest;
use outbox::Outbox;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;
use subscribers::{Subscribers, Withdrawal};

/// Who a subscription names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `user_id`: one user.
    One(Snowflake),
    /// `user_ids`: several users, in request order, without duplicates.
    Many(Vec<Snowflake>),
    /// `user_id: "All"` (any case).
    All,
}

impl Target {
    pub fn ids(&self) -> &[Snowflake] {
        match self {
            Target::One(id) => std::slice::from_ref(id),
            Target::Many(ids) => ids,
            Target::All => &[],
        }
    }
}

/// `a, b, c`.
pub fn join_ids(ids: &[Snowflake]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// One change to one user, encoded once by its owner.
#[derive(Debug, Clone)]
pub struct SocketEvent {
    pub owner: usize,
    pub seq: u64,
    pub id: Snowflake,
    pub kind: EventKind,
    /// Lanyard's PRESENCE_UPDATE for this change, built once on the owner when some Lanyard
    /// connection subscribed to the user (or to all); `None` for a member who left (Lanyard
    /// sends nothing then).
    pub lanyard: Option<Frame>,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    /// PRESENCE_UPDATE, with `d` as one object and as a one-element array.
    Updated { object: Frame, array: Frame },
    /// USER_JOINED.
    Joined(Frame),
    /// USER_LEFT.
    Left(Frame),
    /// STORAGE_UPDATE.
    Storage(Frame),
}

/// Which ACK a subscription answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Init,
    Subscribe,
}

/// One shard's fan-out state. Private: reached through the functions of this module.
pub struct Fanout {
    subscribers: RefCell<Subscribers>,
    interest: RefCell<Interest>,
    /// `max_queued_bytes`: the outbound cap of each connection.
    cap: usize,
    /// Every connection on this shard until its task ends (closing ones included), for the
    /// one deadline sweep per shard: a slab, so a connection costs one slot.
    sessions: RefCell<slab::Slab<(ConnId, Rc<Outbox>)>>,
    /// Whether this shard's sweep task runs.
    sweeping: Cell<bool>,
}

/// What fan-out needs from the shard it runs on.
pub trait FanoutHost: Sharded {
    fn fanout(&self) -> &Fanout;
    /// The current state in `dialect` (the user object, or Lanyard's presence) of users this
    /// shard owns (`None`: not monitored).
    fn render_owned(&self, dialect: Dialect, ids: &[Owned<Snowflake>]) -> Vec<Option<Bytes>>;
    /// The current state in `dialect` of every user this shard owns.
    fn render_all_owned(&self, dialect: Dialect) -> Vec<(Snowflake, Bytes)>;
}

/// Which protocol a connection speaks, fixed by its first Initialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Lantern,
    Lanyard,
}

impl Fanout {
    pub fn new(index: usize, shards: usize, max_queued_bytes: usize) -> Fanout {
        Fanout {
            subscribers: RefCell::new(Subscribers::new(index, shards)),
            interest: RefCell::default(),
            cap: max_queued_bytes,
            sessions: RefCell::default(),
            sweeping: Cell::new(false),
        }
    }

    /// Registers a new connection on this shard, with its way out and how it wants its
    /// frames; returns its id and its session key (for [`Fanout::end_session`]).
    pub fn register(&self, out: Rc<Outbox>, encoding: Encoding) -> (ConnId, usize) {
        let id = self.subscribers.borrow_mut().register(out.clone(), encoding);
        (id, self.sessions.borrow_mut().insert((id, out)))
    }

    /// The connection's task has ended.
    pub fn end_session(&self, key: usize) {
        self.sessions.borrow_mut().try_remove(key);
    }

    /// The one deadline check of every connection on this shard.
    pub fn sweep(&self, now: Instant) {
        for (_, (_, out)) in self.sessions.borrow().iter() {
            out.check_deadline(now);
            out.check_window();
        }
    }

    /// Ends every connection's session at once (the shutdown's grace period is over): each
    /// task sees its socket as gone.
    pub fn end_sessions(&self) {
        for (_, (_, out)) in self.sessions.borrow().iter() {
            out.end();
        }
    }

    /// The ids of every connection on this shard.
    pub fn sessions(&self) -> Vec<ConnId> {
        self.sessions.borrow().iter().map(|(_, (id, _))| *id).collect()
    }

    /// The shard's flusher waits here for the connections deliveries queued frames for; it
    /// writes each one's frames in one vectored write ([`Outbox::flush_now`]) after the batch
    /// of events that queued them.
    pub fn poll_dirty(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Vec<Rc<Outbox>>> {
        self.subscribers.borrow_mut().poll_dirty(cx)
    }

    /// True the first time: the caller starts this shard's sweep.
    pub fn claim_sweeper(&self) -> bool {
        !self.sweeping.replace(true)
    }

    /// What a connection is subscribed to: (All, its users); `None` once it is gone.
    pub fn subscription(&self, conn: ConnId) -> Option<(bool, Vec<Snowflake>)> {
        self.subscribers.borrow().subscription(conn)
    }
}

/// Tells owners about interest this shard no longer has.
fn withdraw<S: FanoutHost>(this: &Rc<S>, w: Withdrawal) {
    if w.is_empty() {
        return;
    }
    let from = this.here().index();
    for (shard, ids) in w.users.into_iter().enumerate().filter(|(_, ids)| !ids.is_empty()) {
        this.send_to(shard, move |s| s.fanout().interest.borrow_mut().unwatch(from, &ids));
    }
    if w.all {
        for shard in (0..this.here().count()).filter(|&s| s != from) {
            this.send_to(shard, move |s| s.fanout().interest.borrow_mut().unwatch_all(from));
        }
    }
}

/// Forgets a connection and everything it subscribed to (idempotent).
pub fn remove<S: FanoutHost>(this: &Rc<S>, conn: ConnId) {
    let w = this.fanout().subscribers.borrow_mut().remove(conn);
    withdraw(this, w);
}

/// Closes a connection with DISCONNECT `text` and the reason's code, and forgets it.
pub fn close<S: FanoutHost>(this: &Rc<S>, conn: ConnId, reason: CloseReason, text: &str) {
    let w = this.fanout().subscribers.borrow_mut().close(conn, reason, text);
    withdraw(this, w);
}

/// Removes `target` from a connection's subscription. `Ok(true)` when nothing is left (the
/// caller disconnects); an error message for what is not subscribed.
pub fn unsubscribe<S: FanoutHost>(this: &Rc<S>, conn: ConnId, target: &Target) -> Result<bool, String> {
    let (empty, w) = this.fanout().subscribers.borrow_mut().unsubscribe(conn, target)?;
    withdraw(this, w);
    Ok(empty)
}

/// Subscribes a connection to `target` atomically: on success the ACK (with the users' current
/// data) is queued, followed by any change that happened after the data was read; on failure
/// nothing stays registered and the error message is returned.
pub async fn subscribe<S: FanoutHost>(this: &Rc<S>, conn: ConnId, target: &Target, ack: Ack) -> Result<(), String> {
    let snapshot = begin_subscription(this, conn, target, Dialect::Lantern).await?;
    let missing: Vec<Snowflake> = snapshot.users.iter().filter(|(_, u)| u.is_none()).map(|(id, _)| *id).collect();
    if !missing.is_empty() {
        abort_subscription(this, conn);
        return Err(if let Target::One(id) = target { format!("User {id} not found.") } else { format!("User(s) {} not found.", join_ids(&missing)) });
    }
    let users: Vec<&[u8]> = snapshot.users.iter().filter_map(|(_, u)| u.as_deref()).collect();
    commit_subscription(this, conn, &snapshot.seqs, |single| match ack {
        Ack::Init if single => frames::with_data(frames::INIT_ACK, users[0]),
        Ack::Init => frames::with_array(frames::INIT_ACK, users.iter().copied()),
        Ack::Subscribe => frames::with_array(frames::SUBSCRIBE_ACK, users.iter().copied()),
    })
}

/// The connection speaks Lanyard from now on.
pub fn set_lanyard<S: FanoutHost>(this: &Rc<S>, conn: ConnId) {
    this.fanout().subscribers.borrow_mut().set_lanyard(conn);
}

/// The connection's encoding (`Plain` once it is gone).
pub fn encoding<S: FanoutHost>(this: &Rc<S>, conn: ConnId) -> Encoding {
    this.fanout().subscribers.borrow().encoding(conn).unwrap_or(Encoding::Plain)
}

/// Closes a connection with a close frame carrying `code` and `reason`, and forgets it.
pub fn close_lanyard<S: FanoutHost>(this: &Rc<S>, conn: ConnId, code: u16, reason: &str) {
    let w = this.fanout().subscribers.borrow_mut().close_lanyard(conn, code, reason);
    withdraw(this, w);
}

/// Lanyard's op 4: drops `target` (All: leaves the All list) silently.
pub fn unsubscribe_lanyard<S: FanoutHost>(this: &Rc<S>, conn: ConnId, target: &Target) {
    let all = matches!(target, Target::All);
    let w = this.fanout().subscribers.borrow_mut().unsubscribe_quiet(conn, target.ids(), all);
    withdraw(this, w);
}

/// Lanyard's op 2: adds `target` to the connection's subscriptions (they accumulate) and
/// queues INIT_STATE: for `One` the presence or `{}`, otherwise a map id → presence with
/// unmonitored users left out. Unmonitored users stay subscribed, so that their arrival
/// reaches the connection. Events after the snapshot follow it, as for Lantern.
pub async fn subscribe_lanyard<S: FanoutHost>(this: &Rc<S>, conn: ConnId, target: &Target) -> Result<(), String> {
    let snapshot = begin_subscription(this, conn, target, Dialect::Lanyard).await?;
    let present = || snapshot.users.iter().filter_map(|(id, u)| Some((*id, u.as_deref()?)));
    let one = matches!(target, Target::One(_));
    commit_subscription(this, conn, &snapshot.seqs, |_single| {
        if one {
            frames::lanyard_event("INIT_STATE", present().next().map_or(&b"{}"[..], |(_, u)| u))
        } else {
            frames::lanyard_init_map(present())
        }
    })
}

/// The state a new subscription starts from.
struct Snapshot {
    /// Per owner shard, the event sequence number its part was read at: later events follow.
    seqs: Vec<u64>,
    /// Per user, its current state in the connection's dialect (`None`: not monitored).
    users: Vec<(Snowflake, Option<Bytes>)>,
}

/// Starts subscribing `conn` to `target`: registers the subscription as pending, asks every
/// owner for its users' state in `dialect` and to send this shard their later changes. On an
/// error nothing stays registered.
async fn begin_subscription<S: FanoutHost>(this: &Rc<S>, conn: ConnId, target: &Target, dialect: Dialect) -> Result<Snapshot, String> {
    let me = this.here().index();
    let lanyard = dialect == Dialect::Lanyard;
    let all = matches!(target, Target::All);
    if !this.fanout().subscribers.borrow_mut().begin(conn, target.ids(), all) {
        return Err(close::INVALID_CONNECTION.into());
    }
    let mut seqs = vec![0u64; this.here().count()];
    let mut users = Vec::new();
    let mut stopped = false;
    if all {
        let answers = this
            .invoke_on_all(move |s| {
                let mut interest = s.fanout().interest.borrow_mut();
                if s.here().index() != me {
                    interest.watch_all(me);
                }
                if lanyard {
                    interest.watch_lanyard(None);
                }
                (interest.seq(), s.render_all_owned(dialect))
            })
            .await;
        for (shard, answer) in answers.into_iter().enumerate() {
            match answer {
                Some((seq, rendered)) => {
                    seqs[shard] = seq;
                    users.extend(rendered.into_iter().map(|(id, u)| (id, Some(u))));
                }
                None => stopped = true,
            }
        }
    } else {
        let ids = target.ids();
        let answers = this
            .gather_by_owner(ids, move |s, owned| {
                let rendered = s.render_owned(dialect, owned);
                let mut interest = s.fanout().interest.borrow_mut();
                for (id, user) in owned.iter().zip(&rendered) {
                    // Lanyard keeps unmonitored users subscribed (their arrival is news);
                    // Lantern refuses the subscription, so it watches only users it has.
                    if s.here().index() != me && (lanyard || user.is_some()) {
                        interest.watch(me, id.key());
                    }
                    if lanyard {
                        interest.watch_lanyard(Some(id.key()));
                    }
                }
                let seq = interest.seq();
                rendered.into_iter().map(|u| (seq, u)).collect()
            })
            .await;
        for (id, answer) in ids.iter().zip(answers) {
            match answer {
                Some((seq, user)) => {
                    seqs[this.here().owner_of(*id)] = seq;
                    users.push((*id, user));
                }
                None => stopped = true,
            }
        }
    }
    if stopped {
        abort_subscription(this, conn);
        return Err(close::SHUTTING_DOWN.to_string());
    }
    Ok(Snapshot { seqs, users })
}

/// Drops a pending subscription.
fn abort_subscription<S: FanoutHost>(this: &Rc<S>, conn: ConnId) {
    let cap = this.fanout().cap;
    let w = this.fanout().subscribers.borrow_mut().abort(conn, cap);
    withdraw(this, w);
}

/// Makes a pending subscription live: queues the acknowledgement `make_ack` builds (told
/// whether the connection holds a single subscription), then the events after `seqs`.
fn commit_subscription<S: FanoutHost>(this: &Rc<S>, conn: ConnId, seqs: &[u64], make_ack: impl FnOnce(bool) -> Frame) -> Result<(), String> {
    let cap = this.fanout().cap;
    let committed = this.fanout().subscribers.borrow_mut().commit(conn, seqs, cap, make_ack);
    match committed {
        Some(w) => {
            withdraw(this, w);
            Ok(())
        }
        None => Err(close::INVALID_CONNECTION.into()),
    }
}

/// Owner side: tells subscribers (here and on interested shards) about a change to `id`.
/// `encode` builds the frames, and is called only when someone listens; `lanyard` builds the
/// Lanyard PRESENCE_UPDATE, called only when a Lanyard connection subscribed to the user (or
/// to all) and the user did not leave; `left` drops the per-user interest with the user.
pub fn publish<S: FanoutHost>(
    this: &Rc<S>,
    id: Owned<Snowflake>,
    left: bool,
    encode: impl FnOnce() -> Option<EventKind>,
    lanyard: impl FnOnce() -> Option<Frame>,
) {
    let key = id.key();
    let remote = this.fanout().interest.borrow_mut().targets(key, left);
    let wants_lanyard = this.fanout().interest.borrow_mut().wants_lanyard(key, left);
    if remote.is_empty() && !this.fanout().subscribers.borrow().wants(key) {
        return;
    }
    let Some(kind) = encode() else { return };
    let lanyard = if wants_lanyard && !left { lanyard() } else { None };
    let seq = this.fanout().interest.borrow_mut().next_seq();
    let ev = SocketEvent { owner: this.here().index(), seq, id: key, kind, lanyard };
    for shard in remote {
        let ev = ev.clone();
        this.send_to(shard, move |s| deliver(s, &ev));
    }
    deliver(this, &ev);
}

/// Delivers an event to this shard's subscribers. With nothing else waiting in the shard's
/// mailbox, each frame is written to its socket at once (the first subscriber does not wait
/// for the last to be queued); while more events wait (a storm), frames are queued for the
/// flusher, which writes each connection's batch in one vectored write.
fn deliver<S: FanoutHost>(this: &Rc<S>, ev: &SocketEvent) {
    let cap = this.fanout().cap;
    let write_now = this.here().mailbox_idle();
    let w = this.fanout().subscribers.borrow_mut().deliver(ev, cap, write_now);
    withdraw(this, w);
}

/// Encodes the frames of a change to a user whose object is `json`.
pub fn updated(json: &[u8]) -> EventKind {
    EventKind::Updated { object: frames::with_data(frames::PRESENCE_UPDATE, json), array: frames::with_array(frames::PRESENCE_UPDATE, [json]) }
}
