//! What the One Identity profile costs on a typical user read (`GET /users/ID/` with a
//! ~30-attribute User in the response): inbound + outbound per request, printed.
//! A benchmark, not a test: it never fails on a slow machine.
//!
//! `cargo bench -p scimgate-plugin-one-identity`

use std::hint::black_box;
use std::time::{Duration, Instant};

use scimgate_abi::sdk::Profile;
use scimgate_abi::std_types::RVec;
use scimgate_abi::{Caller, ErrorStyle, Header, Request, Response};
use scimgate_scim::profile::ProfileEngine;
use serde_json::{json, Value};

fn profile(config: Value) -> ProfileEngine {
    one_identity::profile(&config).expect("profile")
}

fn request() -> Request {
    Request {
        method: "GET".into(),
        path: "/users/2819c223-7f76-453a-919d-413861904646/".into(),
        query: "".into(),
        headers: vec![
            Header::new("authorization", "Bearer eyJhbGciOiJFZERTQSJ9.e30.sig"),
            Header::new("accept", "application/scim+json"),
        ]
        .into(),
        body: RVec::new(),
        peer_addr: "10.20.0.5:50123".into(),
        client_ip: "10.20.0.5".into(),
        request_id: "req-1".into(),
        mount: "/iso/scim/v2".into(),
        base_url: "https://vault.example.com/iso/scim/v2".into(),
        received_at_unix_ms: 0,
        error_style: ErrorStyle::Scim,
        attributes: RVec::new(),
    }
}

/// A User with ~30 attributes (core + enterprise extension).
fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara",
                 "middleName": "Jane", "honorificPrefix": "Ms.", "honorificSuffix": "III"},
        "displayName": "Babs Jensen",
        "nickName": "Babs",
        "profileUrl": "https://login.example.com/bjensen",
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                   {"value": "babs@jensen.org", "type": "home"}],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
                       "region": "CA", "postalCode": "91608", "country": "USA", "primary": true}],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work"}, {"value": "555-555-4444", "type": "mobile"}],
        "userType": "Employee",
        "title": "Tour Guide",
        "preferredLanguage": "en-US",
        "locale": "en-US",
        "timezone": "America/Los_Angeles",
        "active": true,
        "groups": [{"value": "e9e30dba-f08f-4109-8486-d5c6a331660a", "display": "Tour Guides",
                    "$ref": "https://vault.example.com/iso/scim/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
            "division": "Theme Park", "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
        },
        "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z",
                 "version": "W/\"3694e05e9dff591\"",
                 "location": "https://vault.example.com/iso/scim/v2/Users/2819c223-7f76-453a-919d-413861904646"}
    })
}

fn measure(label: &str, profile: &ProfileEngine) -> f64 {
    let template = request();
    let body = serde_json::to_vec(&user()).expect("body");
    let response = Response {
        status: 200,
        headers: vec![Header::new("content-type", "application/scim+json")].into(),
        body: body.into(),
    };
    let run = |n: u32| {
        let start = Instant::now();
        for _ in 0..n {
            let mut req = template.clone();
            let mut resp = response.clone();
            profile
                .inbound(black_box(&mut req), Caller::ANONYMOUS)
                .expect("inbound");
            profile
                .outbound(&req, Caller::ANONYMOUS, black_box(&mut resp))
                .expect("outbound");
            black_box((req, resp));
        }
        start.elapsed()
    };
    // The clones of the request and response are part of the loop; measure them
    // alone and subtract, so the figure is the profile's own cost.
    let baseline = |n: u32| {
        let start = Instant::now();
        for _ in 0..n {
            black_box((template.clone(), response.clone()));
        }
        start.elapsed()
    };
    run(2_000);
    let mut n = 10_000u32;
    while run(n) < Duration::from_millis(300) && n < 50_000_000 {
        n *= 2;
    }
    let total = run(n).as_secs_f64();
    let copies = baseline(n).as_secs_f64();
    let per_request_ns = (total - copies).max(0.0) / f64::from(n) * 1e9;
    println!(
        "{label:<55} {:>9.0} ns/request  ({n} iterations; {:.0} ns of request/response copies subtracted)",
        per_request_ns,
        copies / f64::from(n) * 1e9
    );
    per_request_ns
}

fn main() {
    println!("one-identity/profile: inbound + outbound of GET /users/{{id}}/ (~30-attribute User)");
    let plain = measure(
        "default config (path + query names, group members)",
        &profile(json!({})),
    );
    let mapped = measure(
        "with a mapping (title -> enterprise department)",
        &profile(json!({"mapping": [{"resource": "User", "from": "title",
            "to": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]})),
    );
    println!(
        "target for the default config: < 2000 ns → {}; a mapping parses and re-serialises the body ({:.1}× the default)",
        if plain < 2000.0 { "met" } else { "NOT met" },
        mapped / plain.max(1.0)
    );
}
