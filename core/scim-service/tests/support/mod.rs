//! Shared by the engine's integration tests whose backends only need to
//! keep users: rows in memory in insertion order, handing a scan its page,
//! a unit of work that only creates, creating users through the service,
//! and reading a list page.

use std::sync::Mutex;

use scimgate_abi::{Caller, PluginError, Request};
use scimgate_scim_service::{
    BackendError, BackendResult, BackendTx, NewRecord, Record, Scan, ScimService, UniqueColumn,
    Visit, Visitor, Work,
};
use serde_json::{json, Value};

/// Stored resources, in insertion order.
#[derive(Default)]
pub struct Rows(Mutex<Vec<Record>>);

impl Rows {
    /// Every row, in insertion order.
    pub fn all(&self) -> Vec<Record> {
        self.0.lock().expect("rows").clone()
    }

    /// Keeps `rec` after the others.
    pub fn push(&self, rec: Record) {
        self.0.lock().expect("rows").push(rec);
    }

    /// The row of `rt` with `id`.
    pub fn get(&self, rt: &str, id: &str) -> Option<Record> {
        let rows = self.0.lock().expect("rows");
        rows.iter()
            .find(|r| r.resource_type == rt && r.id == id)
            .cloned()
    }
}

/// Hands `visit` the rows of `scan`'s page (its `offset` and `limit`
/// applied to `rows`, already selected and ordered) until it says stop.
pub fn visit_page(
    rows: impl IntoIterator<Item = Record>,
    scan: &Scan<'_>,
    visit: &mut Visitor<'_>,
) -> Result<(), PluginError> {
    let page = rows
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

/// A unit of work over [`Rows`] that creates; the tests write nothing else.
pub struct Creating<'a>(pub &'a Rows);

impl BackendTx for Creating<'_> {
    fn get(&mut self, rt: &str, id: &str) -> BackendResult<Option<Record>> {
        Ok(self.0.get(rt, id))
    }
    fn insert(&mut self, rec: &NewRecord) -> BackendResult<Record> {
        let stored = rec.stored(0, 0, rec.now.clone());
        self.0.push(stored.clone());
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

/// Creates a user with `attributes` (besides `schemas`) through `service`.
pub fn create_user(service: &ScimService, attributes: Value) {
    let mut body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]});
    if let (Some(body), Value::Object(attributes)) = (body.as_object_mut(), attributes) {
        body.extend(attributes);
    }
    let req = Request::new("POST", "/Users")
        .with_header("content-type", "application/scim+json")
        .with_body(body.to_string());
    let response = service.handle(&req, Caller::ANONYMOUS).expect("created");
    assert_eq!(response.status, 201);
}

/// `GET /Users?{query}`: the userNames on the page and `totalResults`.
pub fn names(service: &ScimService, query: &str) -> (Vec<String>, u64) {
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
    (names, body["totalResults"].as_u64().expect("total"))
}
