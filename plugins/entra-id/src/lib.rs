//! `entra-id/profile`: the Microsoft Entra ID provisioning service's SCIM dialect.
//!
//! Inbound: the `aadOptscim062020` Tenant-URL flag is removed from the query; PATCH
//! bodies are normalised in both of Entra's behaviours (before the flag: `Replace`
//! ops, `"False"` strings, member removal by a `value` array; with it: pathless
//! `replace` with dotted keys, `members[value eq "…"]`) and the Enterprise User
//! `manager` is brought to `{"value": id}`; extra, non-SCIM schema URNs that Entra
//! lists in `schemas` of POST/PUT bodies are dropped; the attribute `mapping` applies.
//! Outbound: a 200 to a group PATCH becomes `group_patch_status` (204 by default).

use scimgate_abi::sdk::{Component, CreateContext, Profile};
use scimgate_abi::{Caller, ConfigIssue, PluginError, Request, Response};
use scimgate_scim::mapping::{self, query, Mapping};
use scimgate_scim::redact::{body_for_log, Sensitive};
use scimgate_scim::{dialect, urn, Registry, SchemaCtx};
use serde::Deserialize;
use serde_json::{Map, Value};

fn components() -> Vec<Component> {
    vec![Component::profile_with_config(
        "profile",
        "Microsoft Entra ID provisioning dialect: PATCH normalisation (with and without aadOptscim062020), manager shapes, extra schema URNs, group PATCH 204, attribute mapping",
        |config: EntraConfig, _ctx: &CreateContext| EntraId::new(config),
    )
    .with_validate(|ctx| validate(&ctx.config))
    .with_schema(CONFIG_SCHEMA)]
}

scimgate_abi::export_plugin!("entra-id", components);

const CONFIG_SCHEMA: &str = r#"{"type":"object","properties":{"sensitive_attributes":{"type":"array","items":{"type":"string"}},"group_patch_status":{"enum":[200,204]},"ignored_schemas":{"type":"array","items":{"type":"string"}},"mapping":{"type":"array","items":{"type":"object"}}},"additionalProperties":false}"#;

/// The Tenant-URL flag that switches Entra to its SCIM-compliant behaviour.
const FLAG: &str = "aadOptscim062020";

const MANAGER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";

/// The stage configuration (`use = "entra-id/profile"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraConfig {
    /// Status for a successful group PATCH: 204 (empty body, what Entra expects) or 200.
    #[serde(default = "default_group_patch_status")]
    pub group_patch_status: u16,
    /// Schema URNs dropped from `schemas` (and their member objects) in POST/PUT
    /// bodies; a trailing `*` matches a prefix.
    #[serde(default = "default_ignored_schemas")]
    pub ignored_schemas: Vec<String>,
    /// Attribute mapping rules (see docs/mapping.md).
    #[serde(default)]
    pub mapping: Value,
    /// Attribute names whose values never appear in debug logs, besides
    /// `password` and every `returned: never` attribute (always hidden).
    #[serde(default)]
    pub sensitive_attributes: Vec<String>,
}

fn default_group_patch_status() -> u16 {
    204
}

fn default_ignored_schemas() -> Vec<String> {
    vec![
        "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group".into(),
        "http://schemas.microsoft.com/*".into(),
    ]
}

fn validate(config: &Value) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if let Some(mapping) = config.get("mapping") {
        if let Err(found) = Mapping::parse("mapping", mapping) {
            issues.extend(
                found
                    .into_iter()
                    .map(|issue| ConfigIssue::new(issue.path, issue.message)),
            );
        }
    }
    if let Some(status) = config.get("group_patch_status").and_then(Value::as_u64) {
        if status != 200 && status != 204 {
            issues.push(ConfigIssue::new(
                "group_patch_status",
                format!("{status} is not 200 or 204"),
            ));
        }
    }
    if let Some(Value::Array(items)) = config.get("ignored_schemas") {
        for (index, item) in items.iter().enumerate() {
            let Some(text) = item.as_str() else { continue };
            let core = text
                .to_ascii_lowercase()
                .starts_with("urn:ietf:params:scim:");
            if text.trim().is_empty() || text == "*" || core {
                issues.push(ConfigIssue::new(
                    format!("ignored_schemas[{index}]"),
                    "expected a non-SCIM schema URN (or a prefix ending in `*`); SCIM's own URNs cannot be ignored",
                ));
            }
        }
    }
    issues
}

