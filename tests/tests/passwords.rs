//! `password` and other `returned: never` attributes end to end (the real
//! binary, `libscim_server.so` and the profile plugins over HTTP): stored
//! only as argon2id hashes whatever the write path (POST, PUT, PATCH with and
//! without path, Bulk), `password_storage = "drop" | "refuse"`, never
//! filterable or sortable, clear values of older builds hashed on start, and
//! debug logs of profiles that show PATCH operations but never the password.

use std::path::{Path, PathBuf};
use std::process::Command;

use scimgate_e2e::*;

use crate::scim::{PgServer, StoreKind};

const AUTH: (&str, &str) = ("authorization", "Bearer password-token");
const PHC_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// One SCIM route at `/scim/v2`, optionally behind a profile stage.
fn config(options: &str, profile: Option<&str>) -> String {
    let (profile_stage, profile_name) = match profile {
        Some(plugin) => (
            format!("[stage.profile]\nuse = \"{plugin}/profile\"\nsensitive_attributes = [\"nickName\"]\n"),
            "\"profile\", ",
        ),
        None => (String::new(), ""),
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.key]
use = "demo/api-key"
header = "authorization"
keys = {{ "Bearer password-token" = "p1" }}

{profile_stage}
[stage.scim]
use = "scim-server/scim"
{options}

[[route]]
path = "/scim/v2"
pipeline = ["key", {profile_name}"scim"]

[[provider]]
id = "p1"
name = "Test"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#
    )
}

fn url(server: &Server, path: &str) -> String {
    server.url(&format!("/scim/v2{path}"))
}

fn call(server: &Server, method: &str, path: &str, body: &Value) -> Reply {
    send_json(method, &url(server, path), &[AUTH], body)
}

fn read(server: &Server, path: &str) -> Reply {
    get(&url(server, path), &[AUTH])
}

fn user(name: &str, password: Option<&str>) -> Value {
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "emails": [{"value": format!("{name}@example.com"), "type": "work"}],
    });
    if let Some(password) = password {
        body["password"] = json!(password);
    }
    body
}

fn patch(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

fn create(server: &Server, name: &str, password: Option<&str>) -> String {
    let reply = call(server, "POST", "/Users", &user(name, password));
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(reply.json().get("password").is_none(), "{}", reply.body);
    reply.json()["id"].as_str().expect("id").to_string()
}

fn db_path(server: &Server) -> PathBuf {
    server.dir.path().join("data").join("scim.db")
}

/// The database file and its WAL, as bytes.
fn db_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).expect("read the SQLite file");
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("run sqlite3 (the SQLite command-line shell)");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The stored `password` of a user, straight from the database.
fn stored_password(db: &Path, id: &str) -> String {
    sqlite(
        db,
        &format!("SELECT json_extract(body, '$.password') FROM resources WHERE id = '{id}'"),
    )
}

fn assert_scim_error(reply: &Reply, status: u16, scim_type: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.json()["scimType"], scim_type, "{}", reply.body);
}

/// The database holds password hashes: it and its `-wal` and `-shm` files
/// are readable by their owner only. Checked while the server runs, when
/// SQLite keeps all three files (the WAL and SHM go when it closes).
#[cfg(unix)]
#[test]
fn the_database_its_wal_and_shm_are_owner_only_while_serving() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start(&config("", None));
    create(&server, "walter", Some("Clear-Wal-5555"));
    let db = db_path(&server);
    for file in [
        db.clone(),
        db.with_extension("db-wal"),
        db.with_extension("db-shm"),
    ] {
        let meta = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{} while serving: {e}", file.display()));
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
    }
    // The write is in the WAL, so the file checked is the live one.
    assert!(contains(
        &std::fs::read(db.with_extension("db-wal")).expect("WAL"),
        "walter"
    ));
}

