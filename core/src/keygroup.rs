//! Key groups: the fixed partitioning of keyed state (ARCHITECTURE §2).
//!
//! A key's group is a stable hash of its encoded bytes modulo the number of
//! key groups. The hash (xxh3) must never change: state on disk and in
//! changelogs is laid out by it.

use std::ops::Range;

/// Default number of key groups of a pipeline (its maximum parallelism).
pub const DEFAULT_KEY_GROUPS: u16 = 128;

/// The key group of the encoded key `key_bytes` among `groups` key groups.
pub fn key_group(key_bytes: &[u8], groups: u16) -> u16 {
    debug_assert!(groups > 0);
    (xxhash_rust::xxh3::xxh3_64(key_bytes) % u64::from(groups.max(1))) as u16
}

/// The contiguous range of key groups that worker `index` of `workers` owns.
pub fn owned_range(index: usize, workers: usize, groups: u16) -> Range<u16> {
    let g = usize::from(groups);
    let start = index * g / workers;
    let end = (index + 1) * g / workers;
    start as u16..end as u16
}

/// The worker (of `workers`) that owns key group `group`.
pub fn owner(group: u16, workers: usize, groups: u16) -> usize {
    // Inverse of `owned_range`: the largest i with i*g/workers <= group.
    let g = usize::from(groups);
    ((usize::from(group) + 1) * workers - 1) / g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_the_inverse_of_owned_range() {
        for groups in [1u16, 7, 128, 1000] {
            for workers in 1..=9usize.min(usize::from(groups)) {
                for w in 0..workers {
                    for g in owned_range(w, workers, groups) {
                        assert_eq!(owner(g, workers, groups), w, "g={g} w={w} n={workers}");
                    }
                }
            }
        }
    }

    #[test]
    fn key_groups_are_stable() {
        // The layout of state on disk depends on these exact values.
        assert_eq!(key_group(b"", 128), key_group(b"", 128));
        let g = key_group(b"hello", 128);
        assert!(g < 128);
        assert_eq!(g, (xxhash_rust::xxh3::xxh3_64(b"hello") % 128) as u16);
    }
}
