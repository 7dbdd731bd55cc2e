//! One meaning per request, end to end: the path every stage sees is
//! canonicalised once by the host, the policies and the SCIM endpoint
//! resolve it and read Bulk bodies with the same functions, and what has no
//! single meaning is refused. Each finding of the access-control review has
//! a test here that fails on the code before the fix; the properties send
//! generated encodings of the same requests through the real binary.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use scimgate_e2e::*;

use crate::oauth2::{bearer, env, oim_provider, oim_token, STAGES};

const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The real SCIM endpoint behind the seed policies; Groups are read-only
/// for everyone (stage override) and Users writes need a scope the
/// provider's tokens do not carry.
fn config() -> String {
    format!(
        r#"{STAGES}
[stage.access.overrides]
Groups = "read-only"

[stage.scopes]
use = "policies/scopes"
read = "scim:read"
write = "scim:write"
rules = [{{ resource = "Users", methods = ["POST", "PUT", "PATCH", "DELETE"], scope = "scim:users:write" }}]

[stage.scim]
use = "scim-server/scim"
store = "sqlite:scim.db"

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "scopes", "scim"]
{}"#,
        oim_provider(true, r#"access = "read-write""#)
    )
}

struct Fixture {
    server: Server,
    auth: String,
}

impl Fixture {
    fn start() -> Fixture {
        let server = Server::start_with_env(&config(), &env());
        let auth = bearer(&oim_token(&server));
        Fixture { server, auth }
    }

    /// `method` on the raw `path` (sent byte for byte, no client normalisation).
    fn send(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let url = format!("{}{path}", self.server.url(""));
        let headers = [
            ("authorization", self.auth.as_str()),
            ("content-type", "application/scim+json"),
        ];
        send_from(None, method, &url, &headers, body)
    }

    fn count(&self, endpoint: &str) -> u64 {
        let reply = self.send("GET", &format!("/iso/scim/v2/{endpoint}?count=0"), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["totalResults"].as_u64().expect("totalResults")
    }
}

fn group(name: &str) -> String {
    format!(r#"{{"schemas": ["{GROUP}"], "displayName": "{name}"}}"#)
}

fn assert_scim_error(reply: &Reply, status: u16, scim_type: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], status.to_string(), "{}", reply.body);
    if let Some(kind) = scim_type {
        assert_eq!(body["scimType"], kind, "{}", reply.body);
    }
}

