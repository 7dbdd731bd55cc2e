//! Shared fixtures: RFC 7643 §8 example resources, and requests through a
//! profile.

use scimgate_abi::sdk::Profile;
use scimgate_abi::{Caller, Request};
use scimgate_scim::profile::ProfileEngine;
use scimgate_scim::{apply_patch, PatchRequest, Registry};
use serde_json::{json, Value};

/// The full User of RFC 7643 §8.2 plus the Enterprise extension of §8.3 (trimmed).
pub fn bjensen() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {
            "formatted": "Ms. Barbara J Jensen, III",
            "familyName": "Jensen",
            "givenName": "Barbara",
            "middleName": "Jane",
            "honorificPrefix": "Ms.",
            "honorificSuffix": "III"
        },
        "displayName": "Babs Jensen",
        "nickName": "Babs",
        "profileUrl": "https://login.example.com/bjensen",
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "addresses": [
            {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
             "region": "CA", "postalCode": "91608", "country": "USA",
             "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA", "primary": true},
            {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood",
             "region": "CA", "postalCode": "91608", "country": "USA",
             "formatted": "456 Hollywood Blvd\nHollywood, CA 91608 USA"}
        ],
        "phoneNumbers": [
            {"value": "555-555-5555", "type": "work"},
            {"value": "555-555-4444", "type": "mobile"}
        ],
        "ims": [{"value": "someaimhandle", "type": "aim"}],
        "photos": [{"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"}],
        "userType": "Employee",
        "title": "Tour Guide",
        "preferredLanguage": "en-US",
        "locale": "en-US",
        "timezone": "America/Los_Angeles",
        "active": true,
        "password": "t1meMa$heen",
        "groups": [{"value": "e9e30dba-f08f-4109-8486-d5c6a331660a",
                    "$ref": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
                    "display": "Tour Guides"}],
        "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "costCenter": "4130",
            "organization": "Universal Studios",
            "division": "Theme Park",
            "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d",
                        "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
                        "displayName": "John Smith"}
        },
        "meta": {
            "resourceType": "User",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34Z",
            "version": "W/\"3694e05e9dff591\"",
            "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"
        }
    })
}

/// A second, different user: an intern without title, with example.org mail and xmpp.
pub fn jsmith() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "26118915-6090-4610-87e4-49d8ca9f808d",
        "userName": "Jsmith",
        "name": {"familyName": "O'Malley", "givenName": "John"},
        "userType": "Intern",
        "emails": [{"value": "john@example.org", "type": "work"}],
        "ims": [{"value": "john@foo.com", "type": "xmpp"}],
        "active": false,
        "meta": {"resourceType": "User", "created": "2011-05-13T04:42:34Z",
                 "lastModified": "2011-05-13T04:42:34+00:00"}
    })
}

/// The Group of RFC 7644 §3.5.2 examples.
pub fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "acbf3ae7-8463-4692-b4fd-9b4da3f908ce",
        "displayName": "Tour Guides",
        "members": [
            {"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen",
             "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"},
            {"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge",
             "$ref": "https://example.com/v2/Users/902c246b-6245-4190-8e05-00816be7344a"}
        ],
        "meta": {"resourceType": "Group", "created": "2010-01-23T04:56:22Z",
                 "lastModified": "2011-05-13T04:42:34Z"}
    })
}

/// A request as an IGA client sends it to a profile mounted at `/scim/v2`
/// (`body` null: no body).
pub fn profile_request(method: &str, path: &str, query: &str, body: &Value) -> Request {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    Request::new(method, path)
        .with_query(query)
        .with_body(body)
        .with_mount("/scim/v2", "https://gw.example.com/scim/v2")
}

/// The PatchOp body a profile hands on for `operations` sent to `path`.
pub fn profile_patch(profile: &ProfileEngine, path: &str, operations: Value) -> Value {
    let mut req = profile_request(
        "PATCH",
        path,
        "",
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}),
    );
    profile
        .inbound(&mut req, Caller::ANONYMOUS)
        .expect("inbound");
    serde_json::from_slice(&req.body).expect("JSON")
}

/// `body` applied by the engine's PATCH to `current`, a `resource`.
pub fn apply_to(resource: &str, current: &Value, body: &Value) -> Value {
    let registry = Registry::core();
    let context = registry.context_for(resource).unwrap();
    apply_patch(
        &context,
        current,
        &PatchRequest::parse(body).expect("parses"),
    )
    .expect("applies")
}
