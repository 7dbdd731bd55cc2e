//! `attributes`/`excludedAttributes` with the `returned` rules, and `sortBy`/`sortOrder`.

use super::fixtures::{bjensen, jsmith};
use scimgate_scim::filter::AttrPath;
use scimgate_scim::projection::{project, strip_never, AttributeSelection};
use scimgate_scim::sort::{compare, sort_resources, sort_value, SortOrder};
use scimgate_scim::{Registry, Schema};
use serde_json::{json, Value};
use std::cmp::Ordering;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn projected(attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let selection = AttributeSelection::parse(attributes, excluded).expect("selection parses");
    project(&context, &bjensen(), &selection)
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The core registry with `schema` added as an optional User extension.
fn with_user_extension(schema: Value) -> Registry {
    let mut registry = Registry::core();
    let urn = schema["id"].as_str().expect("id").to_string();
    registry
        .add_schema(Schema::from_json(&schema).expect("schema"))
        .expect("add");
    registry.add_extension("User", &urn, false).expect("extend");
    registry
}

#[test]
fn default_projection_drops_never() {
    let all = projected(None, None);
    assert!(all.get("password").is_none());
    assert!(
        all.get("userName").is_some() && all.get("meta").is_some() && all.get(ENTERPRISE).is_some()
    );
}

#[test]
fn attributes_keep_always_and_selected_sub_attributes() {
    let some = projected(Some("userName, name.givenName,emails.value"), None);
    assert_eq!(
        keys(&some),
        vec!["emails", "id", "name", "schemas", "userName"]
    );
    assert_eq!(some["name"], json!({"givenName": "Barbara"}));
    assert_eq!(
        some["emails"],
        json!([{"value": "bjensen@example.com"}, {"value": "babs@jensen.org"}])
    );
    let password = projected(Some("password"), None);
    assert!(
        password.get("password").is_none(),
        "never is never returned"
    );
}

#[test]
fn urn_qualified_selection() {
    let qualified = projected(
        Some(&format!(
            "{ENTERPRISE}:manager.value,urn:ietf:params:scim:schemas:core:2.0:User:userName"
        )),
        None,
    );
    assert_eq!(
        qualified[ENTERPRISE],
        json!({"manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}})
    );
    assert_eq!(qualified["userName"], "bjensen@example.com");
    let whole = projected(Some(ENTERPRISE), None);
    assert_eq!(whole[ENTERPRISE]["department"], "Tour Operations");
    assert!(whole.get("userName").is_none());
    let excluded_whole = projected(None, Some(ENTERPRISE));
    assert!(excluded_whole.get(ENTERPRISE).is_none());
}

#[test]
fn excluded_attributes_cannot_remove_always() {
    let trimmed = projected(None, Some("emails,name.familyName,id,meta,department"));
    assert!(trimmed.get("emails").is_none());
    assert!(trimmed.get("meta").is_none());
    assert!(trimmed["name"].get("familyName").is_none());
    assert_eq!(trimmed["name"]["givenName"], "Barbara");
    assert!(trimmed.get("id").is_some(), "id is returned always");
    assert!(trimmed[ENTERPRISE].get("department").is_none());
    assert!(AttributeSelection::parse(Some("name..x"), None).is_err());
}

#[test]
fn request_attributes_only_when_asked() {
    let registry = with_user_extension(json!({"id": "urn:example:Ext", "name": "Ext",
        "attributes": [
            {"name": "badge", "type": "string", "returned": "request"},
            {"name": "pin", "type": "string", "returned": "never"}]}));
    let context = registry.context_for("User").expect("ctx");
    let mut user = bjensen();
    user["urn:example:Ext"] = json!({"badge": "B-1", "pin": "1234"});
    let default = project(&context, &user, &AttributeSelection::default());
    assert!(default.get("urn:example:Ext").is_none());
    let asked = project(
        &context,
        &user,
        &AttributeSelection::parse(Some("badge"), None).expect("parse"),
    );
    assert_eq!(asked["urn:example:Ext"], json!({"badge": "B-1"}));
    let stripped = strip_never(&context, &user);
    assert!(stripped.get("password").is_none());
    assert_eq!(stripped["urn:example:Ext"], json!({"badge": "B-1"}));
}

#[test]
fn sort_uses_primary_then_first_and_missing_last() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let emails = AttrPath::new("emails");
    let babs = bjensen();
    assert_eq!(
        sort_value(&context, &babs, &emails),
        Some(&json!("bjensen@example.com"))
    );
    let mut swapped = bjensen();
    swapped["emails"] = json!([{"value": "z@z"}, {"value": "a@a", "primary": true}]);
    assert_eq!(sort_value(&context, &swapped, &emails), Some(&json!("a@a")));
    swapped["emails"] = json!([{"value": "z@z"}, {"value": "a@a"}]);
    assert_eq!(
        sort_value(
            &context,
            &swapped,
            &AttrPath::new("emails").with_sub("value")
        ),
        Some(&json!("z@z"))
    );

    let no_title = jsmith();
    let title = AttrPath::new("title");
    assert_eq!(
        compare(&context, &babs, &no_title, &title, SortOrder::Ascending),
        Ordering::Less
    );
    assert_eq!(
        compare(&context, &babs, &no_title, &title, SortOrder::Descending),
        Ordering::Greater
    );

    let mut users = vec![
        json!({"userName": "b"}),
        json!({}),
        json!({"userName": "A"}),
        json!({"userName": "c"}),
    ];
    sort_resources(
        &context,
        &mut users,
        &AttrPath::new("userName"),
        SortOrder::Ascending,
    );
    let names: Vec<Value> = users.iter().map(|u| u["userName"].clone()).collect();
    assert_eq!(names, vec![json!("A"), json!("b"), json!("c"), Value::Null]);
    let mut dated = vec![bjensen(), jsmith()];
    sort_resources(
        &context,
        &mut dated,
        &AttrPath::new("meta").with_sub("created"),
        SortOrder::Descending,
    );
    assert_eq!(dated[0]["userName"], "Jsmith");
    assert_eq!(
        SortOrder::parse(Some("DESCENDING")),
        Ok(SortOrder::Descending)
    );
    assert!(SortOrder::parse(Some("sideways")).is_err());
}

#[test]
fn elements_left_empty_by_a_selection_or_a_never_sub_attribute_are_removed() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let mut user = bjensen();
    user["emails"] = json!([
        {"value": "a@example.com", "display": "A"},
        {"value": "b@example.com"}
    ]);
    let selection = AttributeSelection::parse(Some("emails.display"), None).expect("parses");
    let only_display = project(&context, &user, &selection);
    assert_eq!(only_display["emails"], json!([{"display": "A"}]));
    let selection = AttributeSelection::parse(None, Some("emails.value")).expect("parses");
    let without_values = project(&context, &user, &selection);
    assert_eq!(without_values["emails"], json!([{"display": "A"}]));

    let registry = with_user_extension(json!({"id": "urn:example:Keys", "name": "Keys",
        "attributes": [{"name": "keys", "type": "complex", "multiValued": true,
            "subAttributes": [
                {"name": "label", "type": "string"},
                {"name": "secret", "type": "string", "returned": "never"}]}]}));
    let context = registry.context_for("User").expect("ctx");
    let mut user = bjensen();
    user["urn:example:Keys"] =
        json!({"keys": [{"label": "laptop", "secret": "s1"}, {"secret": "s2"}]});
    let stripped = strip_never(&context, &user);
    assert_eq!(
        stripped["urn:example:Keys"],
        json!({"keys": [{"label": "laptop"}]})
    );
    assert_eq!(
        keys(&stripped),
        keys(&project(
            &context,
            &stripped,
            &AttributeSelection::default()
        ))
    );
}
