//! `rate-limit`: GCRA (the generic cell rate algorithm, a leaky bucket that
//! stores one timestamp per key) per provider and per client address, in
//! bounded memory, per node. "Now" is the request's `received_at_unix_ms`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};

use ipnet::Ipv6Net;
use scimgate_abi::sdk::{CreateContext, Policy};
use scimgate_abi::{Caller, ConfigIssue, ErrorStyle, PluginError, PolicyDecision, Request};
use serde::Deserialize;

use crate::ips::parse_client_ip;

/// `policies/rate-limit`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained rate per provider, `"N/s"`, `"N/m"`, `"N/h"`, `"N/d"` or
    /// N per a duration of `scimgate_abi::units` (`"100/15m"`).
    #[serde(default)]
    #[schemars(pattern(RATE_PATTERN))]
    pub per_provider: Option<String>,
    /// Sustained rate per client address.
    #[serde(default)]
    #[schemars(pattern(RATE_PATTERN))]
    pub per_ip: Option<String>,
    /// Requests allowed back to back before the rate applies, for both
    /// keys. Default: N of the rate (`"20/m"` allows 20 at once).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Burst of the per-provider limit (overrides `burst`).
    #[serde(default)]
    pub per_provider_burst: Option<u32>,
    /// Burst of the per-address limit (overrides `burst`).
    #[serde(default)]
    pub per_ip_burst: Option<u32>,
    /// IPv6 clients are counted per prefix of this length (default 128:
    /// per address; 64 counts a whole customer network as one client).
    #[serde(default)]
    pub ipv6_prefix: Option<u8>,
    /// Most keys tracked per limit (default 100 000). When full, keys whose
    /// limit has fully recovered are dropped first, then the oldest.
    #[serde(default)]
    pub max_keys: Option<usize>,
}

/// What an editor may match a rate against: N per a unit or a duration.
const RATE_PATTERN: &str = r"^\s*[0-9]+\s*/\s*([0-9]*\s*(ms|s|m|h|d)\s*)+$";

const DEFAULT_MAX_KEYS: usize = 100_000;
const MAX_BURST: u32 = 1_000_000;

pub struct RateLimit {
    per_ip: Option<Limit<IpAddr>>,
    per_provider: Option<Limit<String>>,
    ipv6_prefix: u8,
}

/// One limit: its rate and the keys it tracks.
struct Limit<K> {
    gcra: Gcra,
    /// `per_ip 20/s, burst 10`, for reasons.
    label: String,
    keys: KeyedState<K>,
}

