//! The change log as the engine writes it and the `/Changes` feed as it
//! serves it, over an in-memory backend that keeps a log the way the SQL
//! stores do (entries buffered per unit, appended on success, dropped with
//! a failed unit or savepoint). Members live in the group's body here
//! (`Capabilities::MINIMAL`); the SQL stores' native membership is covered
//! end to end in tests/tests/changes.rs.

use std::sync::{Arc, Mutex};

use scimgate_abi::std_types::ROption;
use scimgate_abi::{Caller, PluginError, Principal, Request, Response};
use scimgate_scim::Registry;
use scimgate_scim_service::{
    Backend, BackendError, BackendResult, BackendTx, Capabilities, Change, ChangeOp,
    ChangeSettings, NewRecord, Record, Scan, ScimService, Settings, UniqueColumn, Visit, Visitor,
    Work,
};
use serde_json::{json, Value};

#[derive(Default)]
struct Memory {
    rows: Mutex<Vec<Record>>,
    log: Mutex<Vec<Change>>,
    newest: Mutex<u64>,
}

struct Tx<'a> {
    store: &'a Memory,
    pending: Vec<Change>,
}

impl Backend for Memory {
    fn capabilities(&self) -> Capabilities {
        Capabilities::MINIMAL
    }
    fn get(&self, rt: &str, id: &str) -> BackendResult<Option<Record>> {
        let rows = self.rows.lock().expect("rows");
        Ok(rows
            .iter()
            .find(|r| r.resource_type == rt && r.id == id)
            .cloned())
    }
    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        let rows: Vec<Record> = self.rows.lock().expect("rows").clone();
        for rec in rows
            .into_iter()
            .filter(|r| scan.resource_types.contains(&r.resource_type))
        {
            if visit(rec)? == Visit::Stop {
                break;
            }
        }
        Ok(())
    }
    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        let mut tx = Tx {
            store: self,
            pending: Vec::new(),
        };
        work(&mut tx)?;
        let mut newest = self.newest.lock().expect("newest");
        let mut log = self.log.lock().expect("log");
        for mut change in tx.pending {
            *newest += 1;
            change.seq = *newest;
            log.push(change);
        }
        Ok(())
    }
    fn changes(&self, after: u64, limit: usize) -> BackendResult<Option<Vec<Change>>> {
        let log = self.log.lock().expect("log");
        Ok(Some(
            log.iter()
                .filter(|c| c.seq > after)
                .take(limit)
                .cloned()
                .collect(),
        ))
    }
    fn newest_change(&self) -> BackendResult<Option<u64>> {
        Ok(Some(*self.newest.lock().expect("newest")))
    }
    fn prune_changes(&self, before_ms: i64) -> BackendResult<u64> {
        let mut log = self.log.lock().expect("log");
        // A prefix in seq order, as the SQL stores prune.
        let keep = log
            .iter()
            .position(|c| c.at >= before_ms)
            .unwrap_or(log.len());
        log.drain(..keep);
        Ok(keep as u64)
    }
}

