//! The `okta` preset of the profile engine: what Okta sends (moved from the
//! okta crate's unit tests).

use scimgate_abi::sdk::Profile;
use scimgate_abi::Caller;
use scimgate_scim::profile::{engine_for, ProfileEngine};
use serde_json::{json, Value};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn profile(config: Value) -> ProfileEngine {
    engine_for(Some("okta"), &config).expect("profile")
}

use super::fixtures::{
    apply_to as apply, profile_patch as inbound_patch, profile_request as request,
};

fn group() -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1", "displayName": "Eng",
        "members": [{"value": "u1"}, {"value": "u2"}]})
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
    assert!(out.get("members").is_none_or(|m| m == &json!([])), "{out}");
    let with_path = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "members", "value": []}]});
    let out = apply("Group", &group(), &with_path);
    assert!(out.get("members").is_none_or(|m| m == &json!([])), "{out}");
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
