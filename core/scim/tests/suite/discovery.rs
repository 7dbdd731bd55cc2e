//! Discovery documents: /Schemas, /ResourceTypes, /ServiceProviderConfig, custom schemas.

use scimgate_scim::discovery::{
    resource_types_json, schemas_json, AuthenticationScheme, ServiceProviderConfig,
};
use scimgate_scim::{AttrType, Mutability, Registry, Returned, Schema, Uniqueness};
use serde_json::json;

#[test]
fn core_schemas_render_and_read_back() {
    let registry = Registry::core();
    let rendered = schemas_json(&registry, Some("https://example.com/v2"));
    assert_eq!(rendered.len(), 3);
    let user = &rendered[0];
    assert_eq!(
        user["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"])
    );
    assert_eq!(
        user["meta"]["location"],
        "https://example.com/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"
    );
    let user_name = &user["attributes"][0];
    assert_eq!(user_name["name"], "userName");
    assert_eq!(user_name["required"], true);
    assert_eq!(user_name["uniqueness"], "server");
    for (rendered, schema) in rendered.iter().zip(registry.schemas()) {
        assert_eq!(&Schema::from_json(rendered).expect("reads back"), schema);
    }
    let password = registry
        .schema("urn:ietf:params:scim:schemas:core:2.0:user")
        .and_then(|s| s.attribute("PASSWORD"))
        .expect("password");
    assert_eq!(
        (password.mutability, password.returned),
        (Mutability::WriteOnly, Returned::Never)
    );
    let types = resource_types_json(&registry, None);
    assert_eq!(types[0]["endpoint"], "/Users");
    assert_eq!(
        types[1]["schema"],
        "urn:ietf:params:scim:schemas:core:2.0:Group"
    );
}

#[test]
fn custom_schema_from_rfc_format_text() {
    let mut registry = Registry::core();
    let schema = registry
        .add_schema_json_str(r#"{
            "id": "urn:example:params:scim:schemas:extension:Badge:2.0:User",
            "name": "Badge", "description": "Badge data",
            "attributes": [
                {"name": "badgeNumber", "type": "integer", "multiValued": false, "required": true,
                 "caseExact": false, "mutability": "immutable", "returned": "default", "uniqueness": "global"},
                {"name": "zones", "type": "complex", "multiValued": true, "subAttributes": [
                    {"name": "value", "type": "string"}, {"name": "primary", "type": "boolean"}]}
            ]}"#)
        .expect("custom schema");
    assert_eq!(schema.attributes[0].attr_type, AttrType::Integer);
    assert_eq!(schema.attributes[0].uniqueness, Uniqueness::Global);
    assert!(registry
        .add_schema_json_str(r#"{"id": "x", "attributes": [{"name": "a", "type": "nope"}]}"#)
        .is_err());
    assert!(registry
        .add_schema_json_str(r#"{"id": "y", "attributes": [{"type": "string"}]}"#)
        .is_err());
    assert!(registry.add_schema_json_str("not json").is_err());
}

#[test]
fn service_provider_config_reflects_settings() {
    let config = ServiceProviderConfig::default()
        .with_patch()
        .with_filter(200)
        .with_bulk(1000, 1_048_576)
        .with_etag()
        .with_authentication_scheme(AuthenticationScheme::oauth_bearer_token(true));
    let body = config.to_json(Some("https://example.com/v2"));
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    assert_eq!(body["patch"]["supported"], true);
    assert_eq!(
        body["filter"],
        json!({"supported": true, "maxResults": 200})
    );
    assert_eq!(body["bulk"]["maxOperations"], 1000);
    assert_eq!(body["sort"]["supported"], false);
    assert_eq!(body["authenticationSchemes"][0]["type"], "oauthbearertoken");
    assert_eq!(
        body["meta"]["location"],
        "https://example.com/v2/ServiceProviderConfig"
    );
}
