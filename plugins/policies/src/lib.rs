//! `policies`: the access rules an operator registers for an IGA provider,
//! enforced as policy components: `provider-active`, `validity`,
//! `allowed-ips`, `allowed-referrers`, `access-mode`, `scopes` and
//! `rate-limit`. Each is a pure function of (request, principal, provider
//! record, `received_at_unix_ms`), except the rate limiter's own state.

mod access;
mod common;
mod ips;
mod provider;
mod rate_limit;
mod referrers;
mod scopes;
#[cfg(test)]
mod testutil;

use scimgate_abi::sdk::{Component, CreateContext, Policy};
use scimgate_abi::ConfigIssue;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use access::{Access, AccessMode, AccessModeConfig};
pub use ips::{AllowedIps, AllowedIpsConfig};
pub use provider::{ProviderActive, ProviderActiveConfig, Validity, ValidityConfig};
pub use rate_limit::{RateLimit, RateLimitConfig};
pub use referrers::{AllowedReferrers, AllowedReferrersConfig};
pub use scopes::{ScopeRuleConfig, Scopes, ScopesConfig};

/// The library's components, in the order `scimgate plugins` lists them.
/// Each config's JSON Schema is derived from its struct; each declares a
/// valid example.
pub fn components() -> Vec<Component> {
    vec![
        policy(
            "provider-active",
            "refuses callers whose provider is inactive",
            ProviderActive::build,
        )
        .with_example(json!({})),
        policy(
            "validity",
            "refuses callers outside their provider's valid_from..=valid_until window",
            Validity::build,
        )
        .with_example(json!({"leeway": "30s"})),
        policy(
            "allowed-ips",
            "the client address must be in the provider's allowed_ips and the stage's `allow` list",
            AllowedIps::build,
        )
        .with_example(json!({"allow": ["10.0.0.0/8", "192.0.2.7"]})),
        policy(
            "allowed-referrers",
            "Referer and Origin must name one of the provider's allowed_referrers",
            AllowedReferrers::build,
        )
        .with_example(json!({"allow_missing": true})),
        policy(
            "access-mode",
            "read-only providers may only read (GET, HEAD, POST …/.search)",
            AccessMode::build,
        )
        .with_example(json!({"overrides": {"Groups": "read-only"}})),
        policy(
            "scopes",
            "the caller's token must carry the scope the method and resource type require",
            Scopes::build,
        )
        .with_example(json!({"read": "scim.read", "write": "scim.write",
            "rules": [{"resource": "Groups", "methods": ["DELETE"], "scope": "scim.admin"}]})),
        policy(
            "rate-limit",
            "GCRA rate limits per provider and per client address (429 with Retry-After)",
            RateLimit::build,
        )
        .with_example(json!({"per_provider": "50/s", "per_ip": "100/15m", "burst": 20})),
    ]
}

scimgate_abi::export_plugin!("policies", components);

type Build<C, T> = fn(C, &CreateContext) -> Result<T, Vec<ConfigIssue>>;

