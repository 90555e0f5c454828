//! Which shard owns which key.

/// The owner shard of a key (a user id, an address): a stable hash of it modulo the shard count.
///
/// Ids are not uniform in their low bits (a snowflake's low 12 bits are a per-process counter
/// that is often small), so the key is mixed with the splitmix64 finalizer first. The function
/// is fixed forever: on-disk partitions and tests rely on it.
pub fn shard_of(key: impl Into<u64>, shards: usize) -> usize {
    debug_assert!(shards > 0);
    (mix64(key.into()) % shards as u64) as usize
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_spread() {
        // Fixed values: changing the hash would move users between on-disk partitions.
        assert_eq!(shard_of(1_000_000_000_000_000_000u64, 2), 0);
        assert_eq!(shard_of(1_300_000_000_000_000_001u64, 2), 1);
        assert_eq!(shard_of(1_300_000_000_000_000_001u64, 7), 3);
        let mut counts = [0usize; 4];
        for i in 0..4000u64 {
            counts[shard_of((1_300_000_000_000_000_000 + i) << 1, 4)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }
}
