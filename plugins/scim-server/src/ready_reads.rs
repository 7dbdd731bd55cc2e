//! A `GET` by id over SQLite copies the stored JSON text into the response
//! (the engine's "ready JSON"): the bytes must be those the long way
//! (parse, render, strip, project, serialize) gives for the same store,
//! for every shape of resource, and the copy must be what runs; likewise
//! for the pages of a list with an exact filter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use scimgate_abi::sdk::deserialize_config;
use scimgate_abi::{Caller, PluginError, Request};
use scimgate_scim::{AttrPath, Filter, SchemaCtx};
use scimgate_scim_service::backend::{
    Backend, BackendResult, Capabilities, GroupRef, MemberView, QuickRead, Record, RecordText,
    Scan, TextVisitor, Visitor, Work,
};
use scimgate_scim_service::ScimService;
use serde_json::{json, Value};

use crate::config::ScimConfig;
use crate::store::sqlite::SqliteStore;
use crate::store::suite::TempDir;

/// The SQLite store, its JSON text shown to the engine or hidden from it
/// (then every read takes the long way), counting text and group reads.
struct Shown {
    inner: Arc<SqliteStore>,
    text: bool,
    text_reads: AtomicUsize,
    text_scans: AtomicUsize,
    group_reads: AtomicUsize,
}

impl Backend for Shown {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn get(&self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        self.inner.get(resource_type, id)
    }
    fn keeps_json_text(&self) -> bool {
        self.text
    }
    fn get_text(&self, resource_type: &str, id: &str) -> BackendResult<Option<RecordText>> {
        self.text_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_text(resource_type, id)
    }
    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        self.inner.scan(scan, visit)
    }
    fn scan_text(&self, scan: &Scan<'_>, visit: &mut TextVisitor<'_>) -> Result<(), PluginError> {
        self.text_scans.fetch_add(1, Ordering::SeqCst);
        self.inner.scan_text(scan, visit)
    }
    fn snapshot(
        &self,
        reads: &mut dyn FnMut() -> Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        self.inner.snapshot(reads)
    }
    fn filter_is_exact(&self, filter: &Filter, ctx: &SchemaCtx<'_>) -> bool {
        self.inner.filter_is_exact(filter, ctx)
    }
    fn quick_read(&self, read: QuickRead<'_>, ctx: &SchemaCtx<'_>) -> bool {
        self.inner.quick_read(read, ctx)
    }
    fn can_sort(&self, path: &AttrPath, ctx: &SchemaCtx<'_>) -> bool {
        self.inner.can_sort(path, ctx)
    }
    fn count(&self, scan: &Scan<'_>) -> BackendResult<Option<u64>> {
        self.inner.count(scan)
    }
    fn members(&self, group_type: &str, group_id: &str) -> BackendResult<Vec<MemberView>> {
        self.inner.members(group_type, group_id)
    }
    fn groups_of(&self, member_id: &str) -> BackendResult<Vec<GroupRef>> {
        self.group_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.groups_of(member_id)
    }
    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        self.inner.write(work)
    }
}

/// One SQLite file in a throwaway directory, served twice: copying its
/// stored text (reads counted) and taking the long way.
struct Fixture {
    copying: ScimService,
    counted: Arc<Shown>,
    long_way: ScimService,
    /// Last: removed after the services closed the file.
    _dir: TempDir,
}

fn fixture(tag: &str) -> Fixture {
    let dir = TempDir::new(tag);
    let store = Arc::new(SqliteStore::open(&dir.0.join("scim.db")).expect("open"));
    let (copying, counted) = service(&store, true);
    let (long_way, _) = service(&store, false);
    Fixture {
        copying,
        counted,
        long_way,
        _dir: dir,
    }
}

fn service(store: &Arc<SqliteStore>, text: bool) -> (ScimService, Arc<Shown>) {
    let config: ScimConfig = deserialize_config(&json!({})).expect("defaults");
    let registry = config.registry(&std::env::temp_dir()).expect("registry");
    let shown = Arc::new(Shown {
        inner: Arc::clone(store),
        text,
        text_reads: AtomicUsize::new(0),
        text_scans: AtomicUsize::new(0),
        group_reads: AtomicUsize::new(0),
    });
    let service = ScimService::new(config.settings(), registry, shown.clone());
    (service, shown)
}

