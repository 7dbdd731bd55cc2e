//! The SCIM service provider end to end (scim-server plugin): the real
//! binary and `libscim_server.so` over HTTP, authenticated by the demo
//! plugin's API-key authenticator. Covers discovery, CRUD, uniqueness,
//! derived `User.groups`, filters, sort, paging (index and RFC 9865
//! cursors), projection, PATCH, ETags, Bulk with bulkId references, `/Me`,
//! custom resource types, bad input, and the
//! public compliance suite — every test on both stores (SQLite and
//! PostgreSQL, see [`on_every_store!`]) — and, on PostgreSQL only, the
//! database going away and coming back, and `scimgate migrate`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use scimgate_e2e::*;

const TOKEN: &str = "compliance-token";
const AUTH: (&str, &str) = ("authorization", "Bearer compliance-token");

/// What PostgreSQL tests print when there is no server to test against.
pub(crate) const SKIPPED: &str =
    "SKIPPED: PostgreSQL tests need SCIMGATE_TEST_POSTGRES_URL (tests/run starts a cluster)";

/// Where a test's resources live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    /// Whether the PostgreSQL tests can run: without
    /// `SCIMGATE_TEST_POSTGRES_URL` they print [`SKIPPED`] (past the test
    /// harness's capture, so it is seen) and are skipped, and under
    /// `CI=true` they fail.
    pub(crate) fn postgres_available() -> bool {
        if PgServer::from_env().is_some() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs the PostgreSQL tests: {SKIPPED}"
        );
        let _ = writeln!(std::io::stderr().lock(), "{SKIPPED}");
        false
    }
}

/// Runs each named test body (`fn name(store: StoreKind)`) once per store:
/// `scim::sqlite::name` and `scim::postgres::name`.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::StoreKind::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if super::StoreKind::postgres_available() {
                    super::$name(super::StoreKind::Postgres)
                }
            } )*
        }
    };
}

on_every_store!(
    compliance_suite_reports_zero_failures,
    discovery_documents_tell_what_is_enabled,
    users_crud_with_meta_location_and_case_insensitive_uniqueness,
    bad_input_gets_the_right_scim_error_and_writes_nothing,
    groups_members_and_derived_user_groups_stay_right,
    etags_give_304_and_412,
    filters_sort_projection_count_and_search,
    index_paging_walks_every_user_once_even_when_data_changes,
    cursor_paging_follows_next_and_previous_cursors,
    expired_cursors_are_expired_cursor_errors,
    patch_answers_the_resource_or_no_content,
    bulk_resolves_bulk_ids_members_and_circular_references,
    bulk_reports_the_stored_version_after_a_cycle_is_broken,
    bulk_limits_are_413,
    me_is_the_user_named_after_the_caller,
    custom_resource_types_and_toggles,
    migrate_creates_the_schema_and_reports_the_stages,
    concurrent_if_match_patches_win_once_per_version,
);

/// The test PostgreSQL server (`SCIMGATE_TEST_POSTGRES_URL`, `…_PASSWORD`).
#[derive(Debug, Clone)]
pub(crate) struct PgServer {
    pub url: String,
    pub password: String,
}

impl PgServer {
    pub(crate) fn from_env() -> Option<PgServer> {
        let url = std::env::var("SCIMGATE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let password = std::env::var("SCIMGATE_TEST_POSTGRES_PASSWORD").unwrap_or_default();
        Some(PgServer { url, password })
    }

    /// Runs SQL with `psql` (the cluster's own client); its output.
    pub(crate) fn psql(&self, sql: &str) -> String {
        psql(&self.url, &self.password, sql)
    }

    /// A fresh schema only this test uses, dropped at the end.
    pub(crate) fn fresh_schema(&self, tag: &str) -> PgSchema {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("scimgate_t_{tag}_{}_{n}_{nanos:x}", std::process::id());
        self.psql(&format!("CREATE SCHEMA {name}"));
        PgSchema {
            server: self.clone(),
            name,
        }
    }
}

/// A schema in the test server; stores reach it by `search_path`.
pub(crate) struct PgSchema {
    pub server: PgServer,
    pub name: String,
}

impl PgSchema {
    /// The store URL (no password: that comes from `SCIMGATE_PG_PASSWORD`).
    pub(crate) fn store_url(&self) -> String {
        let joiner = if self.server.url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{joiner}options=-csearch_path%3D{}",
            self.server.url, self.name
        )
    }

    /// The stage options that use this schema.
    pub(crate) fn stage_options(&self) -> String {
        format!(
            "store = \"{}\"\nstore_password = \"${{SCIMGATE_PG_PASSWORD}}\"\n",
            self.store_url()
        )
    }

    /// The environment the stage options need.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![(
            "SCIMGATE_PG_PASSWORD".to_string(),
            self.server.password.clone(),
        )]
    }

    /// Runs SQL inside the schema.
    pub(crate) fn psql(&self, sql: &str) -> String {
        self.server
            .psql(&format!("SET search_path = {}; {sql}", self.name))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if std::env::var_os("SCIMGATE_KEEP_TEMP").is_none() {
            let _ = Command::new(psql_bin())
                .args(["-X", "-q", "-d", &self.server.url, "-c"])
                .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .env("PGPASSWORD", &self.server.password)
                .output();
        }
    }
}

/// A config with one SCIM route at `/scim/v2`; `options` go into the stage table.
fn config(options: &str) -> String {
    scim_route_config("compliance-token", options)
}

/// The stage options and environment of a store (a fresh schema for PostgreSQL).
fn store_setup(store: StoreKind) -> (String, Vec<(String, String)>, Option<PgSchema>) {
    match store {
        StoreKind::Sqlite => (String::new(), Vec::new(), None),
        StoreKind::Postgres => {
            let server = PgServer::from_env().expect("checked by on_every_store!");
            let schema = server.fresh_schema("scim");
            (schema.stage_options(), schema.env(), Some(schema))
        }
    }
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

struct Scim {
    server: Server,
    #[allow(dead_code)] // the environment the server was started with
    env: Vec<(String, String)>,
    /// Dropped after the server (fields drop in order).
    #[allow(dead_code)] // held for its Drop only
    schema: Option<PgSchema>,
}

impl Scim {
    fn start(store: StoreKind, options: &str) -> Scim {
        Scim::start_edited(store, options, |c| c)
    }

    /// Like [`Scim::start`], with `edit` applied to the whole config.
    fn start_edited(store: StoreKind, options: &str, edit: impl Fn(String) -> String) -> Scim {
        let (store_options, env, schema) = store_setup(store);
        let server = Server::start_with_env(
            &edit(config(&format!("{store_options}{options}"))),
            &env_refs(&env),
        );
        Scim {
            server,
            env,
            schema,
        }
    }

    fn base(&self) -> String {
        self.server.url("/scim/v2")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn get(&self, path: &str) -> Reply {
        get(&self.url(path), &[AUTH])
    }

    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![AUTH];
        all.extend_from_slice(headers);
        get(&self.url(path), &all)
    }

    fn send(&self, method: &str, path: &str, body: &Value) -> Reply {
        send_json(method, &self.url(path), &[AUTH], body)
    }

    fn send_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
        let mut all = vec![AUTH];
        all.extend_from_slice(headers);
        send_json(method, &self.url(path), &all, body)
    }

    fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![AUTH];
        all.extend_from_slice(headers);
        send("DELETE", &self.url(path), &all, None)
    }

    fn create_user(&self, user_name: &str) -> Value {
        let reply = self.send("POST", "/Users", &user(user_name));
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()
    }

    fn create_group(&self, name: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        let reply = self.send(
            "POST",
            "/Groups",
            &json!({"schemas": [GROUP], "displayName": name, "members": members}),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()
    }
}

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

