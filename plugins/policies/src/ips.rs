//! `allowed-ips`: the client address must be in the provider's `allowed_ips`
//! and, when the stage sets one, in the route-wide `allow` list. IPv4-mapped
//! IPv6 addresses (`::ffff:10.1.2.3`) are the IPv4 address they carry, on
//! both sides. The list grammar and matching are [`scimgate_abi::net`]'s,
//! the same the oauth2 authenticators use to refuse disallowed addresses
//! before checking a secret.

use scimgate_abi::net::IpList;
use scimgate_abi::sdk::{CreateContext, Policy};
use scimgate_abi::{Caller, ConfigIssue, PolicyDecision, Request};
use serde::Deserialize;

use crate::common::{provider_of, refuse_client, shown, ProviderCache};

/// `policies/allowed-ips`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowedIpsConfig {
    /// A route-wide list checked on top of the provider's, also before
    /// authentication: addresses, CIDR blocks or `*`. Absent or empty: no
    /// route-wide restriction.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
}

/// The policy: an optional route list plus the providers' lists, parsed
/// once at create time.
pub struct AllowedIps {
    stage: String,
    route: Option<IpList>,
    providers: ProviderCache<IpList>,
}

impl AllowedIps {
    pub fn build(config: AllowedIpsConfig, ctx: &CreateContext) -> Result<Self, Vec<ConfigIssue>> {
        let route = match &config.allow {
            None => None,
            Some(entries) => {
                let mut issues = Vec::new();
                let mut list = IpList::default();
                for (i, entry) in entries.iter().enumerate() {
                    match list.push(entry) {
                        Ok(()) => {}
                        Err(message) => {
                            issues.push(ConfigIssue::new(format!("allow[{i}]"), message))
                        }
                    }
                }
                if !issues.is_empty() {
                    return Err(issues);
                }
                (!list.is_any()).then_some(list)
            }
        };
        let providers = ProviderCache::from_providers(&ctx.providers, "allowed_ips", IpList::parse);
        Ok(AllowedIps {
            stage: ctx.stage.clone(),
            route,
            providers,
        })
    }
}

impl Policy for AllowedIps {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
        let client = parse_client_ip(&req.client_ip);
        if let Some(route) = &self.route {
            match client {
                Some(ip) if route.permits(ip) => {}
                Some(ip) => {
                    return refuse_client(
                        req,
                        format!(
                            "client address {ip} is not in the `allow` list of stage `{}`",
                            self.stage
                        ),
                    )
                }
                None => return unparsable(req),
            }
        }
        let provider = match provider_of(caller) {
            Ok(Some(p)) => p,
            Ok(None) => return PolicyDecision::Allow,
            Err(reason) => return refuse_client(req, reason),
        };
        if provider.allowed_ips.is_empty() {
            return PolicyDecision::Allow;
        }
        let decide = |list: &Result<IpList, String>| match (list, client) {
            (Err(message), _) => refuse_client(
                req,
                format!(
                    "provider `{}` has an invalid allowed_ips list ({message}); refusing",
                    provider.id
                ),
            ),
            (Ok(list), Some(ip)) if list.permits(ip) => PolicyDecision::Allow,
            (Ok(_), Some(ip)) => refuse_client(
                req,
                format!(
                    "client address {ip} is not in the allowed_ips of provider `{}`",
                    provider.id
                ),
            ),
            (Ok(_), None) => unparsable(req),
        };
        match self.providers.lookup(&provider.id, &provider.allowed_ips) {
            Some(list) => decide(list),
            None => {
                let raw: Vec<&str> = provider.allowed_ips.iter().map(|s| s.as_str()).collect();
                decide(&IpList::parse(&raw))
            }
        }
    }
}

fn unparsable(req: &Request) -> PolicyDecision {
    refuse_client(
        req,
        format!(
            "client address `{}` is not an IP address",
            shown(&req.client_ip)
        ),
    )
}

