//! Attributes that are never returned (`returned: never`, e.g. `password`):
//! refused in filters and `sortBy`, and never shown by the log renderings of
//! [`scimgate_scim::redact`].

use scimgate_scim::redact::{body_for_log, Sensitive};
use scimgate_scim::sort::check_sortable;
use scimgate_scim::{parse_filter, AttrPath, Registry, ResourceType, ScimType};
use serde_json::{json, Value};

/// Core User, plus a `Vault` type whose multi-valued `keys` has a hidden
/// `secret` sub-attribute and whose complex `recovery` is hidden as a whole.
fn registry() -> Registry {
    let mut registry = Registry::core();
    registry
        .add_schema_json(&json!({
            "id": "urn:example:Vault",
            "name": "Vault",
            "attributes": [
                {"name": "label", "type": "string"},
                {"name": "keys", "type": "complex", "multiValued": true, "subAttributes": [
                    {"name": "type", "type": "string"},
                    {"name": "secret", "type": "string", "returned": "never", "mutability": "writeOnly"}
                ]},
                {"name": "recovery", "type": "complex", "returned": "never", "subAttributes": [
                    {"name": "code", "type": "string"}
                ]}
            ]
        }))
        .expect("schema");
    registry
        .add_resource_type(ResourceType::new("Vault", "/Vaults", "urn:example:Vault"))
        .expect("resource type");
    registry
}

fn filter_error(registry: &Registry, resource_type: &str, text: &str) -> Option<ScimType> {
    let context = registry.context_for(resource_type).expect("context");
    let filter = parse_filter(text).expect("the filter parses");
    filter
        .check_filterable(&context)
        .err()
        .map(|error| error.scim_type.expect("a scimType"))
}

