//! Recorded client sessions: One Identity Manager, Microsoft Entra ID and Okta, each
//! played against the real binary, the real profile `.so`s and the SCIM server with
//! SQLite, in the order and dialect that client documents.

use scimgate_e2e::*;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

fn patch(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

fn resources(reply: &Reply) -> Vec<Value> {
    let body = reply.json();
    assert_eq!(body["schemas"][0], LIST, "{}", reply.body);
    body["Resources"].as_array().cloned().unwrap_or_default()
}

fn member_values(group: &Value) -> Vec<String> {
    let mut values: Vec<String> = group["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    values.sort();
    values
}

// ---------------------------------------------------------------------------
// One Identity Manager

const OIM_SECRET: &str = "oim secret/with:odd+chars";
const SEED_TOKEN: &str = "seed-token-for-the-e2e-session-only";

/// The SQLite SCIM stage of the reference scenario.
const SQLITE_STAGE: &str = r#"use = "scim-server/scim"
store = "sqlite:scim.db""#;

fn oim_config(access: &str, scim_stage: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.client-auth]
use = "oauth2/client-credentials"
[stage.token]
use = "oauth2/token"
ttl = "1h"
[stage.bearer]
use = "oauth2/bearer"
[stage.seed]
use = "oauth2/static-bearer"
[stage.active]
use = "policies/provider-active"
[stage.validity]
use = "policies/validity"
[stage.ips]
use = "policies/allowed-ips"
[stage.referrers]
use = "policies/allowed-referrers"
[stage.access]
use = "policies/access-mode"
[stage.oim]
use = "one-identity/profile"
[stage.scim]
{scim_stage}

[[route]]
path = "/iso/oauth2/token"
pipeline = ["client-auth", "active", "validity", "ips", "referrers", "token"]

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "oim", "scim"]

# A second, read-write route for seeding the store.
[[route]]
path = "/seed/scim/v2"
pipeline = ["seed", "active", "access", "scim"]

[[provider]]
id = "oim-prod"
name = "One Identity Manager"
active = true
protocol = "scim2"
description = "Production OIM synchronization server"
tags = ["iga", "prod"]
[provider.auth]
method = "oauth2-client-credentials"
client_id = "oim-prod"
client_secret = "{OIM_SECRET}"
valid_from = 2020-01-01T00:00:00Z
valid_until = 2099-12-31T23:59:59Z
allowed_ips = ["127.0.0.0/8"]
allowed_referrers = []
access = "{access}"
scopes = ["scim:read", "scim:write"]

[[provider]]
id = "seeder"
[provider.auth]
method = "static-bearer"
token = "{SEED_TOKEN}"
access = "read-write"
"#
    )
}

/// `client_secret_basic`: id and secret form-encoded, then Base64 (RFC 6749 §2.3.1).
fn oim_basic() -> String {
    client_basic("oim-prod", OIM_SECRET)
}

