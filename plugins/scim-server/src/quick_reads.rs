//! Which requests the SCIM endpoint lets the host run inline, on an async
//! worker (`Endpoint::blocks_on`): over SQLite, reads by id, discovery and
//! lists selected by a point index; never writes, full lists, the change
//! feed or a backend behind a network. Real stores, the engine's decision.

use std::sync::Arc;

use scimgate_abi::sdk::{deserialize_config, Endpoint};
use scimgate_abi::Request;
use scimgate_scim_service::ScimService;
use serde_json::json;

use crate::config::ScimConfig;
use crate::store::metered::Metered;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::suite::TestDatabase;

fn service(backend: Arc<dyn scimgate_scim_service::Backend>) -> ScimService {
    let config: ScimConfig = deserialize_config(&json!({})).expect("defaults");
    let registry = config.registry(&std::env::temp_dir()).expect("registry");
    ScimService::new(config.settings(), registry, backend)
}

fn get(target: &str) -> Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Request::new("GET", path).with_query(query)
}

#[test]
fn over_sqlite_only_point_reads_and_discovery_run_inline() {
    let file = std::env::temp_dir().join(format!("quick-reads-{}.db", uuid::Uuid::new_v4()));
    let store = SqliteStore::open(&file).expect("open");
    // As the plugin builds it: the store behind its metering wrapper.
    let scim = service(Arc::new(Metered::new(store)));
    let inline = |req: &Request| !scim.blocks_on(req);
    for quick in [
        "/Users/2819c223",
        "/Groups/2819c223",
        "/Users?filter=userName%20eq%20%22bjensen%22",
        "/Users?filter=externalId%20eq%20%22e-1%22&attributes=userName",
        "/Users?filter=emails.value%20eq%20%22b%40example.com%22",
        "/Users?filter=id%20eq%20%22x%22%20and%20active%20eq%20true",
        "/ServiceProviderConfig",
        "/Schemas",
    ] {
        assert!(inline(&get(quick)), "{quick} should run inline");
    }
    for slow in [
        // A whole collection, a scan, a sort, a cursor, the long poll.
        "/Users",
        "/Users?startIndex=900001&count=100",
        "/Users?filter=title%20co%20%22eng%22",
        "/Users?filter=displayName%20eq%20%22Babs%22",
        "/Users?filter=userName%20eq%20%22a%22%20or%20title%20eq%20%22b%22",
        "/Users?filter=userName%20eq%20%22a%22&sortBy=name.familyName",
        "/Users?filter=userName%20eq%20%22a%22&cursor=",
        "/Users?filter=userName%20eq",
        "/Changes?since=0&wait=30",
        "/Nothing/here",
    ] {
        assert!(!inline(&get(slow)), "{slow} should go to the blocking pool");
    }
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let write = Request::new(method, "/Users/2819c223");
        assert!(!inline(&write), "{method} should go to the blocking pool");
    }
    std::fs::remove_file(&file).ok();
}

#[test]
fn over_postgresql_nothing_runs_inline() {
    let Some(db) = TestDatabase::create("quick") else {
        return;
    };
    let store = PostgresStore::connect(&db.settings(1)).expect("connect");
    let scim = service(Arc::new(store));
    assert!(scim.blocks_on(&get("/Users/2819c223")));
    assert!(scim.blocks_on(&get("/Users?filter=userName%20eq%20%22bjensen%22")));
}

#[test]
fn an_inline_answer_is_the_answer_the_blocking_pool_gives() {
    use scimgate_abi::Caller;
    let file = std::env::temp_dir().join(format!("quick-reads-{}.db", uuid::Uuid::new_v4()));
    let scim = service(Arc::new(Metered::new(
        SqliteStore::open(&file).expect("open"),
    )));
    let created = scim
        .handle(
            &Request::new("POST", "/Users")
                .with_header("content-type", "application/scim+json")
                .with_body(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","externalId":"e-1"}"#),
            Caller::ANONYMOUS,
        )
        .expect("create");
    assert_eq!(created.status, 201);
    let user: serde_json::Value = serde_json::from_slice(&created.body).expect("json");
    let id = user["id"].as_str().expect("id");
    for target in [
        format!("/Users/{id}"),
        format!("/Users/{id}?attributes=userName"),
        "/Users/missing".to_string(),
        "/Users?filter=userName%20eq%20%22bjensen%22".to_string(),
        "/Users?filter=userName%20eq%20%22BJENSEN%22&excludedAttributes=meta".to_string(),
        "/Users?filter=externalId%20eq%20%22nobody%22".to_string(),
        "/ServiceProviderConfig".to_string(),
    ] {
        let mut inline_req = get(&target);
        inline_req.set_inline(true);
        let inline = scim
            .handle_inline(&inline_req, Caller::ANONYMOUS)
            .unwrap_or_else(|| panic!("{target} should run inline"));
        let blocking = scim.handle(&get(&target), Caller::ANONYMOUS);
        match (inline, blocking) {
            (Ok(a), Ok(b)) => {
                assert_eq!((a.status, &a.body), (b.status, &b.body), "{target}");
                assert!(a.status == 200, "{target}: {}", a.status);
            }
            (Err(a), Err(b)) => {
                assert_eq!(
                    (a.status, a.message.as_str()),
                    (b.status, b.message.as_str())
                );
                assert_eq!(a.status, 404, "{target}");
            }
            (a, b) => panic!("{target}: inline {a:?}, blocking {b:?}"),
        }
    }
    // What may block is not run inline: the blocking pool answers it,
    // a filter the parser refuses included (its 400 comes from there).
    for target in ["/Users", "/Users?filter=userName%20eq"] {
        let mut req = get(target);
        req.set_inline(true);
        assert!(
            scim.handle_inline(&req, Caller::ANONYMOUS).is_none(),
            "{target}"
        );
    }
    let refused = scim
        .handle(&get("/Users?filter=userName%20eq"), Caller::ANONYMOUS)
        .expect_err("a broken filter");
    assert_eq!(refused.status, 400);
    std::fs::remove_file(&file).ok();
}