#[test]
fn encoded_and_suffixed_paths_reach_the_policy_as_the_endpoint_reads_them() {
    let f = Fixture::start();
    // The review's reproductions: all three created a group before.
    let encoded = f.send("POST", "/iso/scim/v2/%47roups", Some(&group("a")));
    assert_scim_error(&encoded, 403, None);
    assert!(
        encoded.body.contains("read-only access to Groups"),
        "{}",
        encoded.body
    );
    let suffixed = f.send("POST", "/iso/scim/v2/Groups&x", Some(&group("b")));
    assert_eq!(
        suffixed.status, 404,
        "`Groups&x` is no endpoint: {}",
        suffixed.body
    );
    let lower = f.send("POST", "/iso/scim/v2/groups/", Some(&group("c")));
    assert_scim_error(&lower, 403, None);
    let bulk = format!(
        r#"{{"schemas": ["{BULK}"], "Operations": [{{"method": "POST", "path": "/Groups", "bulkId": "g", "data": {}}}]}}"#,
        group("d")
    );
    let encoded_bulk = f.send("POST", "/iso/scim/v2/%42ulk", Some(&bulk));
    assert_scim_error(&encoded_bulk, 403, None);
    assert_eq!(f.count("Groups"), 0);
    // A scope rule for Users applies through an encoded path too.
    let user = format!(r#"{{"schemas": ["{USER}"], "userName": "u1"}}"#);
    let users = f.send("POST", "/iso/scim/v2/%55sers", Some(&user));
    assert_scim_error(&users, 403, None);
    assert!(users.body.contains("scim:users:write"), "{}", users.body);
    assert_eq!(f.count("Users"), 0);
    // What the endpoint serves, case and a trailing slash aside, is still served.
    assert_eq!(
        f.send("GET", "/iso/scim/v2/resourcetypes/", None).status,
        200
    );
    assert_eq!(
        f.send("GET", "/iso/scim/v2/ResourceTypes/", None).status,
        200
    );
    assert_eq!(f.send("GET", "/iso/scim/v2/%53chemas", None).status, 200);
}

#[test]
fn paths_without_a_single_meaning_are_refused_before_any_stage() {
    let f = Fixture::start();
    for path in [
        "/iso/scim/v2/Groups/%2F",
        "/iso/scim/v2/Users%2F..%2FGroups",
        "/iso/scim/v2//Groups",
        "/iso/scim/v2/Groups//",
        "/iso/scim/v2/Users/../Groups",
        "/iso/scim/v2/Users/%2e%2e/Groups",
        "/iso/scim/v2/./Groups",
        "/iso/scim/v2/Groups%5c",
        "/iso/scim/v2/Groups%00",
        "/iso/scim/v2/Groups%0a",
        "/iso/scim/v2/Groups%zz",
        "/iso/scim/v2/Groups%ff",
        "/iso/%2e%2e/iso/scim/v2/Groups",
    ] {
        let reply = f.send("POST", path, Some(&group("x")));
        assert_scim_error(&reply, 400, None);
        assert!(
            reply.json()["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("invalid request path")),
            "{path}: {}",
            reply.body
        );
    }
    assert_eq!(f.count("Groups"), 0);
    let logs = f.server.logs();
    assert!(
        logs.contains("invalid request path"),
        "the refusal is audited"
    );
}

#[test]
fn bulk_bodies_with_two_meanings_are_refused() {
    let f = Fixture::start();
    let groups_op = format!(
        r#"{{"method": "POST", "path": "/Groups", "bulkId": "g", "data": {}}}"#,
        group("g")
    );
    for body in [
        // The policy read one list and the endpoint the other.
        format!(r#"{{"schemas": ["{BULK}"], "Operations": [], "OPERATIONS": [{groups_op}]}}"#),
        format!(r#"{{"schemas": ["{BULK}"], "OPERATIONS": [{groups_op}], "Operations": []}}"#),
        // Exact duplicates: serde_json keeps the last one silently.
        format!(r#"{{"schemas": ["{BULK}"], "Operations": [{groups_op}], "Operations": []}}"#),
        // Two paths in one operation.
        format!(
            r#"{{"schemas": ["{BULK}"], "Operations": [{{"method": "POST", "path": "/Users", "PATH": "/Groups", "bulkId": "g", "data": {}}}]}}"#,
            group("g")
        ),
    ] {
        let reply = f.send("POST", "/iso/scim/v2/Bulk", Some(&body));
        assert_scim_error(&reply, 400, Some("invalidSyntax"));
    }
    assert_eq!(f.count("Groups"), 0);
    // Any SCIM body: two userNames equal ignoring case have no single meaning.
    let reply = f.send(
        "POST",
        "/iso/scim/v2/Groups/.search",
        Some(r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "displayName pr", "FILTER": "id pr"}"#),
    );
    assert_scim_error(&reply, 400, Some("invalidSyntax"));
}

#[test]
fn scope_rules_apply_to_each_bulk_operation() {
    let f = Fixture::start();
    // Before, a Bulk request was judged as a whole by the scopes policy: a
    // Users write inside it escaped the Users rule.
    let body = format!(
        r#"{{"schemas": ["{BULK}"], "Operations": [{{"method": "POST", "path": "/Users", "bulkId": "u", "data": {{"schemas": ["{USER}"], "userName": "inside-bulk"}}}}]}}"#
    );
    let reply = f.send("POST", "/iso/scim/v2/Bulk", Some(&body));
    assert_scim_error(&reply, 403, None);
    assert!(reply.body.contains("scim:users:write"), "{}", reply.body);
    assert_eq!(f.count("Users"), 0);
}

/// `name` with each character upper- or lower-cased and percent-encoded
/// as `choices` (one byte of entropy per character) says.
fn disguise(name: &str, choices: &[u8]) -> String {
    name.chars()
        .zip(choices.iter().cycle())
        .map(|(c, choice)| {
            let c = if choice & 1 == 0 {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            };
            if choice & 2 == 0 {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32)
            }
        })
        .collect()
}

fn cases() -> u32 {
    std::env::var("SCIMGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

/// Suffixes that leave the path addressing Groups, address nothing, or
/// have no single meaning (a `/.search` suffix would make it a read).
const SUFFIXES: [&str; 11] = [
    "", "/", "&x", "%2F", "/..", "/.", "//", "%00", "/%2e%2e", ";x", "%20",
];

#[test]
fn generated_encodings_of_a_group_write_never_create_a_group() {
    let f = Fixture::start();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(any::<u8>(), 2..8),
        proptest::collection::vec(any::<u8>(), 1..8),
        0..SUFFIXES.len(),
        prop_oneof![Just("POST"), Just("PUT"), Just("PATCH"), Just("DELETE")],
    );
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::new());
    runner
        .run(
            &strategy,
            |(mount_choices, name_choices, suffix, method)| {
                // The mount matches case-sensitively: encode it, keep its case.
                let encoded: Vec<u8> = mount_choices.iter().map(|c| c & 2).collect();
                let path = format!(
                    "/{}/{}/{}/{}{}",
                    disguise("iso", &encoded),
                    disguise("scim", &encoded[1..]),
                    disguise("v2", &encoded),
                    disguise("Groups", &name_choices),
                    SUFFIXES[suffix]
                );
                let reply = f.send(method, &path, Some(&group("generated")));
                prop_assert!(
                    reply.status < 500,
                    "{method} {path}: {} {}",
                    reply.status,
                    reply.body
                );
                prop_assert!(
                    !matches!(reply.status, 200 | 201 | 204),
                    "{method} {path} was executed: {} {}",
                    reply.status,
                    reply.body
                );
                *statuses.borrow_mut().entry(reply.status).or_insert(0u32) += 1;
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(f.count("Groups"), 0);
    // The generator reached the policy (403) and the canonicaliser (400).
    let statuses = statuses.into_inner();
    assert!(statuses.contains_key(&403), "{statuses:?}");
    assert!(statuses.contains_key(&400), "{statuses:?}");
}

#[test]
fn generated_bulk_bodies_never_write_what_the_policies_refuse() {
    let f = Fixture::start();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    // The RFC's spelling half the time, a case variant otherwise.
    let key = |name: &'static str| {
        prop_oneof![
            Just(name.to_string()),
            proptest::collection::vec(any::<u8>(), 1..4).prop_map(move |c| disguise_case(name, &c)),
        ]
    };
    let strategy = (
        key("Operations"),
        key("method"),
        key("path"),
        key("bulkId"),
        proptest::collection::vec(any::<u8>(), 1..6),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just("Groups"), Just("Users")],
    );
    runner
        .run(
            &strategy,
            |(ops_key, method_key, path_key, id_key, path_choices, dup_ops, dup_path, which)| {
                let path = format!("/{}", disguise_case_only(which, &path_choices));
                let data = if which == "Groups" {
                    group("bulk")
                } else {
                    format!(r#"{{"schemas": ["{USER}"], "userName": "bulk"}}"#)
                };
                let extra_path = if dup_path {
                    r#", "Path": "/Other""#
                } else {
                    ""
                };
                let op = format!(
                    r#"{{"{method_key}": "POST", "{path_key}": "{path}"{extra_path}, "{id_key}": "b", "data": {data}}}"#
                );
                let extra_ops = if dup_ops {
                    r#", "OPERATIONS": []"#
                } else {
                    ""
                };
                let body =
                    format!(r#"{{"schemas": ["{BULK}"], "{ops_key}": [{op}]{extra_ops}}}"#);
                let reply = f.send("POST", "/iso/scim/v2/Bulk", Some(&body));
                prop_assert!(reply.status < 500, "{body}: {} {}", reply.status, reply.body);
                prop_assert!(
                    matches!(reply.status, 400 | 403),
                    "{body}: refused by the policy or as ambiguous, got {} {}",
                    reply.status,
                    reply.body
                );
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(f.count("Groups"), 0);
    assert_eq!(f.count("Users"), 0);
}

fn disguise_case(name: &str, choices: &[u8]) -> String {
    disguise(name, &choices.iter().map(|c| c & 1).collect::<Vec<_>>())
}

/// Case changes and, in a path, percent-encoding.
fn disguise_case_only(name: &str, choices: &[u8]) -> String {
    disguise(name, choices)
}

#[test]
fn generated_encodings_of_a_read_reach_the_same_resource() {
    let f = Fixture::start();
    // Every encoding, case and trailing slash of a read reaches the
    // endpoint, which answers it as it answers the plain spelling.
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(any::<u8>(), 1..8),
        prop_oneof![
            Just((
                "ServiceProviderConfig",
                "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
            )),
            Just((
                "ResourceTypes",
                "urn:ietf:params:scim:api:messages:2.0:ListResponse"
            )),
            Just((
                "Schemas",
                "urn:ietf:params:scim:api:messages:2.0:ListResponse"
            )),
            Just((
                "Users",
                "urn:ietf:params:scim:api:messages:2.0:ListResponse"
            )),
            Just((
                "Groups",
                "urn:ietf:params:scim:api:messages:2.0:ListResponse"
            )),
        ],
        any::<bool>(),
    );
    runner
        .run(&strategy, |(choices, (name, schema), slash)| {
            let path = format!(
                "/iso/scim/v2/{}{}",
                disguise(name, &choices),
                if slash { "/" } else { "" }
            );
            let reply = f.send("GET", &path, None);
            prop_assert_eq!(reply.status, 200, "{}: {}", path, reply.body);
            prop_assert!(
                reply.json()["schemas"][0].as_str() == Some(schema),
                "{}: {}",
                path,
                reply.body
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_profile_cannot_change_what_the_policies_judged() {
    let config = format!(
        r#"{STAGES}
[stage.sneaky]
use = "demo/tag"
tag = "sneaky"
rewrite_path = "/Groups"

[stage.echo]
use = "demo/echo"

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "access", "sneaky", "echo"]
{}"#,
        oim_provider(true, r#"access = "read-only""#)
    );
    let server = Server::start_with_env(&config, &env());
    let auth = bearer(&oim_token(&server));
    let reply = send_from(
        None,
        "GET",
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", auth.as_str())],
        None,
    );
    // The echo endpoint never ran: its body would carry the path.
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(!reply.body.contains("\"path\""), "{}", reply.body);
    assert!(
        server
            .logs()
            .contains("changed the request's method or path"),
        "{}",
        server.logs()
    );
}
