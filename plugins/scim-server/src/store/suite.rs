//! The store contract as tests, written once against `&dyn Store` so that
//! every implementation (SQLite now, PostgreSQL later) runs the same suite.

use serde_json::json;

use super::{Cmp, Cond, Member, NewRecord, Scan, Store, StoreError, UniqueColumn, Visit};

/// Runs every check on an empty store.
pub fn run_all(store: &dyn Store) {
    create_get_update_delete(store);
    unique_user_names(store);
    scans_narrow_and_page_in_insertion_order(store);
    memberships_follow_deletes(store);
    failed_transactions_write_nothing(store);
    savepoints_undo_only_their_part(store);
}

pub fn new_record(id: &str, rt: &str, user_name: Option<&str>, now: &str) -> NewRecord {
    NewRecord {
        id: id.into(),
        resource_type: rt.into(),
        user_name: user_name.map(str::to_lowercase),
        external_id: None,
        display_name: None,
        emails: Vec::new(),
        now: now.into(),
        body: json!({"id": id, "userName": user_name}),
    }
}

pub fn insert_user(store: &dyn Store, id: &str, user_name: &str) {
    let rec = new_record(id, "User", Some(user_name), "2024-01-01T00:00:00.000Z");
    store
        .write(&mut |tx| tx.insert(&rec).map(|_| ()).map_err(Into::into))
        .expect("insert");
}

fn all_ids(store: &dyn Store, scan: &Scan) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .scan(scan, &mut |r| {
            ids.push(r.id);
            Ok(Visit::Continue)
        })
        .expect("scan");
    ids
}

fn users(cond: Option<Cond>) -> Scan {
    Scan {
        resource_types: vec!["User".into()],
        cond,
        ..Scan::default()
    }
}

fn create_get_update_delete(store: &dyn Store) {
    let gen0 = store.generation();
    insert_user(store, "crud-1", "Crud");
    assert!(store.generation() > gen0, "a write moves the generation");
    let got = store.get("User", "crud-1").expect("get").expect("present");
    assert_eq!(got.version, 1);
    assert_eq!(got.body["userName"], "Crud");
    assert!(
        store.get("Group", "crud-1").expect("get").is_none(),
        "typed get"
    );

    let mut rec = new_record("crud-1", "User", Some("Crud2"), "2024-01-02T00:00:00.000Z");
    rec.emails = vec!["a@example.com".into()];
    store
        .write(&mut |tx| tx.update(&rec, 1).map(|_| ()).map_err(Into::into))
        .expect("update");
    let got = store.get("User", "crud-1").expect("get").expect("present");
    assert_eq!(got.version, 2);
    assert_eq!(got.last_modified, "2024-01-02T00:00:00.000Z");
    assert_eq!(got.created, "2024-01-01T00:00:00.000Z");

    let stale = store.write(&mut |tx| match tx.update(&rec, 1) {
        Err(StoreError::VersionMismatch) => Err(scimgate_abi::PluginError::new(412, "stale")),
        other => panic!("expected a version mismatch, got {other:?}"),
    });
    assert_eq!(stale.map_err(|e| e.status), Err(412));

    let by_email = all_ids(store, &users(Some(Cond::Email("a@example.com".into()))));
    assert_eq!(by_email, vec!["crud-1"]);

    store
        .write(&mut |tx| {
            assert!(matches!(
                tx.delete("User", "crud-1", Some(7)),
                Err(StoreError::VersionMismatch)
            ));
            assert!(tx.delete("User", "crud-1", Some(2)).expect("delete"));
            assert!(!tx.delete("User", "crud-1", None).expect("delete again"));
            Ok(())
        })
        .expect("delete");
    assert!(store.get("User", "crud-1").expect("get").is_none());
    assert!(all_ids(store, &users(Some(Cond::Email("a@example.com".into())))).is_empty());
}

fn unique_user_names(store: &dyn Store) {
    insert_user(store, "uniq-1", "Same");
    let dup = new_record("uniq-2", "User", Some("SAME"), "2024-01-01T00:00:00.000Z");
    let result = store.write(&mut |tx| {
        assert!(tx
            .taken("User", UniqueColumn::UserName, "same", "uniq-2")
            .expect("taken"));
        assert!(!tx
            .taken("User", UniqueColumn::UserName, "same", "uniq-1")
            .expect("taken"));
        match tx.insert(&dup) {
            Err(StoreError::Conflict(_)) => Err(scimgate_abi::PluginError::new(409, "dup")),
            other => panic!("expected a conflict, got {other:?}"),
        }
    });
    assert_eq!(result.map_err(|e| e.status), Err(409));
    assert!(store.get("User", "uniq-2").expect("get").is_none());
    // Another resource type may reuse the name.
    let other = new_record("uniq-3", "Robot", Some("same"), "2024-01-01T00:00:00.000Z");
    store
        .write(&mut |tx| tx.insert(&other).map(|_| ()).map_err(Into::into))
        .expect("other type");
}

