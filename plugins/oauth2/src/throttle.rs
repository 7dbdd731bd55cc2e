//! Temporary lockout after repeated failed authentications, built so that an
//! attacker cannot lock a legitimate client out from somewhere else.
//!
//! Failures are counted per (identity, client network) pair, where the
//! network is the IPv4 address or the IPv6 /64 (one host usually holds a
//! whole /64 and could rotate through it). A pair locks at `max_failures`.
//! Two ceilings, [`CEILING_FACTOR`] × `max_failures`, catch attacks spread
//! wider: failures of one identity from every network (a distributed
//! guess) and failures of one network against every identity (spraying).
//! Since a locked pair is no longer counted, one network adds at most
//! `max_failures` to an identity's count: locking an identity out for
//! everyone takes [`CEILING_FACTOR`] networks. A locked key is refused (429
//! with `Retry-After`) until its window ends; growing delays would block the
//! host's workers. Memory is bounded by a cap on tracked keys (oldest
//! evicted), identities are kept as SHA-256 digests (fixed size whatever a
//! client sends) and windows expire.

use std::net::IpAddr;
use std::sync::Mutex;

use ipnet::IpNet;
use scimgate_abi::net::{client_network, parse_client_ip};

use crate::cache::BoundedCache;
use crate::secret::sha256;

/// The identity-wide and network-wide ceilings are this many times the
/// per-pair limit.
pub const CEILING_FACTOR: u32 = 10;

/// IPv6 clients are counted per /64.
pub const IPV6_PREFIX: u8 = 64;

/// One counter. `None` as a network: a client address that does not parse
/// (the host always sends one; such requests share a bucket).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    Pair([u8; 32], Option<IpNet>),
    Identity([u8; 32]),
    Network(Option<IpNet>),
}

/// The counters one attempt touches: built once per request.
#[derive(Debug)]
pub struct Keys {
    pair: Key,
    identity: Key,
    network: Key,
}

impl Keys {
    /// `kind` separates identities of different kinds (client ids,
    /// usernames) sharing one lockout.
    pub fn new(kind: &str, identity: &str, client_ip: &str) -> Keys {
        // Length-prefixed kind, then the identity: unambiguous.
        let mut tagged = Vec::with_capacity(8 + kind.len() + identity.len());
        tagged.extend_from_slice(&(kind.len() as u64).to_be_bytes());
        tagged.extend_from_slice(kind.as_bytes());
        tagged.extend_from_slice(identity.as_bytes());
        let id = sha256(&tagged);
        let network = parse_client_ip(client_ip).map(network_of);
        Keys {
            pair: Key::Pair(id, network),
            identity: Key::Identity(id),
            network: Key::Network(network),
        }
    }
}

/// The network a client address is counted under: itself for IPv4 (and
/// IPv4-mapped IPv6), its /64 for IPv6.
pub fn network_of(ip: IpAddr) -> IpNet {
    client_network(ip, IPV6_PREFIX)
}

#[derive(Clone, Copy)]
struct Window {
    start_ms: i64,
    failures: u32,
}

pub struct FailureLockout {
    max_failures: u32,
    ceiling: u32,
    window_ms: i64,
    windows: Mutex<BoundedCache<Key, Window>>,
}

impl FailureLockout {
    /// `max_failures` per (identity, network) pair, 0 disables; the
    /// ceilings follow from it.
    pub fn new(max_failures: u32, window_ms: i64, max_tracked: usize) -> Self {
        FailureLockout {
            max_failures,
            ceiling: max_failures.saturating_mul(CEILING_FACTOR),
            window_ms,
            windows: Mutex::new(BoundedCache::new(max_tracked)),
        }
    }

