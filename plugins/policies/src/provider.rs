//! `provider-active` and `validity`: the provider's own switch and its
//! validity window (the vendor form's "active" and "Validity Date/Time").

use scimgate_abi::sdk::{CreateContext, Policy};
use scimgate_abi::std_types::ROption;
use scimgate_abi::{Caller, ConfigIssue, PolicyDecision, Request};
use serde::Deserialize;

use scimgate_abi::units::HumanDuration;

use crate::common::{provider_of, refuse_client, rfc3339};

/// `policies/provider-active` takes no settings.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderActiveConfig {}

/// Refuses callers whose provider has `active = false`.
pub struct ProviderActive;

impl ProviderActive {
    pub fn build(
        _config: ProviderActiveConfig,
        _ctx: &CreateContext,
    ) -> Result<Self, Vec<ConfigIssue>> {
        Ok(ProviderActive)
    }
}

impl Policy for ProviderActive {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
        let provider = match provider_of(caller) {
            Ok(Some(p)) => p,
            Ok(None) => return PolicyDecision::Allow,
            Err(reason) => return refuse_client(req, reason),
        };
        if provider.active {
            PolicyDecision::Allow
        } else {
            refuse_client(
                req,
                format!("provider `{}` is inactive (active = false)", provider.id),
            )
        }
    }
}

/// `policies/validity`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidityConfig {
    /// Clock skew tolerated on both bounds, e.g. `"30s"`. Default `"0s"`.
    #[serde(default)]
    pub leeway: Option<HumanDuration>,
}

/// Refuses callers outside their provider's `valid_from`..=`valid_until`
/// window. Both bounds are inclusive and compared at whole seconds: a
/// provider with `valid_until = 2027-12-31T23:59:59Z` is valid through
/// `23:59:59.999`; `valid_from = 2027-01-01T00:00:00Z` from `00:00:00.000`.
/// The leeway widens the window on both sides.
pub struct Validity {
    leeway_ms: i64,
}

/// The longest leeway accepted: a day. More is a mistake, not clock skew.
const MAX_LEEWAY_MS: i64 = 86_400_000;

impl Validity {
    pub fn build(config: ValidityConfig, _ctx: &CreateContext) -> Result<Self, Vec<ConfigIssue>> {
        let leeway_ms = match config.leeway {
            None => 0,
            Some(HumanDuration(leeway)) => match i64::try_from(leeway.as_millis()) {
                Ok(ms) if ms <= MAX_LEEWAY_MS => ms,
                _ => {
                    return Err(vec![ConfigIssue::new(
                        "leeway",
                        format!(
                            "leeway `{}` is longer than a day",
                            scimgate_abi::units::format_duration(leeway)
                        ),
                    )])
                }
            },
        };
        Ok(Validity { leeway_ms })
    }
}

impl Policy for Validity {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
        let provider = match provider_of(caller) {
            Ok(Some(p)) => p,
            Ok(None) => return PolicyDecision::Allow,
            Err(reason) => return refuse_client(req, reason),
        };
        let now_ms = req.received_at_unix_ms;
        if let ROption::RSome(from) = provider.valid_from {
            let opens_ms = from.saturating_mul(1000).saturating_sub(self.leeway_ms);
            if now_ms < opens_ms {
                return refuse_client(
                    req,
                    format!(
                        "provider `{}` is not valid until {} (valid_from)",
                        provider.id,
                        rfc3339(from)
                    ),
                );
            }
        }
        if let ROption::RSome(until) = provider.valid_until {
            // Inclusive to the second: the whole of `until`'s second counts.
            let closes_ms = until
                .saturating_mul(1000)
                .saturating_add(999)
                .saturating_add(self.leeway_ms);
            if now_ms > closes_ms {
                return refuse_client(
                    req,
                    format!(
                        "provider `{}` is no longer valid: it expired at {} (valid_until)",
                        provider.id,
                        rfc3339(until)
                    ),
                );
            }
        }
        PolicyDecision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use scimgate_abi::ErrorStyle;

    fn validity(leeway: Option<&str>) -> Validity {
        let config = ValidityConfig {
            leeway: leeway.map(|text| {
                HumanDuration(scimgate_abi::units::parse_duration(text).expect("a duration"))
            }),
        };
        Validity::build(config, &ctx(serde_json::json!({}))).unwrap()
    }

    const FROM: i64 = 1_798_761_600; // 2027-01-01T00:00:00Z
    const UNTIL: i64 = 1_830_297_599; // 2027-12-31T23:59:59Z

    fn windowed() -> scimgate_abi::ProviderRecord {
        let mut p = provider("oim-prod");
        p.valid_from = ROption::RSome(FROM);
        p.valid_until = ROption::RSome(UNTIL);
        p
    }

    #[test]
    fn active_provider_is_allowed_inactive_refused() {
        let policy = ProviderActive;
        let mut p = provider("oim-prod");
        let who = principal("oim-prod", &[]);
        assert_allow(policy.check(&scim("GET", "/Users"), caller(&who, &p)));
        p.active = false;
        let err = deny(policy.check(&scim("GET", "/Users"), caller(&who, &p)));
        assert_eq!(err.status, 403);
        assert_eq!(err.code.as_str(), "");
        assert!(
            err.message.contains("`oim-prod` is inactive"),
            "{}",
            err.message
        );
    }

