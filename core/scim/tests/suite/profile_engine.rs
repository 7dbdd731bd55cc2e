//! The profile engine itself: presets and their overrides, each setting on its
//! own (the `normalize_patch` master switch above all), one read and at most
//! one write of a body.

use scimgate_abi::sdk::Profile;
use scimgate_abi::{Caller, Request, Response};
use scimgate_scim::profile::{engine_for, preset_names, settings_for, ProfileEngine, Settings};
use scimgate_scim::{apply_patch, PatchRequest, Registry};
use serde_json::{json, Value};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn generic(config: Value) -> ProfileEngine {
    engine_for(None, &config).expect("profile")
}

fn request(method: &str, path: &str, query: &str, body: &str) -> Request {
    Request::new(method, path)
        .with_query(query)
        .with_body(body)
        .with_mount("/scim/v2", "https://gw.example.com/scim/v2")
}

fn inbound(p: &ProfileEngine, req: &mut Request) {
    p.inbound(req, Caller::ANONYMOUS).expect("inbound succeeds");
}

fn patch_body(operations: Value) -> String {
    json!({"schemas": [PATCH_OP], "Operations": operations}).to_string()
}

fn operations(req: &Request) -> Value {
    serde_json::from_slice::<Value>(&req.body).expect("JSON")["Operations"].clone()
}

#[test]
fn every_preset_resolves_and_the_generic_defaults_are_the_struct_defaults() {
    let names: Vec<&str> = preset_names().collect();
    assert_eq!(names, vec!["entra-id", "okta", "one-identity", "sailpoint"]);
    for name in names {
        let settings = settings_for(None, &json!({ "preset": name }))
            .unwrap_or_else(|issues| panic!("{name}: {issues:?}"));
        assert!(settings.normalize_patch, "{name}");
    }
    assert_eq!(settings_for(None, &json!({})).unwrap(), Settings::default());
    let defaults = Settings::default();
    assert!(!defaults.group_members && !defaults.patch_manager && !defaults.patch_pathless_id);
    assert_eq!(defaults.group_patch_status, 200);
}

#[test]
fn inline_keys_override_the_preset_key_by_key() {
    let settings = settings_for(
        None,
        &json!({"preset": "one-identity", "group_members": false, "patch_string_booleans": false}),
    )
    .unwrap();
    assert!(!settings.group_members);
    assert!(!settings.patch_string_booleans);
    // Untouched preset keys stay.
    assert!(settings
        .query_parameters
        .iter()
        .any(|name| name == "startIndex"));
}

#[test]
fn normalize_patch_off_sends_the_patch_body_as_is_but_still_maps_it() {
    let sent = patch_body(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    let off = generic(json!({"preset": "one-identity", "normalize_patch": false}));
    let mut req = request("PATCH", "/Users/u1", "", &sent);
    inbound(&off, &mut req);
    assert_eq!(req.body.as_slice(), sent.as_bytes(), "left byte for byte");

    let on = generic(json!({"preset": "one-identity"}));
    let mut req = request("PATCH", "/Users/u1", "", &sent);
    inbound(&on, &mut req);
    assert_eq!(
        operations(&req),
        json!([{"op": "replace", "path": "active", "value": false}])
    );

    let mapped_off = generic(json!({"normalize_patch": false,
        "mapping": [{"from": "title", "to": "userType"}]}));
    let mut req = request(
        "PATCH",
        "/Users/u1",
        "",
        &patch_body(json!([{"op": "Replace", "path": "title", "value": "True"}])),
    );
    inbound(&mapped_off, &mut req);
    assert_eq!(
        operations(&req),
        json!([{"op": "Replace", "path": "userType", "value": "True"}])
    );
}

#[test]
fn each_patch_step_is_a_setting_of_its_own() {
    let sent = patch_body(json!([
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "remove", "path": "emails", "value": [{"value": "a@example.com"}]}
    ]));
    let cases = [
        (
            json!({"patch_string_booleans": false}),
            json!([{"op": "replace", "path": "active", "value": "False"},
                   {"op": "remove", "path": "emails[value eq \"a@example.com\"]"}]),
        ),
        (
            json!({"patch_op_case": false}),
            json!([{"op": "Replace", "path": "active", "value": false},
                   {"op": "remove", "path": "emails[value eq \"a@example.com\"]"}]),
        ),
        (
            json!({"patch_value_array_removal": false}),
            json!([{"op": "replace", "path": "active", "value": false},
                   {"op": "remove", "path": "emails", "value": [{"value": "a@example.com"}]}]),
        ),
    ];
    for (config, expected) in cases {
        let p = generic(config.clone());
        let mut req = request("PATCH", "/Users/u1", "", &sent);
        inbound(&p, &mut req);
        assert_eq!(operations(&req), expected, "{config}");
    }
    // Okta's id dropping and Entra's manager shapes are off unless asked for.
    let sent = patch_body(json!([{"op": "replace", "value": {"id": "u1", "manager": "m1"}}]));
    let mut req = request("PATCH", "/Users/u1", "", &sent);
    inbound(&generic(json!({})), &mut req);
    assert_eq!(req.body.as_slice(), sent.as_bytes());
    let mut req = request("PATCH", "/Users/u1", "", &sent);
    inbound(
        &generic(json!({"patch_pathless_id": true, "patch_manager": true})),
        &mut req,
    );
    assert_eq!(
        operations(&req),
        json!([{"op": "replace", "value": {"manager": {"value": "m1"}}}])
    );
}