fn user(user_name: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "displayName": format!("{user_name} display"),
        "emails": [{"value": format!("{user_name}@example.com"), "type": "work", "primary": true}]
    })
}

fn assert_scim_error(reply: &Reply, status: u16, scim_type: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{body}"
    );
    assert_eq!(body["status"], status.to_string());
    match scim_type {
        Some(t) => assert_eq!(body["scimType"], t, "{body}"),
        None => assert!(body.get("scimType").is_none(), "{body}"),
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| x["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn compliance_suite_reports_zero_failures(store: StoreKind) {
    let scim = Scim::start(store, "");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scim-compliance");
    let out = Command::new(&script)
        .arg(scim.base())
        .arg(TOKEN)
        .output()
        .expect("run tests/scim-compliance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(" 0 failed"),
        "compliance suite failed ({:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    let last = stdout.lines().last().unwrap_or_default();
    println!("{store:?}: {last}");
    assert!(
        last.starts_with("scim2-tester: ") && !last.starts_with("scim2-tester: 0 passed"),
        "{last}"
    );
}

fn discovery_documents_tell_what_is_enabled(store: StoreKind) {
    let scim = Scim::start(
        store,
        "bulk.max_operations = 7\nmax_results = 50\ndefault_page_size = 20",
    );
    let spc = scim.get("/ServiceProviderConfig");
    assert_eq!(spc.status, 200);
    assert_eq!(spc.header("content-type"), Some("application/scim+json"));
    let spc = spc.json();
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["bulk"]["maxOperations"], 7);
    assert_eq!(spc["bulk"]["maxPayloadSize"], 1048576);
    assert_eq!(spc["filter"]["maxResults"], 50);
    assert_eq!(spc["changePassword"]["supported"], false);
    assert_eq!(spc["etag"]["supported"], true);
    assert_eq!(spc["sort"]["supported"], true);
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
    assert_eq!(spc["pagination"]["cursor"], true);
    assert_eq!(spc["pagination"]["defaultPaginationMethod"], "index");
    assert_eq!(spc["pagination"]["defaultPageSize"], 20);
    assert_eq!(spc["pagination"]["maxPageSize"], 50);
    assert_eq!(spc["pagination"]["cursorTimeout"], 600);
    assert_eq!(spc["meta"]["location"], scim.url("/ServiceProviderConfig"));

    let types = scim.get("/ResourceTypes").json();
    assert_eq!(types["totalResults"], 2);
    let user_type = scim.get("/ResourceTypes/User").json();
    assert_eq!(user_type["endpoint"], "/Users");
    let schemas = scim.get("/Schemas").json();
    assert_eq!(schemas["totalResults"], 3);
    let schema = scim.get(&format!("/Schemas/{USER}"));
    assert_eq!(schema.status, 200, "{}", schema.body);
    assert_eq!(schema.json()["id"], USER);
    assert_scim_error(&scim.get("/Schemas/urn:nope"), 404, None);

    for path in ["/Schemas", "/ResourceTypes", "/ServiceProviderConfig"] {
        assert_scim_error(
            &scim.get(&format!("{path}?filter=id%20eq%20%22x%22")),
            403,
            None,
        );
    }
    let reply = scim.send("POST", "/ServiceProviderConfig", &json!({}));
    assert_scim_error(&reply, 405, None);
    assert_scim_error(&scim.delete("/Users", &[]), 405, None);
    assert_scim_error(&scim.get("/Nope"), 404, None);
    // Without credentials the route refuses.
    assert_eq!(get(&scim.url("/Users"), &[]).status, 401);
}

fn users_crud_with_meta_location_and_case_insensitive_uniqueness(store: StoreKind) {
    let scim = Scim::start(store, "");
    let reply = scim.send("POST", "/Users", &user("bjensen"));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let created = reply.json();
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 36, "a UUID");
    let location = scim.url(&format!("/Users/{id}"));
    assert_eq!(reply.header("location"), Some(location.as_str()));
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
    assert_eq!(created["meta"]["resourceType"], "User");
    assert_eq!(created["meta"]["location"], location);
    assert_eq!(created["meta"]["version"], "W/\"1\"");
    assert!(created["meta"]["created"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
    assert_eq!(created["meta"]["created"], created["meta"]["lastModified"]);

    // userName is unique, case-insensitively.
    let dup = scim.send("POST", "/Users", &user("BJENSEN"));
    assert_scim_error(&dup, 409, Some("uniqueness"));

    let got = scim.get(&format!("/Users/{id}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["userName"], "bjensen");
    // ids are case-exact.
    assert_scim_error(
        &scim.get(&format!("/Users/{}", id.to_uppercase())),
        404,
        None,
    );

    let mut replacement = user("bjensen");
    replacement["displayName"] = json!("Babs");
    let put = scim.send("PUT", &format!("/Users/{id}"), &replacement);
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["displayName"], "Babs");
    assert_eq!(put.header("etag"), Some("W/\"2\""));
    assert!(
        put.json()["meta"]["lastModified"].as_str() >= created["meta"]["lastModified"].as_str()
    );

    // Renaming onto another user's name is a conflict too.
    scim.create_user("other");
    let clash = scim.send("PUT", &format!("/Users/{id}"), &user("Other"));
    assert_scim_error(&clash, 409, Some("uniqueness"));

    let deleted = scim.delete(&format!("/Users/{id}"), &[]);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_scim_error(&scim.get(&format!("/Users/{id}")), 404, None);
    assert_scim_error(&scim.delete(&format!("/Users/{id}"), &[]), 404, None);
    // The name is free again.
    scim.create_user("bjensen");
}

fn bad_input_gets_the_right_scim_error_and_writes_nothing(store: StoreKind) {
    let scim = Scim::start(store, "");
    let reply = send(
        "POST",
        &scim.url("/Users"),
        &[AUTH, ("content-type", "application/scim+json")],
        Some("{not json"),
    );
    assert_scim_error(&reply, 400, Some("invalidSyntax"));
    let reply = send(
        "POST",
        &scim.url("/Users"),
        &[AUTH, ("content-type", "text/plain")],
        Some("{}"),
    );
    assert_scim_error(&reply, 415, None);
    // Plain application/json and no content type are accepted.
    let reply = send(
        "POST",
        &scim.url("/Users"),
        &[AUTH, ("content-type", "application/json")],
        Some(&user("json").to_string()),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = send(
        "POST",
        &scim.url("/Users"),
        &[AUTH],
        Some(&user("bare").to_string()),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);

    let wrong_type = json!({"schemas": [USER], "userName": "x", "active": "very"});
    assert_eq!(scim.send("POST", "/Users", &wrong_type).status, 400);
    let unknown = json!({"schemas": [USER], "userName": "y", "favouriteColour": "blue"});
    assert_scim_error(
        &scim.send("POST", "/Users", &unknown),
        400,
        Some("invalidSyntax"),
    );
    let missing = json!({"schemas": [USER], "displayName": "no userName"});
    assert_eq!(scim.send("POST", "/Users", &missing).status, 400);
    assert_scim_error(
        &scim.get("/Users?filter=userName%20eq"),
        400,
        Some("invalidFilter"),
    );
    assert_scim_error(
        &scim.get("/Users?filter=(userName%20eq%20%22a%22"),
        400,
        Some("invalidFilter"),
    );

    let target = scim.create_user("patchme");
    let id = target["id"].as_str().expect("id");
    let bad_path = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]});
    assert_scim_error(
        &scim.send("PATCH", &format!("/Users/{id}"), &bad_path),
        400,
        Some("invalidPath"),
    );
    let no_target = json!({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "changed"},
        {"op": "remove", "path": "emails[value eq \"nobody@example.com\"]"}
    ]});
    assert_scim_error(
        &scim.send("PATCH", &format!("/Users/{id}"), &no_target),
        400,
        Some("noTarget"),
    );
    // All or nothing: the first operation left no trace.
    let after = scim.get(&format!("/Users/{id}")).json();
    assert_eq!(after["displayName"], "patchme display");
    assert_eq!(after["meta"]["version"], "W/\"1\"");
    assert_scim_error(&scim.send("PATCH", "/Users/nope", &no_target), 404, None);
    // Only the users created above exist.
    assert_eq!(scim.get("/Users?count=0").json()["totalResults"], 3);
}

