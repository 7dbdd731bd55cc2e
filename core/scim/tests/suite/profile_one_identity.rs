//! The `one-identity` preset of the profile engine: what One Identity Manager
//! sends and reads (moved from the one-identity crate's unit tests).

use scimgate_abi::sdk::Profile;
use scimgate_abi::Header;
use scimgate_abi::{Caller, Request, Response};
use scimgate_scim::mapping::query;
use scimgate_scim::profile::{engine_for, ProfileEngine};
use serde_json::{json, Value};

const BASE: &str = "https://vault.example.com/iso/scim/v2";

fn profile(config: Value) -> ProfileEngine {
    engine_for(Some("one-identity"), &config).expect("profile")
}

fn request(method: &str, path: &str, query: &str, body: &str) -> Request {
    Request::new(method, path)
        .with_query(query)
        .with_body(body)
        .with_mount("/iso/scim/v2", BASE)
}

fn inbound(profile: &ProfileEngine, req: &mut Request) {
    profile
        .inbound(req, Caller::ANONYMOUS)
        .expect("inbound succeeds");
}

fn outbound(profile: &ProfileEngine, req: &Request, status: u16, body: &Value) -> Value {
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
fn headers_are_untouched() {
    let p = profile(json!({}));
    let mut req = request("GET", "/users", "", "");
    req.headers.push(Header::new("authorization", "Bearer x"));
    inbound(&p, &mut req);
    assert_eq!(req.header("authorization"), Some("Bearer x"));
}
