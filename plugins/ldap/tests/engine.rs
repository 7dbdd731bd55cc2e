//! The SCIM engine (`ScimService`) over the LDAP backend on a real slapd
//! (`tests/ldap-server`, found through `SCIMGATE_TEST_LDAP_*`), for what
//! only shows through the engine: list pages render `User.groups` from one
//! batched `groups_of_many` per page (and exactly each user's groups), and
//! `userName` uniqueness follows SCIM's case folding (`to_lowercase`), not
//! the directory's. SKIPPED without `SCIMGATE_TEST_LDAP_URL`, a failure
//! under `CI=true`.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{available, config};
use ldap::LdapBackend;
use scimgate_abi::{Caller, PluginError, Request};
use scimgate_scim::{AttrPath, Filter, Registry, SchemaCtx};
use scimgate_scim_service::{
    Backend, BackendResult, Capabilities, GroupRef, MemberView, Record, Scan, ScimService, Visitor,
    Work,
};
use serde_json::{json, Value};

/// The LDAP backend, counting the membership reads the engine makes.
struct Counting {
    inner: LdapBackend,
    single: AtomicUsize,
    batched: AtomicUsize,
}

impl Backend for Counting {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn get(&self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        self.inner.get(resource_type, id)
    }
    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        self.inner.scan(scan, visit)
    }
    fn filter_is_exact(&self, filter: &Filter, ctx: &SchemaCtx<'_>) -> bool {
        self.inner.filter_is_exact(filter, ctx)
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
        self.single.fetch_add(1, Ordering::Relaxed);
        self.inner.groups_of(member_id)
    }
    fn groups_of_many(&self, member_ids: &[&str]) -> BackendResult<HashMap<String, Vec<GroupRef>>> {
        self.batched.fetch_add(1, Ordering::Relaxed);
        self.inner.groups_of_many(member_ids)
    }
    fn stores_passwords(&self) -> bool {
        self.inner.stores_passwords()
    }
    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        self.inner.write(work)
    }
}

fn service(tag: &str) -> (ScimService, Arc<Counting>) {
    let config = config(tag);
    let backend = Arc::new(Counting {
        inner: LdapBackend::new(&config).expect("backend"),
        single: AtomicUsize::new(0),
        batched: AtomicUsize::new(0),
    });
    let service = ScimService::new(config.settings(), Registry::core(), backend.clone());
    (service, backend)
}

/// (status, body) of a request; an engine error becomes its status.
fn call(
    service: &ScimService,
    method: &str,
    path: &str,
    query: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = Request::new(method, path).with_query(query);
    if let Some(body) = body {
        req = req
            .with_header("content-type", "application/scim+json")
            .with_body(body.to_string());
    }
    match service.handle(&req, Caller::ANONYMOUS) {
        Ok(response) => (
            response.status,
            serde_json::from_slice(&response.body).unwrap_or(Value::Null),
        ),
        Err(e) => (e.status, json!({ "detail": e.message })),
    }
}

fn create(service: &ScimService, path: &str, body: Value) -> String {
    let (status, created) = call(service, "POST", path, "", Some(body.clone()));
    assert_eq!(status, 201, "POST {path} {body}: {created}");
    created["id"].as_str().expect("id").to_string()
}

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"familyName": name, "givenName": name},
    })
}

fn group(name: &str, members: &[&String]) -> Value {
    let members: Vec<Value> = members.iter().map(|id| json!({ "value": id })).collect();
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
        "members": members,
    })
}