fn groups_members_and_derived_user_groups_stay_right(store: StoreKind) {
    let scim = Scim::start(store, "");
    let alice = scim.create_user("alice");
    let bob = scim.create_user("bob");
    let (a, b) = (
        alice["id"].as_str().expect("id"),
        bob["id"].as_str().expect("id"),
    );
    let group = scim.create_group("Tour Guides", &[a, b]);
    let g = group["id"].as_str().expect("id");
    let members = group["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["value"], a);
    assert_eq!(members[0]["type"], "User");
    assert_eq!(members[0]["display"], "alice display");
    assert_eq!(members[0]["$ref"], scim.url(&format!("/Users/{a}")));

    // Group names are unique (case-insensitive) by default.
    let dup = scim.send(
        "POST",
        "/Groups",
        &json!({"schemas": [GROUP], "displayName": "tour guides"}),
    );
    assert_scim_error(&dup, 409, Some("uniqueness"));
    // Members must exist.
    let ghost = scim.send(
        "POST",
        "/Groups",
        &json!({"schemas": [GROUP], "displayName": "Ghosts", "members": [{"value": "nobody"}]}),
    );
    assert_scim_error(&ghost, 400, Some("invalidValue"));

    let alice_now = scim.get(&format!("/Users/{a}")).json();
    assert_eq!(alice_now["groups"][0]["value"], g);
    assert_eq!(alice_now["groups"][0]["display"], "Tour Guides");
    assert_eq!(alice_now["groups"][0]["type"], "direct");
    assert_eq!(
        alice_now["groups"][0]["$ref"],
        scim.url(&format!("/Groups/{g}"))
    );
    assert_ne!(
        alice_now["meta"]["version"], alice["meta"]["version"],
        "membership bumps the version"
    );

    // groups is readOnly: a client cannot set it.
    let mut with_groups = user("carol");
    with_groups["groups"] = json!([{"value": g}]);
    let carol = scim.send("POST", "/Users", &with_groups).json();
    assert!(carol.get("groups").is_none(), "{carol}");

    // Removing a member by PATCH updates the member's groups.
    let remove = json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("members[value eq \"{b}\"]")}]});
    let patched = scim.send("PATCH", &format!("/Groups/{g}"), &remove);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["members"].as_array().map(Vec::len), Some(1));
    assert!(scim
        .get(&format!("/Users/{b}"))
        .json()
        .get("groups")
        .is_none());

    // Renaming the group shows in User.groups.display.
    let rename = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Guides"}]});
    assert_eq!(
        scim.send("PATCH", &format!("/Groups/{g}"), &rename).status,
        200
    );
    assert_eq!(
        scim.get(&format!("/Users/{a}")).json()["groups"][0]["display"],
        "Guides"
    );

    // A filter on derived attributes works both ways.
    let by_member = scim
        .get(&format!("/Groups?filter=members.value%20eq%20%22{a}%22"))
        .json();
    assert_eq!(ids(&by_member), vec![g.to_string()]);
    let by_group = scim
        .get(&format!("/Users?filter=groups.value%20eq%20%22{g}%22"))
        .json();
    assert_eq!(ids(&by_group), vec![a.to_string()]);

    // Deleting a user removes it from every group.
    assert_eq!(scim.delete(&format!("/Users/{a}"), &[]).status, 204);
    let group_now = scim.get(&format!("/Groups/{g}")).json();
    assert!(group_now.get("members").is_none(), "{group_now}");

    // Deleting a group clears User.groups.
    let g2 = scim.create_group("Second", &[b])["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        scim.get(&format!("/Users/{b}")).json()["groups"][0]["value"],
        g2.as_str()
    );
    assert_eq!(scim.delete(&format!("/Groups/{g2}"), &[]).status, 204);
    assert!(scim
        .get(&format!("/Users/{b}"))
        .json()
        .get("groups")
        .is_none());

    // Nested groups are members of type Group.
    let inner = scim.create_group("Inner", &[b])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let outer = scim.create_group("Outer", &[&inner]);
    assert_eq!(outer["members"][0]["type"], "Group");
    assert_eq!(
        outer["members"][0]["$ref"],
        scim.url(&format!("/Groups/{inner}"))
    );
}

fn etags_give_304_and_412(store: StoreKind) {
    let scim = Scim::start(store, "");
    let created = scim.create_user("etag");
    let id = created["id"].as_str().expect("id");
    let path = format!("/Users/{id}");
    let cached = scim.get_with(&path, &[("if-none-match", "W/\"1\"")]);
    assert_eq!(cached.status, 304, "{}", cached.body);
    assert_eq!(cached.header("etag"), Some("W/\"1\""));
    assert!(cached.body.is_empty());
    assert_eq!(
        scim.get_with(&path, &[("if-none-match", "W/\"9\"")]).status,
        200
    );

    let stale = [("if-match", "W/\"9\"")];
    assert_scim_error(
        &scim.send_with("PUT", &path, &stale, &user("etag")),
        412,
        None,
    );
    let patch = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Boss"}]});
    assert_scim_error(&scim.send_with("PATCH", &path, &stale, &patch), 412, None);
    assert_scim_error(&scim.delete(&path, &stale), 412, None);

    let fresh = scim.send_with("PATCH", &path, &[("if-match", "W/\"1\"")], &patch);
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(fresh.header("etag"), Some("W/\"2\""));
    assert_eq!(fresh.json()["meta"]["version"], "W/\"2\"");
    assert_eq!(fresh.json()["title"], "Boss");
    assert_scim_error(
        &scim.send_with("PATCH", &path, &[("if-match", "W/\"1\"")], &patch),
        412,
        None,
    );
    assert_eq!(scim.delete(&path, &[("if-match", "W/\"2\"")]).status, 204);
}

