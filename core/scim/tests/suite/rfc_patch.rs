//! Every PATCH example of RFC 7644 §3.5.2, plus path forms, errors and atomicity.

use super::fixtures::{bjensen, group};
use scimgate_scim::patch::{apply_patch, PatchRequest};
use scimgate_scim::{Registry, ScimError, ScimType};
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn patch(resource_type: &str, resource: &Value, operations: Value) -> Result<Value, ScimError> {
    let registry = Registry::core();
    let context = registry.context_for(resource_type)?;
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
    let request = PatchRequest::parse(&body)?;
    apply_patch(&context, resource, &request)
}

fn member_ids(group: &Value) -> Vec<&str> {
    group["members"]
        .as_array()
        .map(|members| members.iter().filter_map(|m| m["value"].as_str()).collect())
        .unwrap_or_default()
}

fn kind(result: Result<Value, ScimError>) -> Option<ScimType> {
    result.err().and_then(|error| error.scim_type)
}

#[test]
fn rfc_3_5_2_1_add_member() {
    let result = patch(
        "Group",
        &group(),
        json!([{
            "op": "add", "path": "members",
            "value": [{"display": "Babs Jensen",
                       "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
                       "value": "2819c223-7f76-453a-919d-413861904646"},
                      {"value": "11111111-0000-0000-0000-000000000001"}]
        }]),
    )
    .expect("add member");
    // the already-present member is not duplicated
    assert_eq!(
        member_ids(&result),
        vec![
            "2819c223-7f76-453a-919d-413861904646",
            "902c246b-6245-4190-8e05-00816be7344a",
            "11111111-0000-0000-0000-000000000001"
        ]
    );
}

#[test]
fn rfc_3_5_2_1_add_pathless_multiple_attributes() {
    let result = patch("User", &bjensen(), json!([{
        "op": "add",
        "value": {"emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "new@jensen.org", "type": "other"}],
                  "nickname": "Babsy"}
    }])).expect("pathless add");
    assert_eq!(result["nickName"], "Babsy");
    assert!(
        result.get("nickname").is_none(),
        "names are normalised to the schema's case"
    );
    assert_eq!(result["emails"].as_array().map(Vec::len), Some(3));
}

#[test]
fn rfc_3_5_2_2_remove_single_member() {
    let result = patch(
        "Group",
        &group(),
        json!([{
            "op": "remove", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"
        }]),
    )
    .expect("remove one");
    assert_eq!(
        member_ids(&result),
        vec!["902c246b-6245-4190-8e05-00816be7344a"]
    );
}

#[test]
fn rfc_3_5_2_2_remove_all_members() {
    let result = patch(
        "Group",
        &group(),
        json!([{"op": "remove", "path": "members"}]),
    )
    .expect("remove all");
    assert!(result.get("members").is_none());
}

#[test]
fn rfc_3_5_2_2_remove_multiple_members() {
    // RFC text writes `eq\"…\"` without a space; the grammar allows it.
    let result = patch(
        "Group",
        &group(),
        json!([
            {"op": "remove", "path": "members[value eq\"2819c223-7f76-453a-919d-413861904646\"]"},
            {"op": "remove", "path": "members[value eq\"902c246b-6245-4190-8e05-00816be7344a\"]"}
        ]),
    )
    .expect("remove two");
    assert!(result.get("members").is_none());
    let in_one = patch("Group", &group(), json!([{
        "op": "remove",
        "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\" or value eq \"902c246b-6245-4190-8e05-00816be7344a\"]"
    }])).expect("remove two in one");
    assert!(in_one.get("members").is_none());
}

#[test]
fn rfc_3_5_2_2_remove_all_then_add() {
    let result = patch("Group", &group(), json!([
        {"op": "remove", "path": "members"},
        {"op": "add", "path": "members", "value": [
            {"display": "James Smith", "$ref": "https://example.com/v2/Users/08e1d05d", "value": "08e1d05d-121c-4561-8b96-473d93df9210"}]}
    ])).expect("replace via remove+add");
    assert_eq!(
        member_ids(&result),
        vec!["08e1d05d-121c-4561-8b96-473d93df9210"]
    );
}

#[test]
fn rfc_3_5_2_3_replace_all_members() {
    let result = patch(
        "Group",
        &group(),
        json!([{
            "op": "replace", "path": "members",
            "value": [{"display": "Babs Jensen", "value": "2819c223-7f76-453a-919d-413861904646"},
                      {"display": "James Smith", "value": "08e1d05d-121c-4561-8b96-473d93df9210"}]
        }]),
    )
    .expect("replace members");
    assert_eq!(
        member_ids(&result),
        vec![
            "2819c223-7f76-453a-919d-413861904646",
            "08e1d05d-121c-4561-8b96-473d93df9210"
        ]
    );
}

