//! `scopes`: the caller's token must carry the scope that the request's
//! method and resource type require (RFC 6750 §3.1 `insufficient_scope`).
//! The change feed (`/Changes`) has a scope of its own (`changes`, default
//! `scim:changes`): `read` and rules that do not name `Changes` never open
//! it. The push subscribers' operations (`/Changes/Subscribers…`) need
//! `changes_admin` (default `scim:changes:admin`), whatever the rules say.

use scimgate_abi::sdk::{CreateContext, Policy};
use scimgate_abi::{Caller, ConfigIssue, ErrorStyle, PluginError, PolicyDecision, Request};
use serde::Deserialize;

use scimgate_scim::Target;

use crate::common::{bulk_operations, shown, target_of};

/// `policies/scopes`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopesConfig {
    /// Scope required for reads (`GET`, `HEAD`, `POST …/.search`) that no
    /// rule matches. Absent: none required.
    #[serde(default)]
    pub read: Option<String>,
    /// Scope required for writes that no rule matches. Absent: none.
    #[serde(default)]
    pub write: Option<String>,
    /// Checked in order; the first rule that matches decides.
    #[serde(default)]
    pub rules: Vec<ScopeRuleConfig>,
    /// Scope required for the change feed `GET /Changes`, unless a rule
    /// naming `resource = "Changes"` matches. Default `scim:changes`.
    #[serde(default = "default_changes_scope")]
    pub changes: String,
    /// Scope required for the push subscribers' status and operations
    /// (`GET /Changes/Subscribers`, `POST /Changes/Subscribers/NAME`);
    /// rules do not apply to them. Default `scim:changes:admin`.
    #[serde(default = "default_changes_admin_scope")]
    pub changes_admin: String,
}

fn default_changes_scope() -> String {
    "scim:changes".into()
}