fn filters_sort_projection_count_and_search(store: StoreKind) {
    let scim = Scim::start(store, "max_results = 3\ndefault_page_size = 2");
    for name in ["carol", "Alice", "dave", "bob"] {
        scim.create_user(name);
    }
    let eq = scim.get("/Users?filter=userName%20eq%20%22ALICE%22").json();
    assert_eq!(eq["totalResults"], 1);
    assert_eq!(eq["Resources"][0]["userName"], "Alice");
    let mail = scim
        .get("/Users?filter=emails.value%20eq%20%22BOB@example.com%22")
        .json();
    assert_eq!(mail["Resources"][0]["userName"], "bob");
    let co = scim.get("/Users?filter=userName%20co%20%22a%22%20and%20not%20(userName%20eq%20%22dave%22)&count=3").json();
    assert_eq!(co["totalResults"], 2, "{co}");
    let recent = scim
        .get("/Users?filter=meta.lastModified%20gt%20%222000-01-01T00:00:00Z%22&count=0")
        .json();
    assert_eq!(recent["totalResults"], 4);
    // Times taken from the resources themselves, so no clock is assumed.
    let modified = |name: &str| {
        scim.get(&format!("/Users?filter=userName%20eq%20%22{name}%22"))
            .json()["Resources"][0]["meta"]["lastModified"]
            .as_str()
            .expect("lastModified")
            .to_string()
    };
    let names_where = |filter: &str| {
        let list = scim
            .get(&format!(
                "/Users?count=3&sortBy=userName&filter={}",
                percent_encode(filter)
            ))
            .json();
        let mut names: Vec<String> = list["Resources"]
            .as_array()
            .expect("Resources")
            .iter()
            .filter_map(|r| r["userName"].as_str().map(str::to_string))
            .collect();
        assert_eq!(list["totalResults"], names.len(), "{filter}: {list}");
        names.sort();
        names
    };
    let first = modified("carol");
    // bob was created last: nothing is newer, nothing older than carol.
    let newest = modified("bob");
    assert!(names_where(&format!("meta.lastModified gt \"{newest}\"")).is_empty());
    assert!(names_where(&format!("meta.lastModified lt \"{first}\"")).is_empty());
    let since_first = format!("meta.lastModified ge \"{first}\"");
    assert_eq!(
        scim.get(&format!(
            "/Users?count=0&filter={}",
            percent_encode(&since_first)
        ))
        .json()["totalResults"],
        4
    );
    // Writes after `newest`: exactly those users are newer. (The loop waits
    // on the server's own answer, in case a write falls in the same tick.)
    for name in ["dave", "Alice"] {
        let id = scim
            .get(&format!("/Users?filter=userName%20eq%20%22{name}%22"))
            .json()["Resources"][0]["id"]
            .as_str()
            .expect("id")
            .to_string();
        let touch = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "touched"}]});
        let mut tries = 0;
        while names_where(&format!(
            "meta.lastModified gt \"{newest}\" and userName eq \"{name}\""
        ))
        .is_empty()
        {
            tries += 1;
            assert!(tries < 1000, "{name}: lastModified never passed {newest}");
            let reply = scim.send("PATCH", &format!("/Users/{id}"), &touch);
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
    assert_eq!(
        names_where(&format!("meta.lastModified gt \"{newest}\"")),
        vec!["Alice", "dave"]
    );
    assert_eq!(
        names_where(&format!("meta.lastModified le \"{newest}\"")),
        vec!["bob", "carol"]
    );
    assert_eq!(
        names_where(&format!(
            "meta.lastModified gt \"{newest}\" or userName eq \"carol\""
        )),
        vec!["Alice", "carol", "dave"]
    );

    // Default page size and the maxResults clamp.
    let page = scim.get("/Users").json();
    assert_eq!(page["itemsPerPage"], 2);
    assert_eq!(page["totalResults"], 4);
    assert_eq!(scim.get("/Users?count=1000").json()["itemsPerPage"], 3);
    // count=0 and negative counts: only totalResults.
    for q in ["count=0", "count=-5"] {
        let zero = scim.get(&format!("/Users?{q}")).json();
        assert_eq!(zero["totalResults"], 4);
        assert_eq!(zero["itemsPerPage"], 0);
    }
    // startIndex < 1 is 1.
    assert_eq!(
        scim.get("/Users?startIndex=-3&count=1").json()["startIndex"],
        1
    );

    let sorted = scim.get("/Users?sortBy=userName&count=3").json();
    let names: Vec<&str> = sorted["Resources"]
        .as_array()
        .expect("r")
        .iter()
        .filter_map(|r| r["userName"].as_str())
        .collect();
    assert_eq!(names, vec!["Alice", "bob", "carol"]);
    let desc = scim
        .get("/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=2")
        .json();
    let names: Vec<&str> = desc["Resources"]
        .as_array()
        .expect("r")
        .iter()
        .filter_map(|r| r["userName"].as_str())
        .collect();
    assert_eq!(names, vec!["carol", "bob"]);
    assert_eq!(desc["startIndex"], 2);

    let only = scim.get("/Users?attributes=userName&count=1").json();
    let first = &only["Resources"][0];
    assert!(first.get("userName").is_some() && first.get("id").is_some());
    assert!(
        first.get("emails").is_none() && first.get("displayName").is_none(),
        "{first}"
    );
    let without = scim
        .get("/Users?excludedAttributes=emails,meta&count=1")
        .json();
    let first = &without["Resources"][0];
    assert!(
        first.get("emails").is_none()
            && first.get("meta").is_none()
            && first.get("userName").is_some()
    );
    // On writes too.
    let created = send_json(
        "POST",
        &format!("{}?attributes=userName", scim.url("/Users")),
        &[AUTH],
        &user("eve"),
    );
    assert_eq!(created.status, 201);
    assert!(created.json().get("emails").is_none());

    // POST /.search, per type and at the root.
    let search = scim.send("POST", "/Users/.search", &json!({
        "schemas": [SEARCH], "filter": "userName sw \"b\"", "attributes": ["userName"], "count": 5
    }));
    assert_eq!(search.status, 200, "{}", search.body);
    assert_eq!(search.json()["totalResults"], 1);
    assert!(search.json()["Resources"][0].get("emails").is_none());
    scim.create_group("admins", &[]);
    let root = scim
        .send(
            "POST",
            "/.search",
            &json!({"schemas": [SEARCH], "filter": "displayName sw \"a\"", "count": 3}),
        )
        .json();
    // Alice (User, displayName "Alice display") and admins (Group).
    assert_eq!(root["totalResults"], 2, "{root}");
    let types: Vec<&str> = root["Resources"]
        .as_array()
        .expect("r")
        .iter()
        .filter_map(|r| r["meta"]["resourceType"].as_str())
        .collect();
    assert_eq!(types, vec!["User", "Group"]);
    assert_scim_error(&scim.send("GET", "/.search", &json!({})), 405, None);
}

