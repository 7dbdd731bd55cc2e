//! The change log and its pull feed end to end (the real binary,
//! `libscim_server.so`, `liboauth2.so` and `libpolicies.so` over HTTP), on
//! SQLite and, when `SCIMGATE_TEST_POSTGRES_URL` is set, PostgreSQL:
//! every write of users and groups appears in order with its op, changed
//! attributes, provider and client (never a password); a cursor resumes; a
//! long poll returns a write made while it waits; the feed needs its own
//! scope; a pruned position is 410; entries survive a restart; a refused
//! write leaves none.

use std::time::Duration;

use scimgate_e2e::*;

use crate::scim::{PgServer, StoreKind};

const FEED_TOKEN: &str = "feed-token-5c2e9a1f7b3d4e6a8c0b";
const WRITER_TOKEN: &str = "writer-token-0d8b6f4a2c9e1b3d5f7a";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Static bearer tokens, the scopes policy, the SCIM stage; provider
/// `iga` (client `sync-1`) may read the feed, provider `writer` may not.
fn config(stage_options: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.static]
use = "oauth2/static-bearer"
[stage.scopes]
use = "policies/scopes"
read = "scim:read"
write = "scim:write"
[stage.scim]
use = "scim-server/scim"
{stage_options}

[[route]]
path = "/scim/v2"
pipeline = ["static", "scopes", "scim"]

[[provider]]
id = "iga"
name = "IGA with the change feed"
[provider.auth]
method = "static-bearer"
token = "${{FEED_TOKEN}}"
client_id = "sync-1"
scopes = ["scim:read", "scim:write", "scim:changes"]

[[provider]]
id = "writer"
name = "IGA without it"
[provider.auth]
method = "static-bearer"
token = "${{WRITER_TOKEN}}"
scopes = ["scim:read", "scim:write"]
"#
    )
}

/// The store's stage options and environment; `None` when the PostgreSQL
/// run is skipped.
struct Store {
    options: String,
    env: Vec<(String, String)>,
    _schema: Option<crate::scim::PgSchema>,
}

fn store(kind: StoreKind) -> Store {
    match kind {
        StoreKind::Sqlite => Store {
            options: String::new(),
            env: Vec::new(),
            _schema: None,
        },
        StoreKind::Postgres => {
            let server = PgServer::from_env().expect("checked by the caller");
            let schema = server.fresh_schema("changes");
            Store {
                options: schema.stage_options(),
                env: schema.env(),
                _schema: Some(schema),
            }
        }
    }
}

fn env<'a>(store: &'a Store, clock: Option<&'a TestClock>) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = store
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.push(("FEED_TOKEN", FEED_TOKEN));
    all.push(("WRITER_TOKEN", WRITER_TOKEN));
    if let Some(clock) = clock {
        all.push(clock.env());
    }
    all
}

fn auth(token: &str) -> String {
    format!("Bearer {token}")
}

fn write(server: &Server, method: &str, path: &str, body: &Value) -> Value {
    write_ok(server, FEED_TOKEN, method, &format!("/scim/v2{path}"), body)
}

fn delete(server: &Server, path: &str) {
    let a = auth(FEED_TOKEN);
    let reply = send(
        "DELETE",
        &server.url(&format!("/scim/v2{path}")),
        &[("authorization", &a)],
        None,
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
}

fn feed_as(server: &Server, token: &str, query: &str) -> Reply {
    let a = auth(token);
    get(
        &server.url(&format!("/scim/v2/Changes?{query}")),
        &[("authorization", &a)],
    )
}

fn feed(server: &Server, query: &str) -> Value {
    let reply = feed_as(server, FEED_TOKEN, query);
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/scim+json")),
        "{:?}",
        reply.headers
    );
    reply.json()
}

fn id_of(body: &Value) -> String {
    body["id"].as_str().expect("id").to_string()
}