/// The client address as an `IpAddr`, IPv4-mapped addresses unwrapped
/// (the grammar lives in [`scimgate_abi::net`], shared with oauth2).
pub(crate) use scimgate_abi::net::parse_client_ip;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use scimgate_abi::ProviderRecord;
    use serde_json::json;

    fn policy(allow: Option<&[&str]>) -> AllowedIps {
        let config = AllowedIpsConfig {
            allow: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
        };
        AllowedIps::build(config, &ctx(json!({}))).unwrap()
    }

    fn restricted(list: &[&str]) -> ProviderRecord {
        let mut p = provider("oim-prod");
        p.allowed_ips = strings(list);
        p
    }

    fn check(policy: &AllowedIps, list: &[&str], ip: &str) -> PolicyDecision {
        let p = restricted(list);
        let who = principal("oim-prod", &[]);
        policy.check(&with_ip(scim("GET", "/Users"), ip), caller(&who, &p))
    }

    #[test]
    fn empty_list_and_star_allow_anyone() {
        let policy = policy(None);
        assert_allow(check(&policy, &[], "203.0.113.9"));
        assert_allow(check(&policy, &["*"], "203.0.113.9"));
        assert_allow(check(&policy, &["10.0.0.0/8", "*"], "2001:db8::1"));
    }

    #[test]
    fn ipv4_cidrs_and_single_addresses() {
        let policy = policy(None);
        let list = ["10.20.0.0/16", "192.0.2.7"];
        assert_allow(check(&policy, &list, "10.20.255.1"));
        assert_allow(check(&policy, &list, "192.0.2.7"));
        let err = deny(check(&policy, &list, "10.21.0.1"));
        assert_eq!(err.status, 403);
        assert_eq!(err.code.as_str(), "");
        assert_eq!(
            err.message.as_str(),
            "client address 10.21.0.1 is not in the allowed_ips of provider `oim-prod`"
        );
        deny(check(&policy, &list, "192.0.2.8"));
    }

    #[test]
    fn ipv6_cidrs() {
        let policy = policy(None);
        let list = ["2001:db8:abcd::/48", "::1"];
        assert_allow(check(&policy, &list, "2001:db8:abcd:12::5"));
        assert_allow(check(&policy, &list, "::1"));
        assert_allow(check(&policy, &list, "[2001:db8:abcd::1]:443"));
        deny(check(&policy, &list, "2001:db8:abce::1"));
        deny(check(&policy, &list, "127.0.0.1"));
    }

    #[test]
    fn mapped_client_matches_plain_list() {
        let policy = policy(None);
        assert_allow(check(&policy, &["127.0.0.2"], "::ffff:127.0.0.2"));
        assert_allow(check(&policy, &["10.0.0.0/8"], "::ffff:10.9.8.7"));
        let err = deny(check(&policy, &["127.0.0.1"], "::ffff:127.0.0.2"));
        assert!(
            err.message.starts_with("client address 127.0.0.2 is not"),
            "{}",
            err.message
        );
    }

    #[test]
    fn mapped_list_matches_plain_client() {
        let policy = policy(None);
        assert_allow(check(&policy, &["::ffff:127.0.0.2"], "127.0.0.2"));
        assert_allow(check(&policy, &["::ffff:10.0.0.0/104"], "10.200.0.1"));
        deny(check(&policy, &["::ffff:10.0.0.0/104"], "11.0.0.1"));
        assert_allow(check(&policy, &["::ffff:127.0.0.2"], "::ffff:127.0.0.2"));
    }

    #[test]
    fn wide_ipv6_blocks_hold_the_mapped_range() {
        let policy = policy(None);
        assert_allow(check(&policy, &["::/0"], "198.51.100.1"));
        deny(check(&policy, &["2001:db8::/32"], "198.51.100.1"));
    }

    #[test]
    fn host_bits_in_a_cidr_are_ignored() {
        let policy = policy(None);
        assert_allow(check(&policy, &["10.1.2.3/8"], "10.200.0.1"));
    }

    #[test]
    fn invalid_provider_entry_fails_closed() {
        let policy = policy(None);
        let err = deny(check(&policy, &["10.0.0.0/33"], "10.0.0.1"));
        assert!(
            err.message.contains("invalid allowed_ips"),
            "{}",
            err.message
        );
        assert!(err.message.contains("10.0.0.0/33"), "{}", err.message);
    }

    #[test]
    fn unparsable_client_address_is_refused_when_restricted() {
        let policy = policy(None);
        let err = deny(check(&policy, &["10.0.0.0/8"], "not-an-ip"));
        assert!(err.message.contains("`not-an-ip` is not an IP address"));
        assert_allow(check(&policy, &[], "not-an-ip"));
    }

    #[test]
    fn route_list_and_provider_list_must_both_hold() {
        let policy = policy(Some(&["10.0.0.0/8"]));
        assert_allow(check(&policy, &["10.1.0.0/16"], "10.1.2.3"));
        let err = deny(check(&policy, &["10.1.0.0/16"], "10.2.0.1"));
        assert!(
            err.message.contains("allowed_ips of provider"),
            "{}",
            err.message
        );
        let err = deny(check(&policy, &["*"], "192.168.1.1"));
        assert_eq!(
            err.message.as_str(),
            "client address 192.168.1.1 is not in the `allow` list of stage `test`"
        );
    }

    #[test]
    fn route_list_applies_before_authentication() {
        let policy = policy(Some(&["10.0.0.0/8", "::ffff:192.0.2.0/120"]));
        let anon = scimgate_abi::Caller::ANONYMOUS;
        assert_allow(policy.check(&with_ip(scim("GET", "/Users"), "10.0.0.1"), anon));
        assert_allow(policy.check(&with_ip(scim("GET", "/Users"), "192.0.2.200"), anon));
        deny(policy.check(&with_ip(scim("GET", "/Users"), "11.0.0.1"), anon));
        // Without a route list, nothing is checked before authentication.
        let open = super::tests::policy(None);
        assert_allow(open.check(&with_ip(scim("GET", "/Users"), "11.0.0.1"), anon));
    }

    #[test]
    fn token_route_refusal_is_invalid_client() {
        let policy = policy(None);
        let p = restricted(&["10.0.0.0/8"]);
        let who = principal("oim-prod", &[]);
        let err = deny(policy.check(&with_ip(token_request(), "127.0.0.2"), caller(&who, &p)));
        assert_eq!((err.status, err.code.as_str()), (401, "invalid_client"));
        assert!(err.message.contains("127.0.0.2"));
    }

    #[test]
    fn bad_route_entries_are_all_reported_with_their_index() {
        let config = AllowedIpsConfig {
            allow: Some(vec![
                "10.0.0.0/8".into(),
                "10.0.0.0/40".into(),
                "nope".into(),
            ]),
        };
        let issues = AllowedIps::build(config, &ctx(json!({}))).err().unwrap();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["allow[1]", "allow[2]"]);
        assert!(issues[1].message.contains("`nope` is not an IP address"));
    }

    #[test]
    fn provider_lists_are_preparsed_and_reparsed_when_changed() {
        let providers = vec![json!({"id": "oim-prod", "auth": {"allowed_ips": ["10.0.0.0/8"]}})];
        let policy = AllowedIps::build(
            AllowedIpsConfig { allow: None },
            &ctx_with_providers(json!({}), providers),
        )
        .unwrap();
        assert_eq!(policy.providers.len(), 1);
        assert_allow(check(&policy, &["10.0.0.0/8"], "10.0.0.1"));
        // The record changed since create: its own strings win.
        assert_allow(check(&policy, &["192.0.2.0/24"], "192.0.2.1"));
        deny(check(&policy, &["192.0.2.0/24"], "10.0.0.1"));
    }
}