#[test]
fn bodies_nothing_applies_to_keep_their_bytes() {
    // Odd spacing and key order survive: the body is only written back when a
    // step or the mapping changed it.
    let p = generic(json!({"preset": "entra-id"}));
    let body = "{ \"userName\" : \"bjensen\",\n  \"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"] }";
    for method in ["POST", "PUT"] {
        let mut req = request(method, "/Users", "", body);
        inbound(&p, &mut req);
        assert_eq!(req.body.as_slice(), body.as_bytes(), "{method}");
    }
    let patch = "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],  \"Operations\":[{\"op\":\"add\",\"path\":\"title\",\"value\":\"x\"}]}";
    let mut req = request("PATCH", "/Users/u1", "", patch);
    inbound(&p, &mut req);
    assert_eq!(req.body.as_slice(), patch.as_bytes());
    // A body the strict reader refuses is left for the endpoint to refuse.
    let twice = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Replace", "path": "active", "value": "False"}], "OPERATIONS": []}"#;
    let mut req = request("PATCH", "/Users/u1", "", twice);
    inbound(&p, &mut req);
    assert_eq!(req.body.as_slice(), twice.as_bytes());
}

#[test]
fn query_settings_combine_with_the_mapping() {
    let p = generic(json!({
        "removed_query_parameters": ["aadOptscim062020"],
        "query_parameters": ["filter", "startIndex"],
        "mapping": [{"from": "title", "to": "userType"}]
    }));
    let mut req = request(
        "GET",
        "/Users",
        "aadOptscim062020&Filter=title%20eq%20%22x%22&startindex=2",
        "",
    );
    inbound(&p, &mut req);
    assert_eq!(
        req.query.as_str(),
        "filter=userType%20eq%20%22x%22&startIndex=2"
    );
}

#[test]
fn group_patch_status_and_group_members_are_off_by_default() {
    let p = generic(json!({}));
    let req = request("PATCH", "/Groups/g1", "", "{}");
    let mut resp = Response::json(200, "application/scim+json", &json!({"id": "g1"}));
    p.outbound(&req, Caller::ANONYMOUS, &mut resp).unwrap();
    assert_eq!(resp.status, 200);
    let req = request("GET", "/Groups/g1", "", "");
    let group = json!({"id": "g1", "members": [{"value": "u1"}]});
    let mut resp = Response::json(200, "application/scim+json", &group);
    p.outbound(&req, Caller::ANONYMOUS, &mut resp).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&resp.body).unwrap(), group);
}

#[test]
fn the_sailpoint_preset_turns_value_array_removals_into_filters_and_keeps_200() {
    let p = generic(json!({"preset": "sailpoint"}));
    let mut req = request(
        "PATCH",
        "/Groups/g1",
        "",
        &patch_body(json!([
            {"op": "add", "path": "members", "value": [{"value": "u3"}]},
            {"op": "remove", "path": "members", "value": [{"value": "u1"}]}
        ])),
    );
    inbound(&p, &mut req);
    let ops = operations(&req);
    assert_eq!(
        ops,
        json!([
            {"op": "add", "path": "members", "value": [{"value": "u3"}]},
            {"op": "remove", "path": "members[value eq \"u1\"]"}
        ])
    );
    let registry = Registry::core();
    let groups = registry.context_for("Group").unwrap();
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
        "displayName": "Sales", "members": [{"value": "u1"}, {"value": "u2"}]});
    let parsed = PatchRequest::parse(&json!({"schemas": [PATCH_OP], "Operations": ops})).unwrap();
    let out = apply_patch(&groups, &group, &parsed).expect("applies");
    assert_eq!(out["members"], json!([{"value": "u2"}, {"value": "u3"}]));
    let req = request("PATCH", "/Groups/g1", "", "{}");
    let mut resp = Response::json(200, "application/scim+json", &json!({"id": "g1"}));
    p.outbound(&req, Caller::ANONYMOUS, &mut resp).unwrap();
    assert_eq!(resp.status, 200);
}
