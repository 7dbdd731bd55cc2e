//! The `entra-id` preset of the profile engine: what Microsoft Entra ID sends
//! and expects (moved from the entra-id crate's unit tests).

use scimgate_abi::sdk::Profile;
use scimgate_abi::{Caller, Response};
use scimgate_scim::profile::{engine_for, ProfileEngine};
use scimgate_scim::{apply_patch, PatchRequest, Registry};
use serde_json::{json, Value};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const MANAGER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";

fn profile(config: Value) -> ProfileEngine {
    engine_for(Some("entra-id"), &config).expect("profile")
}

use super::fixtures::{profile_patch, profile_request as request};

fn patched(p: &ProfileEngine, path: &str, operations: Value) -> Value {
    profile_patch(p, path, operations)["Operations"].clone()
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
    let request = PatchRequest::parse(&json!({"schemas": [PATCH_OP], "Operations": ops})).unwrap();
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
fn mapping_renames_patch_paths() {
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
}