fn index_paging_walks_every_user_once_even_when_data_changes(store: StoreKind) {
    let scim = Scim::start(store, "");
    let mut all = Vec::new();
    for i in 0..25 {
        all.push(
            scim.create_user(&format!("walker{i:02}"))["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let page = scim
            .get(&format!("/Users?startIndex={start}&count=10"))
            .json();
        assert_eq!(page["totalResults"], 25);
        let got = ids(&page);
        if got.is_empty() {
            break;
        }
        start += got.len();
        seen.extend(got);
    }
    assert_eq!(seen, all, "pages in insertion order, no gaps, no repeats");

    // A write between pages invalidates the remembered position: the next
    // page is computed honestly (by offset) from the new data.
    let first = ids(&scim.get("/Users?startIndex=1&count=10").json());
    assert_eq!(first, all[..10]);
    assert_eq!(scim.delete(&format!("/Users/{}", all[0]), &[]).status, 204);
    let second = scim.get("/Users?startIndex=11&count=10").json();
    assert_eq!(second["totalResults"], 24);
    assert_eq!(ids(&second), all[11..21]);
}

fn cursor_paging_follows_next_and_previous_cursors(store: StoreKind) {
    let scim = Scim::start(store, "");
    let mut all = Vec::new();
    for i in 0..7 {
        all.push(
            scim.create_user(&format!("cursor{i}"))["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    let first = scim.get("/Users?cursor&count=3").json();
    assert!(first.get("startIndex").is_none(), "{first}");
    assert!(first.get("previousCursor").is_none());
    assert_eq!(first["totalResults"], 7);
    let mut seen = ids(&first);
    let mut next = first["nextCursor"].as_str().map(str::to_string);
    let mut last = first.clone();
    while let Some(cursor) = next {
        let page = scim.get(&format!("/Users?cursor={cursor}&count=3")).json();
        assert!(page["previousCursor"].is_string(), "{page}");
        seen.extend(ids(&page));
        next = page["nextCursor"].as_str().map(str::to_string);
        last = page;
    }
    assert_eq!(seen, all);
    let back = last["previousCursor"].as_str().expect("previous");
    let previous = scim.get(&format!("/Users?cursor={back}&count=3")).json();
    assert_eq!(ids(&previous), all[3..6]);

    // Cursors work with a filter and a sort, and on /.search.
    let sorted = scim.send("POST", "/Users/.search", &json!({"schemas": [SEARCH], "cursor": "", "count": 4, "sortBy": "userName", "sortOrder": "descending"})).json();
    assert_eq!(sorted["Resources"][0]["userName"], "cursor6");
    let more = scim.send("POST", "/Users/.search", &json!({"schemas": [SEARCH], "cursor": sorted["nextCursor"], "count": 4, "sortBy": "userName", "sortOrder": "descending"})).json();
    assert_eq!(more["Resources"][0]["userName"], "cursor2");
    // A cursor for another query, or garbage, is invalidCursor.
    let other = scim.get(&format!(
        "/Users?cursor={}&count=3&filter=userName%20pr",
        first["nextCursor"].as_str().expect("next")
    ));
    assert_scim_error(&other, 400, Some("invalidCursor"));
    assert_scim_error(
        &scim.get("/Users?cursor=bm90LWEtY3Vyc29y"),
        400,
        Some("invalidCursor"),
    );
    assert_scim_error(
        &scim.get("/Users?cursor=&startIndex=2"),
        400,
        Some("invalidValue"),
    );
}

fn expired_cursors_are_expired_cursor_errors(store: StoreKind) {
    // Cursors age on the test clock, stopped until the test moves it.
    let clock = TestClock::at_utc("2030-01-01T00:00:00Z");
    let (store_options, env, schema) = store_setup(store);
    let mut envs = env_refs(&env);
    envs.push(clock.env());
    let server = Server::start_with_env(
        &config(&format!("{store_options}cursor_timeout = 1")),
        &envs,
    );
    clock.assert_honoured(&server);
    let scim = Scim {
        server,
        env,
        schema,
    };
    for i in 0..3 {
        scim.create_user(&format!("exp{i}"));
    }
    let first = scim.get("/Users?cursor=&count=1").json();
    let next = first["nextCursor"].as_str().expect("next").to_string();
    // Good for the whole timeout...
    clock.advance(Duration::from_secs(1));
    let page = scim.get(&format!("/Users?cursor={next}&count=1"));
    assert_eq!(page.status, 200, "{}", page.body);
    // ...and expired a millisecond later.
    clock.advance(Duration::from_millis(1));
    assert_scim_error(
        &scim.get(&format!("/Users?cursor={next}&count=1")),
        400,
        Some("expiredCursor"),
    );
}

fn patch_answers_the_resource_or_no_content(store: StoreKind) {
    let scim = Scim::start(store, "");
    let id = scim.create_user("patcher")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let body = json!({"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "emails", "value": [{"value": "second@example.com", "type": "home"}]},
        {"op": "replace", "path": "name.givenName", "value": "Pat"},
        {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"}
    ]});
    let reply = scim.send(
        "PATCH",
        &format!("/Users/{id}?excludedAttributes=name"),
        &body,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let patched = reply.json();
    assert_eq!(patched["emails"].as_array().map(Vec::len), Some(2));
    assert!(patched.get("name").is_none());
    assert_eq!(
        patched["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Ops"
    );
    // The new email is indexed.
    let found = scim
        .get("/Users?filter=emails%5Bvalue%20eq%20%22SECOND@example.com%22%5D")
        .json();
    assert_eq!(ids(&found), vec![id.clone()]);

    let quiet = Scim::start(store, r#"patch_response = "no-content""#);
    let id = quiet.create_user("quiet")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let reply = quiet.send("PATCH", &format!("/Users/{id}"), &json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]}));
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
    assert_eq!(quiet.get(&format!("/Users/{id}")).json()["active"], false);
}

fn bulk_resolves_bulk_ids_members_and_circular_references(store: StoreKind) {
    let scim = Scim::start(store, "");
    let request = json!({"schemas": [BULK], "Operations": [
        // References before definitions are fine.
        {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {
            "schemas": [GROUP], "displayName": "Bulk group",
            "members": [{"type": "User", "value": "bulkId:u1"}, {"type": "User", "value": "bulkId:u2"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "u1", "data": user("bulk1")},
        {"method": "POST", "path": "/Users", "bulkId": "u2", "data": user("bulk2")},
        {"method": "PATCH", "path": "/Users/bulkId:u2", "data": {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "T"}]}},
        // A circular pair of groups.
        {"method": "POST", "path": "/Groups", "bulkId": "ga", "data": {"schemas": [GROUP], "displayName": "A", "members": [{"type": "Group", "value": "bulkId:gb"}]}},
        {"method": "POST", "path": "/Groups", "bulkId": "gb", "data": {"schemas": [GROUP], "displayName": "B", "members": [{"type": "Group", "value": "bulkId:ga"}]}}
    ]});
    let reply = scim.send("POST", "/Bulk", &request);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ops = reply.json()["Operations"].as_array().expect("ops").clone();
    assert_eq!(ops.len(), 6);
    for op in &ops {
        assert!(op["status"] == "201" || op["status"] == "200", "{op}");
    }
    let location = |i: usize| ops[i]["location"].as_str().expect("location").to_string();
    let id_of = |i: usize| location(i).rsplit('/').next().expect("id").to_string();
    assert_eq!(ops[1]["bulkId"], "u1");
    assert!(location(1).starts_with(&scim.url("/Users/")));
    let group = get(&location(0), &[AUTH]).json();
    let members: Vec<&str> = group["members"]
        .as_array()
        .expect("m")
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    assert_eq!(members, vec![id_of(1), id_of(2)]);
    assert_eq!(
        scim.get(&format!("/Users/{}", id_of(2))).json()["title"],
        "T"
    );
    let a = get(&location(4), &[AUTH]).json();
    let b = get(&location(5), &[AUTH]).json();
    assert_eq!(a["members"][0]["value"], id_of(5));
    assert_eq!(b["members"][0]["value"], id_of(4));

    // failOnErrors stops after the first error; a failed operation writes nothing.
    let failing = json!({"schemas": [BULK], "failOnErrors": 1, "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "x1", "data": user("bulk1")},
        {"method": "POST", "path": "/Users", "bulkId": "x2", "data": user("never")}
    ]});
    let reply = scim.send("POST", "/Bulk", &failing).json();
    let ops = reply["Operations"].as_array().expect("ops");
    assert_eq!(ops.len(), 1, "{reply}");
    assert_eq!(ops[0]["status"], "409");
    assert_eq!(ops[0]["response"]["scimType"], "uniqueness");
    assert_eq!(
        scim.get("/Users?filter=userName%20eq%20%22never%22").json()["totalResults"],
        0
    );

    // Without failOnErrors every operation runs; errors are per operation.
    let mixed = json!({"schemas": [BULK], "Operations": [
        {"method": "DELETE", "path": "/Users/does-not-exist"},
        {"method": "POST", "path": "/Users", "bulkId": "y1", "data": user("bulk3")},
        {"method": "POST", "path": "/Groups", "bulkId": "y2", "data": {"schemas": [GROUP], "displayName": "Y", "members": [{"value": "bulkId:missing"}]}}
    ]});
    let reply = scim.send("POST", "/Bulk", &mixed).json();
    let statuses: Vec<&str> = reply["Operations"]
        .as_array()
        .expect("ops")
        .iter()
        .filter_map(|o| o["status"].as_str())
        .collect();
    assert_eq!(statuses, vec!["404", "201", "400"]);
}

fn bulk_limits_are_413(store: StoreKind) {
    let scim = Scim::start(
        store,
        "bulk = { max_operations = 2, max_payload_size = \"2KiB\" }",
    );
    let op = |i: usize| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": user(&format!("lim{i}"))});
    let three = json!({"schemas": [BULK], "Operations": [op(1), op(2), op(3)]});
    assert_scim_error(&scim.send("POST", "/Bulk", &three), 413, None);
    let mut big = user("big");
    big["displayName"] = json!("x".repeat(4096));
    let large = json!({"schemas": [BULK], "Operations": [{"method": "POST", "path": "/Users", "bulkId": "b", "data": big}]});
    assert_scim_error(&scim.send("POST", "/Bulk", &large), 413, None);
    assert_eq!(scim.get("/Users?count=0").json()["totalResults"], 0);
    // At the limit: every operation runs and its user exists afterwards.
    let two = json!({"schemas": [BULK], "Operations": [op(1), op(2)]});
    let reply = scim.send("POST", "/Bulk", &two);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = reply.json();
    let ops = reply["Operations"].as_array().expect("Operations");
    assert_eq!(ops.len(), 2, "{reply}");
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op["status"], "201", "{op}");
        assert_eq!(op["bulkId"], format!("b{}", i + 1), "{op}");
        let location = op["location"].as_str().expect("location");
        let created = get(location, &[AUTH]);
        assert_eq!(created.status, 200, "{location}: {}", created.body);
        assert_eq!(created.json()["userName"], format!("lim{}", i + 1));
    }
    assert_eq!(scim.get("/Users?count=0").json()["totalResults"], 2);
    // One past the limit, with users already there: refused as a whole.
    let three = json!({"schemas": [BULK], "Operations": [op(4), op(5), op(6)]});
    assert_scim_error(&scim.send("POST", "/Bulk", &three), 413, None);
    assert_eq!(scim.get("/Users?count=0").json()["totalResults"], 2);
    assert_eq!(
        scim.get("/Users?filter=userName%20sw%20%22lim%22&sortBy=userName")
            .json()["Resources"]
            .as_array()
            .expect("Resources")
            .iter()
            .filter_map(|u| u["userName"].as_str())
            .collect::<Vec<_>>(),
        vec!["lim1", "lim2"]
    );
    assert_scim_error(
        &scim.send("POST", "/Bulk", &json!({"Operations": []})),
        400,
        Some("invalidSyntax"),
    );
}

fn me_is_the_user_named_after_the_caller(store: StoreKind) {
    let off = Scim::start(store, "");
    assert_scim_error(&off.get("/Me"), 501, None);

    // Two callers: the demo authenticator's subject is the provider id
    // (`p1` with AUTH, `p2` with P2), userName matches ignoring case.
    let scim = Scim::start_edited(store, "me = true", |c| {
        c.replace(
            r#"keys = { "Bearer compliance-token" = "p1" }"#,
            r#"keys = { "Bearer compliance-token" = "p1", "Bearer second-token" = "p2" }"#,
        ) + "\n[[provider]]\nid = \"p2\"\nname = \"Second\"\n[provider.auth]\nmethod = \"static-bearer\"\ntoken_hash = \"sha256:1111111111111111111111111111111111111111111111111111111111111111\"\n"
    });
    const P2: (&str, &str) = ("authorization", "Bearer second-token");
    let me_of = |caller: (&str, &str)| get(&scim.url("/Me"), &[caller]);
    assert_scim_error(&me_of(AUTH), 404, None);
    // Decoys around the callers' users: near names, created before and after.
    let mut decoys = Vec::new();
    decoys.push(scim.create_user("p10"));
    decoys.push(scim.create_user("ap1"));
    let p2 = scim.create_user("P2");
    decoys.push(scim.create_user("p1x"));
    // p1 has no user yet: never someone else's.
    assert_scim_error(&me_of(AUTH), 404, None);
    let p1 = scim.create_user("P1");
    decoys.push(scim.create_user("p"));
    decoys.push(scim.create_user("p2-other"));
    for _ in 0..2 {
        for (caller, user) in [(AUTH, &p1), (P2, &p2)] {
            let me = me_of(caller);
            assert_eq!(me.status, 200, "{}", me.body);
            assert_eq!(me.json()["id"], user["id"], "{}", me.body);
            assert_eq!(me.json()["userName"], user["userName"]);
        }
    }
    // A write to /Me changes the caller's user only.
    let patch = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "nickName", "value": "me"}]});
    let patched = send_json("PATCH", &scim.url("/Me"), &[P2], &patch);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["id"], p2["id"]);
    assert_eq!(patched.json()["nickName"], "me");
    assert!(me_of(AUTH).json().get("nickName").is_none());
    for decoy in &decoys {
        let id = decoy["id"].as_str().expect("id");
        assert!(scim
            .get(&format!("/Users/{id}"))
            .json()
            .get("nickName")
            .is_none());
    }
    // DELETE /Me removes the caller's user, and only that one.
    let gone = send("DELETE", &scim.url("/Me"), &[AUTH], None);
    assert_eq!(gone.status, 204, "{}", gone.body);
    assert_scim_error(&me_of(AUTH), 404, None);
    assert_eq!(me_of(P2).json()["id"], p2["id"]);
    assert_eq!(
        scim.get("/Users?count=0").json()["totalResults"],
        decoys.len() + 1
    );
}

