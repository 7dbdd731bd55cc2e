//! `totalResults` of a list the backend pages (an exact filter, natural
//! order): a first page with room to spare holds every match, so its length
//! is the total and the backend is not asked to count (for a point filter,
//! one query instead of two: a round trip less on a network store). A full
//! page, or any later page, still asks the backend's count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use scimgate_abi::{Caller, PluginError, Request};
use scimgate_scim::{Filter, Registry, SchemaCtx};
use scimgate_scim_service::{
    Backend, BackendError, BackendResult, BackendTx, Capabilities, NewRecord, Record, Scan,
    ScimService, Settings, UniqueColumn, Visit, Visitor, Work,
};
use serde_json::{json, Value};

/// Users kept in memory; filters on `userName` are exact and applied here.
#[derive(Default)]
struct Counting {
    rows: Mutex<Vec<Record>>,
    counts: AtomicUsize,
}

impl Counting {
    fn selected(&self, scan: &Scan<'_>) -> Result<Vec<Record>, PluginError> {
        let rows = self.rows.lock().expect("rows").clone();
        let mut out = Vec::new();
        for rec in rows {
            if !scan.resource_types.contains(&rec.resource_type) {
                continue;
            }
            if let Some((filter, ctx)) = scan.filter {
                let matched = filter
                    .matches(&rec.body, ctx)
                    .map_err(|e| PluginError::internal(e.detail))?;
                if !matched {
                    continue;
                }
            }
            out.push(rec);
        }
        Ok(out)
    }
}

impl Backend for Counting {
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
    fn filter_is_exact(&self, filter: &Filter, _ctx: &SchemaCtx<'_>) -> bool {
        matches!(filter, Filter::Compare { path, .. } if path.attr == "userName")
    }
    fn count(&self, scan: &Scan<'_>) -> BackendResult<Option<u64>> {
        self.counts.fetch_add(1, Ordering::SeqCst);
        let n = self
            .selected(scan)
            .map_err(|e| BackendError::Backend(e.message.to_string()))?
            .len();
        Ok(Some(n as u64))
    }
    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        let page = self
            .selected(scan)?
            .into_iter()
            .skip(scan.offset as usize)
            .take(scan.limit.unwrap_or(u64::MAX).min(usize::MAX as u64) as usize);
        for rec in page {
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

struct Tx<'a>(&'a Counting);

impl BackendTx for Tx<'_> {
    fn get(&mut self, rt: &str, id: &str) -> BackendResult<Option<Record>> {
        self.0.get(rt, id)
    }
    fn insert(&mut self, rec: &NewRecord) -> BackendResult<Record> {
        let stored = Record {
            id: rec.id.clone(),
            resource_type: rec.resource_type.clone(),
            seq: 0,
            version: 0,
            created: rec.now.clone(),
            last_modified: rec.now.clone(),
            body: rec.body.clone(),
        };
        self.0.rows.lock().expect("rows").push(stored.clone());
        Ok(stored)
    }
    fn update(&mut self, _rec: &NewRecord, _expected: i64) -> BackendResult<Record> {
        Err(BackendError::Backend("not in this test".into()))
    }
    fn delete(&mut self, _rt: &str, _id: &str, _expected: Option<i64>) -> BackendResult<bool> {
        Ok(false)
    }
    fn taken(&mut self, _: &str, _: UniqueColumn, _: &str, _: &str) -> BackendResult<bool> {
        Ok(false)
    }
    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError> {
        work(self)
    }
}

/// Five users, `u1` … `u5`.
fn setup() -> (ScimService, Arc<Counting>) {
    let backend = Arc::new(Counting::default());
    let service = ScimService::new(Settings::default(), Registry::core(), backend.clone());
    for n in 1..=5 {
        let req = Request::new("POST", "/Users")
            .with_header("content-type", "application/scim+json")
            .with_body(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("u{n}")})
                .to_string(),
            );
        let response = service.handle(&req, Caller::ANONYMOUS).expect("created");
        assert_eq!(response.status, 201);
    }
    (service, backend)
}

/// (userNames on the page, totalResults, how many times the backend counted).
fn list(service: &ScimService, backend: &Counting, query: &str) -> (Vec<String>, u64, usize) {
    let before = backend.counts.load(Ordering::SeqCst);
    let req = Request::new("GET", "/Users").with_query(query);
    let response = service.handle(&req, Caller::ANONYMOUS).expect("list");
    assert_eq!(response.status, 200);
    let body: Value = serde_json::from_slice(&response.body).expect("JSON");
    let names = body["Resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["userName"].as_str().unwrap_or_default().to_string())
        .collect();
    let counted = backend.counts.load(Ordering::SeqCst) - before;
    (
        names,
        body["totalResults"].as_u64().expect("total"),
        counted,
    )
}

#[test]
fn a_first_page_with_room_to_spare_is_its_own_total() {
    let (service, backend) = setup();
    // A point filter: one match, no count.
    assert_eq!(
        list(&service, &backend, "filter=userName%20eq%20%22u3%22"),
        (vec!["u3".to_string()], 1, 0)
    );
    // No match at all: an empty first page, total 0, no count.
    assert_eq!(
        list(&service, &backend, "filter=userName%20eq%20%22nobody%22"),
        (vec![], 0, 0)
    );
    // Every user on a page of ten.
    let (names, total, counted) = list(&service, &backend, "count=10");
    assert_eq!((names.len(), total, counted), (5, 5, 0));
}

#[test]
fn a_full_or_later_page_asks_the_backend_to_count() {
    let (service, backend) = setup();
    // A full page may have more behind it.
    let (names, total, counted) = list(&service, &backend, "count=2");
    assert_eq!(
        (names, total, counted),
        (vec!["u1".into(), "u2".into()], 5, 1)
    );
    // Exactly as many as fit: the page cannot tell, the count does.
    let (names, total, counted) = list(&service, &backend, "count=5");
    assert_eq!((names.len(), total, counted), (5, 5, 1));
    // A later page with room to spare still does not know what came before.
    let (names, total, counted) = list(&service, &backend, "startIndex=4&count=10");
    assert_eq!(
        (names, total, counted),
        (vec!["u4".into(), "u5".into()], 5, 1)
    );
    // `count=0`: the total only.
    let (names, total, counted) = list(&service, &backend, "count=0");
    assert_eq!((names.len(), total, counted), (0, 5, 1));
}
