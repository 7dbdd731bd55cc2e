//! The engine over the smallest backend (`Capabilities::MINIMAL`: no
//! transactions, versions, keyset, native membership or generation): an
//! in-memory list of records. Proves the paths the SQL stores never take:
//! content-derived versions and `If-Match`, members kept in the group's
//! body, derived `User.groups`, unlinking on delete, in-memory filtering
//! with offset paging, and the `max_scan` bound.

use std::sync::{Arc, Mutex};

use scimgate_abi::{Caller, PluginError, Request, Response};
use scimgate_scim::{PatchRequest, Registry};
use scimgate_scim_service::{
    Backend, BackendError, BackendResult, BackendTx, BulkSettings, Capabilities, NewRecord,
    PasswordStorage, Record, Scan, ScimService, Settings, UniqueColumn, Visit, Visitor, Work,
};
use serde_json::{json, Value};

#[derive(Default)]
struct Memory {
    rows: Mutex<Vec<Record>>,
    /// The operations `update_by_patch` received (native PATCH), as
    /// (op, path) pairs.
    patches: Mutex<Vec<(String, String)>>,
}

struct Tx<'a>(&'a Memory);

impl Backend for Memory {
    fn capabilities(&self) -> Capabilities {
        Capabilities::MINIMAL
    }
    fn get(&self, rt: &str, id: &str) -> BackendResult<Option<Record>> {
        Tx(self).get(rt, id)
    }
    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        let rows: Vec<Record> = self.rows.lock().expect("rows").clone();
        let selected = rows
            .into_iter()
            .filter(|r| scan.resource_types.contains(&r.resource_type))
            .skip(scan.offset as usize)
            .take(scan.limit.unwrap_or(u64::MAX).min(usize::MAX as u64) as usize);
        for rec in selected {
            if visit(rec)? == Visit::Stop {
                break;
            }
        }
        Ok(())
    }
    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        work(&mut Tx(self))
    }
}

impl BackendTx for Tx<'_> {
    fn get(&mut self, rt: &str, id: &str) -> BackendResult<Option<Record>> {
        let rows = self.0.rows.lock().expect("rows");
        Ok(rows
            .iter()
            .find(|r| r.resource_type == rt && r.id == id)
            .cloned())
    }
    fn insert(&mut self, rec: &NewRecord) -> BackendResult<Record> {
        let stored = rec.stored(0, 0, rec.now.clone());
        self.0.rows.lock().expect("rows").push(stored.clone());
        Ok(stored)
    }
    fn update(&mut self, rec: &NewRecord, _expected: i64) -> BackendResult<Record> {
        let mut rows = self.0.rows.lock().expect("rows");
        let row = rows
            .iter_mut()
            .find(|r| r.resource_type == rec.resource_type && r.id == rec.id)
            .ok_or(BackendError::VersionMismatch)?;
        row.body = rec.body.clone();
        row.last_modified = rec.now.clone();
        Ok(row.clone())
    }
    fn delete(&mut self, rt: &str, id: &str, _expected: Option<i64>) -> BackendResult<bool> {
        let mut rows = self.0.rows.lock().expect("rows");
        let before = rows.len();
        rows.retain(|r| !(r.resource_type == rt && r.id == id));
        Ok(rows.len() < before)
    }
    fn taken(
        &mut self,
        rt: &str,
        column: UniqueColumn,
        value: &str,
        except: &str,
    ) -> BackendResult<bool> {
        let key = match column {
            UniqueColumn::UserName => "userName",
            UniqueColumn::DisplayName => "displayName",
        };
        let rows = self.0.rows.lock().expect("rows");
        Ok(rows.iter().any(|r| {
            r.resource_type == rt
                && r.id != except
                && r.body
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::to_lowercase)
                    .as_deref()
                    == Some(value)
        }))
    }
    fn update_by_patch(
        &mut self,
        _old: &Record,
        new: &NewRecord,
        patch: &PatchRequest,
        expected: i64,
    ) -> BackendResult<Record> {
        if let Ok(mut seen) = self.0.patches.lock() {
            seen.extend(patch.operations.iter().map(|op| {
                (
                    format!("{:?}", op.op),
                    op.path.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                )
            }));
        }
        self.update(new, expected)
    }
    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError> {
        work(self)
    }
}

