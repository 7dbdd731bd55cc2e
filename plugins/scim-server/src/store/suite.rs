//! The store contract as tests, written once against `&dyn SqlStore` so that
//! every implementation (SQLite, PostgreSQL) runs the same suite, plus the
//! throwaway PostgreSQL database the PostgreSQL runs use and a throwaway
//! directory for SQLite files.

use std::io::Write;

use serde_json::json;

use scimgate_changes::{Position, PositionStore, State};

use super::postgres::{PgSettings, Secret};
use super::{
    BackendError, Change, ChangeOp, Cmp, Cond, Member, NewRecord, SqlScan, SqlStore, UniqueColumn,
    Visit,
};

/// The push subscribers' positions and leases (`PositionStore`), and how
/// retention spares what a subscriber has not acknowledged. Run after
/// [`run_all`] on the same store.
pub fn run_positions(store: &dyn SqlStore, positions: &dyn PositionStore) {
    positions_are_compare_and_swap(positions);
    leases_exclude_other_nodes_until_they_expire(positions);
    retention_keeps_what_a_subscriber_has_not_acked(store, positions);
}

fn positions_are_compare_and_swap(positions: &dyn PositionStore) {
    assert_eq!(positions.load("cas").expect("load"), Position::default());
    let mut pos = Position {
        acked: 7,
        attempts: 2,
        next_attempt_ms: 1234,
        last_error: Some("HTTP 503".into()),
        ..Position::default()
    };
    assert!(positions.save("cas", &pos).expect("first save"));
    let stored = positions.load("cas").expect("load");
    assert_eq!(stored.rev, 1);
    assert_eq!((stored.acked, stored.attempts), (7, 2));
    assert_eq!(stored.last_error.as_deref(), Some("HTTP 503"));
    // A second save from the same (stale) revision loses.
    pos.acked = 8;
    assert!(!positions.save("cas", &pos).expect("stale save"));
    assert_eq!(positions.load("cas").expect("load").acked, 7);
    // From the stored revision it wins, and a dead letter round-trips.
    let mut pos = stored;
    pos.state = State::DeadLettered {
        seq: 8,
        last_error: "HTTP 500: nope".into(),
    };
    assert!(positions.save("cas", &pos).expect("save"));
    let dead = positions.load("cas").expect("load");
    assert_eq!(dead.rev, 2);
    assert_eq!(dead.state, pos.state);
    // Another subscriber is untouched.
    assert_eq!(positions.load("other").expect("load"), Position::default());
}

fn leases_exclude_other_nodes_until_they_expire(positions: &dyn PositionStore) {
    let ttl = std::time::Duration::from_secs(10);
    assert!(positions.try_lease("lease", "a", ttl, 1_000).expect("a"));
    assert!(!positions.try_lease("lease", "b", ttl, 2_000).expect("b"));
    // The holder renews.
    assert!(positions
        .try_lease("lease", "a", ttl, 5_000)
        .expect("renew"));
    assert!(!positions.try_lease("lease", "b", ttl, 14_000).expect("b"));
    // Expired (a dead node): another node takes it over.
    assert!(positions
        .try_lease("lease", "b", ttl, 15_000)
        .expect("takeover"));
    assert!(!positions.try_lease("lease", "a", ttl, 15_001).expect("a"));
    // Only the holder releases.
    positions.release("lease", "a").expect("release");
    assert!(!positions.try_lease("lease", "a", ttl, 15_002).expect("a"));
    positions.release("lease", "b").expect("release");
    assert!(positions.try_lease("lease", "a", ttl, 15_003).expect("a"));
    // A lease row does not disturb the position's revision.
    let pos = positions.load("lease").expect("load");
    assert_eq!((pos.rev, pos.acked), (0, 0));
    assert!(positions.save("lease", &pos).expect("save"));
    assert!(positions.try_lease("lease", "a", ttl, 15_004).expect("a"));
    positions.release("lease", "a").expect("release");
}