fn oim_token(server: &Server) -> String {
    let reply = send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[
            ("authorization", &oim_basic()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(reply.status, 200, "token: {}", reply.body);
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

fn seed(server: &Server, path: &str, body: &Value) -> Value {
    let auth = format!("Bearer {SEED_TOKEN}");
    let reply = send_json(
        "POST",
        &server.url(&format!("/seed/scim/v2{path}")),
        &[("authorization", &auth)],
        body,
    );
    assert_eq!(reply.status, 201, "seed {path}: {}", reply.body);
    reply.json()
}

#[test]
fn one_identity_manager_session() {
    one_identity_manager_session_on(SQLITE_STAGE, &[]);
}

/// The reference scenario with a directory as the target: the same recorded
/// session against an `ldap/directory` route backed by slapd.
#[test]
fn one_identity_manager_session_against_an_ldap_directory() {
    let Some((stage, env)) = crate::ldap::oim_session_stage() else {
        return;
    };
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    one_identity_manager_session_on(&stage, &env);
}

/// One Identity Manager's session against a route whose SCIM stage is
/// `scim_stage`.
fn one_identity_manager_session_on(scim_stage: &str, env: &[(&str, &str)]) {
    let server = Server::start_with_env(&oim_config("read-only", scim_stage), env);

    // Seed: five users, two groups (one nested member group).
    let mut users = Vec::new();
    for i in 1..=5 {
        let user = seed(
            &server,
            "/Users",
            &json!({"schemas": [USER], "userName": format!("user{i}@example.com"),
                    "name": {"givenName": format!("User{i}"), "familyName": "Seed"},
                    "emails": [{"value": format!("user{i}@example.com"), "type": "work", "primary": true}],
                    "active": true}),
        );
        users.push(user["id"].as_str().unwrap().to_string());
    }
    let admins = seed(
        &server,
        "/Groups",
        &json!({"schemas": [GROUP], "displayName": "Vault Admins",
                "members": [{"value": users[0]}, {"value": users[1]}]}),
    );
    let admins_id = admins["id"].as_str().unwrap().to_string();
    let auditors = seed(
        &server,
        "/Groups",
        &json!({"schemas": [GROUP], "displayName": "Vault Auditors", "members": [{"value": users[2]}]}),
    );
    let auditors_id = auditors["id"].as_str().unwrap().to_string();

    // 1. Connection test: token with the client in a Basic header, then
    //    GET {base}/resourcetypes/ (lower case, trailing slash).
    let token = oim_token(&server);
    let auth = format!("Bearer {token}");
    let h: &[(&str, &str)] = &[
        ("authorization", &auth),
        ("accept", "application/scim+json"),
    ];
    let base = server.url("/iso/scim/v2");
    let reply = get(&format!("{base}/resourcetypes/"), h);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let types: Vec<String> = resources(&reply)
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        types.contains(&"User".to_string()) && types.contains(&"Group".to_string()),
        "{types:?}"
    );

    // 2. Discovery: schemas (list and one by URN, URN case kept), SPC.
    let reply = get(&format!("{base}/Schemas"), h);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(resources(&reply).iter().any(|s| s["id"] == USER));
    let reply = get(&format!("{base}/schemas/{USER}"), h);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["id"], USER);
    for path in ["/ServiceProviderConfig", "/serviceproviderconfig/"] {
        let reply = get(&format!("{base}{path}"), h);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.json()["patch"]["supported"], true);
    }

    // 3. Paged full read of users (startIndex/count, parameter names in any case).
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let reply = get(&format!("{base}/users?startindex={start}&Count=2"), h);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        assert_eq!(body["totalResults"], 5, "{body}");
        let page = resources(&reply);
        assert!(page.len() <= 2, "count honoured: {body}");
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        start += page.len();
        if start > 5 {
            break;
        }
    }
    seen.sort();
    let mut expected = users.clone();
    expected.sort();
    assert_eq!(seen, expected);

    // ... and of groups, with members carrying value, $ref and type.
    let mut groups = Vec::new();
    for start in [1, 2] {
        let reply = get(&format!("{base}/groups/?startIndex={start}&count=1"), h);
        assert_eq!(reply.status, 200, "{}", reply.body);
        groups.extend(resources(&reply));
    }
    assert_eq!(groups.len(), 2);
    let admins_read = groups
        .iter()
        .find(|g| g["id"] == admins_id.as_str())
        .expect("admins");
    assert_eq!(member_values(admins_read), {
        let mut v = vec![users[0].clone(), users[1].clone()];
        v.sort();
        v
    });
    for member in admins_read["members"].as_array().unwrap() {
        assert_eq!(member["type"], "User", "{member}");
        let reference = member["$ref"].as_str().expect("$ref");
        assert!(
            reference.ends_with(&format!("/Users/{}", member["value"].as_str().unwrap())),
            "{reference}"
        );
    }
    // A single group read, also with the trailing slash OIM uses.
    let reply = get(&format!("{base}/Groups/{auditors_id}/"), h);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["members"][0]["value"], users[2].as_str());
    assert_eq!(reply.json()["members"][0]["type"], "User");
    // members excluded on request.
    let reply = get(
        &format!("{base}/Groups/{auditors_id}?excludedattributes=members"),
        h,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json().get("members").is_none(), "{}", reply.body);

    // 4. OIM's parenthesised `or` filter.
    let filter = format!("(id eq \"{}\") or (id eq \"{}\")", users[0], users[3]);
    let reply = get(
        &format!(
            "{base}/Users?filter={}&startIndex=1&count=100",
            percent_encode(&filter)
        ),
        h,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut found: Vec<String> = resources(&reply)
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    let mut wanted = vec![users[0].clone(), users[3].clone()];
    wanted.sort();
    assert_eq!(found, wanted);

    // 5. Read-only: writes are refused.
    let new_user = json!({"schemas": [USER], "userName": "new.hire@example.com", "active": true});
    let reply = send_json("POST", &format!("{base}/Users"), h, &new_user);
    assert_eq!(reply.status, 403, "{}", reply.body);

    // 6. The operator switches the provider to read-write; the same token now writes.
    server.reload_with(&oim_config("read-write", scim_stage));
    let reply = send_json("POST", &format!("{base}/users/"), h, &new_user);
    assert_eq!(reply.status, 201, "{}", reply.body);
    let hire = reply.json()["id"].as_str().unwrap().to_string();
    let reply = send_json(
        "PATCH",
        &format!("{base}/groups/{admins_id}"),
        h,
        &patch(json!([{"op": "Add", "path": "members", "value": [{"value": hire}]}])),
    );
    assert!(reply.status == 200 || reply.status == 204, "{}", reply.body);
    let reply = send_json(
        "PATCH",
        &format!("{base}/Users/{hire}/"),
        h,
        &patch(json!([{"op": "replace", "path": "active", "value": false}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = get(&format!("{base}/Users/{hire}"), h);
    assert_eq!(reply.json()["active"], false, "{}", reply.body);
    let reply = get(&format!("{base}/Groups/{admins_id}"), h);
    assert!(
        member_values(&reply.json()).contains(&hire),
        "{}",
        reply.body
    );
    // OIM repeats the removed member in `value`; the profile drops it.
    let reply = send_json(
        "PATCH",
        &format!("{base}/Groups/{admins_id}"),
        h,
        &patch(
            json!([{"op": "remove", "path": format!("members[value eq \"{hire}\"]"), "value": [{"value": hire}]}]),
        ),
    );
    assert!(reply.status == 200 || reply.status == 204, "{}", reply.body);
    let reply = get(&format!("{base}/Groups/{admins_id}"), h);
    assert!(
        !member_values(&reply.json()).contains(&hire),
        "{}",
        reply.body
    );

    // The profile logged its rewrites for later study; paths are not
    // among them (`/resourcetypes/` reached the endpoint as the policies
    // judged it, resolved ignoring case).
    let logs = server.logs();
    assert!(
        logs.contains("one-identity: query parameter names rewritten"),
        "{logs}"
    );
    assert!(
        logs.contains("one-identity: PATCH body normalised"),
        "{logs}"
    );
    assert!(!logs.contains("path rewritten"), "{logs}");
}

// ---------------------------------------------------------------------------
// Microsoft Entra ID

const ENTRA_TOKEN: &str = "entra-secret-token-for-the-e2e-session";

fn entra_config() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.entra-token]
use = "oauth2/static-bearer"
[stage.active]
use = "policies/provider-active"
[stage.access]
use = "policies/access-mode"
[stage.entra]
use = "entra-id/profile"
[stage.scim]
use = "scim-server/scim"
store = "sqlite:scim.db"

[[route]]
path = "/scim/v2"
pipeline = ["entra-token", "active", "access", "entra", "scim"]

[[provider]]
id = "entra"
name = "Microsoft Entra ID"
[provider.auth]
method = "static-bearer"
token = "{ENTRA_TOKEN}"
access = "read-write"
"#
    )
}

fn entra_user(user_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": external_id,
        "userName": user_name,
        "active": true,
        "displayName": "Barbara Jensen",
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Barbara Jensen", "familyName": "Jensen", "givenName": "Barbara"},
        "title": "Tour Guide",
        ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations"}
    })
}

