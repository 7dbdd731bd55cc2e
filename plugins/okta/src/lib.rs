//! `okta/profile`: Okta's SCIM 2.0 provisioning dialect.
//!
//! Okta looks users up with `filter=userName eq "…"&startIndex=1&count=100`, creates
//! with POST, updates profiles with PUT, deactivates with a pathless
//! `{"op":"replace","value":{"active":false}}` and never DELETEs users. Group push
//! renames with a pathless replace that repeats the group's `id`, and replaces the
//! membership with `members` (an empty list meaning "remove everyone"). Inbound, the
//! profile applies the shared PATCH dialect rewrites, drops the read-only `id` from
//! pathless PATCH values, and applies the attribute `mapping` (also outbound).

use scimgate_abi::sdk::{Component, CreateContext, Profile};
use scimgate_abi::{Caller, ConfigIssue, PluginError, Request, Response};
use scimgate_scim::mapping::{self, Mapping};
use scimgate_scim::redact::{body_for_log, Sensitive};
use scimgate_scim::{dialect, Registry, SchemaCtx};
use serde::Deserialize;
use serde_json::Value;

fn components() -> Vec<Component> {
    vec![Component::profile_with_config(
        "profile",
        "Okta SCIM 2.0 provisioning dialect: PATCH normalisation, group push, attribute mapping",
        |config: OktaConfig, _ctx: &CreateContext| Okta::new(config),
    )
    .with_validate(|ctx| validate(&ctx.config))
    .with_schema(CONFIG_SCHEMA)]
}

scimgate_abi::export_plugin!("okta", components);

const CONFIG_SCHEMA: &str = r#"{"type":"object","properties":{"sensitive_attributes":{"type":"array","items":{"type":"string"}},"normalize_patch":{"type":"boolean"},"mapping":{"type":"array","items":{"type":"object"}}},"additionalProperties":false}"#;

/// The stage configuration (`use = "okta/profile"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OktaConfig {
    /// Apply the IGA dialect rewrites to PATCH bodies.
    #[serde(default = "yes")]
    pub normalize_patch: bool,
    /// Attribute mapping rules (see docs/mapping.md).
    #[serde(default)]
    pub mapping: Value,
    /// Attribute names whose values never appear in debug logs, besides
    /// `password` and every `returned: never` attribute (always hidden).
    #[serde(default)]
    pub sensitive_attributes: Vec<String>,
}

fn yes() -> bool {
    true
}

fn validate(config: &Value) -> Vec<ConfigIssue> {
    match config.get("mapping").map(|m| Mapping::parse("mapping", m)) {
        Some(Err(found)) => found
            .into_iter()
            .map(|issue| ConfigIssue::new(issue.path, issue.message))
            .collect(),
        _ => Vec::new(),
    }
}

/// The runtime profile.
pub struct Okta {
    normalize_patch: bool,
    mapping: Mapping,
    registry: Registry,
    sensitive_attributes: Vec<String>,
}

impl Okta {
    /// Builds the profile from its configuration.
    pub fn new(config: OktaConfig) -> Result<Okta, PluginError> {
        let mapping = Mapping::parse("mapping", &config.mapping).map_err(|issues| {
            let first = &issues[0];
            PluginError::new(500, format!("config {}: {}", first.path, first.message))
        })?;
        Ok(Okta {
            normalize_patch: config.normalize_patch,
            mapping,
            registry: Registry::core(),
            sensitive_attributes: config.sensitive_attributes,
        })
    }

    fn context(&self, resource: &str) -> SchemaCtx<'_> {
        self.registry
            .context_for(resource)
            .unwrap_or_else(|_| SchemaCtx::schemaless())
    }

    /// A request body for a debug line: operations, paths and shapes, never
    /// the values of `password`, `returned: never` or `sensitive_attributes`.
    fn body_for_log(&self, resource: &str, body: &Value) -> String {
        let sensitive = Sensitive::new(&self.context(resource), &self.sensitive_attributes);
        body_for_log(body, &sensitive)
    }
}