/// (resourceType, resourceId, op, attributes, via) of each entry.
fn summary(page: &Value) -> Vec<Row> {
    page["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(|c| {
            (
                c["resourceType"].as_str().unwrap_or("").to_string(),
                c["resourceId"].as_str().unwrap_or("").to_string(),
                c["op"].as_str().unwrap_or("").to_string(),
                c["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect(),
                c["via"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The derived entries of one membership change come in no particular
/// order among themselves (entries 7 and 8 of the scenario): sorted there.
fn in_order(mut rows: Vec<Row>) -> Vec<Row> {
    if rows.len() > 8 {
        rows[7..9].sort();
    }
    rows
}

type Row = (String, String, String, Vec<String>, Option<String>);

fn names(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn row(t: &str, id: &str, op: &str, attrs: &[&str], via: Option<&str>) -> Row {
    (
        t.into(),
        id.into(),
        op.into(),
        names(attrs),
        via.map(str::to_string),
    )
}

/// Users and groups written every way appear in order, with op, changed
/// attributes, provider and client, and without the password; a refused
/// write adds nothing; the cursor resumes; the entries survive a restart.
fn writes_appear_in_order_and_survive_a_restart(kind: StoreKind) {
    let store = store(kind);
    let mut server = Server::start_with_env(&config(&store.options), &env(&store, None));
    let alice = id_of(&write(
        &server,
        "POST",
        "/Users",
        &json!({"schemas": [USER], "userName": "alice", "password": "Secr3t!passw0rd", "title": "Dev"}),
    ));
    // A refused write (409): no entry.
    let a = auth(FEED_TOKEN);
    let taken = send_json(
        "POST",
        &server.url("/scim/v2/Users"),
        &[("authorization", &a)],
        &json!({"schemas": [USER], "userName": "ALICE"}),
    );
    assert_eq!(taken.status, 409, "{}", taken.body);
    let bob = id_of(&write(
        &server,
        "POST",
        "/Users",
        &json!({"schemas": [USER], "userName": "bob"}),
    ));
    write(
        &server,
        "PATCH",
        &format!("/Users/{alice}"),
        &json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "title", "value": "Lead"},
            {"op": "replace", "path": "password", "value": "N3w!passw0rd!"}]}),
    );
    write(
        &server,
        "PUT",
        &format!("/Users/{alice}"),
        &json!({"schemas": [USER], "userName": "alice", "title": "Lead", "displayName": "Alice"}),
    );
    let group = id_of(&write(
        &server,
        "POST",
        "/Groups",
        &json!({"schemas": [GROUP], "displayName": "admins", "members": [{"value": alice}]}),
    ));
    write(
        &server,
        "PATCH",
        &format!("/Groups/{group}"),
        &json!({"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": bob}]},
            {"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]}),
    );
    delete(&server, &format!("/Groups/{group}"));
    delete(&server, &format!("/Users/{alice}"));

    let expected = in_order(vec![
        row("User", &alice, "create", &["title", "userName"], None),
        row("User", &bob, "create", &["userName"], None),
        row("User", &alice, "patch", &["title"], None),
        row("User", &alice, "replace", &["displayName"], None),
        row("Group", &group, "create", &["displayName", "members"], None),
        row("User", &alice, "patch", &["groups"], Some(&group)),
        row("Group", &group, "patch", &["members"], None),
        row("User", &alice, "patch", &["groups"], Some(&group)),
        row("User", &bob, "patch", &["groups"], Some(&group)),
        row("Group", &group, "delete", &[], None),
        row("User", &bob, "patch", &["groups"], Some(&group)),
        row("User", &alice, "delete", &[], None),
    ]);
    let all = feed(&server, "since=0");
    assert_eq!(in_order(summary(&all)), expected);
    assert_eq!(
        all["schemas"],
        json!(["urn:scimgate:api:messages:2.0:ChangeList"])
    );
    assert_eq!(all["next"], json!(expected.len()));
    assert_eq!(all["newest"], json!(expected.len()));
    let entries = all["Resources"].as_array().expect("entries");
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry["seq"], json!(i + 1), "gapless, from 1");
        assert_eq!(entry["providerId"], "iga");
        assert_eq!(entry["clientId"], "sync-1");
        assert!(entry["at"].as_i64().is_some_and(|at| at > 0));
    }
    assert!(entries[0]["version"]
        .as_str()
        .is_some_and(|v| v.starts_with("W/\"")));
    assert!(
        entries[9].get("version").is_none(),
        "a delete has no version"
    );
    assert!(!all.to_string().to_lowercase().contains("password"));
    assert!(!all.to_string().contains("Secr3t"));

    // Paging with the cursor.
    let first = feed(&server, "since=0&count=5");
    assert_eq!(in_order(summary(&first)), expected[..5].to_vec());
    assert_eq!(first["next"], 5);
    let rest = feed(&server, "since=5&count=1000");
    let mut resumed = summary(&first);
    resumed.extend(summary(&rest));
    assert_eq!(
        in_order(resumed),
        expected,
        "the pages join without gap or overlap"
    );

    // Bad parameters, other methods, unauthorised callers.
    let bad = feed_as(&server, FEED_TOKEN, "since=0&count=5000");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.json()["scimType"], "invalidValue");
    assert!(bad.json()["detail"]
        .as_str()
        .is_some_and(|d| d.contains("count")));
    let post = send(
        "POST",
        &server.url("/scim/v2/Changes"),
        &[("authorization", &a)],
        Some("{}"),
    );
    assert_eq!(post.status, 405, "{}", post.body);

    // Restart on the same data: the log is durable, seqs continue.
    server.kill_hard();
    let dir = server.take_dir();
    let config_path = server.config_path.clone();
    let server = Server::start_at(dir, config_path, &env(&store, None));
    let again = feed(&server, "since=0");
    assert_eq!(in_order(summary(&again)), expected);
    let carol = id_of(&write(
        &server,
        "POST",
        "/Users",
        &json!({"schemas": [USER], "userName": "carol"}),
    ));
    let next = feed(&server, &format!("since={}", expected.len()));
    assert_eq!(
        summary(&next),
        vec![row("User", &carol, "create", &["userName"], None)]
    );
    assert_eq!(next["Resources"][0]["seq"], json!(expected.len() + 1));
}

