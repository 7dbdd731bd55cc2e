//! The LDAP backend against a real OpenLDAP slapd (started by
//! `tests/ldap-server`, found through `SCIMGATE_TEST_LDAP_*`): writes,
//! reads, renames, memberships, filter pushdown, paging over 1,000 entries,
//! TLS (ldaps:// and StartTLS with the test CA) and an unreachable
//! directory. Without `SCIMGATE_TEST_LDAP_URL` every test prints a loud
//! `SKIPPED:` line (and fails under `CI=true`).

mod common;

use std::time::{Duration, Instant};

use common::{available, config, env};
use ldap::config::Span;
use ldap::{LdapBackend, LdapConfig};
use scimgate_scim::{parse_filter, Registry};
use scimgate_scim_service::{
    Backend, BackendError, Member, NewRecord, Record, Scan, UniqueColumn, Visit,
};
use serde_json::{json, Value};

fn new_record(resource_type: &str, id: &str, body: Value) -> NewRecord {
    NewRecord {
        id: id.to_string(),
        resource_type: resource_type.to_string(),
        user_name: None,
        external_id: None,
        display_name: None,
        emails: Vec::new(),
        now: "2026-01-01T00:00:00.000Z".into(),
        body,
    }
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn insert(backend: &LdapBackend, record: NewRecord) -> Result<Record, BackendError> {
    let mut out = None;
    let mut error = None;
    backend
        .write(&mut |tx| {
            match tx.insert(&record) {
                Ok(r) => out = Some(r),
                Err(e) => error = Some(e),
            }
            Ok(())
        })
        .expect("unit of work");
    match error {
        Some(e) => Err(e),
        None => Ok(out.expect("a record")),
    }
}

fn scan(
    backend: &LdapBackend,
    resource_type: &str,
    filter: Option<&str>,
    offset: u64,
    limit: Option<u64>,
) -> Vec<Record> {
    let registry = Registry::core();
    let ctx = registry.context_for(resource_type).expect("ctx");
    let parsed = filter.map(|f| parse_filter(f).expect("filter"));
    let mut out = Vec::new();
    backend
        .scan(
            &Scan {
                resource_types: vec![resource_type.to_string()],
                filter: parsed.as_ref().map(|f| (f, &ctx)),
                offset,
                limit,
                ..Scan::default()
            },
            &mut |r| {
                out.push(r);
                Ok(Visit::Continue)
            },
        )
        .expect("scan");
    out
}

#[test]
fn users_are_written_read_renamed_and_deleted_with_a_stable_id() {
    if !available() {
        return;
    }
    let backend = LdapBackend::new(&config("crud")).expect("backend");
    backend.ready().expect("ready");
    let id = uuid(1);
    let stored = insert(
        &backend,
        new_record(
            "User",
            &id,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen",
                   "name": {"givenName": "Barbara", "familyName": "Jensen"},
                   "emails": [{"value": "bjensen@example.com", "type": "work"}],
                   "password": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}),
        ),
    )
    .expect("inserted");
    assert_eq!(stored.id, id, "the engine's id is the entryUUID");
    assert_eq!(stored.body["userName"], "bjensen");
    assert_eq!(stored.body["name"]["familyName"], "Jensen");
    assert!(stored.body.get("password").is_none(), "never read back");
    assert!(
        stored.created.ends_with('Z') && stored.created.len() == 24,
        "{}",
        stored.created
    );

    // Same userName again: the directory says the entry exists → Conflict.
    let again = insert(
        &backend,
        new_record("User", &uuid(2), json!({"userName": "BJensen"})),
    );
    assert!(matches!(again, Err(BackendError::Conflict(_))), "{again:?}");
    // A mail that is not IA5: the directory refuses the syntax → Invalid.
    let bad = insert(
        &backend,
        new_record(
            "User",
            &uuid(3),
            json!({"userName": "x", "emails": [{"value": "é@example.com"}]}),
        ),
    );
    assert!(
        matches!(bad, Err(BackendError::Invalid(_, "invalidValue"))),
        "{bad:?}"
    );

    // Rename (new uid): same id, new DN, old attributes replaced.
    backend
        .write(&mut |tx| {
            let updated = tx
                .update(
                    &new_record("User", &id, json!({"userName": "babs", "title": "Boss"})),
                    0,
                )
                .map_err(scimgate_abi::PluginError::from)?;
            assert_eq!(updated.id, id);
            assert_eq!(updated.body["userName"], "babs");
            assert_eq!(updated.body["title"], "Boss");
            assert!(updated.body.get("name").is_none(), "{}", updated.body);
            assert!(updated.body.get("emails").is_none());
            assert!(tx
                .taken("User", UniqueColumn::UserName, "BABS", "other")
                .expect("taken"));
            assert!(!tx
                .taken("User", UniqueColumn::UserName, "babs", &id)
                .expect("taken"));
            Ok(())
        })
        .expect("updated");
    assert_eq!(
        backend.get("User", &id).expect("get").expect("found").body["userName"],
        "babs"
    );
    backend
        .write(&mut |tx| {
            assert!(tx.delete("User", &id, None).expect("deleted"));
            assert!(!tx.delete("User", &id, None).expect("absent"));
            Ok(())
        })
        .expect("deleted");
    assert!(backend.get("User", &id).expect("get").is_none());
    assert!(backend.get("User", "not-a-uuid").expect("get").is_none());
}