#[test]
fn rfc_3_5_2_3_replace_work_address() {
    let result = patch("User", &bjensen(), json!([{
        "op": "replace", "path": "addresses[type eq \"work\"]",
        "value": {"type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood",
                  "region": "CA", "postalCode": "91608", "country": "US",
                  "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US", "primary": true}
    }])).expect("replace address");
    assert_eq!(
        result["addresses"][0]["streetAddress"],
        "911 Universal City Plaza"
    );
    assert_eq!(result["addresses"][0]["country"], "US");
    assert_eq!(
        result["addresses"][1]["streetAddress"],
        "456 Hollywood Blvd"
    );
}

#[test]
fn rfc_3_5_2_3_replace_work_street_address() {
    let result = patch("User", &bjensen(), json!([{
        "op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"
    }])).expect("replace street");
    assert_eq!(result["addresses"][0]["streetAddress"], "1010 Broadway Ave");
    assert_eq!(
        result["addresses"][1]["streetAddress"],
        "456 Hollywood Blvd"
    );
}

#[test]
fn rfc_3_5_2_3_replace_pathless() {
    let result = patch(
        "User",
        &bjensen(),
        json!([{
            "op": "replace",
            "value": {"emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                                 {"value": "babs@jensen.org", "type": "home"}],
                      "nickname": "Babs", "userName": "babs"}
        }]),
    )
    .expect("pathless replace");
    assert_eq!(result["userName"], "babs");
    assert_eq!(result["emails"].as_array().map(Vec::len), Some(2));
}

#[test]
fn replace_work_email_value() {
    let result = patch("User", &bjensen(), json!([{
        "op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@example.com"
    }])).expect("replace email");
    assert_eq!(result["emails"][0]["value"], "barbara@example.com");
    assert_eq!(result["emails"][1]["value"], "babs@jensen.org");
}

#[test]
fn sub_attribute_and_extension_paths() {
    let result = patch("User", &bjensen(), json!([
        {"op": "replace", "path": "name.givenName", "value": "Barb"},
        {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "42"},
        {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
         "value": {"value": "boss-id"}},
        {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"},
        {"op": "add", "value": {ENTERPRISE: {"division": "Parks"}}}
    ])).expect("patch");
    assert_eq!(result["name"]["givenName"], "Barb");
    assert_eq!(result["name"]["familyName"], "Jensen");
    let enterprise = &result[ENTERPRISE];
    assert_eq!(enterprise["employeeNumber"], "42");
    assert_eq!(enterprise["manager"]["value"], "boss-id");
    assert_eq!(
        enterprise["manager"]["displayName"], "John Smith",
        "complex replace merges"
    );
    assert!(enterprise.get("costCenter").is_none());
    assert_eq!(enterprise["division"], "Parks");
}

#[test]
fn extension_added_to_user_without_it_lists_its_schema() {
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1", "userName": "u"});
    let result = patch(
        "User",
        &user,
        json!([{"op": "add", "path": format!("{ENTERPRISE}:department"), "value": "Sales"}]),
    )
    .expect("patch");
    assert_eq!(result[ENTERPRISE]["department"], "Sales");
    assert!(result["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|u| u == ENTERPRISE)));
    let removed = patch(
        "User",
        &result,
        json!([{"op": "remove", "path": ENTERPRISE}]),
    )
    .expect("remove extension");
    assert!(removed.get(ENTERPRISE).is_none());
}

#[test]
fn add_with_filter_creates_missing_element() {
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1", "userName": "u"});
    let result = patch(
        "User",
        &user,
        json!([{"op": "add", "path": "addresses[type eq \"work\"].locality", "value": "Oslo"}]),
    )
    .expect("patch");
    assert_eq!(
        result["addresses"],
        json!([{"type": "work", "locality": "Oslo"}])
    );
}

#[test]
fn primary_is_unique_after_patch() {
    let result = patch("User", &bjensen(), json!([
        {"op": "add", "path": "emails", "value": [{"value": "x@y.z", "type": "other", "primary": true}]}
    ])).expect("patch");
    let primaries: Vec<&Value> = result["emails"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["primary"] == true)
        .collect();
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0]["value"], "x@y.z");
    let two = patch(
        "User",
        &bjensen(),
        json!([{"op": "replace", "path": "emails",
        "value": [{"value": "a@b.c", "primary": true}, {"value": "d@e.f", "primary": true}]}]),
    );
    assert_eq!(kind(two), Some(ScimType::InvalidValue));
}

#[test]
fn rfc_error_types() {
    let user = bjensen();
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "remove", "path": "emails[type eq \"fax\"]"}])
        )),
        Some(ScimType::NoTarget)
    );
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "replace", "path": "emails[type eq \"fax\"].value", "value": "x"}])
        )),
        Some(ScimType::NoTarget)
    );
    assert_eq!(
        kind(patch("User", &user, json!([{"op": "remove"}]))),
        Some(ScimType::NoTarget)
    );
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "replace", "path": "id", "value": "other"}])
        )),
        Some(ScimType::Mutability)
    );
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}])
        )),
        Some(ScimType::Mutability)
    );
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "replace", "path": "nope", "value": 1}])
        )),
        Some(ScimType::InvalidPath)
    );
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "replace", "path": "name.nope", "value": 1}])
        )),
        Some(ScimType::InvalidPath)
    );
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "replace", "path": "emails[type eq", "value": 1}])
        )),
        Some(ScimType::InvalidPath)
    );
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "replace", "path": "active", "value": "yes"}])
        )),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "remove", "path": "userName"}])
        )),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        kind(patch(
            "Group",
            &group(),
            json!([{"op": "remove", "path": "displayName"}])
        )),
        Some(ScimType::InvalidValue)
    );
    // The op keyword ignores case (RFC leniency, read by the parser on every
    // route); an unknown op is invalidSyntax.
    assert_eq!(
        patch(
            "User",
            &user,
            json!([{"op": "Replace", "path": "active", "value": false}])
        )
        .expect("Replace is replace")["active"],
        false
    );
    assert_eq!(
        kind(patch(
            "User",
            &user,
            json!([{"op": "move", "path": "active", "value": false}])
        )),
        Some(ScimType::InvalidSyntax)
    );
    // pathless replace with the same readOnly value is a no-op, not an error (Okta sends id)
    assert!(patch(
        "User",
        &user,
        json!([{"op": "replace", "value": {"id": user["id"].clone(), "active": false}}])
    )
    .is_ok());
    // immutable member value cannot be changed in place
    assert_eq!(
        kind(patch(
            "Group",
            &group(),
            json!([{"op": "replace",
        "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"].value", "value": "other"}])
        )),
        Some(ScimType::Mutability)
    );
}

#[test]
fn request_parsing_errors() {
    let parse = |body: Value| {
        PatchRequest::parse(&body)
            .err()
            .and_then(|error| error.scim_type)
    };
    assert_eq!(
        parse(json!({"Operations": [{"op": "add", "value": {}}]})),
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        parse(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []})
        ),
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        parse(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "move"}]})
        ),
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        parse(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": 5}]})
        ),
        Some(ScimType::InvalidPath)
    );
}