fn custom_resource_types_and_toggles(store: StoreKind) {
    let options = r#"
groups = false
resource_types = [{ name = "Device", endpoint = "/Devices", schema = "urn:example:Device" }]
[[stage.scim.schemas]]
id = "urn:example:Device"
name = "Device"
description = "A device"
attributes = [
  { name = "serial", type = "string", multiValued = false, required = true, caseExact = true, mutability = "readWrite", returned = "default", uniqueness = "none" },
  { name = "displayName", type = "string", multiValued = false, required = false, caseExact = false, mutability = "readWrite", returned = "default", uniqueness = "none" },
]
"#;
    let scim = Scim::start(store, options);
    let types = scim.get("/ResourceTypes").json();
    let names: Vec<&str> = types["Resources"]
        .as_array()
        .expect("r")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, vec!["User", "Device"]);
    assert_scim_error(&scim.get("/Groups"), 404, None);
    let device = scim.send(
        "POST",
        "/Devices",
        &json!({"schemas": ["urn:example:Device"], "serial": "SN-1", "displayName": "Laptop"}),
    );
    assert_eq!(device.status, 201, "{}", device.body);
    assert_eq!(device.json()["meta"]["resourceType"], "Device");
    let found = scim.get("/Devices?filter=serial%20eq%20%22SN-1%22").json();
    assert_eq!(found["totalResults"], 1);
    assert_eq!(
        scim.get("/Devices?filter=serial%20eq%20%22sn-1%22").json()["totalResults"],
        0,
        "caseExact"
    );
    let bad = scim.send(
        "POST",
        "/Devices",
        &json!({"schemas": ["urn:example:Device"], "displayName": "no serial"}),
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn invalid_config_is_reported_with_its_key() {
    let dir = TempDir::new("scim-config");
    let path = dir.path().join("scimgate.toml");
    std::fs::write(
        &path,
        expand(
            &config("max_results = 0\nbulk = { max_payload_size = \"lots\" }\nnope = 1"),
            dir.path(),
        ),
    )
    .expect("write");
    let (code, out, err) = run_cli(&["validate", "--config", &path.display().to_string()], &[]);
    assert_ne!(code, 0, "{out}{err}");
    let text = format!("{out}{err}");
    assert!(
        text.contains("max_payload_size") || text.contains("nope"),
        "{text}"
    );
}

/// Regression: the pending members of a group created to break a circular
/// reference are added after the group (version 2), and a user becomes a
/// member after it was created; Bulk reported the versions of the first
/// writes (`W/"1"`) instead of the stored ones.
fn bulk_reports_the_stored_version_after_a_cycle_is_broken(store: StoreKind) {
    let scim = Scim::start(store, "");
    let request = json!({"schemas": [BULK], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "u", "data": user("cyclist")},
        {"method": "POST", "path": "/Groups", "bulkId": "ga", "data": {"schemas": [GROUP], "displayName": "Cycle A",
            "members": [{"type": "Group", "value": "bulkId:gb"}, {"type": "User", "value": "bulkId:u"}]}},
        {"method": "POST", "path": "/Groups", "bulkId": "gb", "data": {"schemas": [GROUP], "displayName": "Cycle B",
            "members": [{"type": "Group", "value": "bulkId:ga"}]}}
    ]});
    let reply = scim.send("POST", "/Bulk", &request);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ops = reply.json()["Operations"].as_array().expect("ops").clone();
    assert_eq!(ops.len(), 3);
    let mut bumped = 0;
    for op in &ops {
        assert_eq!(op["status"], "201", "{op}");
        let location = op["location"].as_str().expect("location");
        let stored = get(location, &[AUTH]);
        assert_eq!(stored.status, 200, "{}", stored.body);
        assert_eq!(
            op["version"],
            stored.json()["meta"]["version"],
            "the Bulk response reports the stored version: {op}"
        );
        assert_eq!(
            Some(op["version"].as_str().expect("v")),
            stored.header("etag")
        );
        if op["version"] != "W/\"1\"" {
            bumped += 1;
        }
    }
    assert!(
        bumped >= 2,
        "the cycle and the membership bumped versions: {ops:?}"
    );
}