/// A policy with a typed config whose semantic checks (CIDRs, durations,
/// rates) run in `validate` too, so that every issue is reported at once
/// with its key path.
// The SDK's constructor returns `Result<_, PluginError>`: not ours to shrink.
#[allow(clippy::result_large_err)]
fn policy<C, T>(name: &str, description: &str, build: Build<C, T>) -> Component
where
    C: DeserializeOwned + schemars::JsonSchema + 'static,
    T: Policy,
{
    Component::policy_with_config(name, description, move |config: C, ctx: &CreateContext| {
        build(config, ctx).map_err(|issues| common::config_error(&ctx.stage, &issues))
    })
    .with_validate(move |ctx| match ctx.deserialize_checked::<C>() {
        Ok(config) => build(config, ctx).err().unwrap_or_default(),
        // Already reported by the typed constructor's own validation.
        Err(_) => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use scimgate_abi::ffi::ComponentInstance;
    use serde_json::json;

    fn component(name: &str) -> Component {
        components().into_iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn the_library_exports_seven_policies() {
        let names: Vec<String> = components().into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "provider-active",
                "validity",
                "allowed-ips",
                "allowed-referrers",
                "access-mode",
                "scopes",
                "rate-limit"
            ]
        );
        for c in components() {
            assert_eq!(c.kind, scimgate_abi::ComponentKind::Policy);
            serde_json::from_str::<serde_json::Value>(&c.config_schema).unwrap();
        }
        let lib = __scimgate_plugin_export::library();
        assert_eq!(lib.name, "policies");
    }

    #[test]
    fn schemas_are_derived_and_examples_validate() {
        use scimgate_abi::testing::assert_schema_is_derived as derived;
        derived::<ProviderActiveConfig>(&component("provider-active"));
        derived::<ValidityConfig>(&component("validity"));
        derived::<AllowedIpsConfig>(&component("allowed-ips"));
        derived::<AllowedReferrersConfig>(&component("allowed-referrers"));
        derived::<AccessModeConfig>(&component("access-mode"));
        derived::<ScopesConfig>(&component("scopes"));
        derived::<RateLimitConfig>(&component("rate-limit"));
    }

    #[test]
    fn rates_take_a_duration_of_the_shared_grammar() {
        assert!(component("rate-limit")
            .validate(&ctx(json!({"per_ip": "100/15m"})))
            .is_empty());
        let issues = component("rate-limit").validate(&ctx(json!({"per_ip": "100/fortnight"})));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].message.contains("\"100/15m\""), "{issues:?}");
    }

    #[test]
    fn validate_reports_every_issue_with_its_path() {
        let issues = component("allowed-ips")
            .validate(&ctx(json!({"allow": ["10.0.0.0/8", "10.0.0.300", "x/1"]})));
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["allow[1]", "allow[2]"]);
        let issues = component("validity").validate(&ctx(json!({"leeway": "soon"})));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path.as_str(), "leeway");
        let issues = component("provider-active").validate(&ctx(json!({"enabled": true})));
        assert_eq!(issues.len(), 1);
        assert!(
            issues[0].message.contains("unknown key `enabled`"),
            "{}",
            issues[0].message
        );
        let issues =
            component("rate-limit").validate(&ctx(json!({"per_ip": "20/s", "burst": "ten"})));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path.as_str(), "burst");
        for name in [
            "provider-active",
            "validity",
            "allowed-ips",
            "allowed-referrers",
            "access-mode",
            "scopes",
        ] {
            assert!(
                component(name).validate(&ctx(json!({}))).is_empty(),
                "{name}"
            );
        }
        assert!(component("rate-limit")
            .validate(&ctx(json!({"per_ip": "20/s"})))
            .is_empty());
    }

    #[test]
    fn create_fails_with_the_issues() {
        let Err(err) = component("rate-limit").create(&ctx(json!({"per_ip": "fast"}))) else {
            panic!("created with a bad rate");
        };
        assert!(
            err.message.contains("per_ip: invalid rate `fast`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn created_instances_decide_through_the_ffi_box() {
        let providers = vec![json!({"id": "oim-prod", "auth": {"allowed_ips": ["10.20.0.0/16"]}})];
        let instance = component("allowed-ips")
            .create(&ctx_with_providers(json!({}), providers))
            .unwrap();
        let ComponentInstance::Policy(policy) = instance else {
            panic!("not a policy");
        };
        let mut p = provider("oim-prod");
        p.allowed_ips = strings(&["10.20.0.0/16"]);
        let who = principal("oim-prod", &[]);
        assert_allow(policy.check(
            &with_ip(scim("GET", "/Users"), "10.20.1.1"),
            caller(&who, &p),
        ));
        let err = deny(policy.check(
            &with_ip(scim("GET", "/Users"), "127.0.0.2"),
            caller(&who, &p),
        ));
        assert_eq!(
            err.message.as_str(),
            "client address 127.0.0.2 is not in the allowed_ips of provider `oim-prod`"
        );
    }

    /// The reference scenario's SCIM pipeline, seed policies in order.
    #[test]
    fn seed_pipeline_on_a_read_only_provider() {
        let stages: Vec<_> = [
            "provider-active",
            "validity",
            "allowed-ips",
            "allowed-referrers",
            "access-mode",
        ]
        .into_iter()
        .map(
            |name| match component(name).create(&ctx(json!({}))).unwrap() {
                ComponentInstance::Policy(p) => p,
                _ => panic!("not a policy"),
            },
        )
        .collect();
        let mut p = provider("oim-prod");
        p.access = "read-only".into();
        p.allowed_ips = strings(&["10.20.0.0/16"]);
        p.valid_from = scimgate_abi::std_types::ROption::RSome(NOW_MS / 1000 - 10);
        let who = principal("oim-prod", &[]);
        let run = |req: &scimgate_abi::Request| {
            for stage in &stages {
                if let scimgate_abi::PolicyDecision::Deny(err) = stage.check(req, caller(&who, &p))
                {
                    return Some(err);
                }
            }
            None
        };
        assert!(run(&with_ip(scim("GET", "/Users"), "10.20.0.5")).is_none());
        assert!(run(&with_ip(scim("POST", "/Groups/.search"), "10.20.0.5")).is_none());
        let err = run(&with_ip(scim("DELETE", "/Users/1"), "10.20.0.5")).unwrap();
        assert!(err.message.contains("read-only"), "{}", err.message);
        let err = run(&with_ip(scim("GET", "/Users"), "10.30.0.5")).unwrap();
        assert!(err.message.contains("allowed_ips"), "{}", err.message);
    }
}