impl RateLimit {
    pub fn build(config: RateLimitConfig, _ctx: &CreateContext) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if config.per_provider.is_none() && config.per_ip.is_none() {
            issues.push(ConfigIssue::new(
                "",
                "set `per_provider`, `per_ip` or both, e.g. per_ip = \"20/s\"",
            ));
        }
        let mut burst_of = |key: &str, value: Option<u32>| match value {
            Some(b) if b == 0 || b > MAX_BURST => {
                issues.push(ConfigIssue::new(
                    key,
                    format!("burst must be between 1 and {MAX_BURST}"),
                ));
                None
            }
            other => other,
        };
        let burst = burst_of("burst", config.burst);
        let provider_burst = burst_of("per_provider_burst", config.per_provider_burst).or(burst);
        let ip_burst = burst_of("per_ip_burst", config.per_ip_burst).or(burst);
        let max_keys = config.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if max_keys == 0 || max_keys > 100_000_000 {
            issues.push(ConfigIssue::new(
                "max_keys",
                "max_keys must be between 1 and 100000000",
            ));
        }
        let ipv6_prefix = config.ipv6_prefix.unwrap_or(128);
        if ipv6_prefix > 128 {
            issues.push(ConfigIssue::new(
                "ipv6_prefix",
                "an IPv6 prefix is at most 128",
            ));
        }
        let mut limit = |key: &str, rate: &Option<String>, burst: Option<u32>| {
            let text = rate.as_deref()?;
            match Gcra::parse(text, burst) {
                Ok(gcra) => Some((gcra, format!("{key} {}, burst {}", text.trim(), gcra.burst))),
                Err(message) => {
                    issues.push(ConfigIssue::new(key, message));
                    None
                }
            }
        };
        let per_provider = limit("per_provider", &config.per_provider, provider_burst);
        let per_ip = limit("per_ip", &config.per_ip, ip_burst);
        if !issues.is_empty() {
            return Err(issues);
        }
        let keys = max_keys.max(1);
        Ok(RateLimit {
            per_ip: per_ip.map(|(gcra, label)| Limit {
                gcra,
                label,
                keys: KeyedState::new(keys),
            }),
            per_provider: per_provider.map(|(gcra, label)| Limit {
                gcra,
                label,
                keys: KeyedState::new(keys),
            }),
            ipv6_prefix,
        })
    }

    /// How many keys each limit tracks now (per address, per provider).
    pub fn tracked_keys(&self) -> (usize, usize) {
        (
            self.per_ip.as_ref().map_or(0, |l| l.keys.len()),
            self.per_provider.as_ref().map_or(0, |l| l.keys.len()),
        )
    }

    fn ip_key(&self, req: &Request) -> IpAddr {
        // The host always sends an address; anything else shares one bucket.
        match parse_client_ip(&req.client_ip) {
            Some(IpAddr::V6(v6)) if self.ipv6_prefix < 128 => Ipv6Net::new(v6, self.ipv6_prefix)
                .map(|net| IpAddr::V6(net.network()))
                .unwrap_or(IpAddr::V6(v6)),
            Some(ip) => ip,
            None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

impl Policy for RateLimit {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
        let now_ns = req.received_at_unix_ms.saturating_mul(1_000_000);
        let provider_id = caller
            .provider()
            .map(|p| p.id.as_str())
            .or_else(|| caller.principal().map(|p| p.provider_id.as_str()));
        let ip = self.ip_key(req);
        // Both limits are decided before either is charged, so a request
        // refused by one does not use up the other.
        let verdict = match (&self.per_ip, &self.per_provider, provider_id) {
            (Some(ip_limit), Some(p_limit), Some(id)) => {
                ip_limit.keys.with(&ip, now_ns, |ip_now, ip_tat| {
                    match ip_limit.gcra.step(ip_tat, ip_now) {
                        Err(wait) => (Err((wait, Key::Ip)), None),
                        Ok(ip_next) => {
                            let verdict = p_limit.keys.with(id, now_ns, |now, tat| {
                                charge(&p_limit.gcra, tat, now, Key::Provider)
                            });
                            let store = verdict.is_ok().then_some(ip_next);
                            (verdict, store)
                        }
                    }
                })
            }
            (Some(ip_limit), _, _) => ip_limit.keys.with(&ip, now_ns, |now, tat| {
                charge(&ip_limit.gcra, tat, now, Key::Ip)
            }),
            (None, Some(p_limit), Some(id)) => p_limit.keys.with(id, now_ns, |now, tat| {
                charge(&p_limit.gcra, tat, now, Key::Provider)
            }),
            (None, _, _) => Ok(()),
        };
        match verdict {
            Ok(()) => PolicyDecision::Allow,
            Err((wait_ns, key)) => {
                let retry_after = ((wait_ns.max(1) + 999_999_999) / 1_000_000_000).max(1);
                let (who, label) = match key {
                    Key::Ip => (
                        format!("client address {ip}"),
                        self.per_ip.as_ref().map_or("", |l| l.label.as_str()),
                    ),
                    Key::Provider => (
                        format!("provider `{}`", provider_id.unwrap_or("")),
                        self.per_provider.as_ref().map_or("", |l| l.label.as_str()),
                    ),
                };
                let mut err = PluginError::new(
                    429,
                    format!("rate limit exceeded for {who} ({label}); retry after {retry_after} s"),
                )
                .with_header("Retry-After", &retry_after.to_string());
                if req.error_style == ErrorStyle::OAuth {
                    err = err.with_code("too_many_requests");
                }
                PolicyDecision::Deny(err)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Key {
    Ip,
    Provider,
}

/// One limit on its own: the verdict and, when allowed, the TAT to store.
fn charge(
    gcra: &Gcra,
    tat: Option<i64>,
    now: i64,
    key: Key,
) -> (Result<(), (i64, Key)>, Option<i64>) {
    match gcra.step(tat, now) {
        Ok(next) => (Ok(()), Some(next)),
        Err(wait) => (Err((wait, key)), None),
    }
}

/// GCRA with emission interval `interval_ns` (period / N) and a tolerance
/// of `(burst - 1)` intervals.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    interval_ns: i64,
    tolerance_ns: i64,
    burst: u32,
}

impl Gcra {
    /// `"50/s"`, `"100/m"`, `"1000/h"`, `"10000/d"`, or N per a duration of
    /// the shared grammar (`"100/15m"`, `"5/1h30m"`).
    fn parse(text: &str, burst: Option<u32>) -> Result<Gcra, String> {
        let bad = || {
            format!(
                "invalid rate `{text}`: write N/s, N/m, N/h, N/d or N per a duration, e.g. \"50/s\" or \"100/15m\""
            )
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > 1_000_000_000 {
            return Err(format!(
                "invalid rate `{text}`: N must be between 1 and 1000000000"
            ));
        }
        // A bare unit is one of it (`s` = `1s`); the period is a duration of
        // the one grammar (`scimgate_abi::units`).
        let unit = unit.trim();
        let period = if unit.starts_with(|c: char| c.is_ascii_digit()) {
            scimgate_abi::units::parse_duration(unit)
        } else {
            scimgate_abi::units::parse_duration(&format!("1{unit}"))
        }
        .map_err(|_| bad())?;
        let period_ns = match i64::try_from(period.as_nanos()) {
            Ok(ns) if ns > 0 => ns,
            _ => return Err(bad()),
        };
        let interval_ns = (period_ns / i64::from(count)).max(1);
        let burst = burst.unwrap_or(count.min(MAX_BURST));
        Ok(Gcra {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(i64::from(burst) - 1),
            burst,
        })
    }

    /// With the key's theoretical arrival time `tat` (None: untracked),
    /// either the new TAT to store (allowed) or how long to wait (refused).
    fn step(&self, tat: Option<i64>, now: i64) -> Result<i64, i64> {
        let tat = tat.map_or(now, |t| t.max(now));
        let allowed_at = tat.saturating_sub(self.tolerance_ns);
        if now < allowed_at {
            Err(allowed_at - now)
        } else {
            Ok(tat.saturating_add(self.interval_ns))
        }
    }
}

const SHARDS: usize = 16;

/// Keys → theoretical arrival time (ns), in mutex-guarded shards with a cap
/// on the total. A key whose TAT is not after "now" is equivalent to an
/// untracked key, so dropping it loses nothing; when a shard is full those
/// go first, then the eighth of the shard with the oldest TATs (the keys
/// closest to recovery): new clients are never refused for lack of room,
/// at the price of forgiving a few old ones under address spraying.
struct KeyedState<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    cap_per_shard: usize,
    hasher: RandomState,
}

struct Shard<K> {
    tats: HashMap<K, i64>,
    /// Latest "now" seen: time never runs backwards for a shard.
    last_now: i64,
}

impl<K: Hash + Eq> KeyedState<K> {
    fn new(max_keys: usize) -> Self {
        let shards = SHARDS.min(max_keys).max(1);
        KeyedState {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        tats: HashMap::new(),
                        last_now: i64::MIN,
                    })
                })
                .collect(),
            cap_per_shard: (max_keys / shards).max(1),
            hasher: RandomState::new(),
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).tats.len())
            .sum()
    }

    /// Runs `f(now, tat)` under the key's shard lock; `f` returns its result
    /// and, to charge the key, the TAT to store.
    fn with<Q, R>(
        &self,
        key: &Q,
        now: i64,
        f: impl FnOnce(i64, Option<i64>) -> (R, Option<i64>),
    ) -> R
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = now.max(shard.last_now);
        shard.last_now = now;
        let current = shard.tats.get(key).copied().filter(|tat| *tat > now);
        let (result, store) = f(now, current);
        if let Some(tat) = store {
            if let Some(slot) = shard.tats.get_mut(key) {
                *slot = tat;
            } else {
                if shard.tats.len() >= self.cap_per_shard {
                    shard.make_room(now, self.cap_per_shard);
                }
                shard.tats.insert(key.to_owned(), tat);
            }
        }
        result
    }
}

