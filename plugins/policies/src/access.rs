//! `access-mode`: a `read-only` provider (the vendor form's "read-only
//! access to target system") may read (`GET`, `HEAD`, `POST …/.search`) and
//! nothing else; `read-write` may do anything. The stage may override the
//! provider's access per resource type.

use std::collections::BTreeMap;

use scimgate_abi::sdk::{CreateContext, Policy};
use scimgate_abi::{Caller, ConfigIssue, ErrorStyle, PluginError, PolicyDecision, Request};
use serde::Deserialize;

use crate::common::{bulk_operations, provider_of, refuse_client, shown, target_of};
use scimgate_scim::Target;

/// `policies/access-mode`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessModeConfig {
    /// Resource type (first path segment, case-insensitive: `Users`,
    /// `Groups`, `Bulk`, `Me`, …) → access that replaces the provider's for
    /// that type.
    #[serde(default)]
    pub overrides: BTreeMap<String, Access>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

pub struct AccessMode {
    overrides: Vec<(String, Access)>,
}

impl AccessMode {
    pub fn build(config: AccessModeConfig, _ctx: &CreateContext) -> Result<Self, Vec<ConfigIssue>> {
        let mut overrides: Vec<(String, Access)> = Vec::new();
        let mut issues = Vec::new();
        for (name, access) in config.overrides {
            if name.is_empty() || name.contains('/') {
                issues.push(ConfigIssue::new(
                    format!("overrides.{name}"),
                    "a resource type is one path segment, e.g. `Users`",
                ));
            } else if overrides
                .iter()
                .any(|(seen, _)| seen.eq_ignore_ascii_case(&name))
            {
                issues.push(ConfigIssue::new(
                    format!("overrides.{name}"),
                    format!(
                        "resource type `{name}` is overridden twice (names are case-insensitive)"
                    ),
                ));
            } else {
                overrides.push((name, access));
            }
        }
        if issues.is_empty() {
            Ok(AccessMode { overrides })
        } else {
            Err(issues)
        }
    }

    fn override_for(&self, resource_type: &str) -> Option<Access> {
        self.overrides
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(resource_type))
            .map(|(_, access)| *access)
    }
}

impl Policy for AccessMode {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
        // Token requests only read: the token route is never restricted.
        if req.error_style == ErrorStyle::OAuth {
            return PolicyDecision::Allow;
        }
        let provider = match provider_of(caller) {
            Ok(Some(p)) => p,
            Ok(None) => return PolicyDecision::Allow,
            Err(reason) => return refuse_client(req, reason),
        };
        let method = req.method.as_str();
        let path = req.path.as_str();
        let target = target_of(req);
        if target.is_read(method) {
            return PolicyDecision::Allow;
        }
        // The host only ever sets "read-only" or "read-write"; anything
        // else is treated as read-only (fail closed).
        let provider_access = if provider.access.as_str() == "read-write" {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let resource = target.type_name().unwrap_or("");
        let (access, overridden) = match self.override_for(resource) {
            Some(access) => (access, true),
            None => (provider_access, false),
        };
        if access == Access::ReadOnly {
            let scope = if overridden {
                format!(" to {resource} (stage override)")
            } else {
                String::new()
            };
            return refuse(format!(
                "provider `{}` has read-only access{scope}: {method} {} refused",
                provider.id,
                shown(path)
            ));
        }
        if method == "POST" && target == Target::Bulk {
            return self.check_bulk(req, provider_access, &provider.id);
        }
        PolicyDecision::Allow
    }
}

impl AccessMode {
    /// A permitted Bulk request may still carry writes to a type the stage
    /// made read-only: each operation is checked against its own type.
    fn check_bulk(
        &self,
        req: &Request,
        provider_access: Access,
        provider_id: &str,
    ) -> PolicyDecision {
        let read_only_types = self.overrides.iter().any(|(_, a)| *a == Access::ReadOnly);
        if provider_access == Access::ReadWrite && !read_only_types {
            return PolicyDecision::Allow;
        }
        let operations = match bulk_operations(req) {
            Ok(operations) => operations,
            Err(refusal) => return refusal,
        };
        for op in &operations {
            let target = op.target();
            if target.is_read(&op.method) {
                continue;
            }
            let resource = target.type_name().unwrap_or("");
            let access = self.override_for(resource).unwrap_or(provider_access);
            if access == Access::ReadOnly {
                return refuse(format!(
                    "provider `{provider_id}` has read-only access to {}: Bulk operation {} {} refused",
                    shown(resource),
                    op.method,
                    shown(&op.path)
                ));
            }
        }
        PolicyDecision::Allow
    }
}

