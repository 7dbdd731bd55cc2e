//! The differential property test of the SQL stores' push-down (filters
//! and `sortBy`), from the engine's `conformance` module: generated users
//! go into a real store through the engine, and every generated query over
//! all pages must return exactly what `Filter::matches` and the in-memory
//! sort give. SQLite always (32 cases), PostgreSQL with
//! `SCIMGATE_TEST_POSTGRES_URL` (16 cases; SKIPPED without it, a failure
//! under `CI=true`). `SCIMGATE_PROPTEST_CASES` overrides the case counts.

use std::sync::{Arc, Mutex};

use scimgate_abi::sdk::deserialize_config;
use scimgate_scim_service::conformance::{self, list_all, Options, User};
use scimgate_scim_service::ScimService;
use serde_json::json;

use crate::config::ScimConfig;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::suite::{TempDir, TestDatabase};

fn encode(text: &str) -> String {
    text.replace(' ', "%20")
        .replace('"', "%22")
        .replace('+', "%2B")
}

fn service(backend: Arc<dyn scimgate_scim_service::Backend>, dir: &std::path::Path) -> ScimService {
    let config: ScimConfig = deserialize_config(&json!({})).expect("defaults");
    let registry = config.registry(dir).expect("registry");
    ScimService::new(config.settings(), registry, backend)
}

/// A fresh SQLite store in its own file under `dir`.
fn sqlite_service(dir: &std::path::Path) -> ScimService {
    let file = dir.join(format!("{}.db", uuid::Uuid::new_v4()));
    service(SqliteStore::open(&file).expect("open"), dir)
}

#[test]
fn sqlite_pushdown_agrees_with_in_memory_matching() {
    let dir = TempDir::new("diff");
    conformance::differential(|| sqlite_service(&dir.0), &Options::new(32));
}

#[test]
fn postgres_pushdown_agrees_with_in_memory_matching() {
    if TestDatabase::create("probe").is_none() {
        return;
    }
    let dir = TempDir::new("pgdiff");
    // One schema per case, dropped at the end (after their stores).
    let databases = Mutex::new(Vec::new());
    conformance::differential(
        || {
            let db = TestDatabase::create("diff").expect("the URL is set");
            let store = PostgresStore::connect(&db.settings(2)).expect("connect");
            if let Ok(mut dbs) = databases.lock() {
                dbs.push(db);
            }
            service(Arc::new(store), &dir.0)
        },
        &Options::new(16),
    );
}

fn fixture(users: &[User]) -> (ScimService, TempDir) {
    let dir = TempDir::new("fixture");
    let service = sqlite_service(&dir.0);
    conformance::create_users(&service, users).expect("create");
    (service, dir)
}

fn user(user_name: &str, at: i64) -> User {
    User {
        user_name: user_name.into(),
        external_id: None,
        display_name: None,
        emails: Vec::new(),
        active: None,
        title: None,
        at,
    }
}

#[test]
fn the_fixture_serves_what_it_was_given() {
    let users = vec![User {
        external_id: Some("e1".into()),
        emails: vec![("a@x.com".into(), Some("work".into()))],
        active: Some(true),
        ..user("Alice", 5)
    }];
    let fixture = fixture(&users);
    let all = list_all(&fixture.0, "filter=userName%20eq%20%22ALICE%22", true).expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["meta"]["lastModified"], "2023-11-14T22:13:20.005Z");
    let none = list_all(&fixture.0, "filter=userName%20eq%20%22bob%22", false).expect("list");
    assert!(none.is_empty());
}

#[test]
fn last_modified_bounds_are_exact_at_the_millisecond() {
    let at = user;
    let fixture = fixture(&[at("u0", 0), at("u5", 5), at("u6", 6)]);
    let names = |filter: &str| -> Vec<String> {
        let query = format!("filter={}", encode(filter));
        list_all(&fixture.0, &query, false)
            .expect("list")
            .iter()
            .map(|d| d["userName"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        names(r#"meta.lastModified gt "2023-11-14T22:13:20.005Z""#),
        ["u6"]
    );
    assert_eq!(
        names(r#"meta.lastModified ge "2023-11-14T22:13:20.005Z""#),
        ["u5", "u6"]
    );
    assert_eq!(
        names(r#"meta.lastModified lt "2023-11-14T23:13:20.005+01:00""#),
        ["u0"]
    );
    assert_eq!(
        names(r#"meta.lastModified le "2023-11-14T22:13:20.0050001Z""#),
        ["u0", "u5"]
    );
    assert_eq!(
        names(r#"meta.lastModified eq "2023-11-14T22:13:20.005Z""#),
        ["u5"]
    );
}