fn retention_keeps_what_a_subscriber_has_not_acked(
    store: &dyn SqlStore,
    positions: &dyn PositionStore,
) {
    // Every subscriber so far is past everything.
    for name in ["cas", "lease", "other"] {
        let mut pos = positions.load(name).expect("load");
        pos.acked = u64::MAX >> 2;
        pos.state = State::Active;
        assert!(positions.save(name, &pos).expect("save"));
    }
    let start = newest(store);
    store
        .write(&mut |tx| {
            for id in ["r1", "r2", "r3"] {
                tx.record_change(&entry(id, 9_100_000_000_000, ChangeOp::Patch))?;
            }
            Ok(())
        })
        .expect("write");
    // A subscriber has acked only the first: the others stay, however old.
    let mut slow = positions.load("slow").expect("load");
    slow.acked = start + 1;
    assert!(positions.save("slow", &slow).expect("save"));
    store.prune_changes(i64::MAX).expect("prune");
    assert_eq!(
        ids_after(store, 0),
        vec![(start + 2, "r2".to_string()), (start + 3, "r3".to_string())]
    );
    // Dead-lettered at the second: still kept.
    let mut slow = positions.load("slow").expect("load");
    slow.state = State::DeadLettered {
        seq: start + 2,
        last_error: "HTTP 500".into(),
    };
    assert!(positions.save("slow", &slow).expect("save"));
    store.prune_changes(i64::MAX).expect("prune");
    assert_eq!(ids_after(store, 0).len(), 2);
    // Once it has passed them and the window elapsed, they go.
    let mut slow = positions.load("slow").expect("load");
    slow.acked = start + 3;
    slow.state = State::Active;
    assert!(positions.save("slow", &slow).expect("save"));
    store.prune_changes(i64::MAX).expect("prune");
    assert!(ids_after(store, 0).is_empty());
}

/// Runs every check on an empty store.
pub fn run_all(store: &dyn SqlStore) {
    create_get_update_delete(store);
    unique_user_names(store);
    scans_narrow_and_page_in_insertion_order(store);
    memberships_follow_deletes(store);
    groups_of_many_agrees_with_groups_of(store);
    the_groups_read_with_a_get_are_only_used_for_that_resource_right_after(store);
    failed_transactions_write_nothing(store);
    savepoints_undo_only_their_part(store);
    concurrent_writers_get_one_success_per_version(store);
    long_scans_are_complete_and_ordered(store);
    change_log_entries_commit_with_their_unit(store);
    change_log_seqs_are_gapless_and_in_commit_order(store);
    change_log_prunes_by_age_and_keeps_the_newest_seq(store);
}

fn entry(id: &str, at: i64, op: ChangeOp) -> Change {
    Change {
        seq: 0,
        at,
        resource_type: "User".into(),
        resource_id: id.into(),
        op,
        version: Some("W/\"1\"".into()),
        provider_id: "iga".into(),
        client_id: Some("c1".into()),
        attributes: vec!["userName".into(), "urn:x:y:department".into()],
        via: None,
    }
}

fn newest(store: &dyn SqlStore) -> u64 {
    store.newest_change().expect("newest").expect("a log")
}

fn ids_after(store: &dyn SqlStore, after: u64) -> Vec<(u64, String)> {
    store
        .changes(after, 1000)
        .expect("changes")
        .expect("a log")
        .into_iter()
        .map(|c| (c.seq, c.resource_id))
        .collect()
}