#[test]
fn groups_keep_member_dns_and_an_empty_group_holds_the_hidden_placeholder() {
    if !available() {
        return;
    }
    let backend = LdapBackend::new(&config("groups")).expect("backend");
    let (alice, bob, team, outer) = (uuid(11), uuid(12), uuid(13), uuid(14));
    insert(
        &backend,
        new_record("User", &alice, json!({"userName": "alice"})),
    )
    .expect("alice");
    insert(
        &backend,
        new_record("User", &bob, json!({"userName": "bob"})),
    )
    .expect("bob");
    insert(
        &backend,
        new_record("Group", &team, json!({"displayName": "Team"})),
    )
    .expect("team");
    insert(
        &backend,
        new_record("Group", &outer, json!({"displayName": "Outer"})),
    )
    .expect("outer");
    let member = |id: &str, t: &str| Member {
        id: id.into(),
        member_type: t.into(),
        display: None,
    };
    backend
        .write(&mut |tx| {
            assert!(
                tx.members(&team).expect("members").is_empty(),
                "the placeholder is hidden"
            );
            tx.set_members(&team, &[member(&alice, "User"), member(&bob, "User")])
                .expect("set");
            tx.set_members(&outer, &[member(&team, "Group")])
                .expect("set");
            let mut ids: Vec<String> = tx
                .members(&team)
                .expect("members")
                .into_iter()
                .map(|m| m.id)
                .collect();
            ids.sort();
            assert_eq!(ids, vec![alice.clone(), bob.clone()]);
            assert_eq!(tx.group_ids_of(&team).expect("groups"), vec![outer.clone()]);
            // Rename a member: the group follows the new DN.
            tx.update(
                &new_record("User", &alice, json!({"userName": "alice2"})),
                0,
            )
            .expect("renamed");
            // Delete a member: it leaves the group.
            assert!(tx.delete("User", &bob, None).expect("deleted"));
            let members = tx.members(&team).expect("members");
            assert_eq!(members.len(), 1);
            assert_eq!(members[0].id, alice);
            // Deleting the last member leaves the placeholder, hidden again.
            assert!(tx.delete("User", &alice, None).expect("deleted"));
            assert!(tx.members(&team).expect("members").is_empty());
            Ok(())
        })
        .expect("unit of work");
    let views = backend.members("Group", &outer).expect("members");
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].member_type, "Group");
    assert_eq!(views[0].body.as_ref().expect("body")["displayName"], "Team");
    let of = backend.groups_of(&team).expect("groups_of");
    assert_eq!(of.len(), 1);
    assert_eq!(of[0].body["displayName"], "Outer");
}

