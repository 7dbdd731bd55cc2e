//! `allowed-referrers`: the `Referer` and `Origin` headers must name one of
//! the provider's `allowed_referrers` (the vendor form's "Referrals
//! allowed"). Only the origin is compared: scheme, host and port.

use scimgate_abi::sdk::{CreateContext, Policy};
use scimgate_abi::{Caller, ConfigIssue, PolicyDecision, Request};
use serde::Deserialize;

use scimgate_abi::referrer::ReferrerList;

use crate::common::{provider_of, refuse_client, shown, ProviderCache};

/// `policies/allowed-referrers`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowedReferrersConfig {
    /// Whether a request with neither `Referer` nor `Origin` passes a
    /// provider that restricts referrers. Default `true`: server-to-server
    /// clients (an IGA sync service) send neither.
    #[serde(default = "yes")]
    pub allow_missing: bool,
}

fn yes() -> bool {
    true
}

pub struct AllowedReferrers {
    allow_missing: bool,
    providers: ProviderCache<ReferrerList>,
}

impl AllowedReferrers {
    pub fn build(
        config: AllowedReferrersConfig,
        ctx: &CreateContext,
    ) -> Result<Self, Vec<ConfigIssue>> {
        Ok(AllowedReferrers {
            allow_missing: config.allow_missing,
            providers: ProviderCache::from_providers(
                &ctx.providers,
                "allowed_referrers",
                ReferrerList::parse,
            ),
        })
    }
}

