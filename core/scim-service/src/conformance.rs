//! A differential property test any [`Backend`](crate::Backend) can run
//! against itself (cargo feature `conformance`): generated users go in
//! through the engine ([`ScimService`]), and for generated filters (every
//! operator, case folding, non-ASCII, `meta.lastModified` with offsets and
//! fractional seconds, value paths, `and`/`or`/`not`) with and without
//! `sortBy`, the ids `GET /Users?filter=…` returns over all pages (index and
//! cursor paging) must be exactly those of the users `Filter::matches`
//! accepts, in the order `scimgate_scim::sort::compare` gives. What is under
//! test is the backend's push-down: its narrowing, its claims of exactness
//! (`filter_is_exact`) and its sorting (`can_sort`).
//!
//! ```ignore
//! #[test]
//! fn my_backend_agrees_with_the_engine() {
//!     conformance::differential(|| ScimService::new(settings, registry, my_backend()),
//!         &conformance::Options::new(32));
//! }
//! ```

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use scimgate_abi::{Caller, Request};
use scimgate_scim::sort::{compare, SortOrder};
use scimgate_scim::{parse_filter, AttrPath, Registry};
use serde_json::{json, Value};

use crate::service::ScimService;

/// 2023-11-14T22:13:20.000Z: users are created at this time plus a few
/// milliseconds (a backend that keeps its own clock just ignores it).
pub const BASE_MS: i64 = 1_700_000_000_000;

/// Attributes a backend may exclude (those it cannot store): the users and
/// filters then never use them; the check itself stays the same.
pub const EXCLUDABLE: &[&str] = &[
    "externalId",
    "displayName",
    "emails",
    "emails.type",
    "active",
    "title",
    "meta.lastModified",
];

/// What [`differential`] generates.
#[derive(Debug, Clone)]
pub struct Options {
    /// Generated cases (each a fresh service from `make`).
    pub cases: u32,
    /// Attributes of [`EXCLUDABLE`] the backend does not store.
    pub exclude: Vec<&'static str>,
    /// At most this many users per case.
    pub max_users: usize,
}