    #[test]
    fn inactive_on_the_token_route_is_invalid_client() {
        let mut p = provider("oim-prod");
        p.active = false;
        let who = principal("oim-prod", &[]);
        let mut req = token_request();
        req.headers.push(scimgate_abi::Header::new(
            "authorization",
            "Basic b2ltOnNlY3JldA==",
        ));
        let err = deny(ProviderActive.check(&req, caller(&who, &p)));
        assert_eq!(err.status, 401);
        assert_eq!(err.code.as_str(), "invalid_client");
        assert_eq!(
            header_of(&err, "www-authenticate"),
            Some("Basic realm=\"scimgate\"")
        );
        // client_secret_post: no challenge.
        let err = deny(ProviderActive.check(&token_request(), caller(&who, &p)));
        assert_eq!(header_of(&err, "www-authenticate"), None);
    }

    #[test]
    fn no_principal_means_nothing_to_check() {
        assert_allow(ProviderActive.check(&scim("GET", "/Users"), scimgate_abi::Caller::ANONYMOUS));
        assert_allow(validity(None).check(&scim("GET", "/Users"), scimgate_abi::Caller::ANONYMOUS));
    }

    #[test]
    fn a_principal_without_a_registered_provider_is_refused() {
        let who = principal("gone", &[]);
        let c = scimgate_abi::Caller {
            principal: ROption::RSome(&who),
            provider: ROption::RNone,
        };
        let err = deny(ProviderActive.check(&scim("GET", "/Users"), c));
        assert!(err.message.contains("`gone` of client"), "{}", err.message);
        let err = deny(validity(None).check(&scim("GET", "/Users"), c));
        assert_eq!(err.status, 403);
    }

    #[test]
    fn window_bounds_are_inclusive_to_the_second() {
        let policy = validity(None);
        let p = windowed();
        let who = principal("oim-prod", &[]);
        let at = |ms: i64| {
            let mut r = scim("GET", "/Users");
            r.received_at_unix_ms = ms;
            policy.check(&r, caller(&who, &p))
        };
        assert_allow(at(FROM * 1000));
        assert_allow(at(UNTIL * 1000));
        assert_allow(at(UNTIL * 1000 + 999));
        let err = deny(at(FROM * 1000 - 1000));
        assert_eq!(
            err.message.as_str(),
            "provider `oim-prod` is not valid until 2027-01-01T00:00:00Z (valid_from)"
        );
        let err = deny(at(FROM * 1000 - 1));
        assert!(err.message.contains("valid_from"));
        let err = deny(at(UNTIL * 1000 + 1000));
        assert_eq!(
            err.message.as_str(),
            "provider `oim-prod` is no longer valid: it expired at 2027-12-31T23:59:59Z (valid_until)"
        );
    }

    #[test]
    fn either_bound_may_be_absent() {
        let policy = validity(None);
        let who = principal("p", &[]);
        let mut p = provider("p");
        p.valid_until = ROption::RSome(UNTIL);
        let mut r = scim("GET", "/Users");
        r.received_at_unix_ms = 0;
        assert_allow(policy.check(&r, caller(&who, &p)));
        p.valid_until = ROption::RNone;
        p.valid_from = ROption::RSome(FROM);
        r.received_at_unix_ms = i64::MAX;
        assert_allow(policy.check(&r, caller(&who, &p)));
    }

    #[test]
    fn leeway_widens_both_bounds() {
        let policy = validity(Some("30s"));
        let p = windowed();
        let who = principal("oim-prod", &[]);
        let at = |ms: i64| {
            let mut r = scim("GET", "/Users");
            r.received_at_unix_ms = ms;
            policy.check(&r, caller(&who, &p))
        };
        assert_allow(at((FROM - 30) * 1000));
        deny(at((FROM - 31) * 1000));
        assert_allow(at((UNTIL + 30) * 1000 + 999));
        deny(at((UNTIL + 31) * 1000));
    }

    #[test]
    fn outside_the_window_on_the_token_route_is_invalid_client() {
        let policy = validity(None);
        let p = windowed();
        let who = principal("oim-prod", &[]);
        let mut r = token_request();
        r.received_at_unix_ms = (UNTIL + 1) * 1000;
        assert_eq!(r.error_style, ErrorStyle::OAuth);
        let err = deny(policy.check(&r, caller(&who, &p)));
        assert_eq!((err.status, err.code.as_str()), (401, "invalid_client"));
    }

    #[test]
    fn bad_leeway_is_a_located_issue() {
        let issues = crate::components()
            .into_iter()
            .find(|c| c.name == "validity")
            .unwrap()
            .validate(&ctx(serde_json::json!({"leeway": "30"})));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].path.as_str(), "leeway");
        assert!(issues[0].message.contains("\"30s\""), "{issues:?}");
        let issues = Validity::build(
            ValidityConfig {
                leeway: Some(HumanDuration(std::time::Duration::from_secs(2 * 86_400))),
            },
            &ctx(serde_json::json!({})),
        )
        .err()
        .unwrap();
        assert!(issues[0].message.contains("longer than a day"));
    }
}