fn service(settings: Settings) -> ScimService {
    service_over(settings, Arc::new(Memory::default()))
}

fn service_over(settings: Settings, backend: Arc<Memory>) -> ScimService {
    ScimService::new(settings, Registry::core(), backend)
}

fn send(service: &ScimService, req: Request) -> Result<(Response, Value), PluginError> {
    let response = service.handle(&req, Caller::ANONYMOUS)?;
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok((response, body))
}

fn post(service: &ScimService, path: &str, body: Value) -> Value {
    let req = Request::new("POST", path)
        .with_header("content-type", "application/scim+json")
        .with_body(body.to_string());
    let (response, body) = send(service, req).expect("created");
    assert_eq!(response.status, 201);
    body
}

fn user(service: &ScimService, name: &str) -> String {
    let body = post(
        service,
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name}),
    );
    body["id"].as_str().expect("id").to_string()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

#[test]
fn versions_are_derived_from_content_and_if_match_is_checked() {
    let service = service(Settings::default());
    let id = user(&service, "alice");
    let (first, _) = send(&service, Request::new("GET", &format!("/Users/{id}"))).expect("get");
    let etag = header(&first, "etag").expect("etag").to_string();
    let (again, _) = send(&service, Request::new("GET", &format!("/Users/{id}"))).expect("get");
    assert_eq!(
        header(&again, "etag"),
        Some(etag.as_str()),
        "stable for the same content"
    );
    let patch = |if_match: &str, title: &str| {
        Request::new("PATCH", &format!("/Users/{id}"))
            .with_header("if-match", if_match)
            .with_body(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "title", "value": title}]})
                .to_string(),
            )
    };
    let (changed, _) = send(&service, patch(&etag, "Boss")).expect("patched");
    let new_etag = header(&changed, "etag").expect("etag").to_string();
    assert_ne!(new_etag, etag, "a content change is a new version");
    let stale = send(&service, patch(&etag, "Dev")).expect_err("stale If-Match");
    assert_eq!(stale.status, 412);
}

#[test]
fn members_live_in_the_body_and_groups_are_derived() {
    let service = service(Settings::default());
    let alice = user(&service, "alice");
    let bob = user(&service, "bob");
    let missing = post_err(
        &service,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g", "members": [{"value": "nope"}]}),
    );
    assert_eq!(
        (missing.status, missing.code()),
        (400, Some("invalidValue"))
    );
    let group = post(
        &service,
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Admins", "members": [{"value": alice}, {"value": bob}]}),
    );
    let gid = group["id"].as_str().expect("id").to_string();
    assert_eq!(
        group["members"][0]["display"], "alice",
        "display derived from the member"
    );
    assert_eq!(group["members"][1]["type"], "User");
    let (_, shown) = send(&service, Request::new("GET", &format!("/Users/{alice}"))).expect("get");
    assert_eq!(shown["groups"][0]["value"], gid.as_str());
    assert_eq!(shown["groups"][0]["display"], "Admins");
    send(&service, Request::new("DELETE", &format!("/Users/{alice}"))).expect("deleted");
    let (_, group) = send(&service, Request::new("GET", &format!("/Groups/{gid}"))).expect("get");
    let left: Vec<&str> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    assert_eq!(left, [bob.as_str()], "the deleted user left the group");
}

fn post_err(service: &ScimService, body: Value) -> PluginError {
    let req = Request::new("POST", "/Groups").with_body(body.to_string());
    send(service, req).expect_err("refused")
}