impl BackendTx for Tx<'_> {
    fn get(&mut self, rt: &str, id: &str) -> BackendResult<Option<Record>> {
        self.store.get(rt, id)
    }
    fn insert(&mut self, rec: &NewRecord) -> BackendResult<Record> {
        let stored = rec.stored(0, 0, rec.now.clone());
        self.store.rows.lock().expect("rows").push(stored.clone());
        Ok(stored)
    }
    fn update(&mut self, rec: &NewRecord, _expected: i64) -> BackendResult<Record> {
        let mut rows = self.store.rows.lock().expect("rows");
        let row = rows
            .iter_mut()
            .find(|r| r.resource_type == rec.resource_type && r.id == rec.id)
            .ok_or(BackendError::VersionMismatch)?;
        row.body = rec.body.clone();
        row.last_modified = rec.now.clone();
        Ok(row.clone())
    }
    fn delete(&mut self, rt: &str, id: &str, _expected: Option<i64>) -> BackendResult<bool> {
        let mut rows = self.store.rows.lock().expect("rows");
        let before = rows.len();
        rows.retain(|r| !(r.resource_type == rt && r.id == id));
        Ok(rows.len() < before)
    }
    fn taken(
        &mut self,
        rt: &str,
        col: UniqueColumn,
        value: &str,
        except: &str,
    ) -> BackendResult<bool> {
        let key = match col {
            UniqueColumn::UserName => "userName",
            UniqueColumn::DisplayName => "displayName",
        };
        let rows = self.store.rows.lock().expect("rows");
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
    fn record_change(&mut self, entry: &Change) -> BackendResult<()> {
        self.pending.push(entry.clone());
        Ok(())
    }
    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError> {
        let kept = self.pending.len();
        let result = work(self);
        if result.is_err() {
            self.pending.truncate(kept);
        }
        result
    }
}

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Fixture {
    service: ScimService,
    store: Arc<Memory>,
    principal: Principal,
}

fn fixture(changes: ChangeSettings) -> Fixture {
    let store = Arc::new(Memory::default());
    let settings = Settings {
        changes,
        ..Settings::default()
    };
    Fixture {
        service: ScimService::new(settings, Registry::core(), store.clone()),
        store,
        principal: Principal::new("iga", "sync-client", "bearer"),
    }
}

impl Fixture {
    fn send(&self, req: Request) -> Result<(Response, Value), PluginError> {
        let caller = Caller {
            principal: ROption::RSome(&self.principal),
            provider: ROption::RNone,
        };
        let response = self
            .service
            .handle(&req.with_time(1_700_000_000_000), caller)?;
        let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        Ok((response, body))
    }

    fn write(&self, method: &str, path: &str, body: Value) -> Value {
        let req = Request::new(method, path)
            .with_header("content-type", "application/scim+json")
            .with_body(body.to_string());
        let (response, body) = self.send(req).expect("write");
        assert!(
            response.status < 300,
            "{method} {path}: {}",
            response.status
        );
        body
    }

    fn feed(&self, query: &str) -> Result<Value, PluginError> {
        self.send(Request::new("GET", "/Changes").with_query(query))
            .map(|(_, body)| body)
    }

    fn log(&self) -> Vec<Change> {
        self.store.log.lock().expect("log").clone()
    }
}