impl<K: Hash + Eq> Shard<K> {
    fn make_room(&mut self, now: i64, cap: usize) {
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.len() < cap {
            return;
        }
        // Evict the oldest eighth (at least one) in one pass, so that the
        // cost of a full shard is amortised over the next inserts.
        let evict = (cap / 8).max(1);
        let mut tats: Vec<i64> = self.tats.values().copied().collect();
        let (_, threshold, _) = tats.select_nth_unstable(evict - 1);
        let threshold = *threshold;
        let mut left = evict;
        self.tats.retain(|_, tat| {
            if left > 0 && *tat <= threshold {
                left -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use serde_json::json;

    fn policy(config: serde_json::Value) -> RateLimit {
        let config: RateLimitConfig = scimgate_abi::sdk::deserialize_config(&config).unwrap();
        RateLimit::build(config, &ctx(json!({}))).unwrap()
    }

    fn at(ip: &str, ms: i64) -> Request {
        let mut req = with_ip(scim("GET", "/Users"), ip);
        req.received_at_unix_ms = ms;
        req
    }

    #[test]
    fn burst_then_429_with_retry_after_then_recovery() {
        let policy = policy(json!({"per_ip": "2/s", "burst": 3}));
        let anon = scimgate_abi::Caller::ANONYMOUS;
        for _ in 0..3 {
            assert_allow(policy.check(&at("192.0.2.1", NOW_MS), anon));
        }
        let err = deny(policy.check(&at("192.0.2.1", NOW_MS), anon));
        assert_eq!(err.status, 429);
        assert_eq!(err.code.as_str(), "");
        // Next slot opens 500 ms later: rounded up to 1 s.
        assert_eq!(header_of(&err, "retry-after"), Some("1"));
        assert_eq!(
            err.message.as_str(),
            "rate limit exceeded for client address 192.0.2.1 (per_ip 2/s, burst 3); retry after 1 s"
        );
        // Another address is not affected.
        assert_allow(policy.check(&at("192.0.2.2", NOW_MS), anon));
        // 499 ms later: still refused; 500 ms later: one more.
        deny(policy.check(&at("192.0.2.1", NOW_MS + 499), anon));
        assert_allow(policy.check(&at("192.0.2.1", NOW_MS + 500), anon));
        deny(policy.check(&at("192.0.2.1", NOW_MS + 500), anon));
        // After 1.5 s the whole burst is back.
        for _ in 0..3 {
            assert_allow(policy.check(&at("192.0.2.1", NOW_MS + 2000), anon));
        }
        deny(policy.check(&at("192.0.2.1", NOW_MS + 2000), anon));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let policy = policy(json!({"per_ip": "1/m", "burst": 1}));
        let anon = scimgate_abi::Caller::ANONYMOUS;
        assert_allow(policy.check(&at("192.0.2.1", NOW_MS), anon));
        let err = deny(policy.check(&at("192.0.2.1", NOW_MS + 1), anon));
        assert_eq!(header_of(&err, "retry-after"), Some("60"));
        let err = deny(policy.check(&at("192.0.2.1", NOW_MS + 59_001), anon));
        assert_eq!(header_of(&err, "retry-after"), Some("1"));
        assert_allow(policy.check(&at("192.0.2.1", NOW_MS + 60_000), anon));
    }

    #[test]
    fn default_burst_is_the_rate_count() {
        let policy = policy(json!({"per_ip": "5/h"}));
        let anon = scimgate_abi::Caller::ANONYMOUS;
        for _ in 0..5 {
            assert_allow(policy.check(&at("192.0.2.1", NOW_MS), anon));
        }
        let err = deny(policy.check(&at("192.0.2.1", NOW_MS), anon));
        assert_eq!(header_of(&err, "retry-after"), Some("720"));
    }

    #[test]
    fn per_provider_limit_spans_addresses() {
        let policy = policy(json!({"per_provider": "1/s", "burst": 2, "per_ip": "100/s"}));
        let p = provider("oim-prod");
        let who = principal("oim-prod", &[]);
        assert_allow(policy.check(&at("192.0.2.1", NOW_MS), caller(&who, &p)));
        assert_allow(policy.check(&at("192.0.2.2", NOW_MS), caller(&who, &p)));
        let err = deny(policy.check(&at("192.0.2.3", NOW_MS), caller(&who, &p)));
        assert!(
            err.message
                .contains("provider `oim-prod` (per_provider 1/s, burst 2)"),
            "{}",
            err.message
        );
        // The refusal did not charge 192.0.2.3's address limit.
        let mut other = provider("other");
        other.id = "other".into();
        let who2 = principal("other", &[]);
        assert_allow(policy.check(&at("192.0.2.3", NOW_MS), caller(&who2, &other)));
        assert_allow(policy.check(&at("192.0.2.1", NOW_MS + 1000), caller(&who, &p)));
        assert_eq!(policy.tracked_keys(), (3, 2));
    }

    #[test]
    fn an_address_refusal_does_not_charge_the_provider() {
        let policy = policy(
            json!({"per_provider": "1/s", "per_provider_burst": 2, "per_ip": "1/s", "per_ip_burst": 1}),
        );
        let p = provider("oim-prod");
        let who = principal("oim-prod", &[]);
        assert_allow(policy.check(&at("192.0.2.1", NOW_MS), caller(&who, &p)));
        for _ in 0..5 {
            let err = deny(policy.check(&at("192.0.2.1", NOW_MS), caller(&who, &p)));
            assert!(err.message.contains("client address"), "{}", err.message);
        }
        // The provider still has one of its two back-to-back requests.
        assert_allow(policy.check(&at("192.0.2.2", NOW_MS), caller(&who, &p)));
    }

    #[test]
    fn token_route_code_is_too_many_requests() {
        let policy = policy(json!({"per_ip": "1/s", "burst": 1}));
        let mut req = token_request();
        req.client_ip = "192.0.2.9".into();
        assert_allow(policy.check(&req, scimgate_abi::Caller::ANONYMOUS));
        let err = deny(policy.check(&req, scimgate_abi::Caller::ANONYMOUS));
        assert_eq!((err.status, err.code.as_str()), (429, "too_many_requests"));
        assert_eq!(header_of(&err, "retry-after"), Some("1"));
    }

    #[test]
    fn mapped_addresses_share_a_bucket_and_ipv6_prefixes_aggregate() {
        let policy = policy(json!({"per_ip": "1/s", "burst": 1, "ipv6_prefix": 64}));
        let anon = scimgate_abi::Caller::ANONYMOUS;
        assert_allow(policy.check(&at("192.0.2.1", NOW_MS), anon));
        deny(policy.check(&at("::ffff:192.0.2.1", NOW_MS), anon));
        assert_allow(policy.check(&at("2001:db8:1:2::1", NOW_MS), anon));
        deny(policy.check(&at("2001:db8:1:2::ffff", NOW_MS), anon));
        assert_allow(policy.check(&at("2001:db8:1:3::1", NOW_MS), anon));
    }

    #[test]
    fn backwards_clock_jumps_are_clamped() {
        let policy = policy(json!({"per_ip": "1/s", "burst": 1}));
        let anon = scimgate_abi::Caller::ANONYMOUS;
        assert_allow(policy.check(&at("192.0.2.1", NOW_MS + 10_000), anon));
        // A request stamped earlier is judged at the latest time seen.
        let err = deny(policy.check(&at("192.0.2.1", NOW_MS), anon));
        assert_eq!(header_of(&err, "retry-after"), Some("1"));
    }

    #[test]
    fn memory_stays_bounded_under_200k_distinct_addresses() {
        let policy = policy(json!({"per_ip": "10/s", "burst": 5}));
        let anon = scimgate_abi::Caller::ANONYMOUS;
        for i in 0u32..200_000 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            // All at the same instant: nothing has recovered, so the cap
            // is what bounds the map.
            assert_allow(policy.check(&at(&ip, NOW_MS), anon));
            if i % 10_000 == 0 {
                assert!(policy.tracked_keys().0 <= DEFAULT_MAX_KEYS);
            }
        }
        let (tracked, _) = policy.tracked_keys();
        assert!(tracked <= DEFAULT_MAX_KEYS, "{tracked} keys tracked");
        assert!(
            tracked >= DEFAULT_MAX_KEYS * 3 / 4,
            "{tracked} keys tracked: eviction too eager"
        );
    }

    #[test]
    fn a_full_shard_drops_recovered_keys_first_then_the_oldest() {
        let mut shard = Shard {
            tats: HashMap::from([("a", 100), ("b", 200), ("c", 300), ("d", 400)]),
            last_now: 150,
        };
        // `a` recovered at 100: dropping it is enough.
        shard.make_room(150, 4);
        let mut left: Vec<&str> = shard.tats.keys().copied().collect();
        left.sort();
        assert_eq!(left, ["b", "c", "d"]);
        // Nothing recovered: the oldest TAT goes.
        shard.make_room(150, 3);
        let mut left: Vec<&str> = shard.tats.keys().copied().collect();
        left.sort();
        assert_eq!(left, ["c", "d"]);
    }

    #[test]
    fn keys_that_recovered_exactly_now_are_dropped_before_any_eviction() {
        let mut shard = Shard {
            tats: HashMap::from([("a", 150), ("b", 150), ("c", 300), ("d", 400)]),
            last_now: 150,
        };
        shard.make_room(150, 4);
        let mut left: Vec<&str> = shard.tats.keys().copied().collect();
        left.sort();
        assert_eq!(left, ["c", "d"]);
    }

    #[test]
    fn a_full_shard_evicts_an_eighth_of_its_cap() {
        let mut shard = Shard {
            tats: (0..16).map(|i| (i, 1_000 + i64::from(i))).collect(),
            last_now: 0,
        };
        shard.make_room(0, 16);
        let mut left: Vec<i32> = shard.tats.keys().copied().collect();
        left.sort();
        assert_eq!(left, (2..16).collect::<Vec<i32>>());
        let mut shard = Shard {
            tats: (0..24).map(|i| (i, 1_000 + i64::from(i))).collect(),
            last_now: 0,
        };
        shard.make_room(0, 24);
        assert_eq!(shard.tats.len(), 21);
        assert!(shard.tats.keys().all(|k| *k >= 3));
    }

    #[test]
    fn a_zero_period_is_refused() {
        for rate in ["5/0s", "5/0ms", "1/0m"] {
            let err = Gcra::parse(rate, None).unwrap_err();
            assert!(err.starts_with("invalid rate"), "{rate}: {err}");
        }
        assert_eq!(issues_of(json!({"per_ip": "5/0s"})), ["per_ip"]);
    }

    #[test]
    fn units_set_the_emission_interval() {
        const MS: i64 = 1_000_000;
        for (rate, interval_ns, burst) in [
            ("10/s", 100 * MS, 10),
            ("1/ms", MS, 1),
            ("60/m", 1_000 * MS, 60),
            ("3600/h", 1_000 * MS, 3600),
            ("86400/d", 1_000 * MS, 86_400),
            ("100/15m", 9_000 * MS, 100),
            ("5/1h30m", 1_080_000 * MS, 5),
        ] {
            let g = Gcra::parse(rate, None).unwrap();
            assert_eq!(g.interval_ns, interval_ns, "{rate}");
            assert_eq!(g.burst, burst, "{rate}");
            assert_eq!(
                g.tolerance_ns,
                interval_ns * (i64::from(burst) - 1),
                "{rate}"
            );
        }
        // Finer than a nanosecond: one nanosecond.
        assert_eq!(Gcra::parse("1000000000/ms", None).unwrap().interval_ns, 1);
        assert_eq!(Gcra::parse("2/s", Some(7)).unwrap().burst, 7);
    }

    #[test]
    fn ipv6_keys_are_cut_to_the_prefix_and_ipv4_keys_are_whole() {
        let key = |prefix: u8, ip: &str| {
            let policy = policy(json!({"per_ip": "1/s", "ipv6_prefix": prefix}));
            policy
                .ip_key(&with_ip(scim("GET", "/Users"), ip))
                .to_string()
        };
        assert_eq!(key(64, "2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(key(48, "2001:db8:1:2:3:4:5:6"), "2001:db8:1::");
        assert_eq!(key(0, "2001:db8:1:2:3:4:5:6"), "::");
        assert_eq!(key(128, "2001:db8:1:2:3:4:5:6"), "2001:db8:1:2:3:4:5:6");
        assert_eq!(key(64, "192.0.2.1"), "192.0.2.1");
        assert_eq!(key(64, "::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key(64, "[2001:db8::1]:443"), "2001:db8::");
        assert_eq!(key(64, "garbage"), "::");
    }

    #[test]
    fn a_cap_of_one_still_works() {
        let policy = policy(json!({"per_ip": "1/h", "burst": 1, "max_keys": 1}));
        let anon = scimgate_abi::Caller::ANONYMOUS;
        assert_allow(policy.check(&at("192.0.2.1", NOW_MS), anon));
        deny(policy.check(&at("192.0.2.1", NOW_MS), anon));
        assert_allow(policy.check(&at("192.0.2.2", NOW_MS), anon));
        assert_eq!(policy.tracked_keys().0, 1);
    }

    #[test]
    fn config_issues_are_located() {
        let config: RateLimitConfig = scimgate_abi::sdk::deserialize_config(&json!({
            "per_provider": "50/x", "per_ip": "0/s", "burst": 0, "max_keys": 0
        }))
        .unwrap();
        let issues = RateLimit::build(config, &ctx(json!({}))).err().unwrap();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["burst", "max_keys", "per_provider", "per_ip"]);
        let config: RateLimitConfig = scimgate_abi::sdk::deserialize_config(&json!({})).unwrap();
        let issues = RateLimit::build(config, &ctx(json!({}))).err().unwrap();
        assert_eq!(issues[0].path.as_str(), "");
        assert!(Gcra::parse("50/s", None).is_ok());
        assert!(Gcra::parse(" 100 / m ", Some(3)).is_ok());
        assert!(Gcra::parse("50", None).is_err());
    }

    fn issues_of(config: serde_json::Value) -> Vec<String> {
        let config: RateLimitConfig = scimgate_abi::sdk::deserialize_config(&config).unwrap();
        match RateLimit::build(config, &ctx(json!({}))) {
            Ok(_) => Vec::new(),
            Err(issues) => issues.iter().map(|i| i.path.to_string()).collect(),
        }
    }

    #[test]
    fn config_bounds_are_inclusive() {
        assert!(issues_of(json!({"per_ip": "1/s", "burst": 1_000_000})).is_empty());
        assert_eq!(
            issues_of(json!({"per_ip": "1/s", "burst": 1_000_001})),
            ["burst"]
        );
        assert_eq!(
            issues_of(json!({"per_ip": "1/s", "per_ip_burst": 1_000_001, "per_provider_burst": 0})),
            ["per_provider_burst", "per_ip_burst"]
        );
        assert!(issues_of(json!({"per_ip": "1/s", "max_keys": 100_000_000})).is_empty());
        assert!(issues_of(json!({"per_ip": "1/s", "max_keys": 1})).is_empty());
        assert_eq!(
            issues_of(json!({"per_ip": "1/s", "max_keys": 100_000_001})),
            ["max_keys"]
        );
        assert!(issues_of(json!({"per_ip": "1/s", "ipv6_prefix": 128})).is_empty());
        assert!(issues_of(json!({"per_ip": "1/s", "ipv6_prefix": 0})).is_empty());
        assert_eq!(
            issues_of(json!({"per_ip": "1/s", "ipv6_prefix": 129})),
            ["ipv6_prefix"]
        );
        assert!(issues_of(json!({"per_ip": "1000000000/d"})).is_empty());
        assert_eq!(issues_of(json!({"per_ip": "1000000001/d"})), ["per_ip"]);
        assert!(Gcra::parse("1000000000/s", None).is_ok());
        let err = Gcra::parse("1000000001/s", None).unwrap_err();
        assert!(err.contains("between 1 and 1000000000"), "{err}");
        assert!(Gcra::parse("0/s", None).is_err());
        assert!(issues_of(json!({"per_provider": "1/s"})).is_empty());
    }
}
