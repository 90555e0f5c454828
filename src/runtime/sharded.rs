//! Sharded services in the Seastar style: every shard runs one value of a type `S` (the set
//! of services a shard runs; the runtime knows nothing about it), and crossing shards is one
//! explicit operation, [`Invoke::invoke_on`]: run this closure on that shard, give me the
//! answer.
//!
//! - [`Peers`] holds every shard's mailbox. It is `Send + Sync`, so any thread (the gateway's,
//!   the bot's) can [`Peers::submit`] work to a shard or [`Peers::ask`] it for an answer; such a
//!   sender waits, as a task, while the mailbox is full.
//! - [`Here`] is one shard's own view: its index, the peers, and per-destination backlogs. Work a
//!   shard sends from inside a mailbox job (which must never wait) goes out through the backlog
//!   in order, and a task on the sending shard waits for room for it; so no executor ever
//!   blocks, and two shards whose mailboxes are both full cannot deadlock each other.
//! - [`Owned`] proves that this shard owns a key. Only the placement check makes one, and it
//!   cannot leave the shard's thread: code that mutates per-user state takes one instead of
//!   trusting that its caller checked.

use crate::runtime::mailbox::{mailbox, Closed, MailboxReceiver, MailboxSender, Refused};
use crate::runtime::placement::shard_of;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

/// Work for a shard: runs on its thread with its services.
pub type Job<S> = Box<dyn FnOnce(&Rc<S>) + Send>;

/// What travels in a shard's mailbox.
pub enum Envelope<S> {
    Job(Job<S>),
    /// Ends the mailbox loop.
    Stop,
}

/// Every shard's mailbox, by index. Cheap to clone; usable from any thread.
pub struct Peers<S> {
    mailboxes: Arc<[MailboxSender<Envelope<S>>]>,
}

impl<S> Clone for Peers<S> {
    fn clone(&self) -> Self {
        Peers { mailboxes: self.mailboxes.clone() }
    }
}

impl<S: 'static> Peers<S> {
    /// Mailboxes for `shards` shards holding `capacity` messages each, and their receivers.
    pub fn new(shards: usize, capacity: usize) -> (Peers<S>, Vec<MailboxReceiver<Envelope<S>>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards).map(|_| mailbox(capacity)).unzip();
        (Peers { mailboxes: senders.into() }, receivers)
    }

    pub fn count(&self) -> usize {
        self.mailboxes.len()
    }

    /// The shard that owns `key`.
    pub fn owner_of(&self, key: impl Into<u64>) -> usize {
        shard_of(key, self.count())
    }

    /// How many messages one mailbox holds at most.
    pub fn capacity(&self) -> usize {
        self.mailboxes.first().map(MailboxSender::capacity).unwrap_or(0)
    }

    /// Runs `f` on `shard`, waiting while its mailbox is full (from any thread, as a task).
    pub async fn submit(&self, shard: usize, f: impl FnOnce(&Rc<S>) + Send + 'static) -> Result<(), Closed> {
        let mailbox = &self.mailboxes[shard];
        match mailbox.try_send(Envelope::Job(Box::new(f))) {
            Ok(()) => Ok(()),
            Err(Refused::Closed(_)) => Err(Closed),
            Err(Refused::Full(envelope)) => {
                tracing::warn!(to = shard, capacity = mailbox.capacity(), "a shard's mailbox is full; waiting for room");
                mailbox.send(envelope).await
            }
        }
    }

    /// Runs `f` on `shard` and returns its answer (from any thread, as a task).
    pub async fn ask<R: Send + 'static>(&self, shard: usize, f: impl FnOnce(&Rc<S>) -> R + Send + 'static) -> Result<R, Closed> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(shard, move |s| {
            let _ = reply.send(f(s));
        })
        .await?;
        answer.await.map_err(|_| Closed)
    }

    /// Runs the future `f` makes as a task on the owner of `key` (from any thread), with the
    /// proof that it owns it, and returns its output.
    pub async fn ask_owner<K, R, Fut>(&self, key: K, f: impl FnOnce(Rc<S>, Owned<K>) -> Fut + Send + 'static) -> Result<R, Closed>
    where
        K: Copy + Into<u64> + Send + 'static,
        R: Send + 'static,
        Fut: Future<Output = R> + 'static,
        S: Sharded,
    {
        let owner = self.owner_of(key);
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(owner, move |s| {
            if let Ok(owned) = s.here().claim(key) {
                spawn_answer(s.clone(), move |s| f(s, owned), reply);
            }
        })
        .await?;
        answer.await.map_err(|_| Closed)
    }

    /// Ends every shard's mailbox loop (from a thread that may block: not an executor).
    pub fn stop_all(&self) {
        for m in self.mailboxes.iter() {
            let _ = futures_lite::future::block_on(m.send(Envelope::Stop));
        }
    }
}

