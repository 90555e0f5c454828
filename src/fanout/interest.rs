//! Owner side of fan-out: which other shards want the changes of each user this shard owns,
//! and the sequence number of the last change published.

use crate::discord::Snowflake;
// foldhash: keyed like std's SipHash, far cheaper per lookup on the fan-out path.
use foldhash::{HashMap, HashSet};

#[derive(Default)]
pub struct Interest {
    /// Sequence number of the last event published.
    seq: u64,
    /// Other shards with subscribers, per user.
    by_user: HashMap<Snowflake, Vec<usize>>,
    /// Other shards with All subscribers.
    all: Vec<usize>,
    /// Users some Lanyard connection (on any shard) subscribed to, and whether one subscribed
    /// to all: a change to them also gets its Lanyard frame. Sticky until the user leaves (or,
    /// for all, for the shard's life): a flag per user, not a count per shard.
    lanyard_users: HashSet<Snowflake>,
    lanyard_all: bool,
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

impl Interest {
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Shard `from` has subscribers for `id` (idempotent).
    pub fn watch(&mut self, from: usize, id: Snowflake) {
        insert_sorted(self.by_user.entry(id).or_default(), from);
    }

    /// Shard `from` has All subscribers (idempotent).
    pub fn watch_all(&mut self, from: usize) {
        insert_sorted(&mut self.all, from);
    }

    /// Shard `from` has no subscriber left for `ids`.
    pub fn unwatch(&mut self, from: usize, ids: &[Snowflake]) {
        for id in ids {
            if let Some(shards) = self.by_user.get_mut(id) {
                remove_sorted(shards, from);
                if shards.is_empty() {
                    self.by_user.remove(id);
                }
            }
        }
    }

    /// Shard `from` has no All subscriber left.
    pub fn unwatch_all(&mut self, from: usize) {
        remove_sorted(&mut self.all, from);
    }

    /// The other shards that want a change to `id`, in order; when the user `left`, its
    /// per-user interest is dropped with it.
    pub fn targets(&mut self, id: Snowflake, left: bool) -> Vec<usize> {
        let mut out = self.all.clone();
        let per_user = if left { self.by_user.remove(&id) } else { self.by_user.get(&id).cloned() };
        for s in per_user.into_iter().flatten() {
            insert_sorted(&mut out, s);
        }
        out
    }

    /// A Lanyard connection subscribed to `id` (`None`: to all).
    pub fn watch_lanyard(&mut self, id: Option<Snowflake>) {
        match id {
            Some(id) => {
                self.lanyard_users.insert(id);
            }
            None => self.lanyard_all = true,
        }
    }

    /// Whether a change to `id` needs its Lanyard frame; a user who `left` is forgotten.
    pub fn wants_lanyard(&mut self, id: Snowflake, left: bool) -> bool {
        if left {
            return self.lanyard_users.remove(&id) || self.lanyard_all;
        }
        self.lanyard_all || self.lanyard_users.contains(&id)
    }

    /// Numbers the next event.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lanyard_frame_is_wanted_only_once_a_lanyard_connection_subscribed() {
        let (a, b) = (Snowflake(1300000000000000001), Snowflake(1300000000000000002));
        let mut i = Interest::default();
        i.watch(1, a);
        assert!(!i.wants_lanyard(a, false), "a Lantern subscriber only");
        i.watch_lanyard(Some(a));
        assert!(i.wants_lanyard(a, false));
        assert!(!i.wants_lanyard(b, false));
        assert!(i.wants_lanyard(a, true), "the leave itself");
        assert!(!i.wants_lanyard(a, false), "forgotten with the user");
        i.watch_lanyard(None);
        assert!(i.wants_lanyard(b, false), "a subscriber of all");
    }
}