#[test]
fn filters_are_pushed_down_and_supersets_are_marked_inexact() {
    if !available() {
        return;
    }
    let backend = LdapBackend::new(&config("filters")).expect("backend");
    for (i, (name, title)) in [("ann", "Chef"), ("anna", "Cook (sous)"), ("bert", "chef*")]
        .iter()
        .enumerate()
    {
        insert(
            &backend,
            new_record(
                "User",
                &uuid(20 + i as u32),
                json!({"userName": name, "title": title}),
            ),
        )
        .expect("user");
    }
    let names = |f: &str| -> Vec<String> {
        let mut out: Vec<String> = scan(&backend, "User", Some(f), 0, None)
            .into_iter()
            .map(|r| r.body["userName"].as_str().unwrap_or_default().to_string())
            .collect();
        out.sort();
        out
    };
    assert_eq!(names(r#"userName eq "ANN""#), vec!["ann"]);
    assert_eq!(names(r#"userName sw "ann""#), vec!["ann", "anna"]);
    assert_eq!(names(r#"title co "(sous)""#), vec!["anna"]);
    assert_eq!(names(r#"title eq "chef*""#), vec!["bert"], "'*' is escaped");
    assert_eq!(
        names(r#"userName eq "ann" or userName eq "bert""#),
        vec!["ann", "bert"]
    );
    assert_eq!(names(r#"not (title pr)"#), Vec::<String>::new());
    assert_eq!(names("active eq false"), Vec::<String>::new());
    // Unmapped: every user comes back (a superset), and it says so.
    assert_eq!(names(r#"nickName eq "x""#).len(), 3);
    let registry = Registry::core();
    let ctx = registry.context_for("User").expect("ctx");
    assert!(backend.filter_is_exact(&parse_filter(r#"userName co "a""#).expect("f"), &ctx));
    // LDAP ignores the stored value's leading/trailing spaces: a superset.
    assert!(!backend.filter_is_exact(&parse_filter(r#"userName eq "a""#).expect("f"), &ctx));
    assert!(!backend.filter_is_exact(&parse_filter(r#"nickName eq "a""#).expect("f"), &ctx));
    let count = backend
        .count(&Scan {
            resource_types: vec!["User".into()],
            filter: Some((&parse_filter(r#"userName sw "ann""#).expect("f"), &ctx)),
            ..Scan::default()
        })
        .expect("count");
    assert_eq!(count, Some(2));
}

#[test]
fn paging_over_a_thousand_users_walks_each_once() {
    if !available() {
        return;
    }
    let mut cfg = config("paging");
    cfg.page_size = 100;
    let backend = LdapBackend::new(&cfg).expect("backend");
    let started = Instant::now();
    backend
        .write(&mut |tx| {
            for i in 0..1000u32 {
                tx.insert(&new_record(
                    "User",
                    &uuid(1000 + i),
                    json!({"userName": format!("user{i:04}")}),
                ))
                .map_err(scimgate_abi::PluginError::from)?;
            }
            Ok(())
        })
        .expect("filled");
    println!("inserted 1000 users in {:?}", started.elapsed());
    let mut seen = std::collections::HashSet::new();
    let mut timings = Vec::new();
    for page in 0..20u64 {
        let t = Instant::now();
        let rows = scan(&backend, "User", None, page * 50, Some(50));
        timings.push(t.elapsed());
        assert_eq!(rows.len(), 50, "page {page}");
        for row in rows {
            assert!(seen.insert(row.id), "each user once");
        }
    }
    assert_eq!(seen.len(), 1000);
    assert!(scan(&backend, "User", None, 1000, Some(50)).is_empty());
    // A jump (no continuation) still lands on the right rows.
    let jump = scan(&backend, "User", None, 990, Some(50));
    assert_eq!(jump.len(), 10);
    println!(
        "first page {:?}, last page {:?} (sequential startIndex pages continue the paged search)",
        timings[0],
        timings[timings.len() - 1]
    );
    let all = backend
        .count(&Scan {
            resource_types: vec!["User".into()],
            ..Scan::default()
        })
        .expect("count");
    assert_eq!(all, Some(1000));
}

#[test]
fn ldaps_and_starttls_verify_the_server_with_the_ca_file() {
    if !available() {
        return;
    }
    let base = config("tls");
    let ldaps = LdapConfig {
        url: env("SCIMGATE_TEST_LDAPS_URL"),
        ca_file: Some(env("SCIMGATE_TEST_LDAP_CA")),
        ..base.clone()
    };
    LdapBackend::new(&ldaps)
        .expect("backend")
        .ready()
        .expect("ldaps with the CA");
    let starttls = LdapConfig {
        starttls: true,
        ca_file: Some(env("SCIMGATE_TEST_LDAP_CA")),
        ..base.clone()
    };
    let backend = LdapBackend::new(&starttls).expect("backend");
    backend.ready().expect("StartTLS with the CA");
    insert(
        &backend,
        new_record("User", &uuid(40), json!({"userName": "tls"})),
    )
    .expect("write over TLS");
    // Without the CA (system roots) the self-signed server is refused.
    let untrusted = LdapConfig {
        url: env("SCIMGATE_TEST_LDAPS_URL"),
        ..base
    };
    let err = LdapBackend::new(&untrusted)
        .expect("backend")
        .ready()
        .expect_err("untrusted");
    assert!(err.contains("unavailable"), "{err}");
}

#[test]
fn an_unreachable_directory_is_unavailable_not_an_internal_error() {
    if !available() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let cfg = LdapConfig {
        url: format!("ldap://127.0.0.1:{port}"),
        connect_timeout: Span(Duration::from_secs(2)),
        ..config("down")
    };
    let backend = LdapBackend::new(&cfg).expect("backend");
    assert!(backend.ready().is_err());
    let err = backend.get("User", &uuid(1)).expect_err("down");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    let wrong_password = LdapConfig {
        bind_password: "wrong".into(),
        ..config("badbind")
    };
    let err = LdapBackend::new(&wrong_password)
        .expect("backend")
        .get("User", &uuid(1))
        .expect_err("refused");
    assert!(
        matches!(&err, BackendError::Unavailable(m) if m.contains("invalidCredentials")),
        "{err:?}"
    );
}