fn spawn_answer<S: 'static, R: 'static, Fut: Future<Output = R> + 'static>(
    s: Rc<S>,
    f: impl FnOnce(Rc<S>) -> Fut + 'static,
    reply: tokio::sync::oneshot::Sender<R>,
) {
    glommio::spawn_local(async move {
        let _ = reply.send(f(s).await);
    })
    .detach();
}

/// Proof that the shard at hand owns `key`. Made only by [`Here::claim`]; `!Send`, so it
/// never leaves the thread of the shard that checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned<K> {
    key: K,
    _on_this_thread: PhantomData<*const ()>,
}

impl<K: Copy> Owned<K> {
    pub fn key(&self) -> K {
        self.key
    }
}

/// One shard's own view of the runtime.
pub struct Here<S> {
    index: usize,
    peers: Peers<S>,
    /// Per destination: envelopes waiting for room in its mailbox, oldest first.
    backlog: RefCell<Vec<VecDeque<Envelope<S>>>>,
    draining: Vec<Cell<bool>>,
}

impl<S: Sharded> Here<S> {
    pub fn new(index: usize, peers: Peers<S>) -> Here<S> {
        let n = peers.count();
        Here { index, peers, backlog: RefCell::new((0..n).map(|_| VecDeque::new()).collect()), draining: (0..n).map(|_| Cell::new(false)).collect() }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn count(&self) -> usize {
        self.peers.count()
    }

    /// Messages waiting in each shard's mailbox now, by shard index (a read of each queue's
    /// length: nothing is taken).
    pub fn mailbox_depths(&self) -> Vec<usize> {
        self.peers.mailboxes.iter().map(MailboxSender::len).collect()
    }

    /// Whether this shard's own mailbox holds nothing now (more work is not already waiting).
    pub fn mailbox_idle(&self) -> bool {
        self.peers.mailboxes[self.index].len() == 0
    }

    /// The shard that owns `key`.
    pub fn owner_of(&self, key: impl Into<u64>) -> usize {
        self.peers.owner_of(key)
    }

    /// The placement check: proof that this shard owns `key`, or the index of the shard that does.
    pub fn claim<K: Copy + Into<u64>>(&self, key: K) -> Result<Owned<K>, usize> {
        let owner = self.owner_of(key);
        if owner == self.index {
            Ok(Owned { key, _on_this_thread: PhantomData })
        } else {
            Err(owner)
        }
    }
}

/// A shard's set of services: the one thing the runtime needs from it is its [`Here`].
pub trait Sharded: Sized + 'static {
    fn here(&self) -> &Here<Self>;
}

/// Queues `envelope` for `shard` behind whatever this shard already sent it, never waiting.
fn enqueue<S: Sharded>(this: &Rc<S>, shard: usize, envelope: Envelope<S>) {
    let here = this.here();
    let mut backlog = here.backlog.borrow_mut();
    if backlog[shard].is_empty() && !here.draining[shard].get() {
        match here.peers.mailboxes[shard].try_send(envelope) {
            Ok(()) | Err(Refused::Closed(_)) => return,
            Err(Refused::Full(e)) => {
                // Logged once per backlog: it lasts until the destination has room again.
                tracing::warn!(from = here.index, to = shard, capacity = here.peers.capacity(), "a shard's mailbox is full; sends to it wait in order");
                backlog[shard].push_back(e);
            }
        }
    } else {
        backlog[shard].push_back(envelope);
    }
    // The drain task borrows the backlog: let go of it first (a task may be run at once).
    drop(backlog);
    if !here.draining[shard].replace(true) {
        let this = this.clone();
        glommio::spawn_local(async move {
            loop {
                let next = this.here().backlog.borrow_mut()[shard].pop_front();
                let Some(envelope) = next else { break };
                if this.here().peers.mailboxes[shard].send(envelope).await.is_err() {
                    this.here().backlog.borrow_mut()[shard].clear();
                    break;
                }
            }
            this.here().draining[shard].set(false);
        })
        .detach();
    }
}