/// Entries are part of their unit of work: committed with it, gone with a
/// failed unit or a failed savepoint, and read back field for field.
fn change_log_entries_commit_with_their_unit(store: &dyn SqlStore) {
    let start = newest(store);
    let rec = new_record("cl-1", "User", Some("cl-one"), "2024-01-01T00:00:00.000Z");
    store
        .write(&mut |tx| {
            tx.insert(&rec)?;
            tx.record_change(&entry("cl-1", 1_000, ChangeOp::Create))?;
            let mut derived = entry("g1", 1_000, ChangeOp::Patch).derived_for_member("cl-1");
            derived.client_id = None;
            tx.record_change(&derived)?;
            Ok(())
        })
        .expect("write");
    assert_eq!(newest(store), start + 2);
    let got = store.changes(start, 10).expect("changes").expect("a log");
    assert_eq!(got.len(), 2);
    let mut want = entry("cl-1", 1_000, ChangeOp::Create);
    want.seq = start + 1;
    assert_eq!(got[0], want);
    assert_eq!(got[1].seq, start + 2);
    assert_eq!(got[1].via.as_deref(), Some("g1"));
    assert_eq!(got[1].client_id, None);
    assert_eq!(got[1].version, None);
    assert_eq!(got[1].attributes, vec!["groups".to_string()]);
    assert_eq!(
        store
            .changes(start, 1)
            .expect("changes")
            .expect("log")
            .len(),
        1
    );

    // A failed unit leaves no entry and takes no seq.
    let failed = store.write(&mut |tx| {
        tx.record_change(&entry("cl-x", 2_000, ChangeOp::Delete))?;
        Err(scimgate_abi::PluginError::new(409, "conflict"))
    });
    assert!(failed.is_err());
    assert_eq!(newest(store), start + 2);
    assert!(ids_after(store, start + 2).is_empty());

    // A failed savepoint takes its entries with it.
    store
        .write(&mut |tx| {
            tx.record_change(&entry("cl-a", 3_000, ChangeOp::Patch))?;
            let failed = tx.savepoint(&mut |tx| {
                tx.record_change(&entry("cl-b", 3_000, ChangeOp::Patch))?;
                Err(scimgate_abi::PluginError::new(400, "no"))
            });
            assert!(failed.is_err());
            tx.savepoint(&mut |tx| {
                tx.record_change(&entry("cl-c", 3_000, ChangeOp::Patch))
                    .map_err(Into::into)
            })
        })
        .expect("outer");
    assert_eq!(
        ids_after(store, start + 2),
        vec![
            (start + 3, "cl-a".to_string()),
            (start + 4, "cl-c".to_string())
        ]
    );
}

/// Concurrent writers, one reader resuming after the last seq it saw: it
/// must see every seq exactly once, each right after its predecessor (a
/// seq visible before a smaller one would show as a gap).
fn change_log_seqs_are_gapless_and_in_commit_order(store: &dyn SqlStore) {
    let start = newest(store);
    let writers = 4;
    let per_writer: usize = 15;
    let total = (writers * per_writer) as u64;
    std::thread::scope(|s| {
        for w in 0..writers {
            s.spawn(move || {
                for i in 0..per_writer {
                    store
                        .write(&mut |tx| {
                            tx.record_change(&entry(&format!("w{w}-{i}"), 4_000, ChangeOp::Patch))?;
                            if i % 3 == 0 {
                                tx.record_change(&entry(
                                    &format!("w{w}-{i}b"),
                                    4_000,
                                    ChangeOp::Patch,
                                ))?;
                            }
                            Ok(())
                        })
                        .expect("write");
                }
            });
        }
        s.spawn(move || {
            let want = total + (writers * per_writer.div_ceil(3)) as u64;
            let mut last = start;
            while last < start + want {
                for (seq, _) in ids_after(store, last) {
                    assert_eq!(seq, last + 1, "seq {seq} visible before {}", last + 1);
                    last = seq;
                }
                std::thread::yield_now();
            }
        });
    });
    let all = ids_after(store, start);
    let want = total + (writers * per_writer.div_ceil(3)) as u64;
    assert_eq!(all.len() as u64, want);
    assert_eq!(newest(store), start + want);
}