/// (resourceType, resourceId, op, attributes, via) of an entry.
type Row = (String, String, &'static str, Vec<String>, Option<String>);

fn summary(log: &[Change]) -> Vec<Row> {
    log.iter()
        .map(|c| {
            (
                c.resource_type.clone(),
                c.resource_id.clone(),
                c.op.as_str(),
                c.attributes.clone(),
                c.via.clone(),
            )
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_write_is_recorded_with_its_op_attributes_and_author_never_a_secret() {
    let f = fixture(ChangeSettings::default());
    let user = f.write(
        "POST",
        "/Users",
        json!({"schemas": [USER], "userName": "alice", "password": "S3cret!pass", "title": "Dev"}),
    );
    let id = user["id"].as_str().unwrap().to_string();
    f.write(
        "PATCH",
        &format!("/Users/{id}"),
        json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "title", "value": "Lead"},
            {"op": "replace", "path": "password", "value": "N3w!secret"}]}),
    );
    f.write(
        "PUT",
        &format!("/Users/{id}"),
        json!({"schemas": [USER], "userName": "alice", "title": "Lead", "displayName": "Alice"}),
    );
    f.send(Request::new("DELETE", &format!("/Users/{id}")))
        .expect("delete");
    let log = f.log();
    assert_eq!(
        summary(&log),
        vec![
            (
                "User".into(),
                id.clone(),
                "create",
                strings(&["title", "userName"]),
                None
            ),
            (
                "User".into(),
                id.clone(),
                "patch",
                strings(&["title"]),
                None
            ),
            (
                "User".into(),
                id.clone(),
                "replace",
                strings(&["displayName"]),
                None
            ),
            ("User".into(), id.clone(), "delete", vec![], None),
        ]
    );
    assert_eq!(
        log.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    for c in &log {
        assert_eq!(c.provider_id, "iga");
        assert_eq!(c.client_id.as_deref(), Some("sync-client"));
        assert_eq!(c.at, 1_700_000_000_000);
    }
    assert!(log[0]
        .version
        .as_deref()
        .is_some_and(|v| v.starts_with("W/")));
    assert_eq!(log[3].version, None);
    let text = serde_json::to_string(&log).unwrap();
    assert!(
        !text.contains("password") && !text.contains("S3cret"),
        "{text}"
    );
}

#[test]
fn membership_changes_are_recorded_on_the_group_and_derived_on_the_users() {
    let f = fixture(ChangeSettings::default());
    let u1 = f.write(
        "POST",
        "/Users",
        json!({"schemas": [USER], "userName": "u1"}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let u2 = f.write(
        "POST",
        "/Users",
        json!({"schemas": [USER], "userName": "u2"}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let g = f.write(
        "POST",
        "/Groups",
        json!({"schemas": [GROUP], "displayName": "g", "members": [{"value": u1}]}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    f.write(
        "PATCH",
        &format!("/Groups/{g}"),
        json!({"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": u2}]},
            {"op": "remove", "path": format!("members[value eq \"{u1}\"]")}]}),
    );
    // Deleting a member changes the group it was in.
    f.send(Request::new("DELETE", &format!("/Users/{u2}")))
        .expect("delete");
    let log = f.log();
    let via = Some(g.clone());
    // The derived entries of one write come in no particular order.
    let mut got = summary(&log[2..]);
    got[3..5].sort();
    let mut u = [u1.clone(), u2.clone()];
    u.sort();
    let [first, second] = u;
    assert_eq!(
        got,
        vec![
            (
                "Group".into(),
                g.clone(),
                "create",
                strings(&["displayName", "members"]),
                None
            ),
            (
                "User".into(),
                u1.clone(),
                "patch",
                strings(&["groups"]),
                via.clone()
            ),
            (
                "Group".into(),
                g.clone(),
                "patch",
                strings(&["members"]),
                None
            ),
            (
                "User".into(),
                first,
                "patch",
                strings(&["groups"]),
                via.clone()
            ),
            (
                "User".into(),
                second,
                "patch",
                strings(&["groups"]),
                via.clone()
            ),
            ("User".into(), u2.clone(), "delete", vec![], None),
            (
                "Group".into(),
                g.clone(),
                "patch",
                strings(&["members"]),
                None
            ),
        ]
    );
}

#[test]
fn refused_and_failed_writes_leave_no_entry() {
    let f = fixture(ChangeSettings::default());
    f.write(
        "POST",
        "/Users",
        json!({"schemas": [USER], "userName": "bob"}),
    );
    let conflict = f
        .send(
            Request::new("POST", "/Users")
                .with_body(json!({"schemas": [USER], "userName": "BOB"}).to_string()),
        )
        .expect_err("409");
    assert_eq!(conflict.status, 409);
    // A Bulk request: the failing operation's entries go with its savepoint.
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"schemas": [USER], "userName": "carol"}},
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"schemas": [USER], "userName": "bob"}}]});
    f.write("POST", "/Bulk", bulk);
    let log = f.log();
    assert_eq!(log.len(), 2, "{:?}", summary(&log));
    assert_eq!(log[1].op, ChangeOp::Create);
    assert_eq!(log[1].seq, 2);
}