fn default_changes_admin_scope() -> String {
    "scim:changes:admin".into()
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeRuleConfig {
    /// Resource type (first path segment, case-insensitive). Absent: any.
    #[serde(default)]
    pub resource: Option<String>,
    /// Methods (case-insensitive). Absent: any. `POST …/.search` matches as
    /// `GET`.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Required scope; several separated by spaces are all required.
    pub scope: String,
}

pub struct Scopes {
    read: Vec<String>,
    write: Vec<String>,
    changes: Vec<String>,
    changes_admin: Vec<String>,
    rules: Vec<ScopeRule>,
}

struct ScopeRule {
    resource: Option<String>,
    /// Upper-case; empty: any.
    methods: Vec<String>,
    scopes: Vec<String>,
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Scopes {
    pub fn build(config: ScopesConfig, _ctx: &CreateContext) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut scope_list = |text: &str, path: String| {
            let scopes: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            if scopes.is_empty() {
                issues.push(ConfigIssue::new(path, "a scope must not be empty"));
            }
            scopes
        };
        let read = config
            .read
            .as_deref()
            .map(|s| scope_list(s, "read".into()))
            .unwrap_or_default();
        let write = config
            .write
            .as_deref()
            .map(|s| scope_list(s, "write".into()))
            .unwrap_or_default();
        let changes = scope_list(&config.changes, "changes".into());
        let changes_admin = scope_list(&config.changes_admin, "changes_admin".into());
        let mut rules = Vec::new();
        for (i, rule) in config.rules.iter().enumerate() {
            let scopes = scope_list(&rule.scope, format!("rules[{i}].scope"));
            rules.push((i, rule, scopes));
        }
        let rules = rules
            .into_iter()
            .map(|(i, rule, scopes)| {
                let mut methods = Vec::new();
                for (j, method) in rule.methods.iter().flatten().enumerate() {
                    let upper = method.to_ascii_uppercase();
                    if METHODS.contains(&upper.as_str()) {
                        methods.push(upper);
                    } else {
                        issues.push(ConfigIssue::new(
                            format!("rules[{i}].methods[{j}]"),
                            format!("unknown method `{method}` (use {})", METHODS.join(", ")),
                        ));
                    }
                }
                if rule.methods.as_ref().is_some_and(Vec::is_empty) {
                    issues.push(ConfigIssue::new(
                        format!("rules[{i}].methods"),
                        "an empty list matches nothing; leave `methods` out to match any method",
                    ));
                }
                if let Some(resource) = &rule.resource {
                    if resource.is_empty() || resource.contains('/') {
                        issues.push(ConfigIssue::new(
                            format!("rules[{i}].resource"),
                            "a resource type is one path segment, e.g. `Users`",
                        ));
                    }
                }
                ScopeRule {
                    resource: rule.resource.clone(),
                    methods,
                    scopes,
                }
            })
            .collect();
        if issues.is_empty() {
            Ok(Scopes {
                read,
                write,
                changes,
                changes_admin,
                rules,
            })
        } else {
            Err(issues)
        }
    }

    /// The scopes a request with this method and target needs.
    fn required(&self, method: &str, target: Target<'_>) -> &[String] {
        if matches!(target, Target::ChangeSubscribers(_)) {
            return &self.changes_admin;
        }
        let read = target.is_read(method);
        let method = if method == "POST" && target.is_search() {
            "GET"
        } else {
            method
        };
        let resource = target.type_name().unwrap_or("");
        let feed = target == Target::Changes;
        let rule = self.rules.iter().find(|rule| {
            let resource_matches = match rule.resource.as_deref() {
                Some(r) => r.eq_ignore_ascii_case(resource),
                // A rule for any resource does not open the feed.
                None => !feed,
            };
            resource_matches
                && (rule.methods.is_empty() || rule.methods.iter().any(|m| m == method))
        });
        match rule {
            Some(rule) => &rule.scopes,
            None if feed => &self.changes,
            None if read => &self.read,
            None => &self.write,
        }
    }

    fn is_open(&self) -> bool {
        self.read.is_empty() && self.write.is_empty() && self.rules.is_empty()
    }
}

impl Policy for Scopes {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
        // The token endpoint grants scopes itself; only resource requests
        // are checked here.
        if req.error_style == ErrorStyle::OAuth {
            return PolicyDecision::Allow;
        }
        let method = req.method.as_str();
        let path = req.path.as_str();
        let target = target_of(req);
        let mut required: Vec<&String> = self.required(method, target).iter().collect();
        // Each Bulk operation needs what it would need sent alone.
        if method == "POST" && target == Target::Bulk && !self.is_open() {
            let operations = match bulk_operations(req) {
                Ok(operations) => operations,
                Err(refusal) => return refusal,
            };
            for op in &operations {
                for scope in self.required(&op.method, op.target()) {
                    if !required.contains(&scope) {
                        required.push(scope);
                    }
                }
            }
        }
        if required.is_empty() {
            return PolicyDecision::Allow;
        }
        let required: Vec<&str> = required.into_iter().map(String::as_str).collect();
        let wanted = required.join(" ");
        let Some(principal) = caller.principal() else {
            return PolicyDecision::Deny(
                PluginError::new(
                    401,
                    format!("{method} {} requires scope `{wanted}` and the request is not authenticated", shown(path)),
                )
                .with_header("WWW-Authenticate", &format!("Bearer scope=\"{wanted}\"")),
            );
        };
        let missing: Vec<&str> = required
            .iter()
            .filter(|s| !principal.has_scope(s))
            .copied()
            .collect();
        if missing.is_empty() {
            return PolicyDecision::Allow;
        }
        PolicyDecision::Deny(
            PluginError::new(
                403,
                format!(
                    "client `{}` of provider `{}` lacks scope `{}` required for {method} {}",
                    principal.client_id,
                    principal.provider_id,
                    missing.join(" "),
                    shown(path)
                ),
            )
            .with_header(
                "WWW-Authenticate",
                &format!("Bearer error=\"insufficient_scope\", scope=\"{wanted}\""),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use serde_json::json;

    fn policy(config: serde_json::Value) -> Scopes {
        let config: ScopesConfig = scimgate_abi::sdk::deserialize_config(&config).unwrap();
        Scopes::build(config, &ctx(json!({}))).unwrap()
    }

    fn standard() -> Scopes {
        policy(json!({
            "read": "scim:read",
            "write": "scim:write",
            "rules": [{"resource": "Users", "methods": ["POST", "PUT", "patch", "DELETE"], "scope": "scim:users:write"}]
        }))
    }

    fn check(policy: &Scopes, scopes: &[&str], method: &str, path: &str) -> PolicyDecision {
        let p = provider("x");
        let who = principal("x", scopes);
        policy.check(&scim(method, path), caller(&who, &p))
    }

    #[test]
    fn read_and_write_defaults() {
        let policy = standard();
        assert_allow(check(&policy, &["scim:read"], "GET", "/Groups"));
        assert_allow(check(&policy, &["scim:read"], "HEAD", "/Groups"));
        assert_allow(check(&policy, &["scim:read"], "POST", "/.search"));
        assert_allow(check(&policy, &["scim:read"], "POST", "/Users/.search"));
        assert_allow(check(&policy, &["scim:write"], "PATCH", "/Groups/1"));
        let err = deny(check(&policy, &["scim:read"], "PATCH", "/Groups/1"));
        assert_eq!(err.status, 403);
        assert_eq!(err.code.as_str(), "");
        assert_eq!(
            header_of(&err, "www-authenticate"),
            Some("Bearer error=\"insufficient_scope\", scope=\"scim:write\"")
        );
        assert_eq!(
            err.message.as_str(),
            "client `x` of provider `x` lacks scope `scim:write` required for PATCH /Groups/1"
        );
        deny(check(&policy, &["scim:write"], "GET", "/Users"));
    }

    #[test]
    fn the_change_feed_needs_its_own_scope() {
        let std = standard();
        // Neither read nor any-resource rules open it.
        let err = deny(check(&std, &["scim:read", "scim:write"], "GET", "/Changes"));
        assert_eq!(err.status, 403);
        assert_eq!(
            header_of(&err, "www-authenticate"),
            Some("Bearer error=\"insufficient_scope\", scope=\"scim:changes\"")
        );
        assert_allow(check(&std, &["scim:changes"], "GET", "/changes"));
        let any = policy(json!({"rules": [{"methods": ["GET"], "scope": "r"}]}));
        deny(check(&any, &["r"], "GET", "/Changes"));
        assert_allow(check(&any, &["scim:changes"], "GET", "/Changes"));
        // A configured name, or a rule naming Changes, decides.
        let named = policy(json!({"changes": "feed"}));
        deny(check(&named, &["scim:changes"], "GET", "/Changes"));
        assert_allow(check(&named, &["feed"], "GET", "/Changes"));
        let rule = policy(json!({"rules": [{"resource": "Changes", "scope": "c"}]}));
        assert_allow(check(&rule, &["c"], "GET", "/Changes"));
        deny(check(&rule, &["scim:changes"], "GET", "/Changes"));
        // /Changes/x is not the feed: no feed scope, nothing there anyway.
        assert_allow(check(&std, &["scim:read"], "GET", "/Changes/1"));
    }

    #[test]
    fn the_subscriber_operations_need_the_admin_scope() {
        let std = standard();
        let err = deny(check(
            &std,
            &["scim:changes", "scim:write"],
            "GET",
            "/Changes/Subscribers",
        ));
        assert_eq!(
            header_of(&err, "www-authenticate"),
            Some("Bearer error=\"insufficient_scope\", scope=\"scim:changes:admin\"")
        );
        deny(check(
            &std,
            &["scim:changes"],
            "POST",
            "/changes/subscribers/hr",
        ));
        assert_allow(check(
            &std,
            &["scim:changes:admin"],
            "GET",
            "/Changes/Subscribers",
        ));
        assert_allow(check(
            &std,
            &["scim:changes:admin"],
            "POST",
            "/Changes/Subscribers/hr",
        ));
        // A rule naming Changes does not open them.
        let rule = policy(json!({"rules": [{"resource": "Changes", "scope": "c"}]}));
        deny(check(&rule, &["c"], "POST", "/Changes/Subscribers/hr"));
        let named = policy(json!({"changes_admin": "ops"}));
        assert_allow(check(&named, &["ops"], "POST", "/Changes/Subscribers/hr"));
    }

    #[test]
    fn rules_take_precedence_over_defaults() {
        let policy = standard();
        assert_allow(check(&policy, &["scim:users:write"], "POST", "/Users"));
        assert_allow(check(&policy, &["scim:users:write"], "DELETE", "/users/3"));
        let err = deny(check(&policy, &["scim:write"], "POST", "/Users"));
        assert_eq!(
            header_of(&err, "www-authenticate"),
            Some("Bearer error=\"insufficient_scope\", scope=\"scim:users:write\"")
        );
        // A search POST is a read, not the rule's POST.
        assert_allow(check(&policy, &["scim:read"], "POST", "/Users/.search"));
    }

    #[test]
    fn several_scopes_in_a_rule_are_all_required() {
        let policy =
            policy(json!({"rules": [{"resource": "Bulk", "scope": "scim:write scim:bulk"}]}));
        let bulk = |scopes: &[&str]| {
            let p = provider("x");
            let who = principal("x", scopes);
            let body = br#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []}"#;
            policy.check(
                &scim("POST", "/Bulk").with_body(&body[..]),
                caller(&who, &p),
            )
        };
        assert_allow(bulk(&["scim:write", "scim:bulk"]));
        let err = deny(bulk(&["scim:write"]));
        assert!(
            err.message.contains("lacks scope `scim:bulk`"),
            "{}",
            err.message
        );
        // Nothing configured for other requests.
        assert_allow(check(&policy, &[], "DELETE", "/Users/1"));
    }

    #[test]
    fn each_bulk_operation_needs_the_scopes_it_needs_alone() {
        let policy = standard();
        let bulk = |scopes: &[&str], ops: serde_json::Value| {
            let p = provider("x");
            let who = principal("x", scopes);
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops});
            let req = scim("POST", "/Bulk").with_body(serde_json::to_vec(&body).unwrap());
            policy.check(&req, caller(&who, &p))
        };
        let users = json!([{"method": "POST", "path": "/users", "bulkId": "a"}]);
        let err = deny(bulk(&["scim:write"], users.clone()));
        assert!(
            err.message.contains("lacks scope `scim:users:write`"),
            "{}",
            err.message
        );
        assert_allow(bulk(&["scim:write", "scim:users:write"], users));
        let groups = json!([{"method": "DELETE", "path": "/Groups/1"}]);
        assert_allow(bulk(&["scim:write"], groups));
        let unreadable = json!([{"method": "DELETE", "path": "/Users/../x"}]);
        assert_eq!(deny(bulk(&["scim:write"], unreadable)).status, 400);
    }

    #[test]
    fn bulk_bodies_are_read_whenever_any_scope_is_configured() {
        let garbage = |policy: &Scopes| {
            let p = provider("x");
            let who = principal("x", &["r", "w"]);
            let req = scim("POST", "/Bulk").with_body(b"not json".to_vec());
            policy.check(&req, caller(&who, &p))
        };
        // Nothing configured: nothing to check, the body is not even read.
        assert_allow(garbage(&policy(json!({}))));
        // Any one of read, write or a rule: the body must be readable.
        for config in [
            json!({"read": "r"}),
            json!({"write": "w"}),
            json!({"rules": [{"resource": "Groups", "scope": "r"}]}),
        ] {
            let err = deny(garbage(&policy(config.clone())));
            assert_eq!(
                (err.status, err.code.as_str()),
                (400, "invalidSyntax"),
                "{config}"
            );
        }
    }

    #[test]
    fn no_principal_with_a_required_scope_is_401() {
        let policy = standard();
        let err = deny(policy.check(&scim("GET", "/Users"), scimgate_abi::Caller::ANONYMOUS));
        assert_eq!(err.status, 401);
        assert_eq!(
            header_of(&err, "www-authenticate"),
            Some("Bearer scope=\"scim:read\"")
        );
        let open = super::tests::policy(json!({}));
        assert_allow(open.check(&scim("GET", "/Users"), scimgate_abi::Caller::ANONYMOUS));
    }

    #[test]
    fn token_route_is_not_checked() {
        let policy = standard();
        let p = provider("x");
        let who = principal("x", &[]);
        assert_allow(policy.check(&token_request(), caller(&who, &p)));
    }

    #[test]
    fn config_issues_are_located() {
        let config: ScopesConfig = scimgate_abi::sdk::deserialize_config(&json!({
            "read": " ",
            "rules": [{"methods": ["GET", "FETCH"], "scope": "a"}, {"methods": [], "scope": "b", "resource": "Users/x"}]
        }))
        .unwrap();
        let issues = Scopes::build(config, &ctx(json!({}))).err().unwrap();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "read",
                "rules[0].methods[1]",
                "rules[1].methods",
                "rules[1].resource"
            ]
        );
        let issue = scimgate_abi::sdk::deserialize_config::<ScopesConfig>(
            &json!({"rules": [{"scope": "a", "method": ["GET"]}]}),
        )
        .unwrap_err();
        assert_eq!(issue.path.as_str(), "rules[0].method");
    }
}
