//! Failed logins limited per remote address (pure: the caller passes the time in).
//!
//! A token bucket per address, kept as GCRA's "theoretical arrival time" (one `Instant` per
//! address): each failure pushes it `interval` further; an address may try again while it is less
//! than `burst` intervals ahead of now. So `burst` failures in a row are allowed, then one more
//! per `interval`. Only failures count: a successful login costs nothing and clears nothing (an
//! attacker who knows one password must not earn guesses at others). IPv6 addresses count per
//! /64 (one subscriber's usual allocation); IPv4-mapped IPv6 addresses count as IPv4.
//!
//! Memory is bounded: at most `max_addresses` entries; at the bound the entry closest to being
//! forgiven (the earliest arrival time) is dropped first, and entries already forgiven are
//! dropped whenever a failure is recorded.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures allowed in a row from a fresh address.
    pub burst: u32,
    /// One failure forgiven per interval.
    pub interval: Duration,
    /// Addresses remembered at most.
    pub max_addresses: usize,
}

impl Default for LimiterConfig {
    /// 10 failures, then one per 6 s (10 a minute); 100,000 addresses (a few MB).
    fn default() -> Self {
        LimiterConfig {
            burst: 10,
            interval: Duration::from_secs(6),
            max_addresses: 100_000,
        }
    }
}

/// The answer for a login attempt from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Refuse now (without checking the password); a try after this long would be allowed.
    Wait {
        ms: u64,
    },
}

#[derive(Debug)]
pub struct LoginLimiter {
    config: LimiterConfig,
    /// Per address key: the theoretical arrival time.
    arrivals: HashMap<IpAddr, Instant>,
    /// The same entries ordered by arrival time, for eviction.
    /// Invariant: holds exactly `(arrivals[k], k)` for every key `k` of `arrivals`.
    by_arrival: BTreeSet<(Instant, IpAddr)>,
}

impl LoginLimiter {
    pub fn new(config: LimiterConfig) -> LoginLimiter {
        assert!(config.burst >= 1 && config.max_addresses >= 1 && !config.interval.is_zero());
        LoginLimiter {
            config,
            arrivals: HashMap::new(),
            by_arrival: BTreeSet::new(),
        }
    }

    /// Whether a login from `addr` may be tried at `now`.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Admission {
        let Some(&arrival) = self.arrivals.get(&key(addr)) else {
            return Admission::Allowed;
        };
        // Allowed while arrival <= now + (burst - 1) * interval.
        let slack = self.config.interval * (self.config.burst - 1);
        match arrival.checked_duration_since(now + slack) {
            None => Admission::Allowed,
            Some(wait) if wait.is_zero() => Admission::Allowed,
            Some(wait) => Admission::Wait {
                ms: u64::try_from(wait.as_millis().max(1)).unwrap_or(u64::MAX),
            },
        }
    }

    /// Counts one failed login from `addr` at `now`.
    pub fn record_failure(&mut self, addr: IpAddr, now: Instant) {
        let key = key(addr);
        // Forgiven entries are as good as absent.
        while let Some(&(arrival, old)) = self.by_arrival.first() {
            if arrival > now {
                break;
            }
            self.by_arrival.pop_first();
            self.arrivals.remove(&old);
        }
        let previous = self.arrivals.get(&key).copied();
        if let Some(previous) = previous {
            self.by_arrival.remove(&(previous, key));
        } else if self.arrivals.len() >= self.config.max_addresses {
            if let Some((_, evicted)) = self.by_arrival.pop_first() {
                self.arrivals.remove(&evicted);
            }
        }
        let arrival = previous.map_or(now, |p| p.max(now)) + self.config.interval;
        self.arrivals.insert(key, arrival);
        self.by_arrival.insert((arrival, key));
        debug_assert_eq!(self.arrivals.len(), self.by_arrival.len());
        debug_assert!(self.arrivals.len() <= self.config.max_addresses);
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }
}

/// The unit an address counts in: itself for IPv4, its /64 for IPv6.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, interval_ms: u64, max_addresses: usize) -> LoginLimiter {
        LoginLimiter::new(LimiterConfig {
            burst,
            interval: Duration::from_millis(interval_ms),
            max_addresses,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_one_per_interval() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut l = limiter(3, 1000, 16);
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(l.check(a, t0), Admission::Allowed);
            l.record_failure(a, t0);
        }
        assert_eq!(l.check(a, t0), Admission::Wait { ms: 1000 });
        assert_eq!(l.check(a, ms(400)), Admission::Wait { ms: 600 });
        assert_eq!(l.check(a, ms(1000)), Admission::Allowed);
        l.record_failure(a, ms(1000));
        assert_eq!(l.check(a, ms(1000)), Admission::Wait { ms: 1000 });
        // Another address is not affected.
        assert_eq!(l.check(ip("192.0.2.2"), t0), Admission::Allowed);
        // After burst intervals of quiet, everything is forgiven (and the entry dropped).
        assert_eq!(l.check(a, ms(5000)), Admission::Allowed);
        l.record_failure(ip("192.0.2.3"), ms(5000));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let t0 = Instant::now();
        let mut l = limiter(1, 1000, 16);
        l.record_failure(ip("2001:db8:1:2::1"), t0);
        assert!(matches!(
            l.check(ip("2001:db8:1:2:ffff::9"), t0),
            Admission::Wait { .. }
        ));
        assert_eq!(l.check(ip("2001:db8:1:3::1"), t0), Admission::Allowed);
        l.record_failure(ip("::ffff:192.0.2.7"), t0);
        assert!(matches!(l.check(ip("192.0.2.7"), t0), Admission::Wait { .. }));
        assert_eq!(l.check(ip("192.0.2.8"), t0), Admission::Allowed);
    }

    #[test]
    fn memory_is_bounded_and_the_closest_to_forgiven_goes_first() {
        let t0 = Instant::now();
        let mut l = limiter(2, 1000, 3);
        let a = ip("10.0.0.1");
        l.record_failure(a, t0);
        l.record_failure(a, t0);
        l.record_failure(ip("10.0.0.2"), t0);
        l.record_failure(ip("10.0.0.3"), t0 + Duration::from_millis(1));
        l.record_failure(ip("10.0.0.4"), t0 + Duration::from_millis(2));
        assert_eq!(l.len(), 3);
        // 10.0.0.2 had the earliest arrival; `a` (two failures) is still limited.
        assert!(l.arrivals.contains_key(&a));
        assert!(!l.arrivals.contains_key(&ip("10.0.0.2")));
        assert!(matches!(l.check(a, t0), Admission::Wait { .. }));
        for i in 0..1000u32 {
            l.record_failure(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(l.len(), 3);
    }
}