#[test]
fn the_feed_pages_resumes_and_refuses_bad_parameters() {
    let f = fixture(ChangeSettings::default());
    for name in ["a", "b", "c"] {
        f.write(
            "POST",
            "/Users",
            json!({"schemas": [USER], "userName": name}),
        );
    }
    let page = f.feed("since=0&count=2").expect("page");
    assert_eq!(
        page["schemas"],
        json!(["urn:scimgate:api:messages:2.0:ChangeList"])
    );
    assert_eq!(page["Resources"].as_array().unwrap().len(), 2);
    assert_eq!(page["Resources"][0]["seq"], 1);
    assert_eq!(page["Resources"][0]["op"], "create");
    assert_eq!(page["Resources"][0]["providerId"], "iga");
    assert_eq!(
        (
            page["since"].clone(),
            page["next"].clone(),
            page["newest"].clone()
        ),
        (json!(0), json!(2), json!(3))
    );
    let rest = f.feed("since=2").expect("rest");
    assert_eq!(rest["Resources"][0]["seq"], 3);
    assert_eq!(rest["next"], 3);
    let empty = f.feed("since=3").expect("caught up");
    assert_eq!(empty["Resources"], json!([]));
    assert_eq!(empty["next"], 3);
    for (query, name) in [
        ("since=-1", "since"),
        ("since=x", "since"),
        ("count=0", "count"),
        ("count=1001", "count"),
        ("wait=soon", "wait"),
        ("filter=x", "filter"),
    ] {
        let err = f.feed(query).expect_err(query);
        assert_eq!(err.status, 400, "{query}");
        assert_eq!(err.code(), Some("invalidValue"), "{query}");
        assert!(err.message.contains(name), "{query}: {}", err.message);
    }
    let post = f.send(Request::new("POST", "/Changes")).expect_err("405");
    assert_eq!(post.status, 405);
    let ahead = f.feed("since=9").expect_err("beyond the newest");
    assert_eq!(ahead.status, 410);
}

#[test]
fn pruned_positions_are_gone_not_skipped() {
    let f = fixture(ChangeSettings {
        retention_secs: 60,
        ..ChangeSettings::default()
    });
    f.write(
        "POST",
        "/Users",
        json!({"schemas": [USER], "userName": "old"}),
    );
    // Two minutes later a write prunes what is past the window.
    let later = Request::new("POST", "/Users")
        .with_body(json!({"schemas": [USER], "userName": "new"}).to_string())
        .with_time(1_700_000_120_000);
    f.service
        .handle(&later, Caller::ANONYMOUS)
        .expect("created");
    assert_eq!(f.log().len(), 1, "the old entry was pruned");
    let err = f.feed("since=0").expect_err("pruned");
    assert_eq!(err.status, 410);
    assert!(err.message.contains("resynchronise"), "{}", err.message);
    let page = f.feed("since=1").expect("still there");
    assert_eq!(page["Resources"][0]["seq"], 2);
    assert_eq!(page["Resources"][0]["providerId"], "", "anonymous writer");
}

#[test]
fn a_long_poll_returns_the_write_made_while_it_waits() {
    let f = fixture(ChangeSettings::default());
    std::thread::scope(|s| {
        let waiting = s.spawn(|| f.feed("since=0&wait=20s").expect("long poll"));
        // The write may land before or during the wait: either way the
        // poll answers with it (and without it had there been no wait).
        f.write(
            "POST",
            "/Users",
            json!({"schemas": [USER], "userName": "late"}),
        );
        let page = waiting.join().expect("join");
        assert_eq!(page["Resources"][0]["seq"], 1);
    });
}

#[test]
fn with_the_log_off_nothing_is_recorded_and_the_feed_is_404() {
    let f = fixture(ChangeSettings {
        enabled: false,
        ..ChangeSettings::default()
    });
    f.write(
        "POST",
        "/Users",
        json!({"schemas": [USER], "userName": "quiet"}),
    );
    assert!(f.log().is_empty());
    let err = f.feed("since=0").expect_err("off");
    assert_eq!(err.status, 404);
    assert!(
        err.message.contains("change_log = false"),
        "{}",
        err.message
    );
}