/// A long poll returns the write made while it waits.
fn a_long_poll_returns_a_write_made_while_it_waits(kind: StoreKind) {
    let store = store(kind);
    let server = Server::start_with_env(&config(&store.options), &env(&store, None));
    let page = std::thread::scope(|s| {
        let poll = s.spawn(|| feed(&server, "since=0&wait=15s"));
        // Whether it lands before or during the wait, the poll answers with
        // it (an immediate answer would have been empty).
        write(
            &server,
            "POST",
            "/Users",
            &json!({"schemas": [USER], "userName": "late"}),
        );
        poll.join().expect("poll")
    });
    assert_eq!(page["Resources"][0]["seq"], 1, "{page}");
    assert_eq!(page["Resources"][0]["op"], "create");
}

/// `/Changes` needs `scim:changes`: a provider that may read and write
/// everything else gets 403 with the scope named.
fn the_feed_needs_its_own_scope(kind: StoreKind) {
    let store = store(kind);
    let server = Server::start_with_env(&config(&store.options), &env(&store, None));
    let refused = feed_as(&server, WRITER_TOKEN, "since=0");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|c| c.contains("insufficient_scope") && c.contains("scim:changes")),
        "{:?}",
        refused.headers
    );
    // The same provider may read users: only the feed is refused.
    let a = auth(WRITER_TOKEN);
    assert_eq!(
        get(&server.url("/scim/v2/Users"), &[("authorization", &a)]).status,
        200
    );
    assert_eq!(feed_as(&server, FEED_TOKEN, "since=0").status, 200);
    let anonymous = get(&server.url("/scim/v2/Changes"), &[]);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
}

/// Entries past `change_retention` are pruned by a later write; a reader
/// whose position was pruned gets 410 and is told to resync, never a page
/// that silently skips.
fn a_pruned_position_is_gone(kind: StoreKind) {
    let store = store(kind);
    let clock = TestClock::at_utc("2027-03-01T00:00:00Z");
    let options = format!("{}\nchange_retention = \"1d\"\n", store.options);
    let server = clock.start_server(&config(&options), &env(&store, None));
    write(
        &server,
        "POST",
        "/Users",
        &json!({"schemas": [USER], "userName": "early"}),
    );
    assert_eq!(
        feed(&server, "since=0")["Resources"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    clock.advance(Duration::from_secs(2 * 86_400));
    let late = id_of(&write(
        &server,
        "POST",
        "/Users",
        &json!({"schemas": [USER], "userName": "late"}),
    ));
    let gone = feed_as(&server, FEED_TOKEN, "since=0");
    assert_eq!(gone.status, 410, "{}", gone.body);
    assert_eq!(gone.json()["status"], "410");
    assert!(
        gone.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("resynchronise")),
        "{}",
        gone.body
    );
    let kept = feed(&server, "since=1");
    assert_eq!(
        summary(&kept),
        vec![row("User", &late, "create", &["userName"], None)]
    );
}

/// `change_log = false`: nothing recorded, `/Changes` is 404 saying why.
fn the_log_can_be_turned_off(kind: StoreKind) {
    let store = store(kind);
    let options = format!("{}\nchange_log = false\n", store.options);
    let server = Server::start_with_env(&config(&options), &env(&store, None));
    write(
        &server,
        "POST",
        "/Users",
        &json!({"schemas": [USER], "userName": "quiet"}),
    );
    let off = feed_as(&server, FEED_TOKEN, "since=0");
    assert_eq!(off.status, 404, "{}", off.body);
    assert!(off.json()["detail"]
        .as_str()
        .is_some_and(|d| d.contains("change_log = false")));
}

macro_rules! on_both_stores {
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

on_both_stores!(
    writes_appear_in_order_and_survive_a_restart,
    a_long_poll_returns_a_write_made_while_it_waits,
    the_feed_needs_its_own_scope,
    a_pruned_position_is_gone,
    the_log_can_be_turned_off,
);