/// `scimgate migrate` creates the store's schema without serving, says which
/// stages it migrated, and may run again.
fn migrate_creates_the_schema_and_reports_the_stages(store: StoreKind) {
    let (store_options, env, schema) = store_setup(store);
    let dir = TempDir::new("migrate");
    let path = dir.path().join("scimgate.toml");
    std::fs::write(&path, expand(&config(&store_options), dir.path())).expect("write");
    let path = path.display().to_string();
    for _ in 0..2 {
        let (code, out, err) = run_cli(&["migrate", "--config", &path], &env_refs(&env));
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("stage `scim` (scim-server/scim): store migrated"),
            "{out}"
        );
        assert!(out.contains("1 stage(s) migrated, 0 failed"), "{out}");
        for (_, secret) in &env {
            assert!(!out.contains(secret.as_str()) && !err.contains(secret.as_str()));
        }
    }
    match &schema {
        Some(schema) => {
            assert_eq!(schema.psql("SELECT MAX(version) FROM schema_version"), "3");
            assert_eq!(schema.psql("SELECT COUNT(*) FROM resources"), "0");
        }
        None => assert!(dir.path().join("data/scim.db").is_file()),
    }
    // A store that cannot be opened fails the command, naming the stage.
    let broken = dir.path().join("broken.toml");
    let options = match store {
        StoreKind::Sqlite => "store = \"sqlite:/proc/no/such/dir/scim.db\"".to_string(),
        StoreKind::Postgres => "store = \"postgres://nobody@127.0.0.1:1/none\"".to_string(),
    };
    std::fs::write(&broken, expand(&config(&options), dir.path())).expect("write");
    let (code, out, err) = run_cli(&["migrate", "--config", &broken.display().to_string()], &[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("stage `scim`"), "{err}");
    assert!(out.contains("0 stage(s) migrated, 1 failed"), "{out}");
}

