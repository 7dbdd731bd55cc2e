//! Criterion benchmarks: parse a 10-clause filter, evaluate it against a 30-attribute
//! user, apply a 20-operation PATCH. Figures only; nothing here fails on a slow machine.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use scimgate_scim::patch::{apply_patch, PatchRequest};
use scimgate_scim::{parse_filter, Registry};
use serde_json::{json, Value};

const FILTER: &str = r#"userName eq "bjensen@example.com" and active eq true and (title pr or userType eq "Employee") and emails[type eq "work" and value co "@example.com"] and name.familyName sw "Jen" and meta.lastModified gt "2011-01-01T00:00:00Z" and not (nickName eq "Bob") and urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Tour Operations" and locale ne "fr-FR""#;

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646", "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara",
                 "middleName": "Jane", "honorificPrefix": "Ms.", "honorificSuffix": "III"},
        "displayName": "Babs Jensen", "nickName": "Babs", "profileUrl": "https://login.example.com/bjensen",
        "title": "Tour Guide", "userType": "Employee", "preferredLanguage": "en-US", "locale": "en-US",
        "timezone": "America/Los_Angeles", "active": true,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work"}, {"value": "555-555-4444", "type": "mobile"}],
        "ims": [{"value": "someaimhandle", "type": "aim"}],
        "photos": [{"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"}],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
                       "region": "CA", "postalCode": "91608", "country": "USA", "primary": true}],
        "entitlements": [{"value": "vpn"}], "roles": [{"value": "guide"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
            "division": "Theme Park", "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}},
        "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z",
                 "version": "W/\"3694e05e9dff591\"", "location": "https://example.com/v2/Users/2819c223"}
    })
}

fn patch_body() -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Barbara Jensen"},
        {"op": "replace", "path": "name.givenName", "value": "Barb"},
        {"op": "add", "path": "nickName", "value": "B"},
        {"op": "replace", "path": "active", "value": false},
        {"op": "add", "path": "emails", "value": [{"value": "b@example.net", "type": "other"}]},
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@example.com"},
        {"op": "remove", "path": "emails[type eq \"home\"]"},
        {"op": "replace", "path": "addresses[type eq \"work\"].locality", "value": "Burbank"},
        {"op": "add", "path": "phoneNumbers", "value": [{"value": "555-0000", "type": "fax"}]},
        {"op": "remove", "path": "phoneNumbers[type eq \"mobile\"]"},
        {"op": "replace", "path": "title", "value": "Senior Tour Guide"},
        {"op": "remove", "path": "ims"},
        {"op": "add", "path": "roles", "value": [{"value": "lead"}]},
        {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"},
        {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": "m2"}},
        {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"},
        {"op": "replace", "value": {"userType": "Contractor", "locale": "en-GB"}},
        {"op": "add", "path": "entitlements", "value": [{"value": "wifi"}]},
        {"op": "replace", "path": "preferredLanguage", "value": "en-GB"},
        {"op": "add", "path": "addresses[type eq \"home\"].locality", "value": "Pasadena"}
    ]})
}

fn benchmarks(c: &mut Criterion) {
    let registry = Registry::core();
    let Ok(context) = registry.context_for("User") else {
        return;
    };
    let resource = user();

    c.bench_function("parse 10-clause filter", |b| {
        b.iter(|| parse_filter(black_box(FILTER)))
    });

    let Ok(filter) = parse_filter(FILTER) else {
        return;
    };
    assert_eq!(filter.matches(&resource, &context), Ok(true));
    c.bench_function("evaluate 10-clause filter on 30-attribute user", |b| {
        b.iter(|| filter.matches(black_box(&resource), &context))
    });

    let Ok(request) = PatchRequest::parse(&patch_body()) else {
        return;
    };
    assert!(apply_patch(&context, &resource, &request).is_ok());
    c.bench_function("apply 20-operation PATCH", |b| {
        b.iter(|| apply_patch(&context, black_box(&resource), &request))
    });
    c.bench_function("re-validate 30-attribute user (part of PATCH)", |b| {
        b.iter(|| scimgate_scim::validate::validate_stored(&context, black_box(&resource)))
    });
    c.bench_function("parse + apply 20-operation PATCH", |b| {
        let body = patch_body();
        b.iter(|| {
            PatchRequest::parse(black_box(&body))
                .and_then(|request| apply_patch(&context, &resource, &request))
        })
    });
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