/// Retention removes old entries only; the newest seq survives pruning the
/// whole log, so seqs keep increasing.
fn change_log_prunes_by_age_and_keeps_the_newest_seq(store: &dyn SqlStore) {
    let start = newest(store);
    store
        .write(&mut |tx| {
            tx.record_change(&entry("old", 9_000_000_000_000, ChangeOp::Patch))?;
            tx.record_change(&entry("new", 9_000_000_500_000, ChangeOp::Patch))?;
            Ok(())
        })
        .expect("write");
    let pruned = store.prune_changes(9_000_000_100_000).expect("prune");
    assert!(pruned >= 1, "at least the older entry: {pruned}");
    assert_eq!(
        ids_after(store, start),
        vec![(start + 2, "new".to_string())]
    );
    assert_eq!(
        store.prune_changes(9_000_001_000_000).expect("prune all"),
        1
    );
    assert!(ids_after(store, 0).is_empty());
    assert_eq!(newest(store), start + 2);
    store
        .write(&mut |tx| {
            tx.record_change(&entry("next", 9_000_002_000_000, ChangeOp::Create))
                .map_err(Into::into)
        })
        .expect("write");
    assert_eq!(
        ids_after(store, start + 2),
        vec![(start + 3, "next".to_string())]
    );
    // Pruning takes a prefix in seq order: an entry with an older `at`
    // behind a newer one stays (no hole a reader would take for a prune).
    store
        .write(&mut |tx| {
            tx.record_change(&entry("late", 9_000_003_000_000, ChangeOp::Patch))?;
            tx.record_change(&entry("early", 9_000_002_500_000, ChangeOp::Patch))?;
            Ok(())
        })
        .expect("write");
    assert_eq!(store.prune_changes(9_000_002_800_000).expect("prune"), 1);
    assert_eq!(
        ids_after(store, start + 3),
        vec![
            (start + 4, "late".to_string()),
            (start + 5, "early".to_string())
        ]
    );
}

/// What PostgreSQL tests print when there is no server to test against.
pub const SKIPPED: &str =
    "SKIPPED: PostgreSQL tests need SCIMGATE_TEST_POSTGRES_URL (tests/run starts a cluster)";

/// A fresh schema in the test server (`SCIMGATE_TEST_POSTGRES_URL`,
/// `SCIMGATE_TEST_POSTGRES_PASSWORD`), dropped with everything in it at the
/// end; stores reach it through `?options=-csearch_path=…`, so tests run in
/// parallel. Without the URL: prints [`SKIPPED`] and gives `None`, or fails
/// when `CI=true`.
pub struct TestDatabase {
    url: String,
    password: Option<String>,
    schema: String,
}

impl TestDatabase {
    pub fn create(tag: &str) -> Option<TestDatabase> {
        let Some(url) = std::env::var("SCIMGATE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true needs the PostgreSQL tests: {SKIPPED}"
            );
            // Past the test harness's output capture, so it is seen.
            let _ = writeln!(std::io::stderr().lock(), "{SKIPPED}");
            return None;
        };
        let password = std::env::var("SCIMGATE_TEST_POSTGRES_PASSWORD").ok();
        let schema = format!(
            "scimgate_t_{tag}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let db = TestDatabase {
            url,
            password,
            schema,
        };
        db.client()
            .batch_execute(&format!("CREATE SCHEMA {}", db.schema))
            .expect("create the test schema");
        Some(db)
    }

    /// Store settings that reach only this schema.
    pub fn settings(&self, pool_size: usize) -> PgSettings {
        let joiner = if self.url.contains('?') { '&' } else { '?' };
        PgSettings {
            url: Secret(format!(
                "{}{joiner}options=-csearch_path%3D{}",
                self.url, self.schema
            )),
            password: self.password.clone().map(Secret),
            pool_size,
        }
    }

    fn client(&self) -> postgres::Client {
        let mut config: postgres::Config = self.url.parse().expect("test URL");
        if let Some(p) = &self.password {
            config.password(p);
        }
        config
            .connect(postgres::NoTls)
            .expect("connect to the test server")
    }

    /// One number from a query run inside the schema.
    pub fn query_i64(&self, query: &str) -> i64 {
        let mut client = self.client();
        client
            .batch_execute(&format!("SET search_path = {}", self.schema))
            .expect("search_path");
        client.query_one(query, &[]).expect("query").get(0)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut config) = self.url.parse::<postgres::Config>() {
            if let Some(p) = &self.password {
                config.password(p);
            }
            if let Ok(mut client) = config.connect(postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
            }
        }
    }
}