#[test]
fn passwords_are_stored_as_argon2id_hashes_on_every_write_path() {
    let server = Server::start(&config("", None));
    let id = create(&server, "alice", Some("Clear-Post-1111"));
    let db = db_path(&server);
    let first = stored_password(&db, &id);
    assert!(first.starts_with(PHC_PREFIX), "stored: {first}");

    // PATCH with a path, pathless PATCH, PUT: each stores a new hash.
    let writes = [
        (
            "PATCH",
            patch(json!([{"op": "replace", "path": "password", "value": "Clear-Patch-2222"}])),
        ),
        (
            "PATCH",
            patch(
                json!([{"op": "replace", "value": {"password": "Clear-Pathless-3333", "title": "x"}}]),
            ),
        ),
        ("PUT", user("alice", Some("Clear-Put-4444"))),
    ];
    let mut previous = first;
    for (method, body) in writes {
        let reply = call(&server, method, &format!("/Users/{id}"), &body);
        assert_eq!(reply.status, 200, "{method}: {}", reply.body);
        assert!(reply.json().get("password").is_none(), "{}", reply.body);
        let stored = stored_password(&db, &id);
        assert!(stored.starts_with(PHC_PREFIX), "{method}: {stored}");
        assert_ne!(stored, previous, "{method} changed the password");
        previous = stored;
    }
    // A PATCH that does not touch the password keeps its hash.
    let reply = call(
        &server,
        "PATCH",
        &format!("/Users/{id}"),
        &patch(json!([{"op": "replace", "path": "title", "value": "Boss"}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(stored_password(&db, &id), previous);

    // Bulk: create and patch.
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "b1", "data": user("bob", Some("Clear-Bulk-5555"))},
            {"method": "PATCH", "path": format!("/Users/{id}"),
             "data": patch(json!([{"op": "add", "path": "password", "value": "Clear-BulkPatch-6666"}]))}
        ]
    });
    let reply = call(&server, "POST", "/Bulk", &bulk);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.json()["Operations"].clone();
    for result in results.as_array().expect("results") {
        assert!(
            result["status"]
                .as_str()
                .is_some_and(|s| s.starts_with('2')),
            "{result}"
        );
    }
    let bob = sqlite(
        &db,
        "SELECT json_extract(body, '$.password') FROM resources WHERE user_name = 'bob'",
    );
    assert!(bob.starts_with(PHC_PREFIX), "bulk POST stored {bob}");
    let alice = stored_password(&db, &id);
    assert!(
        alice.starts_with(PHC_PREFIX) && alice != previous,
        "bulk PATCH stored {alice}"
    );

    // GET never shows it, not even when asked for.
    for path in [
        format!("/Users/{id}"),
        format!("/Users/{id}?attributes=password"),
        "/Users?attributes=password,userName".to_string(),
    ] {
        let reply = read(&server, &path);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(!reply.body.contains("password"), "{path}: {}", reply.body);
        assert!(!reply.body.contains("argon2"), "{path}: {}", reply.body);
    }

    // No clear value anywhere in the database files.
    let bytes = db_bytes(&db);
    for clear in [
        "Clear-Post-1111",
        "Clear-Patch-2222",
        "Clear-Pathless-3333",
        "Clear-Put-4444",
        "Clear-Bulk-5555",
        "Clear-BulkPatch-6666",
    ] {
        assert!(!contains(&bytes, clear), "{clear} is in the database file");
    }
}

#[test]
fn never_returned_attributes_cannot_be_filtered_or_sorted() {
    let server = Server::start(&config("", None));
    create(&server, "alice", Some("Filter-Me-If-You-Can"));
    for filter in [
        r#"password sw "F""#,
        r#"userName eq "alice" and password pr"#,
        r#"not (password ew "n")"#,
        r#"emails[type eq "work"] or urn:ietf:params:scim:schemas:core:2.0:User:password gt "A""#,
    ] {
        let reply = read(
            &server,
            &format!("/Users?filter={}", percent_encode(filter)),
        );
        assert_scim_error(&reply, 400, "invalidFilter");
        assert!(reply.json().get("totalResults").is_none(), "{}", reply.body);
        for path in ["/Users/.search", "/.search"] {
            let reply = call(
                &server,
                "POST",
                path,
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": filter}),
            );
            assert_scim_error(&reply, 400, "invalidFilter");
        }
    }
    let reply = read(&server, "/Users?sortBy=password");
    assert_scim_error(&reply, 400, "invalidValue");
    let reply = call(
        &server,
        "POST",
        "/.search",
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "sortBy": "Password"}),
    );
    assert_scim_error(&reply, 400, "invalidValue");
    // Filters and sorting on other attributes still work.
    let reply = read(
        &server,
        &format!(
            "/Users?sortBy=userName&filter={}",
            percent_encode(r#"userName eq "alice""#)
        ),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["totalResults"], 1);
}