#[test]
fn lists_filter_in_memory_page_by_offset_and_are_bounded() {
    let service = service(Settings {
        max_scan: 5,
        ..Settings::default()
    });
    for name in ["a1", "b1", "a2", "b2", "a3"] {
        user(&service, name);
    }
    let list = |query: &str| send(&service, Request::new("GET", "/Users").with_query(query));
    let (_, page) = list("filter=userName%20sw%20%22A%22&count=2&startIndex=2").expect("list");
    assert_eq!(page["totalResults"], 3);
    let names: Vec<&str> = page["Resources"]
        .as_array()
        .expect("page")
        .iter()
        .filter_map(|r| r["userName"].as_str())
        .collect();
    assert_eq!(names, ["a2", "a3"]);
    let (_, first) = list("count=2&cursor=").expect("cursor");
    let next = first["nextCursor"].as_str().expect("next").to_string();
    let (_, second) = list(&format!("count=2&cursor={next}")).expect("next page");
    assert_eq!(second["Resources"][0]["userName"], "a2");
    user(&service, "a4");
    let refused = list("filter=userName%20sw%20%22a%22").expect_err("over max_scan");
    assert_eq!((refused.status, refused.code()), (400, Some("tooMany")));
}

/// Native PATCH: the backend receives the validated operations with the
/// engine's result (and stores what it returns); PUT is a plain update.
#[test]
fn a_backend_receives_patch_operations_to_apply_natively() {
    let backend = Arc::new(Memory::default());
    let service = service_over(Settings::default(), backend.clone());
    let id = user(&service, "bjensen");
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Babs"},
                       {"op": "add", "path": "title", "value": "Tour Guide"}]});
    let req = Request::new("PATCH", &format!("/Users/{id}")).with_body(patch.to_string());
    let (response, body) = send(&service, req).expect("patched");
    assert_eq!(response.status, 200);
    assert_eq!(body["displayName"], "Babs");
    let seen = backend.patches.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].1.eq_ignore_ascii_case("displayName"), "{seen:?}");
    assert!(seen[1].1.eq_ignore_ascii_case("title"), "{seen:?}");
    // A PATCH that fails validation never reaches the backend.
    let bad = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "id", "value": "other"}]});
    let req = Request::new("PATCH", &format!("/Users/{id}")).with_body(bad.to_string());
    assert!(send(&service, req).is_err());
    assert_eq!(backend.patches.lock().unwrap().len(), 2);
    // PUT goes through `update`.
    let put =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen"});
    let req = Request::new("PUT", &format!("/Users/{id}")).with_body(put.to_string());
    assert_eq!(send(&service, req).expect("replaced").0.status, 200);
    assert_eq!(backend.patches.lock().unwrap().len(), 2);
}

/// A PATCH is committed whole or not at all: when a later operation fails,
/// the earlier ones are not stored either, so the stored row, the resource
/// a GET returns and its version (ETag) are those from before, and the
/// backend is never asked to apply anything.
#[test]
fn a_failing_patch_leaves_the_stored_resource_and_its_version() {
    let backend = Arc::new(Memory::default());
    let service = service_over(Settings::default(), backend.clone());
    let id = post(
        &service,
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen",
               "displayName": "Babs", "emails": [{"value": "b@example.com", "type": "work"}]}),
    )["id"]
        .as_str()
        .expect("id")
        .to_string();
    let get = || send(&service, Request::new("GET", &format!("/Users/{id}"))).expect("get");
    let (first, body_before) = get();
    let etag_before = header(&first, "etag").expect("etag").to_string();
    let rows_before = backend.rows.lock().unwrap().clone();
    let cases = [
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"},
                   {"op": "remove", "path": "userName"}]),
            "invalidValue",
        ),
        (
            json!([{"op": "add", "path": "title", "value": "Boss"},
                   {"op": "remove", "path": "emails[type eq \"home\"]"}]),
            "noTarget",
        ),
        (
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x@example.com"},
                   {"op": "replace", "path": "nickName", "value": "B"},
                   {"op": "replace", "path": "id", "value": "other"}]),
            "mutability",
        ),
    ];
    for (operations, code) in cases {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": operations});
        let req = Request::new("PATCH", &format!("/Users/{id}"))
            .with_header("if-match", &etag_before)
            .with_body(body.to_string());
        let error = send(&service, req).expect_err("a failing operation");
        assert_eq!(
            (error.status, error.code()),
            (400, Some(code)),
            "{operations}"
        );
        let (now, body_now) = get();
        assert_eq!(body_now, body_before, "{operations}");
        assert_eq!(
            header(&now, "etag"),
            Some(etag_before.as_str()),
            "{operations}"
        );
        assert_eq!(*backend.rows.lock().unwrap(), rows_before, "{operations}");
        assert!(backend.patches.lock().unwrap().is_empty(), "{operations}");
    }
    // The same first operations alone do change it: the checks above can fail.
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Changed"}]});
    let req = Request::new("PATCH", &format!("/Users/{id}"))
        .with_header("if-match", &etag_before)
        .with_body(body.to_string());
    let (changed, body) = send(&service, req).expect("patched");
    assert_eq!(body["displayName"], "Changed");
    assert_ne!(header(&changed, "etag"), Some(etag_before.as_str()));
    assert_ne!(*backend.rows.lock().unwrap(), rows_before);
}

