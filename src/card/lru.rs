//! A small least-recently-used map bounded by bytes, with an expiry per entry. One per shard and
//! purpose (fetched images, rendered cards); never shared between threads.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::Instant;

struct Entry<V> {
    value: V,
    size: usize,
    used: u64,
    expires: Instant,
}

pub struct Lru<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Use tick → key, oldest first.
    order: BTreeMap<u64, K>,
    tick: u64,
    bytes: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    pub fn new(capacity_bytes: usize) -> Lru<K, V> {
        Lru { map: HashMap::new(), order: BTreeMap::new(), tick: 0, bytes: 0, capacity: capacity_bytes }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The live value for `key`, marking it as recently used; expired entries are dropped.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        let expired = self.map.get(key)?.expires <= now;
        if expired {
            self.remove(key);
            return None;
        }
        self.tick += 1;
        let tick = self.tick;
        let e = self.map.get_mut(key)?;
        self.order.remove(&e.used);
        e.used = tick;
        self.order.insert(tick, key.clone());
        Some(e.value.clone())
    }

    /// Inserts (or replaces) an entry of `size` bytes, evicting the least recently used ones to
    /// stay within capacity. An entry larger than the whole capacity is not kept.
    pub fn insert(&mut self, key: K, value: V, size: usize, expires: Instant) {
        self.remove(&key);
        if size > self.capacity {
            return;
        }
        while self.bytes + size > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(e) = self.map.remove(&oldest) {
                self.bytes -= e.size;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.map.insert(key, Entry { value, size, used: self.tick, expires });
        self.bytes += size;
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(e) = self.map.remove(key) {
            self.order.remove(&e.used);
            self.bytes -= e.size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn evicts_least_recently_used_and_expires() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut lru = Lru::new(10);
        lru.insert("a", 1, 4, later);
        lru.insert("b", 2, 4, later);
        assert_eq!(lru.get(&"a", now), Some(1));
        lru.insert("c", 3, 4, later); // evicts b, the least recently used
        assert_eq!(lru.get(&"b", now), None);
        assert_eq!(lru.get(&"a", now), Some(1));
        assert_eq!(lru.bytes(), 8);
        lru.insert("big", 9, 11, later);
        assert_eq!(lru.get(&"big", now), None);
        lru.insert("short", 5, 1, now + Duration::from_millis(1));
        assert_eq!(lru.get(&"short", now + Duration::from_secs(1)), None);
        assert_eq!(lru.len(), 2);
    }
}
