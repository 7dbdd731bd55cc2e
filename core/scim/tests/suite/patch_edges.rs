//! PATCH path resolution and value filters at their edges: which paths
//! name a whole extension, which are refused, what a value filter may
//! select and what an `add`, `replace` or `remove` through it does.
//! Written so that each branch of `patch.rs` has a test that fails when it
//! changes (mutation testing).

use super::fixtures::{bjensen, group};
use scimgate_scim::patch::{apply_patch, PatchOpKind, PatchRequest};
use scimgate_scim::{Registry, ScimError, ScimType};
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn patch(resource_type: &str, resource: &Value, operations: Value) -> Result<Value, ScimError> {
    let registry = Registry::core();
    let context = registry.context_for(resource_type)?;
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
    let request = PatchRequest::parse(&body)?;
    apply_patch(&context, resource, &request)
}

fn user(operations: Value) -> Result<Value, ScimError> {
    patch("User", &bjensen(), operations)
}

fn refused(result: Result<Value, ScimError>, kind: ScimType, needle: &str) {
    let error = result.expect_err(needle);
    assert_eq!(error.scim_type, Some(kind), "{}", error.detail);
    assert!(error.detail.contains(needle), "{}", error.detail);
}

fn schemas(resource: &Value) -> Vec<&str> {
    resource["schemas"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn request_parsing_reads_ops_in_any_case_and_refuses_the_rest() {
    let parse = |body: Value| PatchRequest::parse(&body);
    let ops = |operations: Value| json!({"schemas": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"], "Operations": operations});
    let request = parse(ops(json!([
        {"op": "ADD", "path": "title", "value": "x"},
        {"op": "Remove", "path": "title"},
        {"op": "rePlace", "value": {"title": "y"}}
    ])))
    .expect("three operations");
    let kinds: Vec<PatchOpKind> = request.operations.iter().map(|o| o.op).collect();
    assert_eq!(
        kinds,
        [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
    );
    assert_eq!(request.operations[1].value, None);
    assert_eq!(request.operations[2].path, None);
    assert_eq!(PatchOpKind::Remove.as_str(), "remove");
    assert_eq!(PatchOpKind::Add.as_str(), "add");
    assert_eq!(PatchOpKind::Replace.as_str(), "replace");
    for (body, needle) in [
        (json!([]), "JSON object"),
        (json!({"Operations": [{"op": "add"}]}), "schemas"),
        (
            json!({"schemas": ["x"], "Operations": [{"op": "add"}]}),
            "schemas",
        ),
        (ops(json!([])), "non-empty 'Operations'"),
        (ops(json!({"op": "add"})), "non-empty 'Operations'"),
        (ops(json!([{"op": "move"}])), "unknown op 'move'"),
        (ops(json!([{"op": 1}])), "needs a string 'op'"),
        (ops(json!(["add"])), "Operations[0] must be a JSON object"),
        (
            ops(json!([{"op": "add", "path": "a"}, {"op": "add", "path": 3}])),
            "Operations[1]: 'path' must be a string",
        ),
        (
            ops(json!([{"op": "add", "path": "a["}])),
            "Operations[0]: invalid path",
        ),
    ] {
        let error = parse(body.clone()).expect_err(needle);
        assert!(error.detail.contains(needle), "{body}: {}", error.detail);
    }
    // A null path is no path.
    let request = parse(ops(json!([{"op": "add", "path": null, "value": {}}]))).unwrap();
    assert_eq!(request.operations[0].path, None);
}

#[test]
fn errors_name_the_operation_that_failed() {
    let error = user(json!([
        {"op": "add", "path": "title", "value": "x"},
        {"op": "add", "path": "nickName", "value": "y"},
        {"op": "add", "path": "nope", "value": 1}
    ]))
    .unwrap_err();
    assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
    assert!(
        error
            .detail
            .starts_with("Operations[2]: unknown attribute 'nope'"),
        "{}",
        error.detail
    );
    refused(
        patch(
            "User",
            &json!([1]),
            json!([{"op": "add", "path": "title", "value": "x"}]),
        ),
        ScimType::InvalidSyntax,
        "must be a JSON object",
    );
}

#[test]
fn a_qualified_extension_urn_is_the_whole_extension() {
    // In any case, and only the exact URN: a longer or shorter name is not it.
    let removed = user(json!([{"op": "remove", "path": ENTERPRISE.to_uppercase()}])).unwrap();
    assert!(removed.get(ENTERPRISE).is_none());
    assert_eq!(schemas(&removed), [USER]);
    let replaced = user(json!([{"op": "replace", "path": ENTERPRISE,
        "value": {"department": "Parks", "schemas": [ENTERPRISE]}}]))
    .unwrap();
    assert_eq!(replaced[ENTERPRISE]["department"], "Parks");
    assert_eq!(
        replaced[ENTERPRISE]["employeeNumber"], "701984",
        "replace merges"
    );
    refused(
        user(json!([{"op": "replace", "path": ENTERPRISE, "value": "x"}])),
        ScimType::InvalidValue,
        "must be an object",
    );
    refused(
        user(json!([{"op": "add", "path": ENTERPRISE, "value": {"nope": 1}}])),
        ScimType::InvalidPath,
        "unknown attribute 'nope' in extension",
    );
    for path in [
        format!("{ENTERPRISE}x"),
        ENTERPRISE.trim_end_matches('r').to_string(),
        format!("{ENTERPRISE}.department"),
        format!("{ENTERPRISE}[department pr]"),
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0.User".to_string(),
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0Xuser".to_string(),
    ] {
        let result = user(json!([{"op": "remove", "path": path}]));
        let error = result.expect_err(&path);
        assert_eq!(
            error.scim_type,
            Some(ScimType::InvalidPath),
            "{path}: {}",
            error.detail
        );
    }
}

#[test]
fn adding_to_an_extension_lists_it_and_emptying_it_drops_it() {
    let bare = json!({"schemas": [USER], "id": "1", "userName": "u"});
    let added = patch(
        "User",
        &bare,
        json!([{"op": "add", "path": format!("{ENTERPRISE}:manager.value"), "value": "m1"}]),
    )
    .unwrap();
    assert_eq!(added[ENTERPRISE]["manager"]["value"], "m1");
    assert_eq!(schemas(&added), [USER, ENTERPRISE]);
    // Removing an extension attribute the resource does not have changes nothing.
    let same = patch(
        "User",
        &bare,
        json!([{"op": "remove", "path": format!("{ENTERPRISE}:department")}]),
    )
    .unwrap();
    assert_eq!(same, bare);
    // Removing its last attribute drops the extension object.
    let emptied = patch(
        "User",
        &added,
        json!([{"op": "remove", "path": format!("{ENTERPRISE}:manager")}]),
    )
    .unwrap();
    assert!(emptied.get(ENTERPRISE).is_none(), "{emptied}");
    // Adding the URN twice lists it once; `schemas` in a pathless add merges.
    let twice = patch(
        "User",
        &added,
        json!([{"op": "add", "value": {"schemas": [USER, ENTERPRISE.to_lowercase()],
                                         ENTERPRISE: {"department": "D"}}}]),
    )
    .unwrap();
    assert_eq!(schemas(&twice), [USER, ENTERPRISE]);
    assert_eq!(twice[ENTERPRISE]["department"], "D");
    refused(
        patch(
            "User",
            &bare,
            json!([{"op": "add", "value": {"schemas": ["urn:x:y"]}}]),
        ),
        ScimType::InvalidValue,
        "unknown schema 'urn:x:y'",
    );
    refused(
        patch(
            "User",
            &bare,
            json!([{"op": "add", "value": {"schemas": "x"}}]),
        ),
        ScimType::InvalidValue,
        "'schemas' must be an array",
    );
    refused(
        patch(
            "User",
            &bare,
            json!([{"op": "add", "value": {"schemas": [1]}}]),
        ),
        ScimType::InvalidValue,
        "'schemas' must be an array",
    );
    refused(
        patch(
            "User",
            &bare,
            json!([{"op": "add", "value": {ENTERPRISE: 1}}]),
        ),
        ScimType::InvalidValue,
        "must be given as an object",
    );
    refused(
        patch(
            "User",
            &bare,
            json!([{"op": "add", "value": {ENTERPRISE: {"x": 1}}}]),
        ),
        ScimType::InvalidPath,
        "unknown attribute 'x' in extension",
    );
}

#[test]
fn path_resolution_refusals() {
    for (path, needle) in [
        ("schemas", "'schemas' cannot be a PATCH path"),
        ("nope", "unknown attribute 'nope'"),
        ("name.nope", "'name' has no sub-attribute 'nope'"),
        ("userName.x", "has no sub-attribute"),
        (
            "name[givenName pr]",
            "a value filter needs a multi-valued complex attribute",
        ),
        (
            "userName[x pr]",
            "a value filter needs a multi-valued complex attribute",
        ),
        (
            "emails[type pr].nope",
            "'emails' has no sub-attribute 'nope'",
        ),
        ("emails[x.y pr]", "plain sub-attribute name"),
    ] {
        let result = user(json!([{"op": "replace", "path": path, "value": "v"}]));
        refused(result, ScimType::InvalidPath, needle);
    }
    refused(
        user(json!([{"op": "add", "value": {"nope": 1}}])),
        ScimType::InvalidPath,
        "unknown attribute 'nope'",
    );
    refused(
        user(json!([{"op": "add", "value": "x"}])),
        ScimType::InvalidValue,
        "a 'add' without 'path' needs an object 'value'",
    );
    refused(
        user(json!([{"op": "replace"}])),
        ScimType::InvalidValue,
        "a 'replace' without 'path' needs an object 'value'",
    );
    refused(
        user(json!([{"op": "remove"}])),
        ScimType::NoTarget,
        "requires a 'path'",
    );
    refused(
        user(json!([{"op": "add", "path": "title"}])),
        ScimType::InvalidValue,
        "'add' of 'title' needs a value",
    );
    refused(
        user(json!([{"op": "add", "path": "title", "value": null}])),
        ScimType::InvalidValue,
        "needs a value",
    );
    // Pathless keys may be attribute paths.
    let result = user(json!([{"op": "replace", "value": {"name.givenName": "B"}}])).unwrap();
    assert_eq!(result["name"]["givenName"], "B");
    assert_eq!(result["name"]["familyName"], "Jensen");
}

#[test]
fn value_filters_select_elements_to_change_or_remove() {
    // replace through a filter: only the matching element, other members kept.
    let result = user(json!([{"op": "replace", "path": "emails[type eq \"home\"]",
        "value": {"value": "new@home.org"}}]))
    .unwrap();
    assert_eq!(
        result["emails"][1],
        json!({"value": "new@home.org", "type": "home"})
    );
    assert_eq!(result["emails"][0]["value"], "bjensen@example.com");
    refused(
        user(json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": "x"}])),
        ScimType::InvalidValue,
        "must be an object",
    );
    refused(
        user(json!([{"op": "replace", "path": "emails[type eq \"home\"]",
            "value": {"nope": 1}}])),
        ScimType::InvalidSyntax,
        "unknown sub-attribute 'nope' of 'emails'",
    );
    // remove through a filter: exactly the matching elements, in order.
    let result = user(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])).unwrap();
    assert_eq!(
        result["emails"],
        json!([{"value": "babs@jensen.org", "type": "home"}])
    );
    let result = user(json!([{"op": "remove", "path": "emails[type ne \"x\"]"}])).unwrap();
    assert!(result.get("emails").is_none(), "all removed: {result}");
    let three = json!({"schemas": [USER], "id": "1", "userName": "u", "emails": [
        {"value": "a@x", "type": "work"}, {"value": "b@x", "type": "home"}, {"value": "c@x", "type": "work"}]});
    let result = patch(
        "User",
        &three,
        json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
    )
    .unwrap();
    assert_eq!(result["emails"], json!([{"value": "b@x", "type": "home"}]));
    // a sub-attribute through a filter, on every match.
    let result = patch(
        "User",
        &three,
        json!([{"op": "replace", "path": "emails[type eq \"work\"].display", "value": "W"}]),
    )
    .unwrap();
    let displays: Vec<&Value> = result["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["display"])
        .collect();
    assert_eq!(displays, [&json!("W"), &Value::Null, &json!("W")]);
    let result = patch(
        "User",
        &three,
        json!([{"op": "remove", "path": "emails[value eq \"b@x\"].type"}]),
    )
    .unwrap();
    assert_eq!(result["emails"][1], json!({"value": "b@x"}));
    // a filter that matches nothing: noTarget, but replace without value is a no-op.
    refused(
        patch(
            "User",
            &three,
            json!([{"op": "replace", "path": "emails[type eq \"fax\"].display", "value": "F"}]),
        ),
        ScimType::NoTarget,
        "no value of 'emails' matches 'emails[type eq \"fax\"].display'",
    );
    let same = patch(
        "User",
        &three,
        json!([{"op": "replace", "path": "emails[type eq \"fax\"]"}]),
    )
    .unwrap();
    assert_eq!(same["emails"], three["emails"]);
    // `add` through an unmatched `eq` filter creates the element; other filters do not.
    let result = patch(
        "User",
        &three,
        json!([{"op": "add", "path": "emails[type eq \"fax\" and primary eq false]",
            "value": {"value": "f@x"}}]),
    )
    .unwrap();
    assert_eq!(
        result["emails"][3],
        json!({"type": "fax", "primary": false, "value": "f@x"})
    );
    refused(
        patch(
            "User",
            &three,
            json!([{"op": "add", "path": "emails[type ne \"fax\" and type eq \"x\"]", "value": {"value": "f@x"}}]),
        ),
        ScimType::NoTarget,
        "no value of 'emails' matches",
    );
    refused(
        patch(
            "User",
            &three,
            json!([{"op": "add", "path": "emails[type eq \"fax\"]", "value": "f@x"}]),
        ),
        ScimType::InvalidValue,
        "needs a value",
    );
    refused(
        patch(
            "User",
            &three,
            json!([{"op": "add", "path": "emails[type eq null]", "value": {"value": "f@x"}}]),
        ),
        ScimType::NoTarget,
        "no value of 'emails' matches",
    );
}

#[test]
fn readonly_and_required_targets_are_refused() {
    for (op, path, kind, needle) in [
        ("replace", "id", ScimType::Mutability, "readOnly"),
        ("remove", "id", ScimType::Mutability, "readOnly"),
        ("remove", "userName", ScimType::InvalidValue, "required"),
        (
            "replace",
            "groups[value pr].display",
            ScimType::Mutability,
            "readOnly",
        ),
        (
            "replace",
            "groups.display",
            ScimType::Mutability,
            "readOnly",
        ),
        ("remove", "groups", ScimType::Mutability, "readOnly"),
        ("replace", "meta.created", ScimType::Mutability, "readOnly"),
    ] {
        let mut resource = bjensen();
        resource["groups"] = json!([{"value": "g1", "display": "G"}]);
        let result = patch(
            "User",
            &resource,
            json!([{"op": op, "path": path, "value": "x"}]),
        );
        refused(result, kind, needle);
    }
    // Writing the value a readOnly attribute already has is allowed and changes nothing.
    let resource = bjensen();
    let same = patch(
        "User",
        &resource,
        json!([{"op": "replace", "path": "id", "value": resource["id"]}]),
    )
    .unwrap();
    assert_eq!(same["id"], resource["id"]);
}

#[test]
fn multi_valued_add_merges_same_values_and_remove_lists_values() {
    let group = group();
    let members = group["members"].as_array().unwrap().clone();
    let first = members[0]["value"].as_str().unwrap().to_string();
    // Adding a member already there does not duplicate it.
    let result = patch(
        "Group",
        &group,
        json!([{"op": "add", "path": "members", "value": [{"value": first}]}]),
    )
    .unwrap();
    assert_eq!(result["members"].as_array().unwrap().len(), members.len());
    // remove with a value removes just those values.
    let result = patch(
        "Group",
        &group,
        json!([{"op": "remove", "path": "members", "value": [{"value": first}]}]),
    )
    .unwrap();
    let left: Vec<&str> = result["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(left.len(), members.len() - 1);
    assert!(!left.contains(&first.as_str()));
    // emails: same value and type merge; same value, other type is another element.
    let result = user(json!([{"op": "add", "path": "emails", "value": [
        {"value": "BJENSEN@example.com", "type": "work", "display": "Work"},
        {"value": "babs@jensen.org", "type": "other"}]}]))
    .unwrap();
    let emails = result["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 3, "{result}");
    assert_eq!(emails[0]["display"], "Work");
    assert_eq!(emails[0]["primary"], true);
    assert_eq!(emails[2]["type"], "other");
    // a new primary demotes the old one.
    let result =
        user(json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]))
            .unwrap();
    assert_eq!(result["emails"][0]["primary"], false);
    assert_eq!(result["emails"][1]["primary"], true);
    let result = user(json!([{"op": "add", "path": "emails[type eq \"home\"]",
        "value": {"primary": true}}]))
    .unwrap();
    assert_eq!(result["emails"][0]["primary"], false);
    assert_eq!(result["emails"][1]["primary"], true);
}

#[test]
fn immutable_sub_attributes_are_set_once() {
    let group = group();
    let first = group["members"][0]["value"].as_str().unwrap().to_string();
    let at = |sub: &str| format!("members[value eq \"{first}\"].{sub}");
    let same = patch(
        "Group",
        &group,
        json!([{"op": "replace", "path": at("value"), "value": first}]),
    )
    .expect("writing the value it has");
    assert_eq!(same["members"], group["members"]);
    refused(
        patch(
            "Group",
            &group,
            json!([{"op": "remove", "path": at("value")}]),
        ),
        ScimType::Mutability,
        "is immutable and already has a value",
    );
    // Unset, it may be set once; then it stays.
    let typed = patch(
        "Group",
        &group,
        json!([{"op": "add", "path": at("type"), "value": "User"}]),
    )
    .expect("setting an unset immutable");
    assert_eq!(typed["members"][0]["type"], "User");
    assert!(typed["members"][1].get("type").is_none());
    refused(
        patch(
            "Group",
            &typed,
            json!([{"op": "replace", "path": at("type"), "value": "Group"}]),
        ),
        ScimType::Mutability,
        "immutable",
    );
    let again = patch(
        "Group",
        &typed,
        json!([{"op": "replace", "path": at("type"), "value": "User"}]),
    )
    .expect("the same value again");
    assert_eq!(again["members"], typed["members"]);
    // readWrite members of the same element change freely.
    let shown = patch(
        "Group",
        &group,
        json!([{"op": "replace", "path": at("display"), "value": "B"}]),
    )
    .unwrap();
    assert_eq!(shown["members"][0]["display"], "B");
    let hidden = patch(
        "Group",
        &group,
        json!([{"op": "remove", "path": at("display")}]),
    )
    .unwrap();
    assert!(hidden["members"][0].get("display").is_none());
    assert_eq!(hidden["members"][1]["display"], "Mandy Pepperidge");
}

#[test]
fn a_read_only_sub_attribute_accepts_only_its_own_value() {
    let path = format!("{ENTERPRISE}:manager.displayName");
    let same = user(json!([{"op": "replace", "path": path, "value": "John Smith"}]))
        .expect("the value it has");
    assert_eq!(same, bjensen());
    refused(
        user(json!([{"op": "replace", "path": path, "value": "Jane"}])),
        ScimType::Mutability,
        "attribute 'manager.displayName' is readOnly",
    );
    refused(
        user(json!([{"op": "remove", "path": path}])),
        ScimType::Mutability,
        "attribute 'manager.displayName' is readOnly",
    );
    // Its readWrite siblings change.
    let changed = user(
        json!([{"op": "replace", "path": format!("{ENTERPRISE}:manager.value"), "value": "m2"}]),
    )
    .unwrap();
    assert_eq!(changed[ENTERPRISE]["manager"]["value"], "m2");
    assert_eq!(changed[ENTERPRISE]["manager"]["displayName"], "John Smith");
}

/// Removing a required attribute is refused by PATCH itself, naming it,
/// before validation of the result would notice it is missing.
#[test]
fn required_attributes_cannot_be_removed() {
    refused(
        user(json!([{"op": "remove", "path": "userName"}])),
        ScimType::InvalidValue,
        "attribute 'userName' is required and cannot be removed",
    );
    refused(
        patch(
            "Group",
            &group(),
            json!([{"op": "remove", "path": "displayName"}]),
        ),
        ScimType::InvalidValue,
        "attribute 'displayName' is required and cannot be removed",
    );
    refused(
        user(json!([{"op": "replace", "path": "userName", "value": null}])),
        ScimType::InvalidValue,
        "attribute 'userName' is required and cannot be removed",
    );
}

#[test]
fn only_the_exact_extension_urn_names_the_extension() {
    // Same length, one letter off; a colon inside the last name; another version.
    let same_length = ENTERPRISE.replace(":User", ":Usex");
    let inner_colon = format!("{}:r", ENTERPRISE.trim_end_matches("er"));
    let other_version = ENTERPRISE.replace("2.0", "2.1");
    assert_eq!(same_length.len(), ENTERPRISE.len());
    assert_eq!(inner_colon.len(), ENTERPRISE.len());
    for path in [same_length, inner_colon, other_version] {
        refused(
            user(json!([{"op": "remove", "path": path}])),
            ScimType::InvalidPath,
            "unknown attribute",
        );
    }
    // A `schemas` member naming another schema is not the extension restating itself.
    refused(
        user(json!([{"op": "add", "path": ENTERPRISE,
            "value": {"schemas": ["urn:other"], "department": "D"}}])),
        ScimType::InvalidPath,
        "unknown attribute 'schemas' in extension",
    );
}

#[test]
fn empty_values_and_missing_parents() {
    // replace with an empty list removes; add of an empty list changes nothing.
    let removed = user(json!([{"op": "replace", "path": "emails", "value": []}])).unwrap();
    assert!(removed.get("emails").is_none(), "{removed}");
    let same = user(json!([{"op": "add", "path": "emails", "value": []}])).unwrap();
    assert_eq!(same["emails"], bjensen()["emails"]);
    // A sub-attribute of a multi-valued attribute the resource lacks.
    let bare = json!({"schemas": [USER], "id": "1", "userName": "u"});
    let unchanged = patch(
        "User",
        &bare,
        json!([{"op": "remove", "path": "emails.type"}]),
    )
    .unwrap();
    assert_eq!(unchanged, bare);
    refused(
        patch(
            "User",
            &bare,
            json!([{"op": "replace", "path": "emails.type", "value": "work"}]),
        ),
        ScimType::NoTarget,
        "'emails' has no values to set 'emails.type' on",
    );
    // A sub-attribute of a complex attribute the resource lacks: created by add.
    let named = patch(
        "User",
        &bare,
        json!([{"op": "add", "path": "name.givenName", "value": "G"}]),
    )
    .unwrap();
    assert_eq!(named["name"], json!({"givenName": "G"}));
    let unchanged = patch(
        "User",
        &bare,
        json!([{"op": "remove", "path": "name.givenName"}]),
    )
    .unwrap();
    assert_eq!(unchanged, bare);
    // Removing a readOnly sub-attribute that is null is removing nothing.
    let mut resource = bjensen();
    resource[ENTERPRISE]["manager"]["displayName"] = Value::Null;
    let cleared = patch(
        "User",
        &resource,
        json!([{"op": "remove", "path": format!("{ENTERPRISE}:manager.displayName")}]),
    )
    .expect("nothing to remove");
    assert!(cleared[ENTERPRISE]["manager"].get("displayName").is_none());
}

#[test]
fn complex_values_without_a_value_member_merge_only_when_equal() {
    let addresses = bjensen()["addresses"].as_array().unwrap().clone();
    let added = user(json!([{"op": "add", "path": "addresses",
        "value": [{"type": "other", "locality": "Oslo"}]}]))
    .unwrap();
    assert_eq!(
        added["addresses"].as_array().unwrap().len(),
        addresses.len() + 1
    );
    assert_eq!(added["addresses"][0], addresses[0]);
    let again =
        user(json!([{"op": "add", "path": "addresses", "value": [addresses[1].clone()]}])).unwrap();
    assert_eq!(again["addresses"].as_array().unwrap(), &addresses);
}

/// Once a PATCH writes to an extension its URN is listed in `schemas`, once,
/// and stays listed when the same request empties the extension again (as
/// it does when the last attribute is removed later): `schemas` is not
/// rebuilt from the data by PATCH.
#[test]
fn an_extension_written_to_stays_listed() {
    let bare = json!({"schemas": [USER], "id": "1", "userName": "u"});
    let emptied = patch(
        "User",
        &bare,
        json!([{"op": "add", "path": format!("{ENTERPRISE}:manager.value"), "value": "m1"},
               {"op": "remove", "path": format!("{ENTERPRISE}:manager")}]),
    )
    .unwrap();
    assert!(emptied.get(ENTERPRISE).is_none(), "{emptied}");
    assert_eq!(schemas(&emptied), [USER, ENTERPRISE]);
    let twice = patch(
        "User",
        &bare,
        json!([{"op": "add", "path": format!("{ENTERPRISE}:department"), "value": "D"},
               {"op": "add", "path": format!("{ENTERPRISE}:division"), "value": "V"}]),
    )
    .unwrap();
    assert_eq!(schemas(&twice), [USER, ENTERPRISE]);
}

#[test]
fn adding_to_an_immutable_multi_valued_attribute_keeps_what_it_has() {
    // An immutable multi-valued attribute: an `add` of values it already
    // has changes nothing (merged into the existing values, not replacing
    // them); a new value is a change, refused.
    let mut registry = Registry::core();
    registry
        .add_schema_json(&json!({
            "id": "urn:example:Badge",
            "name": "Badge",
            "attributes": [
                {"name": "codes", "type": "string", "multiValued": true, "mutability": "immutable"}
            ]
        }))
        .expect("schema");
    registry
        .add_resource_type(scimgate_scim::ResourceType::new(
            "Badge",
            "/Badges",
            "urn:example:Badge",
        ))
        .expect("resource type");
    let context = registry.context_for("Badge").expect("Badge");
    let badge = json!({"schemas": ["urn:example:Badge"], "id": "1", "codes": ["a", "b"]});
    let apply = |operations: Value| {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
        apply_patch(&context, &badge, &PatchRequest::parse(&body)?)
    };
    let same = apply(json!([{"op": "add", "path": "codes", "value": ["a"]}]))
        .expect("adding a value it has");
    assert_eq!(same["codes"], json!(["a", "b"]));
    refused(
        apply(json!([{"op": "add", "path": "codes", "value": ["c"]}])),
        ScimType::Mutability,
        "is immutable and already has a value",
    );
    let unset = json!({"schemas": ["urn:example:Badge"], "id": "2"});
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                      "Operations": [{"op": "add", "path": "codes", "value": ["c"]}]});
    let set =
        apply_patch(&context, &unset, &PatchRequest::parse(&body).unwrap()).expect("set once");
    assert_eq!(set["codes"], json!(["c"]));
}

#[test]
fn adding_to_a_multi_valued_sub_attribute_merges_and_moves_no_primary() {
    let mut registry = Registry::core();
    registry
        .add_schema_json(&json!({
            "id": "urn:example:Shelf",
            "name": "Shelf",
            "attributes": [
                {"name": "boxes", "type": "complex", "multiValued": true, "subAttributes": [
                    {"name": "name", "type": "string"},
                    {"name": "labels", "type": "string", "multiValued": true}
                ]}
            ]
        }))
        .expect("schema");
    registry
        .add_resource_type(scimgate_scim::ResourceType::new(
            "Shelf",
            "/Shelves",
            "urn:example:Shelf",
        ))
        .expect("resource type");
    let context = registry.context_for("Shelf").expect("Shelf");
    let shelf = json!({"schemas": ["urn:example:Shelf"], "id": "1",
                       "boxes": [{"name": "b1", "labels": ["x"]}, {"name": "b2"}]});
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                      "Operations": [{"op": "add", "path": "boxes[name eq \"b1\"].labels", "value": ["y", "x"]}]});
    let added = apply_patch(&context, &shelf, &PatchRequest::parse(&body).unwrap()).unwrap();
    // Merged into what the element had, each value once.
    assert_eq!(added["boxes"][0]["labels"], json!(["x", "y"]));
    assert!(added["boxes"][1].get("labels").is_none());

    // Setting another sub-attribute of one email leaves the primary flag of
    // the others alone (only setting `primary` demotes the rest).
    let user = json!({"schemas": [USER], "id": "2", "userName": "u",
                      "emails": [{"value": "a@example.com", "type": "work", "primary": true},
                                 {"value": "b@example.com", "type": "home"}]});
    let typed = patch(
        "User",
        &user,
        json!([{"op": "replace", "path": "emails[type eq \"home\"].display", "value": "Home"}]),
    )
    .unwrap();
    assert_eq!(typed["emails"][0]["primary"], true, "{typed}");
    assert_eq!(typed["emails"][1]["display"], "Home");
    let promoted = patch(
        "User",
        &user,
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
    )
    .unwrap();
    assert_eq!(promoted["emails"][1]["primary"], true, "{promoted}");
    assert_ne!(
        promoted["emails"][0].get("primary"),
        Some(&json!(true)),
        "{promoted}"
    );
}
