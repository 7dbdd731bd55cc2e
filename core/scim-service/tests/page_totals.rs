//! `totalResults` of a list the backend pages (an exact filter, natural
//! order): a first page with room to spare holds every match, so its length
//! is the total and the backend is not asked to count (for a point filter,
//! one query instead of two: a round trip less on a network store). A full
//! page, or any later page, still asks the backend's count.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use scimgate_abi::PluginError;
use scimgate_scim::{Filter, Registry, SchemaCtx};
use scimgate_scim_service::{
    Backend, BackendError, BackendResult, Capabilities, Record, Scan, ScimService, Settings,
    Visitor, Work,
};
use serde_json::json;
use support::{create_user, names, visit_page, Creating, Rows};

/// Users kept in memory; filters on `userName` are exact and applied here.
#[derive(Default)]
struct Counting {
    rows: Rows,
    counts: AtomicUsize,
}

impl Counting {
    fn selected(&self, scan: &Scan<'_>) -> Result<Vec<Record>, PluginError> {
        let mut out = Vec::new();
        for rec in self.rows.all() {
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
        Ok(self.rows.get(rt, id))
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
        visit_page(self.selected(scan)?, scan, visit)
    }
    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        work(&mut Creating(&self.rows))
    }
}

/// Five users, `u1` … `u5`.
fn setup() -> (ScimService, Arc<Counting>) {
    let backend = Arc::new(Counting::default());
    let service = ScimService::new(Settings::default(), Registry::core(), backend.clone());
    for n in 1..=5 {
        create_user(&service, json!({"userName": format!("u{n}")}));
    }
    (service, backend)
}

/// (userNames on the page, totalResults, how many times the backend counted).
fn list(service: &ScimService, backend: &Counting, query: &str) -> (Vec<String>, u64, usize) {
    let before = backend.counts.load(Ordering::SeqCst);
    let (names, total) = names(service, query);
    (names, total, backend.counts.load(Ordering::SeqCst) - before)
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
