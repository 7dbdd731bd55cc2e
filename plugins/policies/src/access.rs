//! `access-mode`: a `read-only` provider (the vendor form's "read-only
//! access to target system") may read (`GET`, `HEAD`, `POST …/.search`) and
//! nothing else; `read-write` may do anything. The stage may override the
//! provider's access per resource type.

use std::collections::BTreeMap;

use scimgate_abi::sdk::{CreateContext, Policy};
use scimgate_abi::{Caller, ConfigIssue, ErrorStyle, PluginError, PolicyDecision, Request};
use serde::Deserialize;

use crate::common::{is_read, provider_of, refuse_client, resource_type, shown};

/// `policies/access-mode`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessModeConfig {
    /// Resource type (first path segment, case-insensitive: `Users`,
    /// `Groups`, `Bulk`, `Me`, …) → access that replaces the provider's for
    /// that type.
    #[serde(default)]
    pub overrides: BTreeMap<String, Access>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
        if is_read(method, path) {
            return PolicyDecision::Allow;
        }
        // The host only ever sets "read-only" or "read-write"; anything
        // else is treated as read-only (fail closed).
        let provider_access = if provider.access.as_str() == "read-write" {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let resource = resource_type(path);
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
        if method == "POST" && resource.eq_ignore_ascii_case("Bulk") {
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
        let Some(operations) = bulk_operations(&req.body) else {
            return refuse(format!(
                "provider `{provider_id}` has read-only access to some resource types and the Bulk request's operations could not be read: POST /Bulk refused"
            ));
        };
        for (method, path) in operations {
            let method = method.to_ascii_uppercase();
            if is_read(&method, &path) {
                continue;
            }
            let resource = resource_type(&path);
            let access = self.override_for(resource).unwrap_or(provider_access);
            if access == Access::ReadOnly {
                return refuse(format!(
                    "provider `{provider_id}` has read-only access to {}: Bulk operation {} {} refused",
                    shown(resource),
                    shown(&method),
                    shown(&path)
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

/// `(method, path)` of each operation of a Bulk request body; attribute
/// names are case-insensitive (RFC 7643 §2.1). `None` when unreadable.
fn bulk_operations(body: &[u8]) -> Option<Vec<(String, String)>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let field = |object: &serde_json::Map<String, serde_json::Value>, name: &str| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let operations = field(value.as_object()?, "Operations")?;
    operations
        .as_array()?
        .iter()
        .map(|op| {
            let op = op.as_object()?;
            let method = field(op, "method")?.as_str()?.to_string();
            let path = field(op, "path")?.as_str()?.to_string();
            Some((method, path))
        })
        .collect()
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

    #[test]
    fn bulk_operations_are_checked_against_their_own_type() {
        let policy = policy(json!({"Groups": "read-only"}));
        let users_only = json!({"schemas": [], "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": {}},
            {"method": "DELETE", "path": "/Users/2"}
        ]});
        assert_allow(bulk(&policy, "read-write", users_only));
        let touches_groups = json!({"operations": [
            {"method": "POST", "path": "/Users"},
            {"Method": "patch", "Path": "/Groups/9"}
        ]});
        let err = deny(bulk(&policy, "read-write", touches_groups));
        assert_eq!(
            err.message.as_str(),
            "provider `x` has read-only access to Groups: Bulk operation PATCH /Groups/9 refused"
        );
        let err = deny(bulk(&policy, "read-write", json!("not a bulk request")));
        assert!(err.message.contains("could not be read"), "{}", err.message);
    }

    #[test]
    fn bulk_on_a_read_only_provider_with_writable_types() {
        let policy = policy(json!({"Bulk": "read-write", "Users": "read-write"}));
        let users = json!({"Operations": [{"method": "POST", "path": "/Users"}]});
        assert_allow(bulk(&policy, "read-only", users));
        let groups = json!({"Operations": [{"method": "POST", "path": "/Groups"}]});
        deny(bulk(&policy, "read-only", groups));
        // Without a Bulk override the provider's read-only access applies.
        let plain = super::tests::policy(json!({"Users": "read-write"}));
        deny(bulk(&plain, "read-only", json!({"Operations": []})));
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
}
