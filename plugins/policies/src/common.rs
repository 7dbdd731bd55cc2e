//! What every policy of this library shares: how a refusal is rendered per
//! route style, how the caller's provider is found, how a request is
//! classified (read or write, resource type), and a per-provider cache of
//! pre-parsed provider lists.

pub(crate) use scimgate_abi::text::shown;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use scimgate_abi::std_types::RString;
use scimgate_abi::{
    Caller, ConfigIssue, ErrorStyle, PluginError, PolicyDecision, ProviderRecord, Request,
};
use scimgate_scim::{BulkOperation, BulkRequest, ScimError, Target};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Refuses a request for a rule bound to the client or its provider
/// (inactive, outside its validity window, wrong address or referrer).
///
/// SCIM routes: 403 with an empty `scimType` (RFC 7644 §3.12 has none that
/// fits). Token routes: 401 `invalid_client` (RFC 6749 §5.2: the client may
/// not authenticate here); when the client used HTTP Basic, the RFC requires
/// a matching `WWW-Authenticate` challenge, which is added.
pub(crate) fn refuse_client(req: &Request, reason: String) -> PolicyDecision {
    PolicyDecision::Deny(match req.error_style {
        ErrorStyle::Scim => PluginError::new(403, reason),
        ErrorStyle::OAuth => {
            let err = PluginError::new(401, reason).with_code("invalid_client");
            if used_basic_auth(req) {
                err.with_header("WWW-Authenticate", "Basic realm=\"scimgate\"")
            } else {
                err
            }
        }
    })
}

fn used_basic_auth(req: &Request) -> bool {
    req.header("authorization")
        .and_then(|v| v.trim_start().get(..6))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic "))
}

/// The provider a provider-bound rule applies to.
///
/// - `Ok(Some(record))`: an authenticated caller with its current record.
/// - `Ok(None)`: no principal yet (the policy runs before any authenticator):
///   nothing to check.
/// - `Err(reason)`: a principal whose provider is not registered (any
///   more): to be refused with [`refuse_client`], fail closed.
pub(crate) fn provider_of(caller: Caller<'_>) -> Result<Option<&ProviderRecord>, String> {
    match (caller.provider(), caller.principal()) {
        (Some(record), _) => Ok(Some(record)),
        (None, None) => Ok(None),
        (None, Some(principal)) => Err(format!(
            "provider `{}` of client `{}` is not registered",
            shown(&principal.provider_id),
            shown(&principal.client_id)
        )),
    }
}

/// What the request addresses and whether it only reads, by the one
/// resolver the endpoint uses too ([`Target`]).
pub(crate) fn target_of(req: &Request) -> Target<'_> {
    Target::resolve(req.path.as_str())
}

/// The Bulk request in `req`'s body, read by the parser the endpoint uses,
/// or the refusal a policy answers when it cannot read it: a policy does not
/// let through what it cannot judge (400 `invalidSyntax`/`invalidPath`, the
/// error the endpoint would give).
pub(crate) fn bulk_operations(req: &Request) -> Result<Vec<BulkOperation>, PolicyDecision> {
    let refuse = |error: ScimError, at: Option<usize>| {
        let detail = match at {
            Some(i) => format!("Bulk operation {i}: {}", error.detail),
            None => error.detail,
        };
        let mut err = PluginError::new(error.status, detail);
        if let Some(kind) = error.scim_type {
            err = err.with_code(kind.as_str());
        }
        PolicyDecision::Deny(err)
    };
    let request = BulkRequest::from_slice(&req.body).map_err(|e| refuse(e, None))?;
    request
        .operations
        .into_iter()
        .enumerate()
        .map(|(i, op)| op.map_err(|e| refuse(e, Some(i))))
        .collect()
}

/// A Unix time in seconds as RFC 3339 (`2027-01-01T00:00:00Z`).
pub(crate) fn rfc3339(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix_seconds}"))
}

/// Issues found while building a component, as the error `create` returns.
pub(crate) fn config_error(stage: &str, issues: &[ConfigIssue]) -> PluginError {
    let text: Vec<String> = issues
        .iter()
        .map(|i| {
            if i.path.is_empty() {
                i.message.to_string()
            } else {
                format!("{}: {}", i.path, i.message)
            }
        })
        .collect();
    PluginError::new(
        500,
        format!("stage `{stage}`: invalid config: {}", text.join("; ")),
    )
}

/// Provider lists (`allowed_ips`, `allowed_referrers`) parsed once at create
/// time, by provider id. A lookup only hits when the record's strings are
/// still the ones parsed, so a record that changed since is parsed afresh.
pub(crate) struct ProviderCache<T> {
    by_id: HashMap<String, Cached<T>, BuildHasherDefault<Fnv1a>>,
}

/// FNV-1a: a few ns for a short provider id where SipHash takes tens. The
/// keys are the operator's provider ids, not client input, so HashDoS
/// resistance buys nothing here.
#[derive(Default)]
pub(crate) struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

struct Cached<T> {
    raw: Vec<String>,
    parsed: Result<T, String>,
}