fn post(scim: &ScimService, path: &str, body: Value) -> Value {
    let response = scim
        .handle(
            &Request::new("POST", path)
                .with_header("content-type", "application/scim+json")
                .with_body(body.to_string()),
            Caller::ANONYMOUS,
        )
        .expect("create");
    assert_eq!(
        response.status,
        201,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    serde_json::from_slice(&response.body).expect("json")
}

#[test]
fn a_read_from_the_stored_text_is_the_long_way_byte_for_byte() {
    let fixture = fixture("ready-reads");
    let (copying, counted, long_way) = (&fixture.copying, &fixture.counted, &fixture.long_way);
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let plain = post(
        copying,
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "plain"}),
    );
    let full = post(
        copying,
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": "bjensen", "externalId": "e-1", "active": true,
            "password": "t1meMa$heen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "displayName": "Babs \"B\" Jensen\n\u{1f600} Zoë </script>",
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
            "phoneNumbers": [],
            ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "26118915"}}}),
    );
    let group = post(
        copying,
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Tour \"Guides\"", "members": [{"value": full["id"]}]}),
    );
    // A changed user (a day later): its lastModified is not its created.
    let patched = copying
        .handle(
            &Request::new(
                "PATCH",
                &format!("/Users/{}", plain["id"].as_str().expect("id")),
            )
            .with_header("content-type", "application/scim+json")
            .with_body(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "add", "path": "nickName", "value": "P"}]})
                .to_string(),
            )
            .with_time(86_400_000),
            Caller::ANONYMOUS,
        )
        .expect("patch");
    let plain: Value = serde_json::from_slice(&patched.body).expect("json");
    assert_ne!(plain["meta"]["created"], plain["meta"]["lastModified"]);
    let mut checked = 0;
    for target in [
        format!("/Users/{}", plain["id"].as_str().expect("id")),
        format!("/Users/{}", full["id"].as_str().expect("id")),
        format!("/Groups/{}", group["id"].as_str().expect("id")),
        "/Users/missing".to_string(),
    ] {
        let before = counted.text_reads.load(Ordering::SeqCst);
        let copied = copying.handle(&Request::new("GET", &target), Caller::ANONYMOUS);
        let parsed = long_way.handle(&Request::new("GET", &target), Caller::ANONYMOUS);
        match (copied, parsed) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.status, 200, "{target}");
                assert_eq!(
                    String::from_utf8_lossy(&a.body),
                    String::from_utf8_lossy(&b.body),
                    "{target}"
                );
                assert_eq!(a.headers, b.headers, "{target}");
                checked += 1;
            }
            (Err(a), Err(b)) => {
                assert_eq!((a.status, a.message), (b.status, b.message), "{target}");
            }
            (a, b) => panic!("{target}: copied {a:?}, parsed {b:?}"),
        }
        // Users are read as text; groups derive `members` from the body,
        // so they are read parsed.
        let text_read = counted.text_reads.load(Ordering::SeqCst) > before;
        assert_eq!(text_read, target.starts_with("/Users/"), "{target}");
    }
    assert_eq!(checked, 3);
    // The copy is what runs: it asks for a user's groups once, as it
    // splices them in; a refused copy renders the long way and asks again.
    for user in [&plain, &full] {
        let id = user["id"].as_str().expect("id");
        let before = counted.group_reads.load(Ordering::SeqCst);
        copying
            .handle(
                &Request::new("GET", &format!("/Users/{id}")),
                Caller::ANONYMOUS,
            )
            .expect("get");
        assert_eq!(
            counted.group_reads.load(Ordering::SeqCst) - before,
            1,
            "{id}"
        );
    }
    // The user in a group shows it, and no password.
    let shown = copying
        .handle(
            &Request::new(
                "GET",
                &format!("/Users/{}", full["id"].as_str().expect("id")),
            ),
            Caller::ANONYMOUS,
        )
        .expect("get");
    let shown: Value = serde_json::from_slice(&shown.body).expect("json");
    assert_eq!(shown["groups"][0]["display"], "Tour \"Guides\"");
    assert!(shown.get("password").is_none() && shown.get("phoneNumbers").is_none());
    // A selection, and a conditional GET, answer as before.
    let id = plain["id"].as_str().expect("id");
    let selected = copying
        .handle(
            &Request::new("GET", &format!("/Users/{id}")).with_query("attributes=userName"),
            Caller::ANONYMOUS,
        )
        .expect("get");
    let selected: Value = serde_json::from_slice(&selected.body).expect("json");
    assert!(selected.get("meta").is_none() && selected["userName"] == "plain");
    let etag = plain["meta"]["version"].as_str().expect("version");
    let unchanged = copying
        .handle(
            &Request::new("GET", &format!("/Users/{id}")).with_header("if-none-match", etag),
            Caller::ANONYMOUS,
        )
        .expect("get");
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
}

