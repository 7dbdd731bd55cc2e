//! Create and replace validation (RFC 7643 §2, RFC 7644 §3.3, §3.5.1).

use super::fixtures::bjensen;
use scimgate_scim::{validate_create, validate_replace, Registry, ScimType};
use serde_json::{json, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn create(resource: Value) -> Result<Value, scimgate_scim::ScimError> {
    let registry = Registry::core();
    let context = registry.context_for("User")?;
    validate_create(&context, &resource)
}

#[test]
fn rfc_user_validates_and_is_cleaned() {
    let cleaned = create(bjensen()).expect("valid");
    for read_only in ["id", "meta", "groups"] {
        assert!(cleaned.get(read_only).is_none(), "{read_only} is dropped");
    }
    assert!(
        cleaned[ENTERPRISE]["manager"].get("displayName").is_none(),
        "readOnly sub-attribute dropped"
    );
    assert_eq!(
        cleaned["password"], "t1meMa$heen",
        "writeOnly is accepted on input"
    );
    assert_eq!(cleaned["schemas"], json!([USER, ENTERPRISE]));
}

#[test]
fn names_and_urns_are_normalised() {
    let cleaned = create(json!({
        "schemas": [USER.to_uppercase()],
        "USERNAME": "bob", "Name": {"GIVENNAME": "Bob"}, "Emails": [{"VALUE": "b@x.org", "Primary": true}],
        ENTERPRISE.to_lowercase(): {"EmployeeNumber": "7"},
        "urn:ietf:params:scim:schemas:core:2.0:User:title": "Boss",
        "nickName": null, "phoneNumbers": []
    })).expect("valid");
    assert_eq!(
        cleaned,
        json!({
            "schemas": [USER, ENTERPRISE], "userName": "bob", "name": {"givenName": "Bob"},
            "emails": [{"value": "b@x.org", "primary": true}], "title": "Boss",
            ENTERPRISE: {"employeeNumber": "7"}
        })
    );
}

#[test]
fn type_errors_name_the_attribute() {
    let cases = [
        (json!({"active": "true"}), "active"),
        (json!({"name": "Bob"}), "name"),
        (json!({"emails": [{"value": 5}]}), "emails.value"),
        (
            json!({"meta": {"created": "x"}, "x509Certificates": [{"value": "not base64!"}]}),
            "x509Certificates.value",
        ),
        (json!({"userName": ["a"]}), "userName"),
    ];
    for (extra, attribute) in cases {
        let mut user = json!({"schemas": [USER], "userName": "u"});
        for (key, value) in extra.as_object().into_iter().flatten() {
            user[key] = value.clone();
        }
        let error = create(user).expect_err(attribute);
        assert!(
            matches!(
                error.scim_type,
                Some(ScimType::InvalidValue | ScimType::InvalidSyntax)
            ),
            "{attribute}"
        );
        assert!(
            error.detail.contains(attribute),
            "{attribute}: {}",
            error.detail
        );
    }
}

#[test]
fn required_unknown_and_schema_errors() {
    let kind = |value: Value| create(value).err().and_then(|error| error.scim_type);
    assert_eq!(
        kind(json!({"schemas": [USER]})),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        kind(json!({"userName": "u"})),
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        kind(json!({"schemas": [ENTERPRISE], "userName": "u"})),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        kind(json!({"schemas": [USER, "urn:example:unknown"], "userName": "u"})),
        Some(ScimType::InvalidValue)
    );
    let unknown =
        create(json!({"schemas": [USER], "userName": "u", "shoeSize": 42})).expect_err("unknown");
    assert_eq!(unknown.scim_type, Some(ScimType::InvalidSyntax));
    assert!(unknown.detail.contains("shoeSize"));
    let unknown_sub = create(json!({"schemas": [USER], "userName": "u", "name": {"nick": "x"}}))
        .expect_err("unknown sub");
    assert!(unknown_sub.detail.contains("nick"));
    let two_primaries = create(json!({"schemas": [USER], "userName": "u",
        "emails": [{"value": "a@b", "primary": true}, {"value": "c@d", "primary": true}]}))
    .expect_err("primaries");
    assert_eq!(two_primaries.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn types_of_every_kind() {
    let mut registry = Registry::core();
    registry.add_schema_json(&json!({
        "id": "urn:example:schemas:Device", "name": "Device",
        "attributes": [
            {"name": "serial", "type": "string", "required": true, "caseExact": true, "uniqueness": "server"},
            {"name": "weight", "type": "decimal"},
            {"name": "ports", "type": "integer"},
            {"name": "seen", "type": "dateTime"},
            {"name": "firmware", "type": "binary"},
            {"name": "owner", "type": "reference", "referenceTypes": ["User"]},
            {"name": "tags", "type": "string", "multiValued": true},
            {"name": "secret", "type": "string", "returned": "never", "mutability": "writeOnly"},
            {"name": "serialLocked", "type": "string", "mutability": "immutable"}
        ]
    })).expect("custom schema");
    registry
        .add_resource_type(scimgate_scim::ResourceType::new(
            "Device",
            "/Devices",
            "urn:example:schemas:Device",
        ))
        .expect("resource type");
    let context = registry.context_for("Device").expect("context");
    let device = json!({"schemas": ["urn:example:schemas:Device"], "serial": "S1", "weight": 1.5, "ports": 4,
        "seen": "2024-02-29T12:00:00.5+02:00", "firmware": "AAEC", "owner": "https://x/Users/1", "tags": ["a", "b"],
        "serialLocked": "L1"});
    assert!(validate_create(&context, &device).is_ok());
    for (key, bad) in [
        ("ports", json!(1.5)),
        ("weight", json!("1")),
        ("seen", json!("2024-02-30T00:00:00Z")),
        ("firmware", json!("AAE")),
        ("owner", json!(1)),
    ] {
        let mut broken = device.clone();
        broken[key] = bad;
        let error = validate_create(&context, &broken).expect_err(key);
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue), "{key}");
        assert!(error.detail.contains(key));
    }
    // immutable on replace
    let mut changed = device.clone();
    changed["serialLocked"] = json!("L2");
    assert_eq!(
        validate_replace(&context, &changed, &device)
            .err()
            .and_then(|e| e.scim_type),
        Some(ScimType::Mutability)
    );
    let mut omitted = device.clone();
    omitted.as_object_mut().map(|o| o.remove("serialLocked"));
    assert_eq!(
        validate_replace(&context, &omitted, &device).expect("kept")["serialLocked"],
        "L1"
    );
}

#[test]
fn replace_ignores_read_only_and_checks_immutable_members() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let existing = bjensen();
    let mut new = bjensen();
    new["id"] = json!("something-else");
    new["displayName"] = json!("Barbara");
    let cleaned = validate_replace(&context, &new, &existing).expect("valid replace");
    assert!(cleaned.get("id").is_none());
    assert_eq!(cleaned["displayName"], "Barbara");
}

#[test]
fn required_extension_must_be_present() {
    let mut registry = Registry::new();
    registry
        .add_schema(scimgate_scim::core_schemas::user_schema())
        .expect("user");
    registry
        .add_schema(scimgate_scim::core_schemas::enterprise_user_schema())
        .expect("enterprise");
    registry
        .add_resource_type(
            scimgate_scim::ResourceType::new("User", "/Users", USER)
                .with_extension(ENTERPRISE, true),
        )
        .expect("rt");
    let context = registry.context_for("User").expect("ctx");
    let error = validate_create(&context, &json!({"schemas": [USER], "userName": "u"}))
        .expect_err("missing extension");
    assert!(error.detail.contains(ENTERPRISE));
}