impl Policy for AllowedReferrers {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
        let provider = match provider_of(caller) {
            Ok(Some(p)) => p,
            Ok(None) => return PolicyDecision::Allow,
            Err(reason) => return refuse_client(req, reason),
        };
        if provider.allowed_referrers.is_empty() {
            return PolicyDecision::Allow;
        }
        let decide = |list: &Result<ReferrerList, String>| {
            let list = match list {
                Ok(list) => list,
                Err(message) => {
                    return refuse_client(
                        req,
                        format!(
                        "provider `{}` has an invalid allowed_referrers list ({message}); refusing",
                        provider.id
                    ),
                    )
                }
            };
            if list.allows_any() {
                return PolicyDecision::Allow;
            }
            let mut seen = false;
            for h in req.headers.iter() {
                let name = h.name.as_str();
                let header = if name.eq_ignore_ascii_case("origin") {
                    "Origin"
                } else if name.eq_ignore_ascii_case("referer") {
                    "Referer"
                } else {
                    continue;
                };
                let value = h.value.as_str().trim();
                if value.is_empty() {
                    continue;
                }
                seen = true;
                if !list.permits(value) {
                    return refuse_client(
                        req,
                        format!(
                            "{header} `{}` is not in the allowed_referrers of provider `{}`",
                            shown(value),
                            provider.id
                        ),
                    );
                }
            }
            if seen || self.allow_missing {
                PolicyDecision::Allow
            } else {
                refuse_client(
                    req,
                    format!(
                        "the request has neither a Referer nor an Origin header and provider `{}` restricts referrers (allow_missing = false)",
                        provider.id
                    ),
                )
            }
        };
        match self
            .providers
            .lookup(&provider.id, &provider.allowed_referrers)
        {
            Some(list) => decide(list),
            None => {
                let raw: Vec<&str> = provider
                    .allowed_referrers
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                decide(&ReferrerList::parse(&raw))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use serde_json::json;

    fn policy(allow_missing: bool) -> AllowedReferrers {
        AllowedReferrers::build(AllowedReferrersConfig { allow_missing }, &ctx(json!({}))).unwrap()
    }

    fn check(policy: &AllowedReferrers, list: &[&str], headers: &[(&str, &str)]) -> PolicyDecision {
        let mut p = provider("portal");
        p.allowed_referrers = strings(list);
        let who = principal("portal", &[]);
        let mut req = scim("GET", "/Users");
        for (name, value) in headers {
            req = with_header(req, name, value);
        }
        policy.check(&req, caller(&who, &p))
    }

    #[test]
    fn empty_list_and_star_allow_any() {
        let p = policy(false);
        assert_allow(check(&p, &[], &[("referer", "https://evil.example.org/")]));
        assert_allow(check(&p, &[], &[]));
        assert_allow(check(&p, &["*"], &[("origin", "https://evil.example.org")]));
    }

    #[test]
    fn exact_origin_with_default_ports_normalised() {
        let p = policy(true);
        let list = ["https://app.example.com"];
        assert_allow(check(
            &p,
            &list,
            &[("referer", "https://app.example.com/some/page?x=1")],
        ));
        assert_allow(check(
            &p,
            &list,
            &[("referer", "https://APP.example.com:443/")],
        ));
        assert_allow(check(&p, &list, &[("origin", "https://app.example.com")]));
        deny(check(&p, &list, &[("origin", "http://app.example.com")]));
        deny(check(
            &p,
            &list,
            &[("origin", "https://app.example.com:8443")],
        ));
        deny(check(
            &p,
            &list,
            &[("origin", "https://app.example.com.evil.org")],
        ));
        let explicit = ["http://app.example.com:80", "https://app.example.com:8443/"];
        assert_allow(check(
            &p,
            &explicit,
            &[("origin", "http://app.example.com")],
        ));
        assert_allow(check(
            &p,
            &explicit,
            &[("origin", "https://app.example.com:8443")],
        ));
        deny(check(
            &p,
            &explicit,
            &[("origin", "https://app.example.com")],
        ));
    }

    #[test]
    fn bare_hosts_match_any_scheme() {
        let p = policy(true);
        let list = ["app.example.com"];
        assert_allow(check(&p, &list, &[("origin", "http://app.example.com")]));
        assert_allow(check(&p, &list, &[("origin", "https://app.example.com")]));
        deny(check(
            &p,
            &list,
            &[("origin", "https://app.example.com:8443")],
        ));
        assert_allow(check(
            &p,
            &["app.example.com:8443"],
            &[("origin", "https://app.example.com:8443")],
        ));
    }

    #[test]
    fn wildcard_matches_subdomains_but_not_the_apex() {
        let p = policy(true);
        let list = ["*.example.com"];
        assert_allow(check(&p, &list, &[("origin", "https://a.example.com")]));
        assert_allow(check(&p, &list, &[("origin", "http://a.b.example.com")]));
        let err = deny(check(&p, &list, &[("origin", "https://example.com")]));
        assert_eq!(
            err.message.as_str(),
            "Origin `https://example.com` is not in the allowed_referrers of provider `portal`"
        );
        deny(check(&p, &list, &[("origin", "https://badexample.com")]));
        let scheme_bound = ["https://*.example.com"];
        assert_allow(check(
            &p,
            &scheme_bound,
            &[("referer", "https://x.example.com/")],
        ));
        deny(check(
            &p,
            &scheme_bound,
            &[("referer", "http://x.example.com/")],
        ));
    }

    #[test]
    fn both_headers_must_match_when_both_are_present() {
        let p = policy(true);
        let list = ["https://app.example.com"];
        assert_allow(check(
            &p,
            &list,
            &[
                ("origin", "https://app.example.com"),
                ("referer", "https://app.example.com/x"),
            ],
        ));
        let err = deny(check(
            &p,
            &list,
            &[
                ("origin", "https://app.example.com"),
                ("referer", "https://evil.example.org/x"),
            ],
        ));
        assert!(
            err.message
                .starts_with("Referer `https://evil.example.org/x`"),
            "{}",
            err.message
        );
        let err = deny(check(
            &p,
            &list,
            &[
                ("origin", "https://evil.example.org"),
                ("referer", "https://app.example.com/x"),
            ],
        ));
        assert!(
            err.message.starts_with("Origin `https://evil.example.org`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn origin_null_and_garbage_do_not_match() {
        let p = policy(true);
        let list = ["https://app.example.com"];
        deny(check(&p, &list, &[("origin", "null")]));
        deny(check(
            &p,
            &list,
            &[("referer", "https://app.example.com:99999/")],
        ));
        deny(check(&p, &list, &[("referer", "javascript:alert(1)")]));
    }

    #[test]
    fn missing_headers_follow_allow_missing() {
        let list = ["https://app.example.com"];
        assert_allow(check(&policy(true), &list, &[]));
        let err = deny(check(&policy(false), &list, &[]));
        assert!(
            err.message.contains("neither a Referer nor an Origin"),
            "{}",
            err.message
        );
        assert_eq!(err.status, 403);
        // Empty header values count as missing.
        deny(check(&policy(false), &list, &[("referer", "")]));
        assert_allow(check(&policy(true), &list, &[("referer", " ")]));
    }

    #[test]
    fn token_route_refusal_is_invalid_client() {
        let p = policy(true);
        let mut record = provider("portal");
        record.allowed_referrers = strings(&["https://app.example.com"]);
        let who = principal("portal", &[]);
        let req = with_header(token_request(), "origin", "https://evil.example.org");
        let err = deny(p.check(&req, caller(&who, &record)));
        assert_eq!((err.status, err.code.as_str()), (401, "invalid_client"));
    }

    #[test]
    fn invalid_entries_fail_closed() {
        let p = policy(true);
        let err = deny(check(
            &p,
            &["https://a*.example.com"],
            &[("origin", "https://ab.example.com")],
        ));
        assert!(
            err.message.contains("invalid allowed_referrers"),
            "{}",
            err.message
        );
        assert!(ReferrerList::parse(&["https://"]).is_err());
        assert!(ReferrerList::parse(&["ht tp://x"]).is_err());
    }

    #[test]
    fn config_defaults_allow_missing_and_rejects_unknown_keys() {
        let config: AllowedReferrersConfig =
            scimgate_abi::sdk::deserialize_config(&json!({})).unwrap();
        assert!(config.allow_missing);
        let issue = scimgate_abi::sdk::deserialize_config::<AllowedReferrersConfig>(
            &json!({"allow_mising": false}),
        )
        .unwrap_err();
        assert!(issue.message.contains("unknown field"), "{}", issue.message);
    }
}