    fn limits<'k>(&self, keys: &'k Keys) -> [(&'k Key, u32); 3] {
        [
            (&keys.pair, self.max_failures),
            (&keys.identity, self.ceiling),
            (&keys.network, self.ceiling),
        ]
    }

    /// Seconds to wait when any counter of `keys` is locked at `now_ms`.
    pub fn locked(&self, keys: &Keys, now_ms: i64) -> Option<u64> {
        if self.max_failures == 0 {
            return None;
        }
        let mut windows = self.windows.lock().ok()?;
        self.limits(keys)
            .iter()
            .filter_map(|(key, limit)| {
                let w = *windows.get(*key, now_ms)?;
                (w.failures >= *limit).then(|| {
                    let remaining = w.start_ms + self.window_ms - now_ms;
                    u64::try_from((remaining + 999) / 1000).unwrap_or(1).max(1)
                })
            })
            .max()
    }

    /// Counts one failure on every counter of `keys`.
    pub fn record_failure(&self, keys: &Keys, now_ms: i64) {
        if self.max_failures == 0 {
            return;
        }
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        for (key, _) in self.limits(keys) {
            match windows.get_mut(key, now_ms) {
                Some(w) => w.failures = w.failures.saturating_add(1),
                None => windows.insert(
                    key.clone(),
                    Window {
                        start_ms: now_ms,
                        failures: 1,
                    },
                    now_ms.saturating_add(self.window_ms),
                ),
            }
        }
    }

    /// After a success: forgets the failures of this (identity, network)
    /// pair only. The identity-wide and network-wide counts stay, so a
    /// legitimate client's successes do not refill an attacker's budget.
    pub fn reset(&self, keys: &Keys) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.remove(&keys.pair);
        }
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.windows.lock().map(|w| w.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(id: &str, ip: &str) -> Keys {
        Keys::new("client", id, ip)
    }

    #[test]
    fn a_pair_locks_after_n_failures_and_recovers_after_the_window() {
        let l = FailureLockout::new(3, 60_000, 100);
        for t in 0..3 {
            assert_eq!(l.locked(&keys("a", "10.0.0.1"), t * 1000), None);
            l.record_failure(&keys("a", "10.0.0.1"), t * 1000);
        }
        assert_eq!(l.locked(&keys("a", "10.0.0.1"), 3000), Some(57));
        // The same identity from another address, and another identity
        // from the same address, are not locked.
        assert_eq!(l.locked(&keys("a", "10.0.0.2"), 3000), None);
        assert_eq!(l.locked(&keys("b", "10.0.0.1"), 3000), None);
        assert_eq!(l.locked(&keys("a", "10.0.0.1"), 60_000), None);
    }

    #[test]
    fn pair_keys_tell_identities_kinds_and_networks_apart() {
        assert_eq!(keys("a", "10.0.0.1").pair, keys("a", "10.0.0.1").pair);
        assert_eq!(
            keys("a", "10.0.0.1").pair,
            keys("a", "::ffff:10.0.0.1").pair
        );
        assert_ne!(keys("a", "10.0.0.1").pair, keys("a", "10.0.0.2").pair);
        assert_ne!(keys("a", "10.0.0.1").pair, keys("b", "10.0.0.1").pair);
        assert_ne!(
            Keys::new("user", "a", "10.0.0.1").pair,
            Keys::new("client", "a", "10.0.0.1").pair
        );
        // The identity is hashed with its kind: no separator games.
        assert_ne!(
            Keys::new("client", "a\0b", "10.0.0.1").identity,
            Keys::new("client\0a", "b", "10.0.0.1").identity
        );
        assert_eq!(
            keys("a", "10.0.0.1").identity,
            keys("a", "10.0.0.9").identity
        );
        assert_eq!(keys("a", "garbage").network, Key::Network(None));
    }

    #[test]
    fn ipv6_clients_count_per_slash_64() {
        let same = keys("a", "2001:db8:1:2::1");
        assert_eq!(
            same.pair,
            keys("a", "2001:db8:1:2:ffff:ffff:ffff:ffff").pair
        );
        assert_eq!(same.pair, keys("a", "[2001:db8:1:2::99]:443").pair);
        assert_ne!(same.pair, keys("a", "2001:db8:1:3::1").pair);
        let l = FailureLockout::new(2, 60_000, 100);
        // Rotating addresses inside one /64 does not escape the pair count.
        l.record_failure(&keys("a", "2001:db8:1:2::1"), 0);
        l.record_failure(&keys("a", "2001:db8:1:2::2"), 0);
        assert!(l.locked(&keys("a", "2001:db8:1:2::3"), 0).is_some());
        assert_eq!(l.locked(&keys("a", "2001:db8:1:3::1"), 0), None);
    }

    #[test]
    fn the_identity_ceiling_locks_after_enough_networks() {
        let l = FailureLockout::new(2, 60_000, 1000);
        let attacker = |n: u32| format!("192.0.2.{n}");
        // Each network stops at its pair limit: nine networks do not lock
        // the identity for a tenth.
        for n in 0..9 {
            for _ in 0..5 {
                let k = keys("victim", &attacker(n));
                if l.locked(&k, 0).is_none() {
                    l.record_failure(&k, 0);
                }
            }
            assert!(l.locked(&keys("victim", &attacker(n)), 0).is_some());
        }
        assert_eq!(l.locked(&keys("victim", "10.9.9.9"), 0), None);
        // The tenth network reaches the ceiling (2 × 10 = 20 failures).
        l.record_failure(&keys("victim", &attacker(9)), 0);
        l.record_failure(&keys("victim", &attacker(9)), 0);
        assert!(l.locked(&keys("victim", "10.9.9.9"), 0).is_some());
        assert_eq!(l.locked(&keys("other", "10.9.9.9"), 0), None);
    }

    #[test]
    fn the_network_ceiling_stops_spraying_identities() {
        let l = FailureLockout::new(2, 60_000, 1000);
        for i in 0..19 {
            l.record_failure(&keys(&format!("id{i}"), "198.51.100.7"), 0);
        }
        assert_eq!(l.locked(&keys("fresh", "198.51.100.7"), 0), None);
        l.record_failure(&keys("id19", "198.51.100.7"), 0);
        assert!(l.locked(&keys("fresh", "198.51.100.7"), 0).is_some());
        assert_eq!(l.locked(&keys("fresh", "198.51.100.8"), 0), None);
    }

    #[test]
    fn a_success_resets_only_its_pair() {
        let l = FailureLockout::new(1, 60_000, 100);
        l.record_failure(&keys("a", "10.0.0.1"), 0);
        assert!(l.locked(&keys("a", "10.0.0.1"), 0).is_some());
        l.reset(&keys("a", "10.0.0.1"));
        assert_eq!(l.locked(&keys("a", "10.0.0.1"), 0), None);
        // The identity's count (1 of 10) is still there.
        for n in 2..11 {
            l.record_failure(&keys("a", &format!("10.0.0.{n}")), 0);
        }
        assert!(l.locked(&keys("a", "10.0.0.1"), 0).is_some());
    }

    #[test]
    fn memory_stays_bounded() {
        let l = FailureLockout::new(3, 60_000, 50);
        for i in 0..1000 {
            let id = "x".repeat(i % 7) + &i.to_string();
            l.record_failure(&keys(&id, &format!("10.0.{}.{}", i / 256, i % 256)), 0);
        }
        assert!(l.tracked() <= 50, "{}", l.tracked());
    }

    #[test]
    fn zero_disables_the_lockout() {
        let l = FailureLockout::new(0, 60_000, 100);
        for _ in 0..10 {
            l.record_failure(&keys("k", "10.0.0.1"), 0);
        }
        assert_eq!(l.locked(&keys("k", "10.0.0.1"), 0), None);
        assert_eq!(l.tracked(), 0);
    }
}
