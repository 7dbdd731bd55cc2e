//! `one-identity/profile`: One Identity Manager's SCIM connector dialect.
//!
//! Inbound: endpoint names and query parameter names are matched ignoring case and
//! trailing slashes (`GET /resourcetypes/?startindex=1` → `/ResourceTypes?startIndex=1`),
//! PATCH bodies get the shared IGA dialect rewrites of `scimgate_scim::dialect`, and the
//! configured attribute `mapping` applies. Outbound: group reads always carry `members`
//! with `type` and `$ref` (OIM maps memberships from them). Every rewrite is logged at
//! debug level so real traffic can be studied.

use scimgate_abi::sdk::{Component, CreateContext, Profile};
use scimgate_abi::{Caller, ConfigIssue, PluginError, Request, Response};
use scimgate_scim::mapping::{self, query, Mapping};
use scimgate_scim::redact::{body_for_log, Sensitive};
use scimgate_scim::{dialect, Registry, SchemaCtx};
use serde::Deserialize;
use serde_json::{Map, Value};

fn components() -> Vec<Component> {
    vec![Component::profile_with_config(
        "profile",
        "One Identity Manager SCIM connector dialect: case-insensitive paths and parameters, group members with type/$ref, PATCH normalisation, attribute mapping",
        |config: OneIdentityConfig, _ctx: &CreateContext| OneIdentity::new(config),
    )
    .with_validate(|ctx| validate(&ctx.config))
    .with_schema(CONFIG_SCHEMA)]
}

scimgate_abi::export_plugin!("one-identity", components);

const CONFIG_SCHEMA: &str = r#"{"type":"object","properties":{"sensitive_attributes":{"type":"array","items":{"type":"string"}},"query_parameters":{"type":"array","items":{"type":"string"}},"group_members":{"type":"boolean"},"normalize_patch":{"type":"boolean"},"mapping":{"type":"array","items":{"type":"object"}}},"additionalProperties":false}"#;

/// The stage configuration (`[stage.NAME]` with `use = "one-identity/profile"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneIdentityConfig {
    /// Query parameter names matched ignoring case.
    #[serde(default = "default_query_parameters")]
    pub query_parameters: Vec<String>,
    /// Complete `members` of groups in GET responses (`members: []`, `type`, `$ref`).
    #[serde(default = "yes")]
    pub group_members: bool,
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

fn default_query_parameters() -> Vec<String> {
    [
        "filter",
        "startIndex",
        "count",
        "attributes",
        "excludedAttributes",
        "sortBy",
        "sortOrder",
        "cursor",
    ]
    .map(String::from)
    .to_vec()
}

fn yes() -> bool {
    true
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
    for key in ["query_parameters"] {
        if let Some(Value::Array(items)) = config.get(key) {
            for (index, item) in items.iter().enumerate() {
                if item
                    .as_str()
                    .is_some_and(|name| name.trim_matches('/').is_empty() || name.contains('/'))
                {
                    issues.push(ConfigIssue::new(
                        format!("{key}[{index}]"),
                        "expected a single name such as \"Users\" (no slashes)",
                    ));
                }
            }
        }
    }
    issues
}

/// The runtime profile.
pub struct OneIdentity {
    query_parameters: Vec<String>,
    group_members: bool,
    normalize_patch: bool,
    mapping: Mapping,
    registry: Registry,
    sensitive_attributes: Vec<String>,
}