/// The runtime profile.
pub struct EntraId {
    group_patch_status: u16,
    ignored_schemas: Vec<String>,
    mapping: Mapping,
    registry: Registry,
    sensitive_attributes: Vec<String>,
}

impl EntraId {
    /// Builds the profile from its configuration.
    pub fn new(config: EntraConfig) -> Result<EntraId, PluginError> {
        let mapping = Mapping::parse("mapping", &config.mapping).map_err(|issues| {
            let first = &issues[0];
            PluginError::new(500, format!("config {}: {}", first.path, first.message))
        })?;
        Ok(EntraId {
            group_patch_status: config.group_patch_status,
            ignored_schemas: config.ignored_schemas,
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

    fn ignored(&self, schema: &str) -> bool {
        self.ignored_schemas
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => schema
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
                None => schema.eq_ignore_ascii_case(pattern),
            })
    }

    /// Drops ignored URNs from `schemas` and the objects keyed by them.
    fn drop_ignored_schemas(&self, body: &mut Value) -> Vec<String> {
        let Some(object) = body.as_object_mut() else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        if let Some(Value::Array(schemas)) = object.get_mut("schemas") {
            schemas.retain(|schema| match schema.as_str() {
                Some(text) if self.ignored(text) => {
                    dropped.push(text.to_string());
                    false
                }
                _ => true,
            });
        }
        let keyed: Vec<String> = object
            .keys()
            .filter(|key| self.ignored(key))
            .cloned()
            .collect();
        for key in keyed {
            object.remove(&key);
            dropped.push(key);
        }
        dropped
    }

    /// Entra's PATCH dialects → RFC 7644 (order matters: the manager removal must be
    /// fixed before value-array removals become filters).
    fn normalize_patch(&self, resource: &str, body: &mut Value) {
        let context = self.context(resource);
        dialect::normalize_op_case(body);
        dialect::drop_extension_schemas(body, &context);
        dialect::expand_pathless_paths(body, &context);
        if resource == "User" {
            normalize_manager(body);
        }
        dialect::value_array_removal_to_filter(body);
        dialect::drop_value_of_filtered_removal(body);
        dialect::coerce_string_booleans(body, &context);
    }
}

impl Profile for EntraId {
    fn inbound(&self, req: &mut Request, _caller: Caller<'_>) -> Result<(), PluginError> {
        if !req.query.is_empty() {
            if let Some(query) = query::remove(&req.query, FLAG) {
                tracing::debug!("entra-id: removed the {FLAG} flag from the query");
                req.query = query.into();
            }
        }
        let resource = mapping::resource_for_path(&req.path);
        if let (Some(resource), false) = (resource, req.body.is_empty()) {
            let method = req.method.as_str();
            if matches!(method, "POST" | "PUT" | "PATCH") && !mapping::path_is_search(&req.path) {
                if let Ok(mut body) = scimgate_scim::parse_body(&req.body) {
                    let before = body.clone();
                    if method == "PATCH" {
                        self.normalize_patch(resource, &mut body);
                    } else {
                        let dropped = self.drop_ignored_schemas(&mut body);
                        if !dropped.is_empty() {
                            tracing::debug!(?dropped, "entra-id: ignored schema URNs dropped");
                        }
                    }
                    if body != before {
                        tracing::debug!(before = %self.body_for_log(resource, &before), after = %self.body_for_log(resource, &body), "entra-id: request body normalised");
                        req.body = serde_json::to_vec(&body).unwrap_or_default().into();
                    }
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
                "entra-id: mapping rewrote the request"
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
        if req.method.as_str() == "PATCH"
            && resp.status == 200
            && self.group_patch_status == 204
            && is_group_item(&req.path)
        {
            tracing::debug!(path = %req.path, "entra-id: group PATCH answered 204");
            resp.status = 204;
            resp.body = Vec::new().into();
            resp.headers.retain(|header| {
                !header.name.as_str().eq_ignore_ascii_case("content-type")
                    && !header.name.as_str().eq_ignore_ascii_case("content-length")
            });
            return Ok(());
        }
        if self
            .mapping
            .apply_to_response(&req.path, resp.status, &mut resp.body)
        {
            tracing::debug!("entra-id: mapping rewrote the response body");
        }
        Ok(())
    }
}

/// `/Groups/{id}` (any case).
fn is_group_item(path: &str) -> bool {
    let mut segments = path.trim_matches('/').split('/');
    matches!(
        (segments.next(), segments.next(), segments.next()),
        (Some(endpoint), Some(id), None) if endpoint.eq_ignore_ascii_case("Groups") && !id.is_empty()
    )
}

fn is_manager_path(path: &str) -> bool {
    path.eq_ignore_ascii_case(MANAGER) || path.eq_ignore_ascii_case("manager")
}

/// Entra sends the manager as `"value": "<id>"`, `{"value": "<id>"}` or
/// `[{"value": "<id>"}]`; the schema wants `{"value": id}`. A `remove` of the manager
/// with a value removes the manager (the value is dropped).
pub fn normalize_manager(body: &mut Value) -> bool {
    let Some(operations) = body.get_mut("Operations").and_then(Value::as_array_mut) else {
        return false;
    };
    let mut changed = false;
    for operation in operations.iter_mut().filter_map(Value::as_object_mut) {
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .map(str::to_string);
        let is_remove = operation
            .get("op")
            .and_then(Value::as_str)
            .is_some_and(|op| op.eq_ignore_ascii_case("remove"));
        match path {
            Some(path) if is_manager_path(&path) => {
                if is_remove {
                    changed |= operation.remove("value").is_some();
                } else if let Some(value) = operation.get_mut("value") {
                    changed |= manager_value(value);
                }
            }
            Some(_) => {}
            None => {
                let Some(Value::Object(members)) = operation.get_mut("value") else {
                    continue;
                };
                changed |= manager_in_object(members);
            }
        }
    }
    changed
}

fn manager_in_object(members: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    for (key, value) in members.iter_mut() {
        if is_manager_path(key) {
            changed |= manager_value(value);
        } else if key.eq_ignore_ascii_case(urn::ENTERPRISE_USER) {
            if let Value::Object(extension) = value {
                for (name, inner) in extension.iter_mut() {
                    if name.eq_ignore_ascii_case("manager") {
                        changed |= manager_value(inner);
                    }
                }
            }
        }
    }
    changed
}

fn manager_value(value: &mut Value) -> bool {
    match value {
        Value::String(id) => {
            let mut object = Map::new();
            object.insert("value".into(), Value::String(std::mem::take(id)));
            *value = Value::Object(object);
            true
        }
        Value::Array(items) if items.len() == 1 => {
            let mut item = items.remove(0);
            manager_value(&mut item);
            *value = item;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scimgate_scim::{apply_patch, PatchRequest};
    use serde_json::json;

    const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn profile(config: Value) -> EntraId {
        let config: EntraConfig = scimgate_abi::sdk::deserialize_config(&config).expect("config");
        EntraId::new(config).expect("profile")
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

    fn patched(p: &EntraId, path: &str, operations: Value) -> Value {
        let mut req = request(
            "PATCH",
            path,
            "",
            &json!({"schemas": [PATCH_OP], "Operations": operations}),
        );
        p.inbound(&mut req, Caller::ANONYMOUS).expect("inbound");
        serde_json::from_slice::<Value>(&req.body).expect("JSON")["Operations"].clone()
    }

    #[test]
    fn capitalised_ops_and_string_booleans_become_rfc() {
        let p = profile(json!({}));
        let ops = patched(
            &p,
            "/Users/u1",
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "emails[type eq \"work\"].primary", "value": "True"},
                {"op": "Replace", "value": {"active": "True", "displayName": "B"}}
            ]),
        );
        assert_eq!(
            ops,
            json!([
                {"op": "replace", "path": "active", "value": false},
                {"op": "add", "path": "emails[type eq \"work\"].primary", "value": true},
                {"op": "replace", "value": {"active": true, "displayName": "B"}}
            ])
        );
    }

    #[test]
    fn pathless_replace_with_dotted_keys_with_and_without_the_flag() {
        let p = profile(json!({}));
        // aadOptscim062020 behaviour: lower-case op, dotted keys in a pathless value.
        let flagged = patched(
            &p,
            "/Users/u1",
            json!([
                {"op": "replace", "value": {"name.givenName": "Barbara", "name.familyName": "Jensen", "emails[type eq \"work\"].value": "b@example.com", "active": false}}
            ]),
        );
        assert_eq!(
            flagged,
            json!([
                {"op": "replace", "value": {"active": false}},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@example.com"},
                {"op": "replace", "path": "name.familyName", "value": "Jensen"},
                {"op": "replace", "path": "name.givenName", "value": "Barbara"}
            ])
        );
        // Before the flag: capitalised, strings for booleans, URN-qualified keys.
        let legacy = patched(
            &p,
            "/Users/u1",
            json!([
                {"op": "Replace", "value": {format!("{ENT}:department"): "Sales", "active": "False"}}
            ]),
        );
        assert_eq!(
            legacy,
            json!([
                {"op": "replace", "value": {"active": false}},
                {"op": "replace", "path": format!("{ENT}:department"), "value": "Sales"}
            ])
        );
        // Both apply cleanly with the PATCH engine.
        let registry = Registry::core();
        let users = registry.context_for("User").unwrap();
        let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "bj",
            "emails": [{"type": "work", "value": "old@example.com"}]});
        for ops in [flagged, legacy] {
            let request =
                PatchRequest::parse(&json!({"schemas": [PATCH_OP], "Operations": ops})).unwrap();
            let out = apply_patch(&users, &user, &request).expect("applies");
            assert_eq!(out["active"], false);
        }
    }

    #[test]
    fn the_flag_is_removed_from_the_query() {
        let p = profile(json!({}));
        let mut req = request(
            "GET",
            "/Users",
            "aadOptscim062020&filter=userName%20eq%20%22a%22",
            &Value::Null,
        );
        p.inbound(&mut req, Caller::ANONYMOUS).unwrap();
        assert_eq!(req.query.as_str(), "filter=userName%20eq%20%22a%22");
    }

    #[test]
    fn member_removal_in_both_dialects() {
        let p = profile(json!({}));
        let ops = patched(
            &p,
            "/Groups/g1",
            json!([
                {"op": "Remove", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
                {"op": "remove", "path": "members[value eq \"u3\"]"},
                {"op": "Add", "path": "members", "value": [{"value": "u4"}]}
            ]),
        );
        assert_eq!(
            ops,
            json!([
                {"op": "remove", "path": "members[value eq \"u1\" or value eq \"u2\"]"},
                {"op": "remove", "path": "members[value eq \"u3\"]"},
                {"op": "add", "path": "members", "value": [{"value": "u4"}]}
            ])
        );
    }

    #[test]
    fn manager_shapes_become_value_objects() {
        let p = profile(json!({}));
        let ops = patched(
            &p,
            "/Users/u1",
            json!([
                {"op": "Add", "path": MANAGER, "value": "m1"},
                {"op": "Replace", "path": MANAGER, "value": {"value": "m2"}},
                {"op": "replace", "path": MANAGER, "value": [{"value": "m3"}]},
                {"op": "Replace", "value": {MANAGER: "m4"}},
                {"op": "replace", "value": {ENT: {"manager": "m5"}}},
                {"op": "Remove", "path": MANAGER, "value": [{"value": "m1"}]},
                {"op": "remove", "path": MANAGER, "value": "m1"}
            ]),
        );
        assert_eq!(
            ops,
            json!([
                {"op": "add", "path": MANAGER, "value": {"value": "m1"}},
                {"op": "replace", "path": MANAGER, "value": {"value": "m2"}},
                {"op": "replace", "path": MANAGER, "value": {"value": "m3"}},
                {"op": "replace", "path": MANAGER, "value": {"value": "m4"}},
                {"op": "replace", "value": {ENT: {"manager": {"value": "m5"}}}},
                {"op": "remove", "path": MANAGER},
                {"op": "remove", "path": MANAGER}
            ])
        );
        let registry = Registry::core();
        let users = registry.context_for("User").unwrap();
        let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "bj"});
        let request =
            PatchRequest::parse(&json!({"schemas": [PATCH_OP], "Operations": ops})).unwrap();
        let out = apply_patch(&users, &user, &request).expect("applies");
        assert!(out.get(ENT).is_none(), "{out}");
    }