impl<T> ProviderCache<T> {
    /// Parses `auth.<field>` of every provider object of the create context.
    pub(crate) fn from_providers(
        providers: &[serde_json::Value],
        field: &str,
        parse: impl Fn(&[&str]) -> Result<T, String>,
    ) -> Self {
        let mut by_id = HashMap::default();
        for provider in providers {
            let Some(id) = provider.get("id").and_then(|v| v.as_str()) else {
                continue;
            };
            let list = provider
                .get("auth")
                .and_then(|auth| auth.get(field))
                .or_else(|| provider.get(field));
            let raw: Vec<String> = match list {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Array(items)) => {
                    match items
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect()
                    {
                        Some(raw) => raw,
                        // Not a list of strings: leave it to the runtime path.
                        None => continue,
                    }
                }
                Some(_) => continue,
            };
            let refs: Vec<&str> = raw.iter().map(String::as_str).collect();
            let parsed = parse(&refs);
            if let Err(err) = &parsed {
                tracing::warn!(
                    provider = id,
                    field,
                    "provider list is invalid, requests will be refused: {err}"
                );
            }
            by_id.insert(id.to_string(), Cached { raw, parsed });
        }
        ProviderCache { by_id }
    }

    /// The pre-parsed list of this provider, if `raw` is what was parsed.
    pub(crate) fn lookup(&self, id: &str, raw: &[RString]) -> Option<&Result<T, String>> {
        let cached = self.by_id.get(id)?;
        let same = cached.raw.len() == raw.len()
            && cached
                .raw
                .iter()
                .zip(raw)
                .all(|(a, b)| a.as_str() == b.as_str());
        same.then_some(&cached.parsed)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_bodies_that_cannot_be_read_are_refused_with_the_endpoints_error() {
        let body = br#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [{"method": "POST", "path": "/Users", "bulkId": "a"},
                           {"method": "DELETE", "path": "/Users/%2F"}]}"#;
        let req = Request::new("POST", "/Bulk").with_body(body.to_vec());
        let Err(PolicyDecision::Deny(err)) = bulk_operations(&req) else {
            panic!("an unreadable operation must be refused");
        };
        assert_eq!(err.status, 400);
        assert_eq!(err.code.as_str(), "invalidPath");
        assert!(
            err.message.starts_with("Bulk operation 1:"),
            "{}",
            err.message
        );
        let req = Request::new("POST", "/Bulk").with_body(&b"{\"a\": 1, \"A\": 2}"[..]);
        let Err(PolicyDecision::Deny(err)) = bulk_operations(&req) else {
            panic!("an ambiguous body must be refused");
        };
        assert_eq!(err.code.as_str(), "invalidSyntax");
    }

    #[test]
    fn shown_cuts_and_escapes() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"x".repeat(500)).chars().count(), 121);
    }

    fn fnv1a(parts: &[&[u8]]) -> u64 {
        let mut h = Fnv1a::default();
        for part in parts {
            h.write(part);
        }
        h.finish()
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // FNV-1a 64 (draft-eastlake-fnv): offset basis, "a", "foobar".
        assert_eq!(fnv1a(&[]), 0);
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"foobar"]), 0x8594_4171_f739_67e8);
        // Writes continue one another.
        assert_eq!(fnv1a(&[b"foo", b"bar"]), fnv1a(&[b"foobar"]));
        assert_ne!(fnv1a(&[b"oim-prod"]), fnv1a(&[b"oim-test"]));
    }

    fn cache(providers: serde_json::Value) -> ProviderCache<Vec<String>> {
        let providers: Vec<serde_json::Value> = serde_json::from_value(providers).unwrap();
        ProviderCache::from_providers(&providers, "allowed_ips", |raw| {
            if raw.contains(&"bad") {
                Err("bad entry".to_string())
            } else {
                Ok(raw.iter().map(|s| s.to_string()).collect())
            }
        })
    }

    fn rstrings(list: &[&str]) -> Vec<RString> {
        list.iter().map(|s| RString::from(*s)).collect()
    }

    #[test]
    fn provider_cache_hits_only_on_the_same_strings() {
        let cache = cache(serde_json::json!([
            {"id": "a", "auth": {"allowed_ips": ["10.0.0.0/8", "192.0.2.1"]}},
            {"id": "b", "allowed_ips": ["*"]},
            {"id": "c", "auth": {"allowed_ips": ["bad"]}},
            {"id": "d", "auth": {"allowed_ips": "10.0.0.0/8"}},
            {"id": "e", "auth": {"allowed_ips": [1, 2]}},
            {"id": "f", "auth": {"allowed_ips": null}},
            {"auth": {"allowed_ips": ["10.0.0.0/8"]}}
        ]));
        assert_eq!(cache.len(), 4);
        let hit = cache.lookup("a", &rstrings(&["10.0.0.0/8", "192.0.2.1"]));
        assert_eq!(
            hit.unwrap().as_ref().unwrap(),
            &["10.0.0.0/8".to_string(), "192.0.2.1".to_string()]
        );
        // Changed, shortened, grown or reordered: parsed afresh by the caller.
        for changed in [
            &["10.0.0.0/8", "192.0.2.2"][..],
            &["10.0.0.0/8"],
            &["10.0.0.0/8", "192.0.2.1", "192.0.2.9"],
            &["192.0.2.1", "10.0.0.0/8"],
            &[],
        ] {
            assert!(
                cache.lookup("a", &rstrings(changed)).is_none(),
                "{changed:?}"
            );
        }
        assert!(cache.lookup("b", &rstrings(&["*"])).is_some());
        assert_eq!(
            cache
                .lookup("c", &rstrings(&["bad"]))
                .unwrap()
                .as_ref()
                .unwrap_err(),
            "bad entry"
        );
        assert!(cache.lookup("f", &rstrings(&[])).unwrap().is_ok());
        assert!(cache.lookup("d", &rstrings(&["10.0.0.0/8"])).is_none());
        assert!(cache.lookup("zz", &rstrings(&[])).is_none());
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(1_798_761_600), "2027-01-01T00:00:00Z");
    }
}