/// The batched read of a page's groups gives each member exactly what
/// `groups_of` gives it, in the same order, across several queries.
/// `get` reads the record's groups in the same statement and keeps them for
/// the `groups_of` that follows on the same thread: only for that record,
/// only until another store call, in `seq` order.
fn the_groups_read_with_a_get_are_only_used_for_that_resource_right_after(store: &dyn SqlStore) {
    insert_user(store, "st-m1", "stash-member");
    // Created second-then-first by id: `seq` order is creation order.
    for group in ["st-g2", "st-g1"] {
        let record = new_record(group, "Group", None, "2024-01-01T00:00:00.000Z");
        let member = Member {
            id: "st-m1".into(),
            member_type: "User".into(),
            display: None,
        };
        store
            .write(&mut |tx| {
                tx.insert(&record)?;
                tx.set_members(group, std::slice::from_ref(&member))?;
                Ok(())
            })
            .expect("group");
    }
    let ids =
        |refs: Vec<super::GroupRef>| -> Vec<String> { refs.into_iter().map(|g| g.id).collect() };
    assert!(store.get("User", "st-m1").expect("get").is_some());
    let groups = store.groups_of("st-m1").expect("groups");
    assert_eq!(groups[0].resource_type, "Group");
    assert_eq!(ids(groups), ["st-g2", "st-g1"]);
    // Asked again without a get: read again, the same answer.
    assert_eq!(
        ids(store.groups_of("st-m1").expect("groups")),
        ["st-g2", "st-g1"]
    );
    // Read, then a membership goes: the next groups_of asks again.
    assert!(store.get("User", "st-m1").expect("get").is_some());
    store
        .write(&mut |tx| Ok(tx.set_members("st-g2", &[])?))
        .expect("remove");
    assert_eq!(ids(store.groups_of("st-m1").expect("groups")), ["st-g1"]);
    // A get of another resource is no answer for this one.
    assert!(store.get("User", "st-m1").expect("get").is_some());
    assert!(store.get("Group", "st-g1").expect("get").is_some());
    store
        .write(&mut |tx| Ok(tx.set_members("st-g1", &[])?))
        .expect("remove");
    assert!(store.groups_of("st-m1").expect("groups").is_empty());
    // A get of the wrong type finds nothing, whatever its groups.
    assert!(store.get("Group", "st-m1").expect("get").is_none());
}