#[test]
fn entra_id_session() {
    let server = Server::start(&entra_config());
    let auth = format!("Bearer {ENTRA_TOKEN}");
    let h: &[(&str, &str)] = &[("authorization", &auth)];
    let base = server.url("/scim/v2");

    // 1. "Test Connection": a filter on a random GUID must give an empty list (200).
    for flag in ["", "aadOptscim062020&"] {
        let url = format!(
            "{base}/Users?{flag}filter={}",
            percent_encode("userName eq \"7a8c9f5e-6d0b-4c1e-9f3a-2b4d6e8f0a1c\"")
        );
        let reply = get(&url, h);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        assert_eq!(body["totalResults"], 0, "{body}");
        assert!(resources(&reply).is_empty());
    }

    // 2. Provisioning: lookup by userName, then create.
    let reply = get(
        &format!(
            "{base}/Users?filter={}",
            percent_encode("userName eq \"bjensen@contoso.com\"")
        ),
        h,
    );
    assert_eq!(reply.status, 200);
    let reply = send_json(
        "POST",
        &format!("{base}/Users"),
        h,
        &entra_user("bjensen@contoso.com", "bjensen"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let user = reply.json()["id"].as_str().unwrap().to_string();
    let reply = send_json(
        "POST",
        &format!("{base}/Users"),
        h,
        &entra_user("manager@contoso.com", "mgr"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let manager = reply.json()["id"].as_str().unwrap().to_string();

    // 3. Updates in the pre-flag dialect: capitalised ops, "True"/"False" strings,
    //    emails[type eq "work"].value, manager as a bare id.
    let reply = send_json(
        "PATCH",
        &format!("{base}/Users/{user}"),
        h,
        &patch(json!([
            {"op": "Replace", "path": "displayName", "value": "Babs Jensen"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "babs@contoso.com"},
            {"op": "Replace", "path": "active", "value": "True"},
            {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": manager}
        ])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = get(&format!("{base}/Users/{user}"), h);
    let body = reply.json();
    assert_eq!(body["displayName"], "Babs Jensen");
    assert_eq!(body["emails"][0]["value"], "babs@contoso.com");
    assert_eq!(body["active"], true);
    assert_eq!(
        body[ENTERPRISE]["manager"]["value"],
        manager.as_str(),
        "{body}"
    );

    // ... and with aadOptscim062020: pathless replace with dotted keys, a manager object.
    let reply = send_json(
        "PATCH",
        &format!("{base}/Users/{user}?aadOptscim062020"),
        h,
        &patch(json!([
            {"op": "replace", "value": {"name.givenName": "Barb", "name.familyName": "Jensen-Smith",
                                        format!("{ENTERPRISE}:department"): "Sales"}},
            {"op": "replace", "path": format!("{ENTERPRISE}:manager"), "value": {"value": manager}}
        ])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = get(&format!("{base}/Users/{user}"), h).json();
    assert_eq!(body["name"]["givenName"], "Barb");
    assert_eq!(body["name"]["familyName"], "Jensen-Smith");
    assert_eq!(body[ENTERPRISE]["department"], "Sales");
    // Manager removal with a value.
    let reply = send_json(
        "PATCH",
        &format!("{base}/Users/{user}"),
        h,
        &patch(
            json!([{"op": "Remove", "path": format!("{ENTERPRISE}:manager"), "value": [{"value": manager}]}]),
        ),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = get(&format!("{base}/Users/{user}"), h).json();
    assert!(body[ENTERPRISE].get("manager").is_none(), "{body}");

    // 4. Groups: Entra's extra schema URN, members added and removed in both dialects,
    //    PATCH answered 204.
    let reply = send_json(
        "POST",
        &format!("{base}/Groups"),
        h,
        &json!({"schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "Sales Reps",
                "meta": {"resourceType": "Group"}}),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let group = reply.json()["id"].as_str().unwrap().to_string();
    let group_url = format!("{base}/Groups/{group}");
    let add = patch(
        json!([{"op": "Add", "path": "members", "value": [{"value": user}, {"value": manager}]}]),
    );
    let reply = send_json("PATCH", &group_url, h, &add);
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert!(reply.body.is_empty());
    let mut both = vec![user.clone(), manager.clone()];
    both.sort();
    assert_eq!(member_values(&get(&group_url, h).json()), both);
    // Pre-flag removal: a value array.
    let reply = send_json(
        "PATCH",
        &group_url,
        h,
        &patch(json!([{"op": "Remove", "path": "members", "value": [{"value": manager}]}])),
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(
        member_values(&get(&group_url, h).json()),
        vec![user.clone()]
    );
    // Flag removal: a value filter.
    let reply = send_json(
        "PATCH",
        &group_url,
        h,
        &patch(json!([{"op": "remove", "path": format!("members[value eq \"{user}\"]")}])),
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert!(member_values(&get(&group_url, h).json()).is_empty());
    // Group rename.
    let reply = send_json(
        "PATCH",
        &group_url,
        h,
        &patch(json!([{"op": "Replace", "path": "displayName", "value": "Sales Team"}])),
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(get(&group_url, h).json()["displayName"], "Sales Team");

    // 5. Deprovisioning: deactivate with a string boolean.
    let reply = send_json(
        "PATCH",
        &format!("{base}/Users/{user}"),
        h,
        &patch(json!([{"op": "Replace", "path": "active", "value": "False"}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        get(&format!("{base}/Users/{user}"), h).json()["active"],
        false
    );
}

// ---------------------------------------------------------------------------
// Okta

const OKTA_PASSWORD: &str = "okta-basic-password-for-e2e";

fn okta_config() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.basic]
use = "oauth2/basic"
[stage.active]
use = "policies/provider-active"
[stage.access]
use = "policies/access-mode"
[stage.okta]
use = "okta/profile"
[[stage.okta.mapping]]
resource = "User"
attribute = "userName"
transform = ["trim", "lower-case"]
[stage.scim]
use = "scim-server/scim"
store = "sqlite:scim.db"

[[route]]
path = "/okta/scim/v2"
pipeline = ["basic", "active", "access", "okta", "scim"]

[[provider]]
id = "okta"
[provider.auth]
method = "basic"
username = "okta-sync"
password = "{OKTA_PASSWORD}"
access = "read-write"
"#
    )
}

fn okta_user(user_name: &str, given: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": given, "familyName": "Doe"},
        "emails": [{"primary": true, "value": user_name.to_lowercase(), "type": "work"}],
        "displayName": format!("{given} Doe"),
        "locale": "en-US",
        "externalId": "00u1dhhb1fkIGP7RL1d8",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

#[test]
fn okta_session() {
    let server = Server::start(&okta_config());
    let auth = basic_auth("okta-sync", OKTA_PASSWORD);
    let h: &[(&str, &str)] = &[
        ("authorization", &auth),
        ("accept", "application/scim+json"),
    ];
    let base = server.url("/okta/scim/v2");

    // 1. Test connector configuration.
    let reply = get(&format!("{base}/Users?startIndex=1&count=2"), h);
    assert_eq!(reply.status, 200, "{}", reply.body);

    // 2. Import/lookup before create: userName eq, count=100.
    let lookup = |name: &str| {
        let url = format!(
            "{base}/Users?filter={}&startIndex=1&count=100",
            percent_encode(&format!("userName eq \"{name}\""))
        );
        let reply = get(&url, h);
        assert_eq!(reply.status, 200, "{}", reply.body);
        resources(&reply)
    };
    assert!(lookup("Jane.Doe@example.com").is_empty());

    // 3. Create (userName stored lower-case by the mapping), then a duplicate → 409.
    let reply = send_json(
        "POST",
        &format!("{base}/Users"),
        h,
        &okta_user("Jane.Doe@example.com", "Jane"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let created = reply.json();
    assert_eq!(created["userName"], "jane.doe@example.com");
    let user = created["id"].as_str().unwrap().to_string();
    let reply = send_json(
        "POST",
        &format!("{base}/Users"),
        h,
        &okta_user("jane.doe@example.com", "Jane"),
    );
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.json()["scimType"], "uniqueness");
    // The lookup finds the user whatever the case Okta sends.
    let found = lookup("JANE.DOE@example.com");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], user.as_str());

    // 4. Push profile updates: PUT the whole user.
    let mut updated = okta_user("jane.doe@example.com", "Janet");
    updated["id"] = json!(user);
    let reply = send_json("PUT", &format!("{base}/Users/{user}"), h, &updated);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["name"]["givenName"], "Janet");

    // 5. Deactivate: pathless replace of {"active": false} (Okta never DELETEs).
    let reply = send_json(
        "PATCH",
        &format!("{base}/Users/{user}"),
        h,
        &patch(json!([{"op": "replace", "value": {"active": false}}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["active"], false);
    // Reactivate.
    let reply = send_json(
        "PATCH",
        &format!("{base}/Users/{user}"),
        h,
        &patch(json!([{"op": "replace", "value": {"active": true}}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);

    // 6. Group push: create with members, rename (Okta repeats the id), add/remove
    //    members, then replace the membership with an empty list.
    let reply = send_json(
        "POST",
        &format!("{base}/Users"),
        h,
        &okta_user("john.roe@example.com", "John"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let other = reply.json()["id"].as_str().unwrap().to_string();
    let reply = send_json(
        "POST",
        &format!("{base}/Groups"),
        h,
        &json!({"schemas": [GROUP], "displayName": "Engineering",
                "members": [{"value": user, "display": "jane.doe@example.com"}]}),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let group = reply.json()["id"].as_str().unwrap().to_string();
    let group_url = format!("{base}/Groups/{group}");
    let reply = send_json(
        "PATCH",
        &group_url,
        h,
        &patch(
            json!([{"op": "replace", "value": {"id": group, "displayName": "Engineering (all)"}}]),
        ),
    );
    assert!(reply.status == 200 || reply.status == 204, "{}", reply.body);
    let reply = send_json(
        "PATCH",
        &group_url,
        h,
        &patch(json!([
            {"op": "add", "path": "members", "value": [{"value": other, "display": "john.roe@example.com"}]},
            {"op": "remove", "path": format!("members[value eq \"{user}\"]")}
        ])),
    );
    assert!(reply.status == 200 || reply.status == 204, "{}", reply.body);
    let body = get(&group_url, h).json();
    assert_eq!(body["displayName"], "Engineering (all)");
    assert_eq!(member_values(&body), vec![other.clone()]);
    let reply = send_json(
        "PATCH",
        &group_url,
        h,
        &patch(json!([{"op": "replace", "value": {"id": group, "members": []}}])),
    );
    assert!(reply.status == 200 || reply.status == 204, "{}", reply.body);
    assert!(member_values(&get(&group_url, h).json()).is_empty());
    // The users are still there: Okta unassignment deactivates, it never deletes.
    assert_eq!(get(&format!("{base}/Users/{other}"), h).status, 200);
}

#[test]
fn profile_mapping_mistakes_are_reported_with_their_location() {
    let dir = TempDir::new("mapping");
    let path = dir.path().join("broken.toml");
    let config = okta_config().replace(
        "transform = [\"trim\", \"lower-case\"]",
        "transform = [\"trim\", \"shout\"]\n[[stage.okta.mapping]]\nfrom = \"title\"\nto = \"title\"",
    );
    std::fs::write(&path, expand(&config, dir.path())).unwrap();
    let (code, out, err) = run_cli(&["validate", "--config", path.to_str().unwrap()], &[]);
    assert_ne!(code, 0, "{out}{err}");
    let text = format!("{out}{err}");
    assert!(
        text.contains("`mapping[0].transform[1]`: unknown transform \"shout\""),
        "{text}"
    );
    assert!(
        text.contains("`mapping[1].to`: renames `title` to itself"),
        "{text}"
    );
    assert!(text.contains("broken.toml:"), "{text}");
}

/// The public compliance suite passes through each profile's route, as it
/// does on a plain route (`scim::compliance_suite_reports_zero_failures`).
#[test]
fn compliance_suite_passes_through_every_profile() {
    let mut config = String::from(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"

[stage.key]
use = "demo/api-key"
header = "authorization"
keys = { "Bearer compliance-token" = "p1" }

[stage.oim]
use = "one-identity/profile"

[stage.entra]
use = "entra-id/profile"

[stage.okta]
use = "okta/profile"

[[provider]]
id = "p1"
name = "Compliance"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#,
    );
    for profile in ["oim", "entra", "okta"] {
        config.push_str(&format!(
            "\n[stage.scim-{profile}]\nuse = \"scim-server/scim\"\nstore = \"sqlite:{profile}.db\"\n\
             \n[[route]]\npath = \"/{profile}/scim/v2\"\npipeline = [\"key\", \"{profile}\", \"scim-{profile}\"]\n"
        ));
    }
    let server = Server::start(&config);
    for profile in ["oim", "entra", "okta"] {
        let (passed, output) = run_compliance(
            &server.url(&format!("/{profile}/scim/v2")),
            "compliance-token",
        );
        assert!(
            passed,
            "compliance suite through the {profile} profile:\n{output}"
        );
    }
}

// ---------------------------------------------------------------------------
// SailPoint Identity Security Cloud: a preset only (core/scim/presets/sailpoint.toml),
// through the generic `profiles/profile` stage.
//
// The session follows SailPoint's SCIM 2.0 connector documentation:
// - https://documentation.sailpoint.com/connectors/saas/scim_2_0/help/saas_connectivity/scim_2_0_saas/prerequisites.html
//   (test connection and Discover Schema need /ServiceProviderConfig,
//   /ResourceTypes, /Schemas, /ResourceTypes/User and /ResourceTypes/Group;
//   the service account gets all users, modifies users, gets all groups and
//   modifies group membership);
// - https://documentation.sailpoint.com/connectors/scim_2_0/help/integrating_scim2/supported_features.html
//   (load accounts, provisioning, groups as entitlements);
// - https://documentation.sailpoint.com/connectors/identityiq/scim_2_0/help/integrating_scim2/configuration_parameters.html
//   (API token authentication, filter strings for users and groups,
//   application/scim+json Accept and Content-Type);
// - https://documentation.sailpoint.com/connectors/scim_2_0/help/integrating_scim2/noncompliant_settings.html
//   (aggregation reads `Resources` of each ListResponse page).

const SAILPOINT_TOKEN: &str = "sailpoint-isc-api-token-for-e2e";

fn sailpoint_config() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.api-token]
use = "oauth2/static-bearer"
[stage.active]
use = "policies/provider-active"
[stage.access]
use = "policies/access-mode"
[stage.sailpoint]
use = "profiles/profile"
preset = "sailpoint"
[stage.scim]
use = "scim-server/scim"
store = "sqlite:scim.db"

[[route]]
path = "/sailpoint/scim/v2"
pipeline = ["api-token", "active", "access", "sailpoint", "scim"]

[[provider]]
id = "sailpoint-isc"
name = "SailPoint Identity Security Cloud"
[provider.auth]
method = "static-bearer"
token = "{SAILPOINT_TOKEN}"
access = "read-write"
"#
    )
}

#[test]
fn sailpoint_identity_security_cloud_session() {
    let server = Server::start(&sailpoint_config());
    let auth = format!("Bearer {SAILPOINT_TOKEN}");
    let h: &[(&str, &str)] = &[
        ("authorization", &auth),
        ("accept", "application/scim+json"),
        ("content-type", "application/scim+json"),
    ];
    let base = server.url("/sailpoint/scim/v2");

    // 1. Test connection / Discover Schema: the five discovery documents.
    let spc = get(&format!("{base}/ServiceProviderConfig"), h);
    assert_eq!(spc.status, 200, "{}", spc.body);
    assert_eq!(spc.json()["patch"]["supported"], true);
    assert_eq!(spc.json()["filter"]["supported"], true);
    for path in ["/ResourceTypes", "/Schemas"] {
        let reply = get(&format!("{base}{path}"), h);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert!(!resources(&reply).is_empty(), "{path}");
    }
    for (path, schema) in [
        ("/ResourceTypes/User", USER),
        ("/ResourceTypes/Group", GROUP),
    ] {
        let reply = get(&format!("{base}{path}"), h);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.json()["schema"], schema, "{path}");
    }

    // 2. Provisioning: create two accounts (core + enterprise attributes).
    let mut ids = Vec::new();
    for (name, given) in [("amy.lee", "Amy"), ("raj.patel", "Raj")] {
        let reply = send_json(
            "POST",
            &format!("{base}/Users"),
            h,
            &json!({"schemas": [USER, ENTERPRISE], "userName": name,
                    "name": {"givenName": given, "familyName": "Test"},
                    "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
                    "active": true,
                    ENTERPRISE: {"employeeNumber": format!("E-{given}"), "department": "Finance"}}),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        ids.push(reply.json()["id"].as_str().unwrap().to_string());
    }
    let reply = send_json(
        "POST",
        &format!("{base}/Groups"),
        h,
        &json!({"schemas": [GROUP], "displayName": "Finance Approvers"}),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let group = reply.json()["id"].as_str().unwrap().to_string();
    let group_url = format!("{base}/Groups/{group}");

    // 3. Account aggregation: pages of one with the configured filter string;
    //    every account is read from `Resources` exactly once.
    let filter = percent_encode("active eq true");
    let mut seen = Vec::new();
    for start in 1..=3 {
        let reply = get(
            &format!("{base}/Users?filter={filter}&startIndex={start}&count=1"),
            h,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        assert_eq!(body["totalResults"], 2, "{body}");
        for user in resources(&reply) {
            seen.push(user["id"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);

    // 4. Entitlement aggregation.
    let reply = get(&format!("{base}/Groups?startIndex=1&count=100"), h);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(resources(&reply).iter().any(|g| g["id"] == group.as_str()));

    // 5. Entitlement add: PATCH the group, answered 200 with the group.
    let reply = send_json(
        "PATCH",
        &group_url,
        h,
        &patch(json!([{"op": "add", "path": "members",
                       "value": [{"value": ids[0]}, {"value": ids[1]}]}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(member_values(&reply.json()), expected);

    // 6. Entitlement remove: by filter, and by a `value` array (turned into
    //    the filter by the preset's PATCH rewrites).
    let reply = send_json(
        "PATCH",
        &group_url,
        h,
        &patch(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(member_values(&reply.json()), vec![ids[1].clone()]);
    let reply = send_json(
        "PATCH",
        &group_url,
        h,
        &patch(json!([{"op": "remove", "path": "members", "value": [{"value": ids[1]}]}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(member_values(&get(&group_url, h).json()).is_empty());

    // 7. Attribute update and disable / enable.
    let user_url = format!("{base}/Users/{}", ids[0]);
    let reply = send_json(
        "PATCH",
        &user_url,
        h,
        &patch(json!([
            {"op": "replace", "path": "name.givenName", "value": "Amelia"},
            {"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Audit"}
        ])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["name"]["givenName"], "Amelia");
    assert_eq!(reply.json()[ENTERPRISE]["department"], "Audit");
    for active in [false, true] {
        let reply = send_json(
            "PATCH",
            &user_url,
            h,
            &patch(json!([{"op": "replace", "path": "active", "value": active}])),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["active"], active);
    }

    // 8. Delete the account.
    let reply = send("DELETE", &user_url, h, None);
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(get(&user_url, h).status, 404);

    // The preset keeps the route RFC-compliant for the public suite too.
    let (passed, output) = run_compliance(&base, SAILPOINT_TOKEN);
    assert!(
        passed,
        "compliance suite through the sailpoint preset:\n{output}"
    );
}

// ---------------------------------------------------------------------------
// PATCH normalisation has one owner, the profile: `normalize_patch = false`
// takes effect, and the endpoint itself reads RFC 7644 PatchOp only.

#[test]
fn normalize_patch_off_sends_dialect_bodies_to_the_endpoint_which_refuses_them() {
    let server = Server::start(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"

[stage.key]
use = "oauth2/static-bearer"

[stage.oim]
use = "one-identity/profile"

[stage.oim-strict]
use = "one-identity/profile"
normalize_patch = false

[stage.generic-strict]
use = "profiles/profile"
preset = "entra-id"
normalize_patch = false

[stage.scim]
use = "scim-server/scim"
store = "sqlite:scim.db"

[[route]]
path = "/oim/scim/v2"
pipeline = ["key", "oim", "scim"]

[[route]]
path = "/strict/scim/v2"
pipeline = ["key", "oim-strict", "scim"]

[[route]]
path = "/generic/scim/v2"
pipeline = ["key", "generic-strict", "scim"]

[[route]]
path = "/plain/scim/v2"
pipeline = ["key", "scim"]

[[provider]]
id = "p1"
[provider.auth]
method = "static-bearer"
token = "dialect-token"
access = "read-write"
"#,
    );
    let h: &[(&str, &str)] = &[
        ("authorization", "Bearer dialect-token"),
        ("content-type", "application/scim+json"),
    ];
    let reply = send_json(
        "POST",
        &server.url("/plain/scim/v2/Users"),
        h,
        &json!({"schemas": [USER], "userName": "dialect.user", "active": true}),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_string();
    // One Identity's and Entra's (pre-aadOptscim062020) boolean as a string.
    let dialect = patch(json!([{"op": "Replace", "path": "active", "value": "False"}]));

    // Without the profile's rewrite the endpoint sees the string: a SCIM 400.
    for route in ["/strict/scim/v2", "/generic/scim/v2", "/plain/scim/v2"] {
        let reply = send_json(
            "PATCH",
            &server.url(&format!("{route}/Users/{id}")),
            h,
            &dialect,
        );
        assert_eq!(reply.status, 400, "{route}: {}", reply.body);
        let body = reply.json();
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{body}"
        );
        assert_eq!(body["status"], "400", "{body}");
        assert_eq!(body["scimType"], "invalidValue", "{body}");
    }
    let user = get(&server.url(&format!("/plain/scim/v2/Users/{id}")), h).json();
    assert_eq!(user["active"], true, "the refused PATCHes changed nothing");

    // With the default (normalize_patch = true) the same body succeeds.
    let reply = send_json(
        "PATCH",
        &server.url(&format!("/oim/scim/v2/Users/{id}")),
        h,
        &dialect,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["active"], false);

    // RFC leniency stays in the parser on every route: the op ignores case.
    let reply = send_json(
        "PATCH",
        &server.url(&format!("/strict/scim/v2/Users/{id}")),
        h,
        &patch(json!([{"op": "Replace", "path": "active", "value": true}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["active"], true);
}