impl Profile for Okta {
    fn inbound(&self, req: &mut Request, _caller: Caller<'_>) -> Result<(), PluginError> {
        let resource = mapping::resource_for_path(&req.path);
        if let (Some(resource), "PATCH", true) = (
            resource,
            req.method.as_str(),
            self.normalize_patch && !req.body.is_empty(),
        ) {
            if let Ok(body) = scimgate_scim::parse_body(&req.body) {
                let mut normalized =
                    dialect::normalize_patch_request(&body, &self.context(resource));
                drop_pathless_ids(&mut normalized);
                if normalized != body {
                    tracing::debug!(before = %self.body_for_log(resource, &body), after = %self.body_for_log(resource, &normalized), "okta: PATCH body normalised");
                    req.body = serde_json::to_vec(&normalized).unwrap_or_default().into();
                }
            }
        }
        let applied =
            self.mapping
                .apply_to_request(&req.method, &req.path, &mut req.query, &mut req.body);
        if applied.any() {
            tracing::debug!(
                query = applied.query,
                body = applied.body,
                "okta: mapping rewrote the request"
            );
        }
        Ok(())
    }

    fn outbound(
        &self,
        req: &Request,
        _caller: Caller<'_>,
        resp: &mut Response,
    ) -> Result<(), PluginError> {
        if self
            .mapping
            .apply_to_response(&req.path, resp.status, &mut resp.body)
        {
            tracing::debug!("okta: mapping rewrote the response body");
        }
        Ok(())
    }
}