fn scans_narrow_and_page_in_insertion_order(store: &dyn Store) {
    for i in 0..10 {
        let mut rec = new_record(
            &format!("page-{i}"),
            "Pager",
            Some(&format!("p{i}")),
            &format!("2024-02-{:02}T00:00:00.000Z", i + 1),
        );
        rec.external_id = Some(format!("ext-{}", i % 2));
        rec.display_name = Some(format!("d{}", i % 3));
        store
            .write(&mut |tx| tx.insert(&rec).map(|_| ()).map_err(Into::into))
            .expect("insert");
    }
    let pager = |cond: Option<Cond>| Scan {
        resource_types: vec!["Pager".into()],
        cond,
        ..Scan::default()
    };
    let all = all_ids(store, &pager(None));
    assert_eq!(all.len(), 10);
    assert_eq!(all[0], "page-0");
    assert_eq!(all[9], "page-9");
    assert_eq!(store.count(&pager(None)).expect("count"), 10);

    let ext = pager(Some(Cond::ExternalId("ext-1".into())));
    assert_eq!(store.count(&ext).expect("count"), 5);
    let or = pager(Some(Cond::Or(
        Box::new(Cond::UserName("p0".into())),
        Box::new(Cond::DisplayName("d2".into())),
    )));
    assert_eq!(
        all_ids(store, &or),
        vec!["page-0", "page-2", "page-5", "page-8"]
    );
    let and = pager(Some(Cond::And(
        Box::new(Cond::ExternalId("ext-0".into())),
        Box::new(Cond::LastModified(
            Cmp::Ge,
            "2024-02-05T00:00:00.000Z".into(),
        )),
    )));
    assert_eq!(all_ids(store, &and), vec!["page-4", "page-6", "page-8"]);
    let id = pager(Some(Cond::Id("page-3".into())));
    assert_eq!(all_ids(store, &id), vec!["page-3"]);

    // Offset paging and keyset continuation agree.
    let mut first = pager(None);
    first.limit = Some(3);
    let mut seqs = Vec::new();
    store
        .scan(&first, &mut |r| {
            seqs.push(r.seq);
            Ok(Visit::Continue)
        })
        .expect("scan");
    let mut by_key = pager(None);
    by_key.after = seqs.last().copied();
    by_key.limit = Some(3);
    let mut by_offset = pager(None);
    by_offset.offset = 3;
    by_offset.limit = Some(3);
    assert_eq!(all_ids(store, &by_key), all_ids(store, &by_offset));
    assert_eq!(all_ids(store, &by_key), vec!["page-3", "page-4", "page-5"]);

    let mut backwards = pager(None);
    backwards.descending = true;
    backwards.before = Some(seqs[2]);
    assert_eq!(all_ids(store, &backwards), vec!["page-1", "page-0"]);

    // A visitor may stop early.
    let mut seen = 0;
    store
        .scan(&pager(None), &mut |_| {
            seen += 1;
            Ok(if seen == 2 {
                Visit::Stop
            } else {
                Visit::Continue
            })
        })
        .expect("scan");
    assert_eq!(seen, 2);
}

fn memberships_follow_deletes(store: &dyn Store) {
    insert_user(store, "m-u1", "member1");
    insert_user(store, "m-u2", "member2");
    let group = new_record("m-g1", "Group", None, "2024-01-01T00:00:00.000Z");
    store
        .write(&mut |tx| {
            tx.insert(&group)?;
            tx.set_members(
                "m-g1",
                &[
                    Member {
                        id: "m-u2".into(),
                        member_type: "User".into(),
                        display: Some("Two".into()),
                    },
                    Member {
                        id: "m-u1".into(),
                        member_type: "User".into(),
                        display: None,
                    },
                ],
            )?;
            Ok(())
        })
        .expect("group");
    let members = store.members("m-g1").expect("members");
    let ids: Vec<_> = members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["m-u2", "m-u1"], "member order is kept");
    assert!(members[0].body.is_some());
    assert_eq!(members[0].display.as_deref(), Some("Two"));
    assert_eq!(members[1].display, None);
    let groups = store.groups_of("m-u1").expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].id, "m-g1");

    store
        .write(&mut |tx| {
            assert_eq!(tx.group_ids_of("m-u1")?, vec!["m-g1".to_string()]);
            tx.touch(&["m-g1".to_string()], "2024-03-01T00:00:00.000Z")?;
            tx.delete("User", "m-u1", None)?;
            Ok(())
        })
        .expect("delete member");
    let ids: Vec<_> = store
        .members("m-g1")
        .expect("members")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec!["m-u2"]);
    let g = store.get("Group", "m-g1").expect("get").expect("group");
    assert_eq!(g.version, 2, "touch bumps the version");
    assert_eq!(g.last_modified, "2024-03-01T00:00:00.000Z");

    store
        .write(&mut |tx| {
            tx.delete("Group", "m-g1", None)
                .map(|_| ())
                .map_err(Into::into)
        })
        .expect("delete group");
    assert!(store.groups_of("m-u2").expect("groups").is_empty());
}

fn failed_transactions_write_nothing(store: &dyn Store) {
    let rec = new_record("tx-1", "User", Some("tx-one"), "2024-01-01T00:00:00.000Z");
    let result = store.write(&mut |tx| {
        tx.insert(&rec)?;
        Err(scimgate_abi::PluginError::new(400, "abort"))
    });
    assert!(result.is_err());
    assert!(store.get("User", "tx-1").expect("get").is_none());
}

fn savepoints_undo_only_their_part(store: &dyn Store) {
    let kept = new_record("sp-1", "User", Some("sp-one"), "2024-01-01T00:00:00.000Z");
    let undone = new_record("sp-2", "User", Some("sp-two"), "2024-01-01T00:00:00.000Z");
    store
        .write(&mut |tx| {
            tx.savepoint(&mut |tx| tx.insert(&kept).map(|_| ()).map_err(Into::into))?;
            let failed = tx.savepoint(&mut |tx| {
                tx.insert(&undone)?;
                Err(scimgate_abi::PluginError::new(400, "no"))
            });
            assert!(failed.is_err());
            Ok(())
        })
        .expect("outer");
    assert!(store.get("User", "sp-1").expect("get").is_some());
    assert!(store.get("User", "sp-2").expect("get").is_none());
}