fn groups_of_many_agrees_with_groups_of(store: &dyn SqlStore) {
    for n in 1..=4 {
        insert_user(store, &format!("b-u{n}"), &format!("batch{n}"));
    }
    let groups: [(&str, &[&str]); 3] = [
        ("b-g1", &["b-u1", "b-u2"]),
        ("b-g2", &["b-u3", "b-u1"]),
        ("b-g3", &["b-u1"]),
    ];
    for (group, members) in groups {
        let record = new_record(group, "Group", None, "2024-01-01T00:00:00.000Z");
        let members: Vec<Member> = members
            .iter()
            .map(|id| Member {
                id: id.to_string(),
                member_type: "User".into(),
                display: None,
            })
            .collect();
        store
            .write(&mut |tx| {
                tx.insert(&record)?;
                tx.set_members(group, &members)?;
                Ok(())
            })
            .expect("group");
    }
    // More ids than one query takes, the real ones last.
    let padding: Vec<String> = (0..super::BATCH + 3).map(|n| format!("b-x{n}")).collect();
    let mut ids: Vec<&str> = padding.iter().map(String::as_str).collect();
    ids.extend(["b-u1", "b-u2", "b-u3", "b-u4"]);
    let batch = store.groups_of_many(&ids).expect("groups_of_many");
    let names =
        |refs: &[super::GroupRef]| -> Vec<String> { refs.iter().map(|g| g.id.clone()).collect() };
    for id in &ids {
        let single = store.groups_of(id).expect("groups_of");
        let batched = batch.get(*id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(names(batched), names(&single), "groups of {id}");
        assert_eq!(batched, single.as_slice(), "groups of {id}");
    }
    let u1 = batch.get("b-u1").map(Vec::as_slice).unwrap_or_default();
    assert_eq!(names(u1), vec!["b-g1", "b-g2", "b-g3"]);
    assert!(!batch.contains_key("b-u4"));
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

pub fn insert_user(store: &dyn SqlStore, id: &str, user_name: &str) {
    let rec = new_record(id, "User", Some(user_name), "2024-01-01T00:00:00.000Z");
    store
        .write(&mut |tx| tx.insert(&rec).map(|_| ()).map_err(Into::into))
        .expect("insert");
}

fn all_ids(store: &dyn SqlStore, scan: &SqlScan) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .scan_sql(scan, &mut |r| {
            ids.push(r.id);
            Ok(Visit::Continue)
        })
        .expect("scan");
    ids
}

fn users(cond: Option<Cond>) -> SqlScan {
    SqlScan {
        resource_types: vec!["User".into()],
        cond,
        ..SqlScan::default()
    }
}

fn create_get_update_delete(store: &dyn SqlStore) {
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
        Err(BackendError::VersionMismatch) => Err(scimgate_abi::PluginError::new(412, "stale")),
        other => panic!("expected a version mismatch, got {other:?}"),
    });
    assert_eq!(stale.map_err(|e| e.status), Err(412));

    let by_email = all_ids(store, &users(Some(Cond::Email("a@example.com".into()))));
    assert_eq!(by_email, vec!["crud-1"]);

    store
        .write(&mut |tx| {
            assert!(matches!(
                tx.delete("User", "crud-1", Some(7)),
                Err(BackendError::VersionMismatch)
            ));
            assert!(tx.delete("User", "crud-1", Some(2)).expect("delete"));
            assert!(!tx.delete("User", "crud-1", None).expect("delete again"));
            Ok(())
        })
        .expect("delete");
    assert!(store.get("User", "crud-1").expect("get").is_none());
    assert!(all_ids(store, &users(Some(Cond::Email("a@example.com".into())))).is_empty());
}