#[test]
fn filters_naming_a_never_returned_attribute_are_invalid_filters() {
    let registry = registry();
    let refused = [
        ("User", r#"password sw "x""#),
        ("User", r#"PASSWORD eq "x""#),
        ("User", r#"userName eq "a" and password pr"#),
        (
            "User",
            r#"userName eq "a" or (title pr and password gt "m")"#,
        ),
        ("User", r#"not (password pr)"#),
        (
            "User",
            r#"urn:ietf:params:scim:schemas:core:2.0:User:password co "a""#,
        ),
        (
            "User",
            r#"emails[type eq "work"] and not (not (password ew "z"))"#,
        ),
        ("Vault", r#"keys[secret sw "a"]"#),
        ("Vault", r#"keys[type eq "ssh" and not (secret pr)]"#),
        ("Vault", r#"keys.secret eq "a""#),
        ("Vault", r#"recovery.code sw "1""#),
        ("Vault", r#"recovery[code sw "1"]"#),
        ("Vault", r#"recovery pr"#),
    ];
    for (resource_type, text) in refused {
        assert_eq!(
            filter_error(&registry, resource_type, text),
            Some(ScimType::InvalidFilter),
            "{resource_type}: {text}"
        );
    }
    let accepted = [
        (
            "User",
            r#"userName eq "a" and emails[type eq "work" and value co "@"]"#,
        ),
        ("User", r#"not (active eq false) or name.givenName sw "B""#),
        ("User", r#"unknownAttribute pr"#),
        ("Vault", r#"keys[type eq "ssh"] and label pr"#),
        ("Vault", r#"keys.type eq "ssh""#),
    ];
    for (resource_type, text) in accepted {
        assert_eq!(
            filter_error(&registry, resource_type, text),
            None,
            "{resource_type}: {text}"
        );
    }
}

#[test]
fn sorting_by_a_never_returned_attribute_is_an_invalid_value() {
    let registry = registry();
    let users = registry.context_for("User").expect("User");
    let vaults = registry.context_for("Vault").expect("Vault");
    for (context, path) in [
        (&users, "password"),
        (&users, "Password"),
        (
            &users,
            "urn:ietf:params:scim:schemas:core:2.0:User:password",
        ),
        (&vaults, "keys.secret"),
        (&vaults, "recovery.code"),
    ] {
        let error = check_sortable(context, &AttrPath::parse(path).expect("path")).expect_err(path);
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue), "{path}");
        assert_eq!(error.status, 400, "{path}");
    }
    for (context, path) in [
        (&users, "userName"),
        (&users, "name.familyName"),
        (&vaults, "keys.type"),
    ] {
        assert!(
            check_sortable(context, &AttrPath::parse(path).expect("path")).is_ok(),
            "{path}"
        );
    }
}

const SECRET: &str = "Tr0ub4dor&3-unique";

fn patch(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

#[test]
fn patch_log_lines_show_operations_and_paths_but_never_sensitive_values() {
    let registry = registry();
    let users = Sensitive::new(&registry.context_for("User").expect("User"), &[]);
    let body = patch(json!([
        {"op": "replace", "path": "password", "value": SECRET},
        {"op": "Replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:password", "value": SECRET},
        {"op": "replace", "value": {"active": false, "password": SECRET, "name": {"givenName": "Babs"}}},
        {"op": "add", "path": "emails[type eq \"work\"].value", "value": "b@example.com"},
        {"op": "remove", "path": "members[value eq \"2819c223\"]"},
        {"op": "replace", "path": "x[password eq \"Tr0ub4dor&3-unique\"]", "value": SECRET},
        {"op": "replace", "path": "not a [valid path Tr0ub4dor&3-unique password"}
    ]));
    let line = body_for_log(&body, &users);
    assert!(!line.contains(SECRET), "{line}");
    assert!(
        !line.contains("Babs") && !line.contains("b@example.com"),
        "values never show: {line}"
    );
    let expected = [
        "replace password (redacted)",
        "Replace urn:ietf:params:scim:schemas:core:2.0:User:password (redacted)",
        "replace (no path) {active: boolean, name: {givenName: string}, password: redacted}",
        "add emails[type eq \"work\"].value (string)",
        "remove members[value eq \"2819c223\"]",
        "replace (invalid path)",
    ];
    for part in expected {
        assert!(line.contains(part), "{part:?} missing in {line}");
    }
}

#[test]
fn never_returned_attributes_and_extra_names_are_redacted_too() {
    let registry = registry();
    let extra = vec!["employeeNumber".to_string()];
    let vaults = Sensitive::new(&registry.context_for("Vault").expect("Vault"), &extra);
    let body = patch(json!([
        {"op": "add", "path": "keys", "value": [{"type": "ssh", "secret": SECRET}]},
        {"op": "add", "path": "keys[type eq \"ssh\"].secret", "value": SECRET},
        {"op": "replace", "path": "recovery", "value": {"code": SECRET}},
        {"op": "replace", "path": "recovery[code eq \"Tr0ub4dor&3-unique\"]", "value": {"code": SECRET}},
        {"op": "replace", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": SECRET, "costCenter": "4130"}}}
    ]));
    let line = body_for_log(&body, &vaults);
    assert!(!line.contains(SECRET), "{line}");
    assert!(
        line.contains("add keys ([1 × {secret: redacted, type: string}])"),
        "{line}"
    );
    assert!(
        line.contains("add keys[type eq \"ssh\"].secret (redacted)"),
        "{line}"
    );
    assert!(line.contains("replace recovery (redacted)"), "{line}");
    assert!(line.contains("employeeNumber: redacted"), "{line}");
    assert!(line.contains("costCenter: string"), "{line}");

    // Not a PatchOp (POST/PUT bodies, garbage): the shape, still without values.
    for body in [
        json!({"userName": "bjensen", "password": SECRET, "emails": [{"value": "x@y"}]}),
        json!([SECRET, {"password": SECRET}]),
        json!({"Operations": [SECRET, {"op": SECRET, "path": 3, "value": SECRET}]}),
    ] {
        let line = body_for_log(&body, &vaults);
        assert!(!line.contains(SECRET), "{line}");
    }
}