#[test]
fn atomic_failure_leaves_resource_untouched() {
    let original = bjensen();
    let result = patch(
        "User",
        &original,
        json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "remove", "path": "emails[type eq \"nope\"]"}
        ]),
    );
    let error = result.expect_err("second op fails");
    assert_eq!(error.scim_type, Some(ScimType::NoTarget));
    assert!(
        error.detail.starts_with("Operations[1]"),
        "{}",
        error.detail
    );
    assert_eq!(original, bjensen());
}

#[test]
fn group_membership_in_bulk() {
    let many: Vec<Value> = (0..500)
        .map(|n| json!({"value": format!("user-{n}")}))
        .collect();
    let added = patch(
        "Group",
        &group(),
        json!([{"op": "add", "path": "members", "value": many}]),
    )
    .expect("add 500");
    assert_eq!(member_ids(&added).len(), 502);
    let filter: Vec<String> = (0..250).map(|n| format!("value eq \"user-{n}\"")).collect();
    let removed = patch(
        "Group",
        &added,
        json!([{"op": "remove", "path": format!("members[{}]", filter.join(" or "))}]),
    )
    .expect("remove 250");
    assert_eq!(member_ids(&removed).len(), 252);
    // Entra ID style: remove with a value list (without dialect normalisation, too)
    let listed = patch(
        "Group",
        &group(),
        json!([{"op": "remove", "path": "members",
        "value": [{"value": "902c246b-6245-4190-8e05-00816be7344a"}]}]),
    )
    .expect("remove listed");
    assert_eq!(
        member_ids(&listed),
        vec!["2819c223-7f76-453a-919d-413861904646"]
    );
}

/// An extension object given whole may restate its own URN in `schemas` (the
/// public compliance suite sends that); the parser reads past it on every
/// route, while any other `schemas` member stays an unknown attribute.
#[test]
fn extension_objects_may_restate_their_own_urn() {
    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "bj"});
    for op in ["add", "replace"] {
        let out = patch(
            "User",
            &user,
            json!([{"op": op, "path": ENT, "value": {"schemas": [ENT], "department": "Sales"}}]),
        )
        .expect("applies");
        assert_eq!(out[ENT]["department"], "Sales", "{op}");
        let out = patch(
            "User",
            &user,
            json!([{"op": op, "value": {ENT: {"schemas": [ENT], "department": "Tours"}}}]),
        )
        .expect("applies");
        assert_eq!(out[ENT]["department"], "Tours", "{op}");
    }
    let error = patch(
        "User",
        &user,
        json!([{"op": "add", "path": ENT, "value": {"schemas": ["urn:example:other"], "department": "x"}}]),
    )
    .unwrap_err();
    assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
}