impl Options {
    /// `default_cases` cases unless `SCIMGATE_PROPTEST_CASES` says otherwise;
    /// every attribute; up to 24 users.
    pub fn new(default_cases: u32) -> Options {
        let cases = std::env::var("SCIMGATE_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default_cases);
        Options {
            cases,
            exclude: Vec::new(),
            max_users: 24,
        }
    }

    /// Leaves out these attributes (names from [`EXCLUDABLE`]).
    pub fn excluding(mut self, attributes: &[&'static str]) -> Options {
        for attribute in attributes {
            assert!(
                EXCLUDABLE.contains(attribute),
                "'{attribute}' is not one of {EXCLUDABLE:?}"
            );
            self.exclude.push(attribute);
        }
        self
    }

    fn has(&self, attribute: &str) -> bool {
        let excluded = |name: &str| self.exclude.contains(&name);
        let parent_excluded = attribute == "emails.type" && excluded("emails");
        !(excluded(attribute) || parent_excluded)
    }
}

/// A generated user.
#[derive(Debug, Clone)]
pub struct User {
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub emails: Vec<(String, Option<String>)>,
    pub active: Option<bool>,
    pub title: Option<String>,
    /// Milliseconds after [`BASE_MS`] the user is created.
    pub at: i64,
}

fn pick(items: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(items).prop_map(str::to_string).boxed()
}

fn picked(items: Vec<&'static str>) -> BoxedStrategy<String> {
    prop::sample::select(items).prop_map(str::to_string).boxed()
}

const NAMES: &[&str] = &[
    "ab", "Ab", "ABC", "abc", "b", "Ba", "bab", "xa", "a.b", "Ärger", "ärger", "ΣΑΣ", "σας",
    "straße",
];
const EXTERNAL: &[&str] = &["e1", "E1", "e2", "x-1"];
const DISPLAY: &[&str] = &[
    "Ann Lee", "ann lee", "Ann  Lee", "Bob", "bob", "bob b", " Bob", "Zed", "ÄRGER", "ΣΑΣ",
    "STRASSE",
];
const EMAILS: &[&str] = &["a@x.com", "A@X.com", "b@y.org", "c@x.com", "bob@Y.org"];
const TYPES: &[&str] = &["work", "home", "Work"];
const TITLES: &[&str] = &["Boss", "boss", "Dev", "QA lead", "dev "];
/// Literals filters compare with: the pools above plus substrings.
const WORDS: &[&str] = &[
    "ab", "AB", "abc", "b", "a", "x", "x.com", "@", "Ann", "ann lee", "annlee", "BOB", "e1", "E1",
    "e2", "work", "Work", "home", "boss", "Dev", "a@x.com", "B@Y.ORG", "lead", "", "zz", "ärger",
    "ÄRGER", "σας", "ΣΑΣ", "Σ", "σ", "ss", "SS", "ß", "dev",
];

fn user(options: &Options) -> impl Strategy<Value = User> {
    let maybe = |on: bool, s: BoxedStrategy<String>| -> BoxedStrategy<Option<String>> {
        if on {
            prop::option::of(s).boxed()
        } else {
            Just(None).boxed()
        }
    };
    let types = options.has("emails.type");
    let emails = if options.has("emails") {
        prop::collection::vec(
            (
                pick(EMAILS),
                if types {
                    prop::option::of(pick(TYPES)).boxed()
                } else {
                    Just(None).boxed()
                },
            ),
            0..3,
        )
        .boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    let active = if options.has("active") {
        prop::option::of(any::<bool>()).boxed()
    } else {
        Just(None).boxed()
    };
    (
        pick(NAMES),
        0u32..1000,
        maybe(options.has("externalId"), pick(EXTERNAL)),
        maybe(options.has("displayName"), pick(DISPLAY)),
        emails,
        active,
        maybe(options.has("title"), pick(TITLES)),
        prop_oneof![Just(0i64), 0i64..3, 0i64..5000],
    )
        .prop_map(
            |(name, n, external_id, display_name, emails, active, title, at)| User {
                // Mostly distinct, sometimes equal ignoring case (a 409, skipped).
                user_name: if n % 3 == 0 {
                    name
                } else {
                    format!("{name}{n}")
                },
                external_id,
                display_name,
                emails,
                active,
                title,
                at,
            },
        )
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// A `meta.lastModified` literal near the users' times: whole, fractional
/// beyond milliseconds, or with a zone offset.
fn instant() -> impl Strategy<Value = String> {
    (prop_oneof![0i64..4, 0i64..5000], 0u32..4, 0u32..1000).prop_map(|(ms, style, extra)| {
        let at = BASE_MS + ms;
        let text = crate::timestamp(at); // 2023-11-14T22:13:20.123Z
        let (date_time, _) = text.split_at(text.len() - 1);
        match style {
            0 => text.clone(),
            1 => format!("{date_time}{extra:03}Z"),
            2 => {
                // The same instant one hour ahead, written with +01:00.
                let shifted = crate::timestamp(at + 3_600_000);
                format!("{}+01:00", &shifted[..shifted.len() - 1])
            }
            _ => format!("{}Z", &date_time[..19]),
        }
    })
}

fn leaf(options: &Options) -> BoxedStrategy<String> {
    let string_attrs: Vec<&'static str> = [
        ("userName", "userName"),
        ("externalId", "externalId"),
        ("displayName", "displayName"),
        ("title", "title"),
        ("emails", "emails.value"),
        ("emails.type", "emails.type"),
        ("emails", "emails"),
        ("userName", "USERNAME"),
        (
            "userName",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
        ),
    ]
    .into_iter()
    .filter(|(attribute, _)| options.has(attribute))
    .map(|(_, path)| path)
    .collect();
    let op = || pick(&["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]);
    let mut leaves: Vec<(u32, BoxedStrategy<String>)> = vec![
        (
            4,
            (picked(string_attrs.clone()), op(), pick(WORDS))
                .prop_map(|(a, o, v)| format!("{a} {o} {}", quoted(&v)))
                .boxed(),
        ),
        (
            1,
            picked(string_attrs).prop_map(|a| format!("{a} pr")).boxed(),
        ),
    ];
    if options.has("active") {
        leaves.push((
            1,
            (pick(&["eq", "ne"]), any::<bool>())
                .prop_map(|(o, b)| format!("active {o} {b}"))
                .boxed(),
        ));
        leaves.push((1, Just("active pr".to_string()).boxed()));
    }
    if options.has("meta.lastModified") {
        leaves.push((
            4,
            (pick(&["eq", "ne", "gt", "ge", "lt", "le"]), instant())
                .prop_map(|(o, t)| format!("meta.lastModified {o} {}", quoted(&t)))
                .boxed(),
        ));
    }
    if options.has("emails.type") {
        leaves.push((
            1,
            (pick(&["eq", "co", "sw", "ew"]), pick(TYPES), pick(WORDS))
                .prop_map(|(o, t, v)| {
                    format!(
                        "emails[type eq {} and value {o} {}]",
                        quoted(&t),
                        quoted(&v)
                    )
                })
                .boxed(),
        ));
    }
    if options.has("emails") {
        leaves.push((
            1,
            (pick(&["eq", "co", "ew"]), pick(WORDS))
                .prop_map(|(o, v)| format!("emails[value {o} {}]", quoted(&v)))
                .boxed(),
        ));
    }
    prop::strategy::Union::new_weighted(leaves).boxed()
}

fn filter(options: &Options) -> impl Strategy<Value = String> {
    // Bare leaves often: a whole filter the backend answers alone is where a
    // wrong claim of exactness shows (totals, pages).
    let nested = leaf(options).prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    });
    prop_oneof![leaf(options), nested]
}

fn sort(options: &Options) -> impl Strategy<Value = Option<(String, bool)>> {
    let paths: Vec<&'static str> = [
        ("userName", "userName"),
        ("displayName", "displayName"),
        ("meta.lastModified", "meta.lastModified"),
        ("meta.lastModified", "meta.created"),
        ("title", "title"),
        ("emails", "emails.value"),
    ]
    .into_iter()
    .filter(|(attribute, _)| options.has(attribute))
    .map(|(_, path)| path)
    .collect();
    prop::option::of((picked(paths), any::<bool>()))
}

/// Percent-encodes a query parameter value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Creates `users` through `service` (a 409 for a taken `userName` is fine).
pub fn create_users(service: &ScimService, users: &[User]) -> Result<(), String> {
    for user in users {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user.user_name,
        });
        if let Some(v) = &user.external_id {
            body["externalId"] = json!(v);
        }
        if let Some(v) = &user.display_name {
            body["displayName"] = json!(v);
        }
        if let Some(v) = user.active {
            body["active"] = json!(v);
        }
        if let Some(v) = &user.title {
            body["title"] = json!(v);
        }
        if !user.emails.is_empty() {
            let emails: Vec<Value> = user
                .emails
                .iter()
                .map(|(value, kind)| match kind {
                    Some(kind) => json!({"value": value, "type": kind}),
                    None => json!({ "value": value }),
                })
                .collect();
            body["emails"] = Value::Array(emails);
        }
        let req = Request::new("POST", "/Users")
            .with_header("content-type", "application/scim+json")
            .with_body(body.to_string())
            .with_time(BASE_MS + user.at);
        match service.handle(&req, Caller::ANONYMOUS) {
            Ok(response) if response.status == 201 => {}
            Ok(response) => return Err(format!("POST {body}: status {}", response.status)),
            Err(e) if e.status == 409 => {}
            Err(e) => return Err(format!("POST {body}: {} {}", e.status, e.message)),
        }
    }
    Ok(())
}