/// SCIM 403 with an empty `scimType`: none of RFC 7644's fits.
fn refuse(reason: String) -> PolicyDecision {
    PolicyDecision::Deny(PluginError::new(403, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use serde_json::json;

    fn policy(overrides: serde_json::Value) -> AccessMode {
        let config: AccessModeConfig =
            scimgate_abi::sdk::deserialize_config(&json!({ "overrides": overrides })).unwrap();
        AccessMode::build(config, &ctx(json!({}))).unwrap()
    }

    fn check(policy: &AccessMode, access: &str, method: &str, path: &str) -> PolicyDecision {
        let mut p = provider("x");
        p.access = access.into();
        let who = principal("x", &[]);
        policy.check(&scim(method, path), caller(&who, &p))
    }

    #[test]
    fn read_only_permits_reads_only() {
        let policy = policy(json!({}));
        for (method, path) in [
            ("GET", "/Users/1"),
            ("HEAD", "/Users/1"),
            ("GET", "/ServiceProviderConfig"),
            ("POST", "/.search"),
            ("POST", "/Users/.search"),
            ("POST", "/Groups/.search"),
        ] {
            assert_allow(check(&policy, "read-only", method, path));
        }
        for (method, path) in [
            ("POST", "/Users"),
            ("PUT", "/Users/1"),
            ("PATCH", "/Users/1"),
            ("DELETE", "/Users/1"),
            ("POST", "/Bulk"),
            ("PUT", "/.search"),
            ("OPTIONS", "/Users"),
        ] {
            let err = deny(check(&policy, "read-only", method, path));
            assert_eq!(err.status, 403);
            assert_eq!(err.code.as_str(), "");
        }
        let err = deny(check(&policy, "read-only", "PATCH", "/Users/1"));
        assert_eq!(
            err.message.as_str(),
            "provider `x` has read-only access: PATCH /Users/1 refused"
        );
    }

    #[test]
    fn read_write_permits_everything() {
        let policy = policy(json!({}));
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
            assert_allow(check(&policy, "read-write", method, "/Users/1"));
        }
        assert_allow(check(&policy, "read-write", "POST", "/Bulk"));
    }

    #[test]
    fn unknown_access_values_are_read_only() {
        let policy = policy(json!({}));
        deny(check(&policy, "readwrite", "POST", "/Users"));
        assert_allow(check(&policy, "readwrite", "GET", "/Users"));
    }

    #[test]
    fn overrides_replace_the_providers_access_per_type() {
        let policy = policy(json!({"users": "read-write", "Groups": "read-only"}));
        assert_allow(check(&policy, "read-only", "POST", "/Users"));
        assert_allow(check(&policy, "read-only", "PATCH", "/USERS/1"));
        deny(check(&policy, "read-only", "POST", "/Schemas"));
        let err = deny(check(&policy, "read-write", "PATCH", "/Groups/7"));
        assert_eq!(
            err.message.as_str(),
            "provider `x` has read-only access to Groups (stage override): PATCH /Groups/7 refused"
        );
        assert_allow(check(&policy, "read-write", "POST", "/Groups/.search"));
        assert_allow(check(&policy, "read-write", "DELETE", "/Users/1"));
    }

    fn bulk(policy: &AccessMode, access: &str, body: serde_json::Value) -> PolicyDecision {
        let mut p = provider("x");
        p.access = access.into();
        let who = principal("x", &[]);
        let mut req = scim("POST", "/Bulk");
        req.body = serde_json::to_vec(&body).unwrap().into();
        policy.check(&req, caller(&who, &p))
    }

    const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

    #[test]
    fn bulk_operations_are_checked_against_their_own_type() {
        let policy = policy(json!({"Groups": "read-only"}));
        let users_only = json!({"schemas": [BULK], "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": {}},
            {"method": "DELETE", "path": "/Users/2"}
        ]});
        assert_allow(bulk(&policy, "read-write", users_only));
        let touches_groups = json!({"SCHEMAS": [BULK], "operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a"},
            {"Method": "patch", "Path": "/Groups/9"}
        ]});
        let err = deny(bulk(&policy, "read-write", touches_groups));
        assert_eq!(
            err.message.as_str(),
            "provider `x` has read-only access to Groups: Bulk operation PATCH /Groups/9 refused"
        );
        // Encoded and case-variant paths address the same type.
        for path in ["/%47roups", "groups", "/GROUPS/1/", "Groups/bulkId:a"] {
            let body = json!({"schemas": [BULK], "Operations": [
                {"method": "PUT", "path": path, "data": {}}
            ]});
            deny(bulk(&policy, "read-write", body));
        }
        let err = deny(bulk(&policy, "read-write", json!("not a bulk request")));
        assert_eq!(err.status, 400);
        assert_eq!(err.code.as_str(), "invalidSyntax");
    }

    #[test]
    fn bulk_bodies_without_a_single_meaning_are_refused() {
        let policy = policy(json!({"Groups": "read-only"}));
        let mut p = provider("x");
        p.access = "read-write".into();
        let who = principal("x", &[]);
        for body in [
            format!(
                r#"{{"schemas": ["{BULK}"], "Operations": [], "OPERATIONS": [{{"method": "POST", "path": "/Groups", "bulkId": "g"}}]}}"#
            ),
            format!(
                r#"{{"schemas": ["{BULK}"], "Operations": [{{"method": "POST", "path": "/Users", "PATH": "/Groups", "bulkId": "g"}}]}}"#
            ),
            format!(
                r#"{{"schemas": ["{BULK}"], "Operations": [{{"method": "POST", "path": "/Users", "bulkId": "g"}}], "Operations": []}}"#
            ),
        ] {
            let req = scim("POST", "/Bulk").with_body(body.into_bytes());
            let err = deny(policy.check(&req, caller(&who, &p)));
            assert_eq!(err.status, 400);
            assert_eq!(err.code.as_str(), "invalidSyntax");
        }
    }

    #[test]
    fn bulk_on_a_read_only_provider_with_writable_types() {
        let policy = policy(json!({"Bulk": "read-write", "Users": "read-write"}));
        let users = json!({"schemas": [BULK], "Operations": [{"method": "POST", "path": "/Users", "bulkId": "u"}]});
        assert_allow(bulk(&policy, "read-only", users));
        let groups = json!({"schemas": [BULK], "Operations": [{"method": "POST", "path": "/Groups", "bulkId": "g"}]});
        deny(bulk(&policy, "read-only", groups));
        // Without a Bulk override the provider's read-only access applies.
        let plain = super::tests::policy(json!({"Users": "read-write"}));
        deny(bulk(
            &plain,
            "read-only",
            json!({"schemas": [BULK], "Operations": []}),
        ));
    }

    #[test]
    fn the_request_path_is_resolved_like_the_endpoint_does() {
        let policy = policy(json!({"Groups": "read-only"}));
        for path in ["/groups", "/GROUPS/7", "/Groups/.SEARCHx"] {
            deny(check(&policy, "read-write", "POST", path));
        }
        assert_allow(check(&policy, "read-write", "POST", "/groups/.Search"));
    }

    #[test]
    fn token_route_and_anonymous_requests_are_allowed() {
        let policy = policy(json!({}));
        let mut p = provider("x");
        p.access = "read-only".into();
        let who = principal("x", &[]);
        assert_allow(policy.check(&token_request(), caller(&who, &p)));
        assert_allow(policy.check(&scim("DELETE", "/Users/1"), scimgate_abi::Caller::ANONYMOUS));
    }

    #[test]
    fn config_errors_are_located() {
        let issue = scimgate_abi::sdk::deserialize_config::<AccessModeConfig>(
            &json!({"overrides": {"Users": "rw"}}),
        )
        .unwrap_err();
        assert_eq!(issue.path.as_str(), "overrides.Users");
        let config: AccessModeConfig = scimgate_abi::sdk::deserialize_config(
            &json!({"overrides": {"Users": "read-only", "users": "read-write"}}),
        )
        .unwrap();
        let issues = AccessMode::build(config, &ctx(json!({}))).err().unwrap();
        assert!(issues[0].path.starts_with("overrides."));
        assert!(issues[0].message.contains("twice"));
    }

    #[test]
    fn an_override_names_exactly_one_path_segment() {
        for name in ["", "Users/1", "/Users", "Users/"] {
            let config: AccessModeConfig =
                scimgate_abi::sdk::deserialize_config(&json!({"overrides": {name: "read-write"}}))
                    .unwrap();
            let issues = AccessMode::build(config, &ctx(json!({}))).err().unwrap();
            assert_eq!(issues.len(), 1, "{name:?}");
            assert_eq!(issues[0].path.as_str(), format!("overrides.{name}"));
            assert!(
                issues[0].message.contains("one path segment"),
                "{}",
                issues[0].message
            );
        }
        // Every bad name is reported, the good ones are kept.
        let config: AccessModeConfig = scimgate_abi::sdk::deserialize_config(
            &json!({"overrides": {"a/b": "read-only", "Groups": "read-only", "c/d": "read-only"}}),
        )
        .unwrap();
        let issues = AccessMode::build(config, &ctx(json!({}))).err().unwrap();
        assert_eq!(issues.len(), 2);
        let ok = policy(json!({"Groups": "read-only", "Users": "read-write"}));
        assert_eq!(ok.overrides.len(), 2);
        assert_eq!(ok.override_for("GROUPS"), Some(Access::ReadOnly));
        assert_eq!(ok.override_for("users"), Some(Access::ReadWrite));
        assert_eq!(ok.override_for("Schemas"), None);
    }
}
