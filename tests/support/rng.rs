//! The seeded generator of every randomized test, and the one way such a test gets its seed:
//! `DOVETAIL_SEED` to replay a run, else the clock; printed either way, before the test does
//! anything, as `<test>: seed <seed> (replay with DOVETAIL_SEED=<seed>)`. Libtest and nextest
//! both show a failed test's output, so the line is there whenever a replay is wanted:
//! `DOVETAIL_SEED=<seed> cargo test --test <file> <test>`.
//!
//! One file, included where it is needed (so there is one copy, and it needs no crate):
//! `#[path = "support/rng.rs"] mod rng;` in a test of `tests/`, `#[path = "../support/rng.rs"]`
//! in `tests/benches/`, `#[path = "../tests/support/rng.rs"] mod test_rng;` in the library's
//! root (`src/lib.rs`, for its property tests: `src/state_machine/model_tests.rs`, whose
//! proptest runner takes its `rng_seed` from [`seed`], and `src/index/changes.rs`), `#[path =
//! "../../tests/support/rng.rs"]` in `dovetail-jepsen` (`jepsen/src/lib.rs`: the runner's
//! schedule, whose `--seed` also reads `DOVETAIL_SEED`), and `#[path =
//! "../../tests/support/rng.rs"] mod test_rng;` in the raft crate's root (`raft/src/lib.rs`,
//! for its tests).

// Every includer uses a part of this file.
#![allow(dead_code)]

/// The environment variable that replays a randomized test.
pub const SEED_VAR: &str = "DOVETAIL_SEED";

/// The seed of a randomized test: `DOVETAIL_SEED` if set, else the clock. Printed on stderr.
pub fn seed(test: &str) -> u64 {
    announce(test, env_seed().unwrap_or_else(clock_seed))
}

/// The seed of a test whose runs must draw the same values unless asked otherwise (a benchmark
/// compared with its last run; a regression test of hand-placed faults): `DOVETAIL_SEED` if set,
/// else `default`. Printed on stderr.
pub fn seed_or(test: &str, default: u64) -> u64 {
    announce(test, env_seed().unwrap_or(default))
}

/// `DOVETAIL_SEED`, if set. Panics if it is not a `u64`: a typo must not run another seed.
pub fn env_seed() -> Option<u64> {
    let value = std::env::var(SEED_VAR).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={value:?} is not a u64")),
    )
}

/// A seed from the clock (nanoseconds since the epoch).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

fn announce(test: &str, seed: u64) -> u64 {
    eprintln!("{test}: seed {seed} (replay with {SEED_VAR}={seed})");
    seed
}

/// SplitMix64: small, fast, and the same stream for the same seed on every platform; good
/// enough to pick test inputs and fault schedules (not for anything secret).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi` (`lo <= hi`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi, "empty range {lo}..={hi}");
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (never for 0, always for 1).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A child generator for an independent stream (a client, the nemesis).
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }

    /// One of `items` (not empty), uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    // The import is inside the test: a bench includes this file without a test harness, where
    // the `#[test]` is compiled out and a module-level import would be unused.
    #[test]
    fn seeds_replay() {
        use super::Rng;
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.below(100)).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.below(100)).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::new(8).next_u64(), Rng::new(7).next_u64());
        // The first output of SplitMix64 seeded with 0 (Vigna's reference implementation).
        assert_eq!(Rng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        let mut rng = Rng::new(1);
        assert!((0..1000).all(|_| !rng.chance(0.0) && rng.chance(1.0)));
        assert!((0..1000).all(|_| (3..=5).contains(&rng.range(3, 5))));
    }
}