#[test]
fn a_list_page_from_the_stored_text_is_the_long_way_byte_for_byte() {
    let fixture = fixture("ready-lists");
    let (copying, counted, long_way) = (&fixture.copying, &fixture.counted, &fixture.long_way);
    let mut ids = Vec::new();
    for n in 0..5 {
        let user = post(
            copying,
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("user{n}"), "externalId": format!("e-{n}"),
                "password": "t1meMa$heen", "displayName": format!("User \"{n}\""),
                "emails": [{"value": format!("u{n}@example.com"), "primary": n % 2 == 0}]}),
        );
        ids.push(user["id"].as_str().expect("id").to_string());
    }
    post(
        copying,
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Admins", "members": [{"value": ids[1]}, {"value": ids[3]}]}),
    );
    // Exact pages of users are copied; a selection, an inexact filter, a
    // sort in memory and groups take the long way: all answer the same
    // bytes.
    for (target, copied_scan) in [
        ("/Users?filter=userName%20eq%20%22user1%22", true),
        ("/Users?filter=externalId%20eq%20%22e-4%22", true),
        ("/Users?filter=userName%20eq%20%22nobody%22", true),
        ("/Users", true),
        ("/Users?startIndex=2&count=2", true),
        ("/Users?count=2&cursor=", true),
        ("/Users?count=0", false),
        (
            "/Users?filter=userName%20eq%20%22user1%22&attributes=userName",
            false,
        ),
        ("/Users?filter=displayName%20co%20%22User%22", false),
        // SQLite sorts by displayName itself: the page is exact.
        ("/Users?sortBy=displayName&sortOrder=descending", true),
        ("/Users?sortBy=emails.value", false),
        ("/Groups", false),
    ] {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let request = || Request::new("GET", path).with_query(query);
        let before = counted.text_scans.load(Ordering::SeqCst);
        let a = copying.handle(&request(), Caller::ANONYMOUS).expect(target);
        let scanned_text = counted.text_scans.load(Ordering::SeqCst) > before;
        let b = long_way
            .handle(&request(), Caller::ANONYMOUS)
            .expect(target);
        assert_eq!(a.status, 200, "{target}");
        assert_eq!(
            String::from_utf8_lossy(&a.body),
            String::from_utf8_lossy(&b.body),
            "{target}"
        );
        assert_eq!(scanned_text, copied_scan, "{target}");
        let body: Value = serde_json::from_slice(&a.body).expect(target);
        assert!(body["Resources"].as_array().is_some(), "{target}");
        assert!(
            !String::from_utf8_lossy(&a.body).contains("argon2"),
            "{target}"
        );
    }
    // The members of the group show it in their groups, copied.
    let page = copying
        .handle(
            &Request::new("GET", "/Users").with_query("filter=userName%20eq%20%22user3%22"),
            Caller::ANONYMOUS,
        )
        .expect("list");
    let page: Value = serde_json::from_slice(&page.body).expect("json");
    assert_eq!(page["Resources"][0]["groups"][0]["display"], "Admins");
    assert_eq!(page["totalResults"], 1);
    // A one-row page asks for the row's groups once: the copy ran (a
    // refused copy renders the long way and asks again).
    let before = counted.group_reads.load(Ordering::SeqCst);
    copying
        .handle(
            &Request::new("GET", "/Users").with_query("filter=userName%20eq%20%22user0%22"),
            Caller::ANONYMOUS,
        )
        .expect("list");
    assert_eq!(counted.group_reads.load(Ordering::SeqCst) - before, 1);
}