fn unique_user_names(store: &dyn SqlStore) {
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
            Err(BackendError::Conflict(_)) => Err(scimgate_abi::PluginError::new(409, "dup")),
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

fn scans_narrow_and_page_in_insertion_order(store: &dyn SqlStore) {
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
    let pager = |cond: Option<Cond>| SqlScan {
        resource_types: vec!["Pager".into()],
        cond,
        ..SqlScan::default()
    };
    let all = all_ids(store, &pager(None));
    assert_eq!(all.len(), 10);
    assert_eq!(all[0], "page-0");
    assert_eq!(all[9], "page-9");
    assert_eq!(store.count_sql(&pager(None)).expect("count"), 10);

    let ext = pager(Some(Cond::ExternalId("ext-1".into())));
    assert_eq!(store.count_sql(&ext).expect("count"), 5);
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
        .scan_sql(&first, &mut |r| {
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
        .scan_sql(&pager(None), &mut |_| {
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

fn memberships_follow_deletes(store: &dyn SqlStore) {
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
    let members = store.members("Group", "m-g1").expect("members");
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
        .members("Group", "m-g1")
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

fn failed_transactions_write_nothing(store: &dyn SqlStore) {
    let rec = new_record("tx-1", "User", Some("tx-one"), "2024-01-01T00:00:00.000Z");
    let result = store.write(&mut |tx| {
        tx.insert(&rec)?;
        Err(scimgate_abi::PluginError::new(400, "abort"))
    });
    assert!(result.is_err());
    assert!(store.get("User", "tx-1").expect("get").is_none());
}

fn savepoints_undo_only_their_part(store: &dyn SqlStore) {
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

fn concurrent_writers_get_one_success_per_version(store: &dyn SqlStore) {
    insert_user(store, "race-1", "racer");
    let threads = 6;
    let rounds = 5;
    // Each thread reads the version, then updates with it; a stale read
    // loses. Every version must be won exactly once.
    let wins = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let wins = &wins;
            s.spawn(move || {
                let mut won = 0;
                while won < rounds {
                    let current = store.get("User", "race-1").expect("get").expect("row");
                    let mut rec =
                        new_record("race-1", "User", Some("racer"), "2024-05-01T00:00:00.000Z");
                    rec.body = json!({"id": "race-1", "userName": "racer", "by": t});
                    let result = store.write(&mut |tx| match tx.update(&rec, current.version) {
                        Ok(stored) => {
                            assert_eq!(stored.version, current.version + 1);
                            Ok(())
                        }
                        Err(BackendError::VersionMismatch) => {
                            Err(scimgate_abi::PluginError::new(412, "stale"))
                        }
                        Err(e) => Err(e.into()),
                    });
                    match result {
                        Ok(()) => {
                            won += 1;
                            wins.lock().expect("wins").push(current.version);
                        }
                        Err(e) => assert_eq!(e.status, 412, "{e}"),
                    }
                }
            });
        }
    });
    let mut wins = wins.into_inner().expect("wins");
    wins.sort_unstable();
    let expected: Vec<i64> = (1..=(threads * rounds) as i64).collect();
    assert_eq!(wins, expected, "one success per version, none lost");
    let last = store.get("User", "race-1").expect("get").expect("row");
    assert_eq!(last.version, (threads * rounds) as i64 + 1);
}

fn long_scans_are_complete_and_ordered(store: &dyn SqlStore) {
    let n = 1234;
    store
        .write(&mut |tx| {
            for i in 0..n {
                let mut rec = new_record(
                    &format!("long-{i:05}"),
                    "Long",
                    None,
                    "2024-06-01T00:00:00.000Z",
                );
                rec.external_id = Some(if i % 2 == 0 { "even" } else { "odd" }.into());
                tx.insert(&rec)?;
            }
            Ok(())
        })
        .expect("fill");
    let scan = SqlScan {
        resource_types: vec!["Long".into()],
        ..SqlScan::default()
    };
    let ids = all_ids(store, &scan);
    assert_eq!(ids.len(), n);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "insertion order");
    let mut odd = scan.clone();
    odd.cond = Some(Cond::ExternalId("odd".into()));
    odd.offset = 10;
    odd.limit = Some(600);
    let got = all_ids(store, &odd);
    assert_eq!(got.len(), 600);
    assert_eq!(got[0], "long-00021");
    let mut backwards = scan;
    backwards.descending = true;
    backwards.limit = Some(700);
    let got = all_ids(store, &backwards);
    assert_eq!(got.len(), 700);
    assert_eq!(got[0], format!("long-{:05}", n - 1));
    // A visitor may read the store while scanning (no connection held).
    let mut inner = 0;
    store
        .scan_sql(&odd, &mut |rec| {
            assert!(store.get("Long", &rec.id).expect("nested get").is_some());
            inner += 1;
            Ok(Visit::Continue)
        })
        .expect("scan");
    assert_eq!(inner, 600);
}

/// A directory removed at the end of the test, with everything in it.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "scim-server-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
