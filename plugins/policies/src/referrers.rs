//! `allowed-referrers`: the `Referer` and `Origin` headers must name one of
//! the provider's `allowed_referrers` (the vendor form's "Referrals
//! allowed"). Only the origin is compared: scheme, host and port.

use scimgate_abi::sdk::{CreateContext, Policy};
use scimgate_abi::{Caller, ConfigIssue, PolicyDecision, Request};
use serde::Deserialize;

use crate::common::{provider_of, refuse_client, shown, ProviderCache};

/// `policies/allowed-referrers`.
#[derive(Debug, Deserialize)]
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
            if list.any {
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

/// A provider's parsed `allowed_referrers`.
#[derive(Debug, Default)]
pub struct ReferrerList {
    any: bool,
    patterns: Vec<OriginPattern>,
}

/// One entry: `https://app.example.com`, `https://app.example.com:8443`,
/// `app.example.com` (any scheme), `*.example.com`, `https://*.example.com`.
#[derive(Debug)]
struct OriginPattern {
    /// Lower-case; `None` for a bare host entry (any scheme).
    scheme: Option<String>,
    host: HostPattern,
    /// `None`: the default port of the request's scheme.
    port: Option<u16>,
}

#[derive(Debug)]
enum HostPattern {
    /// Lower-case host, no trailing dot.
    Exact(String),
    /// `*.example.com` as `.example.com`: one or more labels before it.
    Subdomains(String),
}

impl ReferrerList {
    pub fn parse(entries: &[&str]) -> Result<ReferrerList, String> {
        let mut list = ReferrerList::default();
        for entry in entries {
            match parse_pattern(entry)? {
                None => list.any = true,
                Some(pattern) => list.patterns.push(pattern),
            }
        }
        Ok(list)
    }

    /// Whether a `Referer` or `Origin` value names an allowed origin.
    fn permits(&self, value: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(origin) = parse_url(value) else {
            return false;
        };
        let Some(scheme) = origin.scheme else {
            return false;
        };
        let port = origin.port.or_else(|| default_port(scheme));
        self.patterns.iter().any(|p| {
            p.scheme
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(scheme))
                && p.port.or_else(|| default_port(scheme)) == port
                && match &p.host {
                    HostPattern::Exact(host) => host.eq_ignore_ascii_case(origin.host),
                    HostPattern::Subdomains(suffix) => {
                        origin.host.len() > suffix.len()
                            && origin
                                .host
                                .is_char_boundary(origin.host.len() - suffix.len())
                            && origin.host[origin.host.len() - suffix.len()..]
                                .eq_ignore_ascii_case(suffix)
                    }
                }
        })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    }
}

fn parse_pattern(entry: &str) -> Result<Option<OriginPattern>, String> {
    let text = entry.trim();
    if text == "*" {
        return Ok(None);
    }
    let bad = |why: &str| format!("allowed referrer `{}` {why}", shown(entry));
    let url = parse_url(text)
        .ok_or_else(|| bad("is not an origin such as https://app.example.com or *.example.com"))?;
    let host = url.host.to_ascii_lowercase();
    let host = match host.strip_prefix("*.") {
        Some(rest) if !rest.is_empty() && !rest.contains('*') => {
            HostPattern::Subdomains(format!(".{rest}"))
        }
        _ if host.contains('*') => {
            return Err(bad("may use `*` only as its first label (`*.example.com`)"))
        }
        _ => HostPattern::Exact(host),
    };
    Ok(Some(OriginPattern {
        scheme: url.scheme.map(str::to_ascii_lowercase),
        host,
        port: url.port,
    }))
}

/// The origin parts of a URL (or of a bare `host[:port][/path]`).
struct Url<'a> {
    scheme: Option<&'a str>,
    /// As written (IPv6 literals keep their brackets), without a trailing dot.
    host: &'a str,
    port: Option<u16>,
}

fn parse_url(text: &str) -> Option<Url<'_>> {
    let split = text
        .find(':')
        .filter(|i| text[i + 1..].starts_with("//"))
        .map(|i| (&text[..i], &text[i + 3..]));
    let (scheme, rest) = match split {
        Some((scheme, rest)) => {
            let mut chars = scheme.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if !valid {
                return None;
            }
            (Some(scheme), rest)
        }
        None => (None, text),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid_host = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*')));
    valid_host.then_some(Url { scheme, host, port })
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
