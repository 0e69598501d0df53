//! Placement: which group a mailbox belongs to. A mailbox goes with its user, so one user's
//! mailboxes share a log and a rename or a LIST never spans groups.
//!
//! `group_of(user, groups) = FNV-1a-64(user as UTF-8 bytes) mod groups`. FNV-1a is fixed by its
//! definition (offset basis 0xcbf29ce484222325, prime 0x100000001b3), so the mapping is stable
//! across versions, platforms and processes — unlike `std`'s randomly seeded hasher. The number
//! of groups is fixed when a cluster is created; changing it would move users.

/// The group of `user` in a cluster of `groups` groups.
pub fn group_of(user: &str, groups: u32) -> u32 {
    assert!(groups > 0, "a cluster has at least one group");
    (fnv1a64(user.as_bytes()) % u64::from(groups)) as u32
}

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn placement_is_stable_and_spreads() {
        assert_eq!(
            group_of("alice@example.com", 16),
            group_of("alice@example.com", 16)
        );
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            counts[group_of(&format!("user{i}@example.com"), 16) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}
