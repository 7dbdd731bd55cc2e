//! The example backend of docs/backends.md (`examples/memory-backend-plugin`,
//! component `memory/scim`) through the real binary: a complete SCIM service
//! provider from the engine library and one small trait implementation. It
//! passes the public compliance suite, and the engine's own paths for a
//! backend without capabilities (filters evaluated by the engine, versions
//! derived from content, members kept in group bodies) behave as documented.

use scimgate_e2e::*;

const TOKEN: &str = "memory-token";

fn config() -> String {
    r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"

[stage.key]
use = "demo/api-key"
header = "authorization"
keys = { "Bearer memory-token" = "p1" }

[stage.scim]
use = "memory/scim"

[[route]]
path = "/scim/v2"
pipeline = ["key", "scim"]
providers = ["p1"]

[[provider]]
id = "p1"
name = "Test"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#
    .to_string()
}

fn auth() -> [(&'static str, &'static str); 1] {
    [("authorization", "Bearer memory-token")]
}

#[test]
fn the_example_backend_passes_the_compliance_suite() {
    let server = Server::start(&config());
    let (ok, text) = run_compliance(&server.url("/scim/v2"), TOKEN);
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("scim2-tester:"))
        .unwrap_or_default()
        .to_string();
    println!("memory/scim: {last}");
    assert!(ok, "compliance suite failed:\n{text}");
    assert!(!last.starts_with("scim2-tester: 0 passed"), "{last}");
}

#[test]
fn the_engine_filters_versions_and_keeps_members_for_a_minimal_backend() {
    let server = Server::start(&config());
    let url = |path: &str| server.url(&format!("/scim/v2{path}"));
    let user = |name: &str| {
        let reply = send_json(
            "POST",
            &url("/Users"),
            &auth(),
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                    "emails": [{"type": "work", "value": format!("{name}@example.com")}]}),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()
    };
    let babs = user("bjensen");
    let jim = user("jsmith");
    // Filters the backend cannot push down are evaluated by the engine.
    let found = get(
        &url("/Users?filter=emails%5Bvalue%20ew%20%22jsmith%40example.com%22%5D"),
        &auth(),
    );
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.json()["totalResults"], 1);
    assert_eq!(found.json()["Resources"][0]["id"], jim["id"]);
    // Uniqueness through `taken`, ignoring case.
    let again = send_json(
        "POST",
        &url("/Users"),
        &auth(),
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "BJENSEN"}),
    );
    assert_eq!(again.status, 409, "{}", again.body);
    // Versions derived from content: a change changes the ETag, and a stale
    // If-Match is refused.
    let id = babs["id"].as_str().unwrap();
    let before = babs["meta"]["version"].as_str().unwrap().to_string();
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "replace", "path": "displayName", "value": "Babs"}]});
    let patched = send_json("PATCH", &url(&format!("/Users/{id}")), &auth(), &patch);
    assert_eq!(patched.status, 200, "{}", patched.body);
    let after = patched.json()["meta"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(before, after);
    let stale = [auth()[0], ("if-match", before.as_str())];
    let refused = send_json("PATCH", &url(&format!("/Users/{id}")), &stale, &patch);
    assert_eq!(refused.status, 412, "{}", refused.body);
    // Members kept by the engine; User.groups derived; a deleted member
    // leaves the group.
    let group = send_json(
        "POST",
        &url("/Groups"),
        &auth(),
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Admins",
                "members": [{"value": id}, {"value": jim["id"]}]}),
    );
    assert_eq!(group.status, 201, "{}", group.body);
    let gid = group.json()["id"].as_str().unwrap().to_string();
    let read = get(&url(&format!("/Users/{id}")), &auth()).json();
    assert_eq!(read["groups"][0]["value"], gid, "{read}");
    assert_eq!(
        send(
            "DELETE",
            &url(&format!("/Users/{}", jim["id"].as_str().unwrap())),
            &auth(),
            None
        )
        .status,
        204
    );
    let members = get(&url(&format!("/Groups/{gid}")), &auth()).json()["members"].clone();
    assert_eq!(members.as_array().map(Vec::len), Some(1), "{members}");
    assert_eq!(members[0]["value"], id);
}