    #[test]
    fn extra_group_schema_urns_are_dropped_on_create_and_replace() {
        let p = profile(json!({}));
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "displayName": "Sales", "externalId": "e1",
            "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group": {"x": 1}});
        for method in ["POST", "PUT"] {
            let mut req = request(method, "/Groups", "", &body);
            p.inbound(&mut req, Caller::ANONYMOUS).unwrap();
            let out: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(
                out,
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Sales", "externalId": "e1"})
            );
        }
        let custom = profile(json!({"ignored_schemas": ["urn:example:legacy"]}));
        let mut req = request(
            "POST",
            "/Groups",
            "",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "URN:EXAMPLE:LEGACY", "http://schemas.microsoft.com/x"]}),
        );
        custom.inbound(&mut req, Caller::ANONYMOUS).unwrap();
        let out: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            out["schemas"],
            json!([
                "urn:ietf:params:scim:schemas:core:2.0:Group",
                "http://schemas.microsoft.com/x"
            ])
        );
    }

    #[test]
    fn group_patch_200_becomes_204_unless_configured() {
        let p = profile(json!({}));
        let req = request("PATCH", "/Groups/g1", "", &json!({}));
        let mut resp = Response::json(200, "application/scim+json", &json!({"id": "g1"}))
            .with_header("etag", "W/\"2\"");
        p.outbound(&req, Caller::ANONYMOUS, &mut resp).unwrap();
        assert_eq!(resp.status, 204);
        assert!(resp.body.is_empty());
        assert_eq!(resp.header("content-type"), None);
        assert_eq!(resp.header("etag"), Some("W/\"2\""));
        for (method, path, status) in [
            ("PATCH", "/Users/u1", 200),
            ("GET", "/Groups/g1", 200),
            ("PATCH", "/Groups/g1", 400),
            ("PATCH", "/Groups", 200),
        ] {
            let req = request(method, path, "", &Value::Null);
            let mut resp = Response::json(status, "application/scim+json", &json!({"id": "x"}));
            p.outbound(&req, Caller::ANONYMOUS, &mut resp).unwrap();
            assert_eq!(resp.status, status, "{method} {path}");
        }
        let keep = profile(json!({"group_patch_status": 200}));
        let mut resp = Response::json(200, "application/scim+json", &json!({"id": "g1"}));
        keep.outbound(&req, Caller::ANONYMOUS, &mut resp).unwrap();
        assert_eq!(resp.status, 200);
    }

    #[test]
    fn mapping_and_config_errors() {
        let p = profile(
            json!({"mapping": [{"from": format!("{ENT}:employeeNumber"), "to": "externalId"}]}),
        );
        let ops = patched(
            &p,
            "/Users/u1",
            json!([
                {"op": "Replace", "path": format!("{ENT}:employeeNumber"), "value": "42"}
            ]),
        );
        assert_eq!(
            ops,
            json!([{"op": "replace", "path": "externalId", "value": "42"}])
        );
        let issues = validate(
            &json!({"group_patch_status": 201, "ignored_schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "mapping": [{"drop": "a", "to": "b"}]}),
        );
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["mapping[0].to", "group_patch_status", "ignored_schemas[0]"]
        );
    }
}