/// Group push repeats the group's `id` in a pathless replace; `id` is read-only and
/// the URL names the group, so it is dropped (an operation left empty goes too,
/// unless it is the only one).
fn drop_pathless_ids(body: &mut Value) {
    let Some(operations) = body.get_mut("Operations").and_then(Value::as_array_mut) else {
        return;
    };
    for operation in operations.iter_mut() {
        let pathless = operation.get("path").map_or(true, Value::is_null);
        if let (true, Some(Value::Object(value))) = (pathless, operation.get_mut("value")) {
            let key = value
                .keys()
                .find(|key| key.eq_ignore_ascii_case("id"))
                .cloned();
            if let Some(key) = key {
                value.remove(&key);
            }
        }
    }
    if operations.len() > 1 {
        operations.retain(|operation| {
            !operation
                .get("value")
                .and_then(Value::as_object)
                .is_some_and(|value| value.is_empty())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scimgate_scim::{apply_patch, PatchRequest};
    use serde_json::json;

    const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

    fn profile(config: Value) -> Okta {
        let config: OktaConfig = scimgate_abi::sdk::deserialize_config(&config).expect("config");
        Okta::new(config).expect("profile")
    }

    fn request(method: &str, path: &str, query: &str, body: &Value) -> Request {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        Request::new(method, path)
            .with_query(query)
            .with_body(body)
            .with_mount("/scim/v2", "https://gw.example.com/scim/v2")
    }

    fn inbound_patch(p: &Okta, path: &str, operations: Value) -> Value {
        let mut req = request(
            "PATCH",
            path,
            "",
            &json!({"schemas": [PATCH_OP], "Operations": operations}),
        );
        p.inbound(&mut req, Caller::ANONYMOUS).expect("inbound");
        serde_json::from_slice(&req.body).expect("JSON")
    }

    fn group() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1", "displayName": "Eng",
            "members": [{"value": "u1"}, {"value": "u2"}]})
    }

    fn apply(resource: &str, current: &Value, body: &Value) -> Value {
        let registry = Registry::core();
        let context = registry.context_for(resource).unwrap();
        apply_patch(
            &context,
            current,
            &PatchRequest::parse(body).expect("parses"),
        )
        .expect("applies")
    }

    #[test]
    fn pathless_deactivation_reaches_the_engine_unchanged() {
        let p = profile(json!({}));
        let body = inbound_patch(
            &p,
            "/Users/u1",
            json!([{"op": "replace", "value": {"active": false}}]),
        );
        assert_eq!(
            body["Operations"],
            json!([{"op": "replace", "value": {"active": false}}])
        );
        let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "a", "active": true});
        assert_eq!(apply("User", &user, &body)["active"], false);
    }

    #[test]
    fn empty_members_in_a_pathless_replace_removes_everyone() {
        // Verified against the scimgate-scim engine: replace with `members: []`
        // empties the group, so no rewrite to `remove members` is needed.
        let p = profile(json!({}));
        let body = inbound_patch(
            &p,
            "/Groups/g1",
            json!([{"op": "replace", "value": {"id": "g1", "members": []}}]),
        );
        assert_eq!(
            body["Operations"],
            json!([{"op": "replace", "value": {"members": []}}])
        );
        let out = apply("Group", &group(), &body);
        assert!(
            out.get("members").map_or(true, |m| m == &json!([])),
            "{out}"
        );
        let with_path = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "members", "value": []}]});
        let out = apply("Group", &group(), &with_path);
        assert!(
            out.get("members").map_or(true, |m| m == &json!([])),
            "{out}"
        );
    }

    #[test]
    fn group_push_rename_and_membership_changes() {
        let p = profile(json!({}));
        let body = inbound_patch(
            &p,
            "/Groups/g1",
            json!([
                {"op": "replace", "value": {"id": "g1", "displayName": "Engineering"}},
                {"op": "remove", "path": "members[value eq \"u1\"]"},
                {"op": "add", "path": "members", "value": [{"value": "u3", "display": "c@example.com"}]}
            ]),
        );
        assert_eq!(
            body["Operations"][0],
            json!({"op": "replace", "value": {"displayName": "Engineering"}})
        );
        let out = apply("Group", &group(), &body);
        assert_eq!(out["displayName"], "Engineering");
        assert_eq!(
            out["members"],
            json!([{"value": "u2"}, {"value": "u3", "display": "c@example.com"}])
        );
        // An operation that only repeated the id disappears (when it is not the only one).
        let body = inbound_patch(
            &p,
            "/Groups/g1",
            json!([
                {"op": "replace", "value": {"id": "g1"}},
                {"op": "replace", "value": {"members": [{"value": "u9"}]}}
            ]),
        );
        assert_eq!(
            body["Operations"],
            json!([{"op": "replace", "value": {"members": [{"value": "u9"}]}}])
        );
    }

    #[test]
    fn lookups_and_puts_pass_through_and_mapping_applies() {
        let p = profile(json!({}));
        let mut get = request(
            "GET",
            "/Users",
            "filter=userName%20eq%20%22a%40b.c%22&startIndex=1&count=100",
            &Value::Null,
        );
        p.inbound(&mut get, Caller::ANONYMOUS).unwrap();
        assert_eq!(
            get.query.as_str(),
            "filter=userName%20eq%20%22a%40b.c%22&startIndex=1&count=100"
        );
        let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "A@B.C", "active": true});
        let mut put = request("PUT", "/Users/u1", "", &user);
        p.inbound(&mut put, Caller::ANONYMOUS).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&put.body).unwrap(), user);

        let mapped = profile(json!({"mapping": [
            {"attribute": "userName", "transform": ["lower-case"]},
            {"resource": "User", "set_default": {"attribute": "userType", "value": "Employee"}}
        ]}));
        let mut put = request("PUT", "/Users/u1", "", &user);
        mapped.inbound(&mut put, Caller::ANONYMOUS).unwrap();
        let out: Value = serde_json::from_slice(&put.body).unwrap();
        assert_eq!(out["userName"], "a@b.c");
        assert_eq!(out["userType"], "Employee");
        let mut get = request(
            "GET",
            "/Users",
            "filter=userName%20eq%20%22A%40B.C%22",
            &Value::Null,
        );
        mapped.inbound(&mut get, Caller::ANONYMOUS).unwrap();
        assert_eq!(get.query.as_str(), "filter=userName%20eq%20%22a%40b.c%22");
    }

    #[test]
    fn config_errors_are_located() {
        let issues = validate(&json!({"mapping": [{"from": "a"}]}));
        assert_eq!(issues[0].path.as_str(), "mapping[0].to");
        assert!(
            scimgate_abi::sdk::deserialize_config::<OktaConfig>(&json!({"mappings": []})).is_err()
        );
    }
}