/// userName → the set of (group id, display) in its `groups`.
fn groups_by_user(list: &Value) -> HashMap<String, BTreeSet<(String, String)>> {
    list["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(|u| {
            let groups = u["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| {
                    (
                        g["value"].as_str().unwrap_or_default().to_string(),
                        g["display"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (
                u["userName"].as_str().unwrap_or_default().to_string(),
                groups,
            )
        })
        .collect()
}

#[test]
fn a_list_page_shows_each_users_groups_exactly_from_one_batched_read() {
    if !available() {
        return;
    }
    let (service, counts) = service("batch");
    let names = ["ann", "bob", "cy, jr.", "dee", "eve"];
    let ids: Vec<String> = names
        .iter()
        .map(|n| create(&service, "/Users", user(n)))
        .collect();
    let (ann, bob, cy, dee) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    let staff = create(&service, "/Groups", group("staff", &[ann, bob, cy]));
    let admins = create(&service, "/Groups", group("admins", &[ann, cy]));
    let ops = create(&service, "/Groups", group("ops", &[ann, dee]));
    // A group inside a group: Users list direct memberships only.
    let all = create(&service, "/Groups", group("all", &[&staff]));
    let g = |id: &String, name: &str| (id.clone(), name.to_string());
    let expected: HashMap<String, BTreeSet<(String, String)>> = [
        (
            "ann",
            vec![g(&staff, "staff"), g(&admins, "admins"), g(&ops, "ops")],
        ),
        ("bob", vec![g(&staff, "staff")]),
        ("cy, jr.", vec![g(&staff, "staff"), g(&admins, "admins")]),
        ("dee", vec![g(&ops, "ops")]),
        ("eve", vec![]),
    ]
    .into_iter()
    .map(|(n, gs)| (n.to_string(), gs.into_iter().collect()))
    .collect();

    let (single, batched) = (
        counts.single.load(Ordering::Relaxed),
        counts.batched.load(Ordering::Relaxed),
    );
    let (status, list) = call(&service, "GET", "/Users", "count=10", None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(groups_by_user(&list), expected, "{list}");
    assert_eq!(
        counts.single.load(Ordering::Relaxed),
        single,
        "no per-user groups_of on a page"
    );
    assert_eq!(
        counts.batched.load(Ordering::Relaxed),
        batched + 1,
        "one batch per page"
    );

    // Sorted in memory, and a filter on the derived groups: same answers.
    let (status, sorted) = call(
        &service,
        "GET",
        "/Users",
        "sortBy=userName&sortOrder=descending",
        None,
    );
    assert_eq!(status, 200, "{sorted}");
    assert_eq!(groups_by_user(&sorted), expected, "{sorted}");
    let query = format!("filter=groups.value eq \"{admins}\"");
    let (status, filtered) = call(&service, "GET", "/Users", &query, None);
    assert_eq!(status, 200, "{filtered}");
    let found: BTreeSet<String> = groups_by_user(&filtered).into_keys().collect();
    assert_eq!(
        found,
        ["ann", "cy, jr."].into_iter().map(String::from).collect()
    );

    // A single GET still asks per resource, and agrees.
    let (status, one) = call(&service, "GET", &format!("/Users/{ann}"), "", None);
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["groups"].as_array().map(Vec::len), Some(3), "{one}");

    // Groups render their members; the nested group is a member of `all`.
    let (status, listed) = call(&service, "GET", &format!("/Groups/{all}"), "", None);
    assert_eq!(status, 200);
    assert_eq!(listed["members"][0]["value"], json!(staff));
}

#[test]
fn user_names_equal_under_scim_lower_casing_conflict_whatever_the_directory_folds() {
    if !available() {
        return;
    }
    let (service, _) = service("fold");
    let sigma = create(&service, "/Users", user("ΣΑΣ"));
    // "ΣΑΣ".to_lowercase() == "σας" (final sigma): the same userName.
    let (status, body) = call(&service, "POST", "/Users", "", Some(user("σας")));
    assert_eq!(status, 409, "σας after ΣΑΣ: {body}");
    // Mixed ASCII and non-ASCII (the substring path), and pure ASCII.
    create(&service, "/Users", user("Ünal.Smith"));
    let (status, body) = call(&service, "POST", "/Users", "", Some(user("ünal.smith")));
    assert_eq!(status, 409, "ünal.smith after Ünal.Smith: {body}");
    create(&service, "/Users", user("Alice"));
    let (status, body) = call(&service, "POST", "/Users", "", Some(user("ALICE")));
    assert_eq!(status, 409, "ALICE after Alice: {body}");
    // A different name is free, and a resource never conflicts with itself.
    create(&service, "/Users", user("Ünal.Smyth"));
    let (status, body) = call(
        &service,
        "PUT",
        &format!("/Users/{sigma}"),
        "",
        Some(user("ΣΑΣ")),
    );
    assert_eq!(status, 200, "PUT ΣΑΣ onto itself: {body}");
}