/// Every page of `GET /Users?{query}`, by index (`cursor = false`) or
/// cursor paging, four at a time; checks the walk ends at `totalResults`.
pub fn list_all(service: &ScimService, query: &str, cursor: bool) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut next = if cursor { Some(String::new()) } else { None };
    let mut start = 1;
    loop {
        let paging = match &next {
            Some(c) => format!("count=4&cursor={}", encode(c)),
            None => format!("count=4&startIndex={start}"),
        };
        let req = Request::new("GET", "/Users")
            .with_query(&format!("{query}&{paging}"))
            .with_time(BASE_MS + 10_000);
        let response = service
            .handle(&req, Caller::ANONYMOUS)
            .map_err(|e| format!("{} {}", e.status, e.message))?;
        let body: Value = serde_json::from_slice(&response.body)
            .map_err(|e| format!("the list is not JSON: {e}"))?;
        let page = body["Resources"].as_array().cloned().unwrap_or_default();
        let total = body["totalResults"].as_u64().ok_or("no totalResults")? as usize;
        let got = page.len();
        out.extend(page);
        let done = match &mut next {
            Some(c) => match body.get("nextCursor").and_then(Value::as_str) {
                Some(n) => {
                    *c = n.to_string();
                    false
                }
                None => true,
            },
            None => {
                start += got;
                got == 0 || out.len() >= total
            }
        };
        if done {
            if out.len() != total {
                return Err(format!(
                    "the walk returned {} resources, totalResults says {total}",
                    out.len()
                ));
            }
            return Ok(out);
        }
        if out.len() > 10_000 {
            return Err("runaway paging".into());
        }
    }
}

