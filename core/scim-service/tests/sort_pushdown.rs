//! Sort push-down (`Backend::can_sort`, `Scan::sort`): a backend that says
//! it sorts by `userName` receives the `sortBy` in its scan and the engine
//! pages from its order without sorting again (the backend here orders by
//! length on purpose, so an engine sort would show); a path it does not
//! sort by arrives without `sort` and the engine sorts in memory.

mod support;

use std::sync::{Arc, Mutex};

use scimgate_abi::PluginError;
use scimgate_scim::sort::SortOrder;
use scimgate_scim::{AttrPath, Registry, SchemaCtx};
use scimgate_scim_service::{
    Backend, BackendResult, Capabilities, Record, Scan, ScimService, Settings, Visitor, Work,
};
use serde_json::json;
use support::{create_user, names, visit_page, Creating, Rows};

/// What a scan asked for: (sort path and descending, offset, limit).
type Seen = (Option<(String, bool)>, u64, Option<u64>);

#[derive(Default)]
struct Sorting {
    rows: Rows,
    scans: Mutex<Vec<Seen>>,
}

fn name(r: &Record) -> String {
    r.body["userName"].as_str().unwrap_or_default().to_string()
}

impl Backend for Sorting {
    fn capabilities(&self) -> Capabilities {
        Capabilities::MINIMAL
    }
    fn get(&self, rt: &str, id: &str) -> BackendResult<Option<Record>> {
        Ok(self.rows.get(rt, id))
    }
    fn can_sort(&self, path: &AttrPath, _ctx: &SchemaCtx<'_>) -> bool {
        path.attr == "userName" && path.sub_attr.is_none()
    }
    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        self.scans.lock().expect("scans").push((
            scan.sort
                .map(|(p, o)| (p.to_string(), o == SortOrder::Descending)),
            scan.offset,
            scan.limit,
        ));
        let mut rows: Vec<Record> = self.rows.all();
        if let Some((_, order)) = scan.sort {
            // "Sorted" by length, then name: not the engine's order.
            rows.sort_by_key(|r| (name(r).len(), name(r)));
            if order == SortOrder::Descending {
                rows.reverse();
            }
        }
        let selected = rows
            .into_iter()
            .filter(|r| scan.resource_types.contains(&r.resource_type));
        visit_page(selected, scan, visit)
    }
    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        work(&mut Creating(&self.rows))
    }
}

fn setup() -> (ScimService, Arc<Sorting>) {
    let backend = Arc::new(Sorting::default());
    let service = ScimService::new(Settings::default(), Registry::core(), backend.clone());
    for (user_name, display) in [("zz", "a"), ("a", "c"), ("bbb", "b"), ("cccc", "d")] {
        create_user(
            &service,
            json!({"userName": user_name, "displayName": display}),
        );
    }
    backend.scans.lock().expect("scans").clear();
    (service, backend)
}

#[test]
fn a_sort_the_backend_declares_is_pushed_down_and_paged_from_its_order() {
    let (service, backend) = setup();
    // No filter (exact): the backend pages its own order by offset/limit.
    let (got, total) = names(
        &service,
        "sortBy=userName&sortOrder=descending&startIndex=2&count=2",
    );
    assert_eq!((got, total), (vec!["bbb".to_string(), "zz".into()], 4));
    let scans = backend.scans.lock().expect("scans").clone();
    assert!(
        scans.contains(&(Some(("userName".into(), true)), 1, Some(2))),
        "{scans:?}"
    );
    backend.scans.lock().expect("scans").clear();
    // An inexact filter: the engine filters the rows in the backend's order.
    let (got, total) = names(
        &service,
        "filter=displayName%20ne%20%22d%22&sortBy=userName&count=10",
    );
    assert_eq!(
        (got, total),
        (vec!["a".to_string(), "zz".into(), "bbb".into()], 3)
    );
    let scans = backend.scans.lock().expect("scans").clone();
    // (Other scans are the engine's own: the groups `User.groups` derives from.)
    assert!(
        scans.contains(&(Some(("userName".into(), false)), 0, None)),
        "{scans:?}"
    );
}

#[test]
fn a_sort_the_backend_does_not_declare_is_done_by_the_engine() {
    let (service, backend) = setup();
    let (got, _) = names(&service, "sortBy=displayName&count=10");
    assert_eq!(got, ["zz", "bbb", "a", "cccc"]);
    let scans = backend.scans.lock().expect("scans").clone();
    assert!(
        !scans.is_empty() && scans.iter().all(|s| s.0.is_none()),
        "{scans:?}"
    );
}
