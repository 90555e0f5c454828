//! The card's per-shard caches (fetched images, rendered cards): the `lru` crate's map, bounded
//! by the bytes of its entries rather than by their count, with an expiry per entry. One per
//! shard and purpose; never shared between threads.

use lru::LruCache;
use std::borrow::Borrow;
use std::hash::Hash;
use std::time::Instant;

struct Entry<V> {
    value: V,
    size: usize,
    expires: Instant,
}

pub struct ByteLru<K: Hash + Eq, V> {
    /// Unbounded by count: [`ByteLru::insert`] evicts by bytes.
    map: LruCache<K, Entry<V>>,
    bytes: usize,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> ByteLru<K, V> {
    pub fn new(capacity_bytes: usize) -> ByteLru<K, V> {
        ByteLru { map: LruCache::unbounded(), bytes: 0, capacity: capacity_bytes }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes held (the sizes given to [`ByteLru::insert`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The live value for `key` (looked up by any borrowed form, e.g. `&str` for `String`
    /// keys), marking it as recently used; an expired entry is dropped.
    pub fn get<Q>(&mut self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let e = self.map.get(key)?;
        if e.expires > now {
            return Some(e.value.clone());
        }
        self.remove(key);
        None
    }

    /// Inserts (or replaces) an entry of `size` bytes, evicting the least recently used ones to
    /// stay within capacity. An entry larger than the whole capacity is not kept.
    pub fn insert(&mut self, key: K, value: V, size: usize, expires: Instant) {
        self.remove(&key);
        if size > self.capacity {
            return;
        }
        while self.bytes + size > self.capacity {
            let Some((_, oldest)) = self.map.pop_lru() else { break };
            self.bytes -= oldest.size;
        }
        self.map.put(key, Entry { value, size, expires });
        self.bytes += size;
    }

    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(e) = self.map.pop(key) {
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
        let mut lru = ByteLru::new(10);
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
        assert_eq!(lru.bytes(), 8, "the expired entry's bytes are released");
    }

    #[test]
    fn replacing_an_entry_recounts_its_bytes_and_string_keys_are_looked_up_by_str() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut lru: ByteLru<String, Option<u8>> = ByteLru::new(100);
        lru.insert("https://x/a.png".to_owned(), Some(1), 40, later);
        lru.insert("https://x/a.png".to_owned(), None, 16, later);
        assert_eq!((lru.len(), lru.bytes()), (1, 16));
        assert_eq!(lru.get("https://x/a.png", now), Some(None));
        assert_eq!(lru.get("https://x/b.png", now), None);
        // Several evictions to make room for one large entry.
        lru.insert("b".to_owned(), Some(2), 30, later);
        lru.insert("c".to_owned(), Some(3), 30, later);
        lru.insert("d".to_owned(), Some(4), 90, later);
        assert_eq!((lru.len(), lru.bytes()), (1, 90));
        assert_eq!(lru.get("d", now), Some(Some(4)));
    }
}