/// `n` PATCHes of `group`, spread over `bases` round robin and run all at
/// once, each adding its own member with `If-Match` and retrying on 412
/// after reading the ETag again. Returns the `If-Match` versions that won.
pub(crate) fn add_members_concurrently(
    bases: &[String],
    auth: (&str, &str),
    group: &str,
    members: &[String],
) -> Vec<String> {
    let won = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (i, member) in members.iter().enumerate() {
            let base = &bases[i % bases.len()];
            let won = &won;
            s.spawn(move || {
                let url = format!("{base}/Groups/{group}");
                let patch = json!({"schemas": [PATCH], "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": member}]}
                ]});
                for _ in 0..1000 {
                    let current = get(&format!("{url}?attributes=id"), &[auth]);
                    assert_eq!(current.status, 200, "{}", current.body);
                    let etag = current.header("etag").expect("etag").to_string();
                    let reply = send_json("PATCH", &url, &[auth, ("if-match", &etag)], &patch);
                    match reply.status {
                        200 => {
                            let next = reply.header("etag").expect("etag").to_string();
                            assert_ne!(next, etag);
                            won.lock().expect("won").push(etag);
                            return;
                        }
                        412 => continue,
                        _ => panic!("PATCH {url}: {} {}", reply.status, reply.body),
                    }
                }
                panic!("member {member} never got in");
            });
        }
    });
    won.into_inner().expect("won")
}

/// Checks what [`add_members_concurrently`] must leave: one success per
/// version, every member in the group and the group in every member.
pub(crate) fn assert_one_win_per_version(
    base: &str,
    auth: (&str, &str),
    group: &str,
    members: &[String],
    mut won: Vec<String>,
) {
    assert_eq!(won.len(), members.len());
    won.sort();
    let before = won.len();
    won.dedup();
    assert_eq!(won.len(), before, "two PATCHes won with the same If-Match");
    let final_group = get(&format!("{base}/Groups/{group}"), &[auth]).json();
    let mut got: Vec<String> = final_group["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["value"].as_str().map(str::to_string))
        .collect();
    got.sort();
    let mut want = members.to_vec();
    want.sort();
    assert_eq!(got, want, "no membership lost");
    assert_eq!(
        final_group["meta"]["version"],
        format!("W/\"{}\"", members.len() + 1)
    );
    for member in members.iter().take(5) {
        let user = get(&format!("{base}/Users/{member}"), &[auth]).json();
        assert_eq!(user["groups"][0]["value"], group, "{user}");
    }
}

fn concurrent_if_match_patches_win_once_per_version(store: StoreKind) {
    let scim = Scim::start(store, "");
    let members: Vec<String> = (0..20)
        .map(|i| {
            scim.create_user(&format!("concurrent{i}"))["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    let group = scim.create_group("Concurrent", &[])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let base = scim.base();
    let won = add_members_concurrently(std::slice::from_ref(&base), AUTH, &group, &members);
    assert_one_win_per_version(&base, AUTH, &group, &members, won);
}

/// A throwaway PostgreSQL cluster of the test's own (tests/pg-cluster),
/// which the test may stop and start; removed on drop.
pub(crate) struct PrivateCluster {
    dir: PathBuf,
    pub server: PgServer,
}

impl PrivateCluster {
    pub(crate) fn start(tag: &str) -> PrivateCluster {
        let dir = std::env::temp_dir().join(format!(
            "scimgate-pg-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        let out = PrivateCluster::script("start", &dir);
        let var = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("tests/pg-cluster printed no {name}: {out}"))
                .to_string()
        };
        let server = PgServer {
            url: var("SCIMGATE_TEST_POSTGRES_URL"),
            password: var("SCIMGATE_TEST_POSTGRES_PASSWORD"),
        };
        PrivateCluster { dir, server }
    }

    /// `pg_ctl stop -m fast`: the database goes away, the data stays.
    pub(crate) fn pause(&self) {
        PrivateCluster::script("pause", &self.dir);
    }

    pub(crate) fn resume(&self) {
        PrivateCluster::script("resume", &self.dir);
    }

    fn script(verb: &str, dir: &std::path::Path) -> String {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pg-cluster");
        let out = Command::new(&script)
            .arg(verb)
            .arg(dir)
            .output()
            .expect("run tests/pg-cluster");
        assert!(
            out.status.success(),
            "tests/pg-cluster {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pg-cluster");
        let _ = Command::new(script).arg("stop").arg(&self.dir).output();
    }
}

/// The database going away: SCIM calls are 503 with `Retry-After` (never
/// 500, the process stays up), `/readyz` says not ready (the reason only in the log) while
/// `/healthz` stays 200; when the database is back, requests succeed again
/// without a restart. The password never shows up in logs or answers.
#[test]
fn postgres_outage_is_503_with_retry_after_and_recovers_without_restart() {
    if !StoreKind::postgres_available() {
        return;
    }
    let cluster = PrivateCluster::start("outage");
    let options = format!(
        "store = \"{}\"\nstore_password = \"${{SCIMGATE_PG_PASSWORD}}\"\npool_size = 3\n",
        cluster.server.url
    );
    let server = Server::start_with_env(
        &config(&options),
        &[("SCIMGATE_PG_PASSWORD", cluster.server.password.as_str())],
    );
    let scim = |path: &str| server.url(&format!("/scim/v2{path}"));
    let created = send_json("POST", &scim("/Users"), &[AUTH], &user("outage"));
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().expect("id").to_string();
    assert_eq!(get(&server.url("/readyz"), &[]).status, 200);

    cluster.pause();
    let requests = [
        ("GET", scim("/Users"), None),
        ("GET", scim(&format!("/Users/{id}")), None),
        ("POST", scim("/Users"), Some(user("during-outage"))),
        (
            "GET",
            scim("/Users?filter=userName%20eq%20%22outage%22"),
            None,
        ),
    ];
    for (method, url, body) in &requests {
        for _ in 0..2 {
            let reply = match body {
                Some(body) => send_json(method, url, &[AUTH], body),
                None => send(method, url, &[AUTH], None),
            };
            assert_scim_error(&reply, 503, None);
            assert_eq!(reply.header("retry-after"), Some("2"), "{method} {url}");
        }
    }
    let ready = get(&server.url("/readyz"), &[]);
    assert_eq!(ready.status, 503, "{}", ready.body);
    // Only the status: the reason is in the log, not for strangers.
    assert_eq!(ready.json(), json!({"status": "not ready"}));
    assert_eq!(get(&server.url("/healthz"), &[]).status, 200);

    cluster.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = None;
    while Instant::now() < deadline {
        let reply = get(&scim(&format!("/Users/{id}")), &[AUTH]);
        if reply.status == 200 {
            back = Some(reply);
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    let back = back.expect("the store recovers within 10 s of the database");
    assert_eq!(back.json()["userName"], "outage");
    assert_eq!(get(&server.url("/readyz"), &[]).status, 200);
    let write = send_json("POST", &scim("/Users"), &[AUTH], &user("after-outage"));
    assert_eq!(write.status, 201, "{}", write.body);
    let total = get(&scim("/Users?count=0"), &[AUTH]).json();
    assert_eq!(
        total["totalResults"], 2,
        "nothing was written during the outage"
    );

    let logs = server.logs();
    assert!(
        !logs.contains(&cluster.server.password),
        "the password leaked into the logs"
    );
    assert!(!ready.body.contains(&cluster.server.password));
}
