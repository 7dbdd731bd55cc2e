//! IGA dialect rewrites (One Identity, Entra ID, Okta) ahead of PATCH parsing.

use super::fixtures::{bjensen, group};
use scimgate_scim::dialect::{
    coerce_string_booleans, drop_extension_schemas, drop_value_of_filtered_removal,
    expand_pathless_paths, normalize_op_case, normalize_patch_request,
    value_array_removal_to_filter,
};
use scimgate_scim::patch::{apply_patch, PatchRequest};
use scimgate_scim::Registry;
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn body(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

#[test]
fn op_case() {
    let mut request = body(
        json!([{"op": "Replace", "path": "active", "value": false}, {"op": "ADD", "value": {}}]),
    );
    normalize_op_case(&mut request);
    assert_eq!(request["Operations"][0]["op"], "replace");
    assert_eq!(request["Operations"][1]["op"], "add");
}

#[test]
fn string_booleans_only_where_boolean() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let mut request = body(json!([
        {"op": "replace", "path": "active", "value": "False"},
        {"op": "replace", "value": {"active": "TRUE", "title": "False"}},
        {"op": "add", "path": "emails", "value": [{"value": "a@b", "primary": "true"}]},
        {"op": "replace", "path": "emails[type eq \"work\"].primary", "value": "False"},
        {"op": "replace", "path": "nickName", "value": "False"}
    ]));
    coerce_string_booleans(&mut request, &context);
    let ops = &request["Operations"];
    assert_eq!(ops[0]["value"], false);
    assert_eq!(ops[1]["value"], json!({"active": true, "title": "False"}));
    assert_eq!(ops[2]["value"][0]["primary"], true);
    assert_eq!(ops[3]["value"], false);
    assert_eq!(ops[4]["value"], "False");
}

#[test]
fn pathless_values_with_paths_become_operations() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let mut request = body(json!([{"op": "replace", "value": {
        "name.givenName": "x", format!("{ENTERPRISE}:department"): "y", "displayName": "z"}}]));
    expand_pathless_paths(&mut request, &context);
    let ops = request["Operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(ops.len(), 3);
    assert_eq!(
        ops[0],
        json!({"op": "replace", "value": {"displayName": "z"}})
    );
    assert!(ops.contains(&json!({"op": "replace", "path": "name.givenName", "value": "x"})));
    assert!(ops.contains(
        &json!({"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "y"})
    ));
}

#[test]
fn member_removal_forms() {
    let mut request = body(json!([
        {"op": "remove", "path": "members", "value": [{"value": "id1"}, {"value": "id\"2"}]},
        {"op": "remove", "path": "members[value eq \"id3\"]", "value": [{"value": "id3"}]}
    ]));
    value_array_removal_to_filter(&mut request);
    drop_value_of_filtered_removal(&mut request);
    assert_eq!(
        request["Operations"][0],
        json!({"op": "remove", "path": "members[value eq \"id1\" or value eq \"id\\\"2\"]"})
    );
    assert_eq!(
        request["Operations"][1],
        json!({"op": "remove", "path": "members[value eq \"id3\"]"})
    );
}

#[test]
fn normalized_requests_apply() {
    let registry = Registry::core();
    let users = registry.context_for("User").expect("User");
    let entra = body(json!([
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "value": {"name.familyName": "J", format!("{ENTERPRISE}:department"): "Sales", "title": "T"}}
    ]));
    let normalized = normalize_patch_request(&entra, &users);
    let request = PatchRequest::parse(&normalized).expect("parses after normalisation");
    let user = apply_patch(&users, &bjensen(), &request).expect("applies");
    assert_eq!(user["active"], false);
    assert_eq!(user["name"]["familyName"], "J");
    assert_eq!(user[ENTERPRISE]["department"], "Sales");

    let groups = registry.context_for("Group").expect("Group");
    let one_identity = body(json!([{"op": "Remove", "path": "members",
        "value": [{"value": "2819c223-7f76-453a-919d-413861904646"}, {"value": "902c246b-6245-4190-8e05-00816be7344a"}]}]));
    let request =
        PatchRequest::parse(&normalize_patch_request(&one_identity, &groups)).expect("parses");
    let emptied = apply_patch(&groups, &group(), &request).expect("applies");
    assert!(emptied.get("members").is_none());
}

#[test]
fn extension_objects_may_carry_their_own_schemas() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let mut request = body(json!([
        {"op": "add", "path": ENTERPRISE, "value": {"schemas": [ENTERPRISE], "department": "Tour"}},
        {"op": "replace", "value": {ENTERPRISE: {"schemas": [ENTERPRISE], "division": "North"}}},
        {"op": "add", "path": "title", "value": {"schemas": "kept"}}
    ]));
    drop_extension_schemas(&mut request, &context);
    let ops = &request["Operations"];
    assert_eq!(ops[0]["value"], json!({"department": "Tour"}));
    assert_eq!(ops[1]["value"][ENTERPRISE], json!({"division": "North"}));
    assert_eq!(ops[2]["value"], json!({"schemas": "kept"}));
    if let Some(ops) = request["Operations"].as_array_mut() {
        ops.truncate(2);
    }
    let patch = PatchRequest::parse(&normalize_patch_request(&request, &context)).expect("parse");
    let patched = apply_patch(&context, &bjensen(), &patch).expect("apply");
    assert_eq!(patched[ENTERPRISE]["department"], "Tour");
}