fn ids(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// One case: a fresh service with `users`, each of `queries` compared.
pub fn check(
    service: &ScimService,
    users: &[User],
    queries: &[(String, Option<(String, bool)>)],
) -> Result<(), String> {
    create_users(service, users)?;
    let registry = Registry::core();
    let ctx = registry
        .context_for("User")
        .map_err(|e| format!("no User type: {}", e.detail))?;
    let everyone = list_all(service, "", false)?;
    for (text, sort_by) in queries {
        let parsed = parse_filter(text).map_err(|e| format!("{text}: {}", e.detail))?;
        let mut expected: Vec<Value> = Vec::new();
        for doc in &everyone {
            if parsed
                .matches(doc, &ctx)
                .map_err(|e| format!("{text}: {}", e.detail))?
            {
                expected.push(doc.clone());
            }
        }
        let mut query = format!("filter={}", encode(text));
        if let Some((path, descending)) = sort_by {
            let path_parsed = AttrPath::parse(path).map_err(|e| e.detail)?;
            let order = if *descending {
                SortOrder::Descending
            } else {
                SortOrder::Ascending
            };
            expected.sort_by(|a, b| compare(&ctx, a, b, &path_parsed, order));
            query.push_str(&format!(
                "&sortBy={path}&sortOrder={}",
                if *descending {
                    "descending"
                } else {
                    "ascending"
                }
            ));
        }
        for cursor in [false, true] {
            let got = list_all(service, &query, cursor).map_err(|e| format!("{text}: {e}"))?;
            if ids(&got) != ids(&expected) {
                let show = |docs: &[Value]| -> Vec<String> {
                    docs.iter()
                        .map(|d| {
                            format!(
                                "{}/{}",
                                d["userName"].as_str().unwrap_or_default(),
                                d["displayName"].as_str().unwrap_or("-")
                            )
                        })
                        .collect()
                };
                return Err(format!(
                    "filter {text} sort {sort_by:?} cursor {cursor}:\n  got      {:?}\n  expected {:?}",
                    show(&got),
                    show(&expected)
                ));
            }
        }
    }
    Ok(())
}

/// Runs the differential test: `options.cases` cases, each on a fresh,
/// empty service from `make`. Panics with the (shrunk) failing case.
pub fn differential(make: impl Fn() -> ScimService, options: &Options) {
    let config = Config {
        cases: options.cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = (
        prop::collection::vec(user(options), 0..options.max_users.max(1)),
        prop::collection::vec((filter(options), sort(options)), 1..6),
    );
    let result = runner.run(&strategy, |(users, queries)| {
        let service = make();
        check(&service, &users, &queries).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("the backend disagrees with the engine's in-memory evaluation: {e}");
    }
}