#[test]
fn refuse_mode_answers_invalid_value_and_drop_mode_stores_nothing() {
    let server = Server::start(&config("password_storage = \"refuse\"", None));
    let reply = call(
        &server,
        "POST",
        "/Users",
        &user("alice", Some("Refused-7777")),
    );
    assert_scim_error(&reply, 400, "invalidValue");
    let id = create(&server, "alice", None);
    let reply = call(
        &server,
        "PATCH",
        &format!("/Users/{id}"),
        &patch(json!([{"op": "replace", "value": {"password": "Refused-7777"}}])),
    );
    assert_scim_error(&reply, 400, "invalidValue");
    let reply = call(
        &server,
        "PUT",
        &format!("/Users/{id}"),
        &user("alice", Some("Refused-7777")),
    );
    assert_scim_error(&reply, 400, "invalidValue");
    // Writes without a password are fine.
    let reply = call(
        &server,
        "PUT",
        &format!("/Users/{id}"),
        &user("alice", None),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!contains(&db_bytes(&db_path(&server)), "Refused-7777"));
    drop(server);

    let server = Server::start(&config("password_storage = \"drop\"", None));
    let id = create(&server, "carol", Some("Dropped-8888"));
    let reply = call(
        &server,
        "PATCH",
        &format!("/Users/{id}"),
        &patch(json!([{"op": "add", "path": "password", "value": "Dropped-8888"}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let db = db_path(&server);
    assert_eq!(stored_password(&db, &id), "", "nothing stored");
    assert!(!contains(&db_bytes(&db), "Dropped-8888"));
}

#[test]
fn an_unknown_password_storage_is_a_located_config_error() {
    let dir = TempDir::new("password-config");
    let config_path = dir.path().join("scimgate.toml");
    std::fs::write(
        &config_path,
        expand(&config("password_storage = \"clear\"", None), dir.path()),
    )
    .expect("write config");
    let (code, stdout, stderr) = run_cli(
        &["validate", "--config", &config_path.display().to_string()],
        &[],
    );
    assert_ne!(code, 0, "{stdout}{stderr}");
    let text = format!("{stdout}{stderr}");
    assert!(text.contains("password_storage"), "{text}");
}

/// A user with a clear password written the way older builds did.
fn seed_clear_password(db: &Path, id: &str, clear: &str) {
    sqlite(
        db,
        &format!(
            "UPDATE resources SET body = json_set(body, '$.password', '{clear}') WHERE id = '{id}'"
        ),
    );
    assert_eq!(stored_password(db, id), clear);
}

const MIGRATED: &str = "clear-text passwords found and replaced by argon2id hashes";

#[test]
fn clear_passwords_of_older_builds_are_hashed_on_start_and_logged_once() {
    let mut server = Server::start(&config("", None));
    let legacy = create(&server, "legacy", None);
    let other = create(&server, "other", None);
    let config_path = server.config_path.clone();
    let db = db_path(&server);
    let dir = server.take_dir();
    drop(server);
    seed_clear_password(&db, &legacy, "Legacy-Clear-9999");

    let mut server = Server::start_at(dir, config_path.clone(), &[]);
    let logs = server.logs();
    assert_eq!(logs.matches(MIGRATED).count(), 1, "{logs}");
    assert!(
        logs.contains("count=1") || logs.contains("\"count\":1"),
        "{logs}"
    );
    assert!(!logs.contains("Legacy-Clear-9999"), "{logs}");
    let stored = stored_password(&db, &legacy);
    assert!(stored.starts_with(PHC_PREFIX), "{stored}");
    assert_eq!(stored_password(&db, &other), "");
    // The reply does not change, and the value is not filterable.
    let reply = read(&server, &format!("/Users/{legacy}"));
    assert_eq!(reply.status, 200);
    assert!(!reply.body.contains("password"), "{}", reply.body);
    let dir = server.take_dir();
    drop(server);
    assert!(!contains(&db_bytes(&db), "Legacy-Clear-9999"));

    // Nothing left to do: no line on the next start.
    let server = Server::start_at(dir, config_path, &[]);
    assert_eq!(
        server.logs().matches(MIGRATED).count(),
        0,
        "{}",
        server.logs()
    );
    assert_eq!(stored_password(&db, &legacy), stored);
}

#[test]
fn clear_passwords_in_postgresql_are_hashed_on_start() {
    if !StoreKind::postgres_available() {
        return;
    }
    let pg = PgServer::from_env().expect("checked");
    let schema = pg.fresh_schema("passwords");
    let env = schema.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = Server::start_with_env(&config(&schema.stage_options(), None), &env);
    let legacy = create(&server, "legacy", None);
    let hashed = create(&server, "hashed", Some("Pg-Post-1212"));
    let config_path = server.config_path.clone();
    let dir = server.take_dir();
    drop(server);
    schema.psql(&format!(
        "UPDATE resources SET body = jsonb_set(body, '{{password}}', '\"Pg-Legacy-3434\"') WHERE id = '{legacy}'"
    ));
    let server = Server::start_at(dir, config_path, &env);
    let logs = server.logs();
    assert_eq!(logs.matches(MIGRATED).count(), 1, "{logs}");
    for id in [&legacy, &hashed] {
        let stored = schema.psql(&format!(
            "SELECT body->>'password' FROM resources WHERE id = '{id}'"
        ));
        assert!(stored.contains(PHC_PREFIX), "{id}: {stored}");
    }
}

#[test]
fn profile_debug_logs_show_patch_operations_but_never_the_password() {
    for profile in ["one-identity", "okta", "entra-id"] {
        let server = Server::start(&config("", Some(profile)));
        let id = create(&server, "dora", None);
        // Capitalised ops make every profile normalise (and log) the body.
        let body = patch(json!([
            {"op": "Replace", "path": "password", "value": "Debug-Secret-5656"},
            {"op": "Replace", "value": {"password": "Debug-Secret-5656", "nickName": "Nick-Secret-7878", "title": "Chief"}}
        ]));
        let reply = call(&server, "PATCH", &format!("/Users/{id}"), &body);
        assert!(reply.status < 300, "{profile}: {}", reply.body);
        let logs = server.logs();
        let line = logs
            .lines()
            .find(|line| line.contains("normalised"))
            .unwrap_or_else(|| panic!("{profile}: no normalisation line in\n{logs}"));
        assert!(line.contains("password (redacted)"), "{profile}: {line}");
        assert!(line.contains("nickName: redacted"), "{profile}: {line}");
        assert!(line.contains("title: string"), "{profile}: {line}");
        assert!(!logs.contains("Debug-Secret-5656"), "{profile}: {logs}");
        assert!(!logs.contains("Nick-Secret-7878"), "{profile}: {logs}");
    }
}