/// Crossing shards, from a shard: each call names the shard (or the key whose owner) it runs on.
#[allow(async_fn_in_trait)]
pub trait Invoke: Sharded {
    /// Runs `f` on `shard` (at once when that is this one) and returns its answer.
    async fn invoke_on<R: Send + 'static>(self: &Rc<Self>, shard: usize, f: impl FnOnce(&Rc<Self>) -> R + Send + 'static) -> Result<R, Closed> {
        if shard == self.here().index {
            return Ok(f(self));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        enqueue(self, shard, Envelope::Job(Box::new(move |s| drop(reply.send(f(s))))));
        answer.await.map_err(|_| Closed)
    }

    /// Runs the future `f` makes on `shard` (as a task there) and returns its output.
    async fn invoke_on_async<R, Fut>(self: &Rc<Self>, shard: usize, f: impl FnOnce(Rc<Self>) -> Fut + Send + 'static) -> Result<R, Closed>
    where
        R: Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if shard == self.here().index {
            return Ok(f(self.clone()).await);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        enqueue(self, shard, Envelope::Job(Box::new(move |s| spawn_answer(s.clone(), f, reply))));
        answer.await.map_err(|_| Closed)
    }

    /// Runs `f` on the owner of `key` with the proof that it owns it.
    async fn on_owner<K, R>(self: &Rc<Self>, key: K, f: impl FnOnce(&Rc<Self>, Owned<K>) -> R + Send + 'static) -> Result<R, Closed>
    where
        K: Copy + Into<u64> + Send + 'static,
        R: Send + 'static,
    {
        let owner = self.here().owner_of(key);
        self.invoke_on(owner, move |s| s.here().claim(key).map(|owned| f(s, owned)).map_err(|_| Closed)).await?
    }

    /// Runs the future `f` makes on the owner of `key`, with the proof that it owns it.
    async fn on_owner_async<K, R, Fut>(self: &Rc<Self>, key: K, f: impl FnOnce(Rc<Self>, Owned<K>) -> Fut + Send + 'static) -> Result<R, Closed>
    where
        K: Copy + Into<u64> + Send + 'static,
        R: Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let owner = self.here().owner_of(key);
        self.invoke_on_async(owner, move |s| async move {
            match s.here().claim(key) {
                Ok(owned) => Ok(f(s.clone(), owned).await),
                Err(_) => Err(Closed),
            }
        })
        .await?
    }

    /// Scatter/gather: groups `keys` by owner, runs `f` once on each owner with the keys it owns
    /// (in request order), and returns one answer per key in request order (`None` where an
    /// owner did not answer). `f` must answer one `R` per key it is given.
    async fn gather_by_owner<K, R>(self: &Rc<Self>, keys: &[K], f: impl Fn(&Rc<Self>, &[Owned<K>]) -> Vec<R> + Clone + Send + 'static) -> Vec<Option<R>>
    where
        K: Copy + Into<u64> + Send + 'static,
        R: Send + 'static,
    {
        let here = self.here();
        // Every key owned here (always so with one shard): no grouping, no scatter, and `f`'s
        // answers are already in request order. The claims are the ownership check, so each
        // key is placed once.
        let mut owned = Vec::with_capacity(keys.len());
        for &key in keys {
            match here.claim(key) {
                Ok(proof) => owned.push(proof),
                Err(_) => break,
            }
        }
        if owned.len() == keys.len() {
            return f(self, &owned).into_iter().map(Some).collect();
        }
        let mut by_owner: Vec<(Vec<usize>, Vec<K>)> = (0..here.count()).map(|_| (Vec::new(), Vec::new())).collect();
        for (pos, &key) in keys.iter().enumerate() {
            let (positions, wanted) = &mut by_owner[here.owner_of(key)];
            // An owner's groups are sized for the rest of the keys at its first (a handful):
            // no growth while grouping, and nothing allocated for owners that get none.
            if positions.is_empty() {
                positions.reserve(keys.len() - pos);
                wanted.reserve(keys.len() - pos);
            }
            positions.push(pos);
            wanted.push(key);
        }
        let mut out: Vec<Option<R>> = (0..keys.len()).map(|_| None).collect();
        let mut pending = Vec::new();
        for (shard, (positions, wanted)) in by_owner.into_iter().enumerate().filter(|(_, (p, _))| !p.is_empty()) {
            let f = f.clone();
            let run = move |s: &Rc<Self>| f(s, &claim_all(s.here(), &wanted));
            if shard == here.index {
                place(&mut out, positions, run(self));
            } else {
                pending.push((positions, self.invoke_on(shard, run)));
            }
        }
        for (positions, answer) in pending {
            if let Ok(answers) = answer.await {
                place(&mut out, positions, answers);
            }
        }
        out
    }

    /// Runs `f` on every shard; answers by shard index (`None` where a shard did not answer).
    async fn invoke_on_all<R: Send + 'static>(self: &Rc<Self>, f: impl Fn(&Rc<Self>) -> R + Clone + Send + 'static) -> Vec<Option<R>> {
        let n = self.here().count();
        let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
        let mut pending = Vec::new();
        for shard in 0..n {
            if shard == self.here().index {
                out[shard] = Some(f(self));
            } else {
                pending.push((shard, self.invoke_on(shard, f.clone())));
            }
        }
        for (shard, answer) in pending {
            out[shard] = answer.await.ok();
        }
        out
    }

    /// Runs `f` on `shard` without waiting for it: behind everything this shard sent there
    /// before, and never at once, even on this shard (so the caller's borrows are over).
    fn send_to(self: &Rc<Self>, shard: usize, f: impl FnOnce(&Rc<Self>) + Send + 'static) {
        if shard == self.here().index {
            let this = self.clone();
            glommio::spawn_local(async move { f(&this) }).detach();
        } else {
            enqueue(self, shard, Envelope::Job(Box::new(f)));
        }
    }
}

impl<S: Sharded> Invoke for S {}

/// The proofs of ownership of those of `keys` this shard owns, in order. Sized once: a
/// vector collected from a filter starts empty and grew three times for ten keys.
fn claim_all<S: Sharded, K: Copy + Into<u64>>(here: &Here<S>, keys: &[K]) -> Vec<Owned<K>> {
    let mut owned = Vec::with_capacity(keys.len());
    owned.extend(keys.iter().filter_map(|&key| here.claim(key).ok()));
    owned
}

fn place<R>(out: &mut [Option<R>], positions: Vec<usize>, answers: Vec<R>) {
    for (pos, answer) in positions.into_iter().zip(answers) {
        out[pos] = Some(answer);
    }
}

/// A shard's mailbox loop: runs each job with the shard's services until [`Envelope::Stop`].
/// Jobs already queued are run in batches before the executor gets the thread back.
pub async fn run_mailbox<S: Sharded>(this: Rc<S>, rx: MailboxReceiver<Envelope<S>>) {
    while let Some(envelope) = rx.recv().await {
        let Envelope::Job(job) = envelope else { return };
        job(&this);
        for _ in 0..256 {
            match rx.try_recv() {
                Some(Envelope::Job(job)) => job(&this),
                Some(Envelope::Stop) => return,
                None => break,
            }
        }
        glommio::yield_if_needed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard that records what ran on it.
    struct Recorder {
        here: Here<Recorder>,
        seen: RefCell<Vec<u64>>,
    }

    impl Sharded for Recorder {
        fn here(&self) -> &Here<Recorder> {
            &self.here
        }
    }

    /// Runs `drive` on shard 0 of two shards whose mailboxes hold `capacity` messages.
    fn on_two_shards<R: Send + 'static, F: Future<Output = R> + 'static>(capacity: usize, drive: impl FnOnce(Rc<Recorder>) -> F + Send + 'static) -> R {
        let (peers, receivers) = Peers::<Recorder>::new(2, capacity);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut drive = Some(drive);
        let executors: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(index, rx)| {
                let peers = peers.clone();
                let drive = if index == 0 { drive.take() } else { None };
                let done = done_tx.clone();
                glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                    .spawn(move || async move {
                        let shard = Rc::new(Recorder { here: Here::new(index, peers), seen: RefCell::default() });
                        let mailbox = glommio::spawn_local(run_mailbox(shard.clone(), rx));
                        if let Some(drive) = drive {
                            let _ = done.send(drive(shard).await);
                        }
                        mailbox.await;
                    })
                    .unwrap()
            })
            .collect();
        let result = done_rx.recv().unwrap();
        peers.stop_all();
        for e in executors {
            e.join().unwrap();
        }
        result
    }

    #[test]
    fn sends_to_a_full_mailbox_wait_on_the_sender_and_arrive_in_order() {
        let seen = on_two_shards(4, |s| async move {
            for i in 0..10_000u64 {
                s.send_to(1, move |r| r.seen.borrow_mut().push(i));
            }
            // Behind every send above: the answer sees all of them.
            s.invoke_on(1, |r| r.seen.borrow().clone()).await.unwrap()
        });
        assert_eq!(seen, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn invoke_on_runs_on_the_named_shard_and_gather_answers_in_request_order() {
        let (indexes, gathered, owners_agree, here) = on_two_shards(64, |s| async move {
            let indexes = (s.invoke_on(0, |r| r.here().index()).await.unwrap(), s.invoke_on(1, |r| r.here().index()).await.unwrap());
            let keys: Vec<u64> = (1000..1100).rev().collect();
            // Each owner answers for the keys it owns, with the proof the runtime gave it.
            let gathered = s.gather_by_owner(&keys, |r, owned| owned.iter().map(|k| (k.key(), r.here().index())).collect()).await;
            let owners_agree = keys.iter().all(|k| s.here().claim(*k).map(|o| o.key()).map_err(|owner| owner) == if shard_of(*k, 2) == 0 { Ok(*k) } else { Err(1) });
            // Keys all owned here are answered here, without a scatter, still in order.
            let local: Vec<u64> = keys.iter().copied().filter(|k| shard_of(*k, 2) == 0).collect();
            let gathered_here = s.gather_by_owner(&local, |r, owned| owned.iter().map(|k| (k.key(), r.here().index())).collect()).await;
            (indexes, gathered, owners_agree, (local, gathered_here))
        });
        let (local, gathered_here) = here;
        assert!(local.len() > 10 && local.len() < 100, "{} of the keys on shard 0", local.len());
        assert_eq!(gathered_here, local.iter().map(|k| Some((*k, 0))).collect::<Vec<_>>());
        assert_eq!(indexes, (0, 1));
        let keys: Vec<u64> = (1000..1100).rev().collect();
        let want: Vec<Option<(u64, usize)>> = keys.iter().map(|k| Some((*k, shard_of(*k, 2)))).collect();
        assert_eq!(gathered, want);
        assert!(owners_agree);
    }

    #[test]
    fn mailbox_depths_count_what_each_mailbox_holds() {
        let (peers, _receivers) = Peers::<Recorder>::new(2, 8);
        for _ in 0..3 {
            assert!(peers.mailboxes[1].try_send(Envelope::Stop).is_ok());
        }
        assert_eq!(Here::new(0, peers).mailbox_depths(), vec![0, 3]);
    }

    #[test]
    fn on_owner_runs_where_the_key_lives() {
        let ran_on = on_two_shards(64, |s| async move {
            let key = (0..u64::MAX).find(|k| shard_of(*k, 2) == 1).unwrap();
            s.on_owner(key, |r, owned| (r.here().index(), owned.key())).await.unwrap()
        });
        assert_eq!(ran_on.0, 1);
        assert_eq!(shard_of(ran_on.1, 2), 1);
    }
}