impl OneIdentity {
    /// Builds the profile from its configuration.
    pub fn new(config: OneIdentityConfig) -> Result<OneIdentity, PluginError> {
        let mapping = Mapping::parse("mapping", &config.mapping).map_err(|issues| {
            let first = &issues[0];
            PluginError::new(500, format!("config {}: {}", first.path, first.message))
        })?;
        Ok(OneIdentity {
            query_parameters: config.query_parameters,
            group_members: config.group_members,
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

impl Profile for OneIdentity {
    fn inbound(&self, req: &mut Request, _caller: Caller<'_>) -> Result<(), PluginError> {
        if !req.query.is_empty() {
            let names: Vec<&str> = self.query_parameters.iter().map(String::as_str).collect();
            if let Some((query, renamed)) = query::canonicalize_names(&req.query, &names) {
                tracing::debug!(?renamed, "one-identity: query parameter names rewritten");
                req.query = query.into();
            }
        }
        let resource = mapping::resource_for_path(&req.path);
        if self.normalize_patch && req.method.as_str() == "PATCH" && !req.body.is_empty() {
            if let (Some(resource), Ok(body)) = (resource, scimgate_scim::parse_body(&req.body)) {
                let normalized = dialect::normalize_patch_request(&body, &self.context(resource));
                if normalized != body {
                    tracing::debug!(before = %self.body_for_log(resource, &body), after = %self.body_for_log(resource, &normalized), "one-identity: PATCH body normalised");
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
                "one-identity: mapping rewrote the request"
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
        let resource = mapping::resource_for_path(&req.path);
        let selection = if self.group_members && resource == Some("Group") {
            member_selection(req)
        } else {
            None
        };
        if selection.is_none() {
            if self
                .mapping
                .apply_to_response(&req.path, resp.status, &mut resp.body)
            {
                tracing::debug!("one-identity: mapping rewrote the response body");
            }
            return Ok(());
        }
        if resp.status != 200 {
            return Ok(());
        }
        let Ok(mut body) = serde_json::from_slice::<Value>(&resp.body) else {
            return Ok(());
        };
        let mut changed = self.mapping.outbound_body(resource, &mut body);
        if let Some(selection) = selection {
            let base = req.base_url.trim_end_matches('/');
            if mapping::is_list_response(&body) {
                if let Some(Value::Array(groups)) = body.get_mut("Resources") {
                    for group in groups.iter_mut() {
                        changed |= complete_members(group, base, selection);
                    }
                }
            } else if body.get("schemas").is_some() || body.get("id").is_some() {
                changed |= complete_members(&mut body, base, selection);
            }
        }
        if changed {
            tracing::debug!("one-identity: group members completed in the response");
            resp.body = serde_json::to_vec(&body).unwrap_or_default().into();
        }
        Ok(())
    }
}

/// Which member sub-attributes to fill in on a group read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemberSelection {
    kind: bool,
    reference: bool,
}

const GROUP_URN_PREFIX: &str = "urn:ietf:params:scim:schemas:core:2.0:Group:";

/// `Some` when the request reads groups and `members` is neither excluded nor left
/// out by `attributes` (query string, or the body of `POST /Groups/.search`).
fn member_selection(req: &Request) -> Option<MemberSelection> {
    let search = mapping::path_is_search(&req.path);
    let (attributes, excluded) = match (req.method.as_str(), search) {
        ("GET", false) => (
            query::param(&req.query, "attributes"),
            query::param(&req.query, "excludedAttributes"),
        ),
        ("POST", true) => {
            let body: Value = serde_json::from_slice(&req.body).ok()?;
            let list = |key: &str| {
                body.get(key).and_then(Value::as_array).map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
            };
            (list("attributes"), list("excludedAttributes"))
        }
        _ => return None,
    };
    let names = |list: &Option<String>| -> Vec<String> {
        list.as_deref()
            .unwrap_or("")
            .split(',')
            .map(|name| {
                let name = name.trim();
                match name.get(..GROUP_URN_PREFIX.len()) {
                    Some(prefix) if prefix.eq_ignore_ascii_case(GROUP_URN_PREFIX) => {
                        name[GROUP_URN_PREFIX.len()..].to_ascii_lowercase()
                    }
                    _ => name.to_ascii_lowercase(),
                }
            })
            .filter(|name| !name.is_empty())
            .collect()
    };
    let excluded = names(&excluded);
    if excluded.iter().any(|name| name == "members") {
        return None;
    }
    let mut selection = MemberSelection {
        kind: !excluded.iter().any(|name| name == "members.type"),
        reference: !excluded.iter().any(|name| name == "members.$ref"),
    };
    if attributes.is_some() {
        let attributes = names(&attributes);
        if !attributes.iter().any(|name| name == "members") {
            let kind = attributes.iter().any(|name| name == "members.type");
            let reference = attributes.iter().any(|name| name == "members.$ref");
            let any_member = attributes.iter().any(|name| name.starts_with("members."));
            if !any_member {
                return None;
            }
            selection.kind &= kind;
            selection.reference &= reference;
        }
    }
    Some(selection)
}

/// Adds `members: []` when missing and each member's missing `type` ("Group" when its
/// `$ref` points at /Groups/, else "User") and `$ref` (`{base}/Users/{value}`).
fn complete_members(group: &mut Value, base: &str, selection: MemberSelection) -> bool {
    let Some(object) = group.as_object_mut() else {
        return false;
    };
    let key = object
        .keys()
        .find(|key| key.eq_ignore_ascii_case("members"))
        .cloned();
    let Some(key) = key else {
        object.insert("members".into(), Value::Array(Vec::new()));
        return true;
    };
    let Some(Value::Array(members)) = object.get_mut(&key) else {
        return false;
    };
    let mut changed = false;
    for member in members.iter_mut().filter_map(Value::as_object_mut) {
        changed |= complete_member(member, base, selection);
    }
    changed
}

fn complete_member(
    member: &mut Map<String, Value>,
    base: &str,
    selection: MemberSelection,
) -> bool {
    let find = |member: &Map<String, Value>, name: &str| {
        member
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str())
            .map(str::to_string)
    };
    let reference = find(member, "$ref");
    let mut kind = find(member, "type");
    let mut changed = false;
    if kind.is_none() && selection.kind {
        let is_group = reference
            .as_deref()
            .is_some_and(|reference| reference.contains("/Groups/"));
        let value = if is_group { "Group" } else { "User" };
        member.insert("type".into(), Value::String(value.into()));
        kind = Some(value.into());
        changed = true;
    }
    if reference.is_none() && selection.reference {
        if let Some(id) = find(member, "value") {
            let endpoint = match kind.as_deref() {
                Some(kind) if kind.eq_ignore_ascii_case("Group") => "Groups",
                _ => "Users",
            };
            member.insert(
                "$ref".into(),
                Value::String(format!("{base}/{endpoint}/{id}")),
            );
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use scimgate_abi::Header;
    use serde_json::json;

    const BASE: &str = "https://vault.example.com/iso/scim/v2";

    fn profile(config: Value) -> OneIdentity {
        let config: OneIdentityConfig =
            scimgate_abi::sdk::deserialize_config(&config).expect("config");
        OneIdentity::new(config).expect("profile")
    }

    fn request(method: &str, path: &str, query: &str, body: &str) -> Request {
        Request::new(method, path)
            .with_query(query)
            .with_body(body)
            .with_mount("/iso/scim/v2", BASE)
    }

    fn inbound(profile: &OneIdentity, req: &mut Request) {
        profile
            .inbound(req, Caller::ANONYMOUS)
            .expect("inbound succeeds");
    }

    fn outbound(profile: &OneIdentity, req: &Request, status: u16, body: &Value) -> Value {
        let mut resp = Response::json(status, "application/scim+json", body);
        profile
            .outbound(req, Caller::ANONYMOUS, &mut resp)
            .expect("outbound succeeds");
        serde_json::from_slice(&resp.body).expect("JSON body")
    }

    #[test]
    fn paths_are_left_as_the_policies_judged_them() {
        // Case and trailing slashes are resolved by `scimgate_scim::Target`
        // at the endpoint, the same resolver the policies use; the profile
        // never changes the path (the host would refuse the request).
        let p = profile(json!({}));
        for path in [
            "/resourcetypes",
            "/users/.SEARCH",
            "/groups/AbC",
            "/bulk",
            "",
        ] {
            let mut req = request("GET", path, "", "");
            inbound(&p, &mut req);
            assert_eq!(req.path.as_str(), path);
        }
    }

    #[test]
    fn the_removed_endpoints_setting_is_an_unknown_key() {
        let unknown = scimgate_abi::sdk::deserialize_config::<OneIdentityConfig>(
            &json!({"endpoints": ["Users"]}),
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn ambiguous_patch_bodies_are_left_for_the_endpoint_to_refuse() {
        let p = profile(json!({}));
        let body = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Replace", "path": "active", "value": "False"}], "OPERATIONS": []}"#;
        let mut req = request("PATCH", "/Users/1", "", body);
        inbound(&p, &mut req);
        assert_eq!(req.body.as_slice(), body.as_bytes(), "left byte for byte");
    }

    #[test]
    fn query_parameter_names_match_ignoring_case_and_values_keep_their_bytes() {
        let p = profile(json!({}));
        let mut req = request(
            "GET",
            "/Users",
            "startindex=1&COUNT=100&Filter=(id%20eq%20%22a%22)%20or%20(id%20eq%20%22b%22)&excludedattributes=members&sortby=userName&SortOrder=descending&other=1",
            "",
        );
        inbound(&p, &mut req);
        assert_eq!(
            req.query.as_str(),
            "startIndex=1&count=100&filter=(id%20eq%20%22a%22)%20or%20(id%20eq%20%22b%22)&excludedAttributes=members&sortBy=userName&sortOrder=descending&other=1"
        );
    }

    #[test]
    fn patch_bodies_get_the_dialect_rewrites() {
        let p = profile(json!({}));
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Remove", "path": "members", "value": [{"value": "u1"}]},
            {"op": "remove", "path": "members[value eq \"u2\"]", "value": [{"value": "u2"}]}
        ]});
        let mut req = request("PATCH", "/groups/g1", "", &body.to_string());
        inbound(&p, &mut req);
        let out: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            out["Operations"],
            json!([
                {"op": "replace", "path": "active", "value": "False"},
                {"op": "remove", "path": "members[value eq \"u1\"]"},
                {"op": "remove", "path": "members[value eq \"u2\"]"}
            ])
        );
        let user = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": "Replace", "value": {"active": "False", "name.givenName": "B"}}
        ]});
        let mut req = request("PATCH", "/Users/u1", "", &user.to_string());
        inbound(&p, &mut req);
        let out: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            out["Operations"],
            json!([
                {"op": "replace", "value": {"active": false}},
                {"op": "replace", "path": "name.givenName", "value": "B"}
            ])
        );
        let off = profile(json!({"normalize_patch": false}));
        let mut req = request("PATCH", "/Users/u1", "", &user.to_string());
        inbound(&off, &mut req);
        assert_eq!(serde_json::from_slice::<Value>(&req.body).unwrap(), user);
    }

    #[test]
    fn group_reads_carry_members_with_type_and_ref() {
        let p = profile(json!({}));
        let req = request("GET", "/groups/g1", "", "");
        let mut req = req;
        inbound(&p, &mut req);
        let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1", "displayName": "Admins",
        "members": [
            {"value": "u1", "display": "Babs"},
            {"value": "g2", "$ref": "https://elsewhere/v2/Groups/g2"},
            {"value": "u3", "type": "User", "$ref": "https://x/Users/u3"}
        ]});
        let out = outbound(&p, &req, 200, &group);
        assert_eq!(
            out["members"],
            json!([
                {"value": "u1", "display": "Babs", "type": "User", "$ref": format!("{BASE}/Users/u1")},
                {"value": "g2", "$ref": "https://elsewhere/v2/Groups/g2", "type": "Group"},
                {"value": "u3", "type": "User", "$ref": "https://x/Users/u3"}
            ])
        );
        let empty = outbound(
            &p,
            &req,
            200,
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1"}),
        );
        assert_eq!(empty["members"], json!([]));
        let typed_group = outbound(
            &p,
            &req,
            200,
            &json!({"id": "g1", "members": [{"value": "g9", "type": "Group"}]}),
        );
        assert_eq!(
            typed_group["members"][0]["$ref"],
            format!("{BASE}/Groups/g9")
        );
    }

    #[test]
    fn group_lists_are_completed_unless_members_are_excluded() {
        let p = profile(json!({}));
        let list = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 2, "Resources": [
            {"id": "g1", "displayName": "A"},
            {"id": "g2", "displayName": "B", "members": [{"value": "u1"}]}
        ]});
        let mut req = request("GET", "/Groups", "startIndex=1&count=50", "");
        inbound(&p, &mut req);
        let out = outbound(&p, &req, 200, &list);
        assert_eq!(out["Resources"][0]["members"], json!([]));
        assert_eq!(out["Resources"][1]["members"][0]["type"], "User");

        for query in [
            "excludedAttributes=members",
            "excludedattributes=urn:ietf:params:scim:schemas:core:2.0:Group:members",
            "attributes=displayName",
        ] {
            let mut req = request("GET", "/Groups", query, "");
            inbound(&p, &mut req);
            let out = outbound(&p, &req, 200, &list);
            assert!(out["Resources"][0].get("members").is_none(), "{query}");
        }
        let mut req = request("GET", "/Groups", "attributes=members.value,displayName", "");
        inbound(&p, &mut req);
        let out = outbound(&p, &req, 200, &list);
        assert_eq!(out["Resources"][1]["members"], json!([{"value": "u1"}]));
        assert_eq!(out["Resources"][0]["members"], json!([]));
        let mut req = request("GET", "/Groups", "attributes=members", "");
        inbound(&p, &mut req);
        let out = outbound(&p, &req, 200, &list);
        assert_eq!(
            out["Resources"][1]["members"][0]["$ref"],
            format!("{BASE}/Users/u1")
        );
        let search = request(
            "POST",
            "/Groups/.search",
            "",
            r#"{"excludedAttributes":["members"]}"#,
        );
        let out = outbound(&p, &search, 200, &list);
        assert!(out["Resources"][0].get("members").is_none());
    }

    #[test]
    fn users_errors_and_writes_are_left_alone() {
        let p = profile(json!({}));
        let user = json!({"id": "u1", "userName": "a"});
        let req = request("GET", "/Users/u1", "", "");
        assert_eq!(outbound(&p, &req, 200, &user), user);
        let error =
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "404"});
        let req = request("GET", "/Groups/nope", "", "");
        assert_eq!(outbound(&p, &req, 404, &error), error);
        let req = request("PUT", "/Groups/g1", "", "{}");
        let group = json!({"id": "g1"});
        assert_eq!(outbound(&p, &req, 200, &group), group);
        let off = profile(json!({"group_members": false}));
        let req = request("GET", "/Groups/g1", "", "");
        assert_eq!(outbound(&off, &req, 200, &group), group);
    }

    #[test]
    fn mapping_applies_both_ways() {
        let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let p = profile(json!({"mapping": [
            {"resource": "User", "from": "title", "to": format!("{ent}:department")},
            {"attribute": "userName", "transform": ["trim", "lower-case"]}
        ]}));
        let mut req = request(
            "POST",
            "/users/",
            "",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": " BJensen", "title": "Sales"}).to_string(),
        );
        inbound(&p, &mut req);
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["userName"], "bjensen");
        assert_eq!(body[ent]["department"], "Sales");
        let mut get = request("GET", "/users", "filter=title%20eq%20%22Sales%22", "");
        inbound(&p, &mut get);
        assert_eq!(
            get.query.as_str(),
            format!(
                "filter={}",
                query::encode(&format!("{ent}:department eq \"Sales\""))
            )
        );
        let out = outbound(
            &p,
            &get,
            200,
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "Resources": [
                {"id": "u1", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ent], ent: {"department": "Sales"}}
            ]}),
        );
        assert_eq!(out["Resources"][0]["title"], "Sales");
    }

    #[test]
    fn config_errors_are_located() {
        let issues = validate(
            &json!({"mapping": [{"drop": "a"}, {"attribute": "userName", "transform": ["shout"]}], "query_parameters": ["a/b"]}),
        );
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["mapping[1].transform[0]", "query_parameters[0]"]
        );
        let unknown =
            scimgate_abi::sdk::deserialize_config::<OneIdentityConfig>(&json!({"endpoint": []}));
        assert!(unknown.is_err());
    }

    #[test]
    fn headers_are_untouched() {
        let p = profile(json!({}));
        let mut req = request("GET", "/users", "", "");
        req.headers.push(Header::new("authorization", "Bearer x"));
        inbound(&p, &mut req);
        assert_eq!(req.header("authorization"), Some("Bearer x"));
    }
}