/// Bulk bodies at the limits: a body of exactly `max_payload_size` bytes
/// and exactly `max_operations` operations runs, one byte or one operation
/// more is 413 and runs nothing; a body whose member names repeat ignoring
/// case is 400 `invalidSyntax` and runs nothing.
#[test]
fn bulk_bodies_at_the_size_and_operation_limits() {
    const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
    let backend = Arc::new(Memory::default());
    let settings = Settings {
        bulk: BulkSettings {
            enabled: true,
            max_operations: 2,
            max_payload_size: 600,
        },
        ..Settings::default()
    };
    let service = service_over(settings, backend.clone());
    // A body of `size` bytes with `count` operations (padded with spaces).
    let body = |count: usize, size: usize| {
        let operations: Vec<Value> = (0..count)
            .map(|i| {
                json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"),
                           "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                    "userName": format!("u{i}")}})
            })
            .collect();
        let text = json!({"schemas": [BULK], "Operations": operations}).to_string();
        assert!(text.len() <= size, "{} bytes already", text.len());
        format!("{text}{}", " ".repeat(size - text.len()))
    };
    let bulk = |text: String| send(&service, Request::new("POST", "/Bulk").with_body(text));
    let stored = || backend.rows.lock().unwrap().len();

    let error = bulk(body(2, 601)).expect_err("one byte too many");
    assert_eq!(error.status, 413, "{error:?}");
    let error = bulk(body(3, 600)).expect_err("one operation too many");
    assert_eq!(error.status, 413, "{error:?}");
    assert!(format!("{error:?}").contains("3 operations"), "{error:?}");
    let duplicate = format!(
        r#"{{"schemas": ["{BULK}"], "Operations": [{{"method": "POST", "path": "/Users", "PATH": "/Groups", "bulkId": "x", "data": {{}}}}]}}"#
    );
    let error = bulk(duplicate).expect_err("names repeat ignoring case");
    assert_eq!((error.status, error.code()), (400, Some("invalidSyntax")));
    assert_eq!(stored(), 0, "nothing ran");

    let (response, reply) = bulk(body(2, 600)).expect("at both limits");
    assert_eq!(response.status, 200, "{reply}");
    let statuses: Vec<&Value> = reply["Operations"]
        .as_array()
        .expect("Operations")
        .iter()
        .map(|op| &op["status"])
        .collect();
    assert_eq!(statuses, [&json!("201"), &json!("201")], "{reply}");
    assert_eq!(stored(), 2);
}

/// `password_storage = "backend"` with a backend that does not store
/// passwords itself: the engine hashes, never hands over the clear value.
#[test]
fn backend_password_storage_falls_back_to_hashing() {
    let backend = Arc::new(Memory::default());
    let settings = Settings {
        password_storage: PasswordStorage::Backend,
        ..Settings::default()
    };
    let service = service_over(settings, backend.clone());
    post(
        &service,
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x",
               "password": "clear-text-9"}),
    );
    let rows = backend.rows.lock().unwrap();
    let stored = rows[0].body["password"]
        .as_str()
        .expect("a password")
        .to_string();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
}
