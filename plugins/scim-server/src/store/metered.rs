//! Store metrics at the one boundary every store call crosses: [`Metered`]
//! wraps the store the engine is given (an `Arc<dyn Backend>`), times each
//! call that reaches the database and reports it to the host with
//! [`scimgate_abi::sdk::report_store_op`] (the host's
//! `scimgate_store_*` series; a no-op outside a host). A unit of work is
//! named after what it did: its first write (`create`, `replace`, `patch`,
//! `delete`), `bulk` when it used savepoints, `write` when it wrote nothing.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use scimgate_abi::sdk::{report_store_op, StorePool};
use scimgate_abi::PluginError;
use scimgate_scim::{AttrPath, Filter, PatchRequest, SchemaCtx};

use super::{
    Backend, BackendError, BackendResult, BackendTx, Capabilities, Change, GroupRef, Member,
    MemberView, NewRecord, QuickRead, Record, RecordText, Scan, TextVisitor, UniqueColumn, Visitor,
    Work,
};

/// The pool's state after an operation, for stores that have a pool.
pub type PoolProbe = Box<dyn Fn() -> StorePool + Send + Sync>;

/// The `kind` of an answer that is no failure: an inline read that would
/// have waited ([`BackendError::WouldBlock`]); never reported.
const WOULD_BLOCK: &str = "would_block";

/// The `kind` of a failed operation, as the host counts it.
pub fn plugin_error_kind(error: &PluginError) -> &'static str {
    if error.is_would_block() {
        return WOULD_BLOCK;
    }
    match error.status {
        503 => "unavailable",
        409 | 412 => "conflict",
        s if s >= 500 => "internal",
        _ => "client",
    }
}

/// The `kind` of a store error (the same classes as [`plugin_error_kind`]).
pub fn backend_error_kind(error: &BackendError) -> &'static str {
    match error {
        BackendError::Conflict(_) | BackendError::VersionMismatch => "conflict",
        BackendError::Invalid(..) => "client",
        BackendError::Unavailable(_) => "unavailable",
        BackendError::Backend(_) => "internal",
        BackendError::WouldBlock => WOULD_BLOCK,
    }
}

/// Runs `f` and reports it as `operation` (no pool state): for what a store
/// does outside the engine's calls, i.e. its migration when it opens.
pub fn timed<T>(operation: &str, f: impl FnOnce() -> BackendResult<T>) -> BackendResult<T> {
    let start = Instant::now();
    let result = f();
    let kind = result.as_ref().err().map(backend_error_kind);
    report_store_op(operation, start.elapsed(), kind, None);
    result
}

/// A store whose calls are timed and reported.
pub struct Metered {
    inner: Arc<dyn Backend>,
    pool: Option<PoolProbe>,
    /// `generation()` queries the database (PostgreSQL) rather than reading
    /// a counter in memory (SQLite): only then is it a store operation.
    generation_queries: bool,
}

impl Metered {
    pub fn new(inner: Arc<dyn Backend>) -> Metered {
        Metered {
            inner,
            pool: None,
            generation_queries: false,
        }
    }

    /// Reports `pool()` with every operation.
    pub fn with_pool(mut self, pool: PoolProbe) -> Metered {
        self.pool = Some(pool);
        self
    }

    pub fn with_generation_queries(mut self) -> Metered {
        self.generation_queries = true;
        self
    }

    /// Reports one operation; not one that answered would-block (it never
    /// reached the database, and its rerun on the blocking pool reports).
    fn report(&self, operation: &str, start: Instant, error_kind: Option<&str>) {
        if error_kind == Some(WOULD_BLOCK) {
            return;
        }
        let pool = self.pool.as_ref().map(|probe| probe());
        report_store_op(operation, start.elapsed(), error_kind, pool);
    }

    fn time<T>(&self, operation: &str, f: impl FnOnce() -> BackendResult<T>) -> BackendResult<T> {
        let start = Instant::now();
        let result = f();
        self.report(
            operation,
            start,
            result.as_ref().err().map(backend_error_kind),
        );
        result
    }

    /// A scan, timed and reported as `search`.
    fn time_search(&self, f: impl FnOnce() -> Result<(), PluginError>) -> Result<(), PluginError> {
        let start = Instant::now();
        let result = f();
        self.report(
            "search",
            start,
            result.as_ref().err().map(plugin_error_kind),
        );
        result
    }
}

impl Backend for Metered {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn get(&self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        self.time("get", || self.inner.get(resource_type, id))
    }

    fn keeps_json_text(&self) -> bool {
        self.inner.keeps_json_text()
    }

    fn get_text(&self, resource_type: &str, id: &str) -> BackendResult<Option<RecordText>> {
        self.time("get", || self.inner.get_text(resource_type, id))
    }

    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        self.time_search(|| self.inner.scan(scan, visit))
    }

    fn scan_text(&self, scan: &Scan<'_>, visit: &mut TextVisitor<'_>) -> Result<(), PluginError> {
        self.time_search(|| self.inner.scan_text(scan, visit))
    }

    /// Not an operation of its own: the reads inside are reported each.
    fn snapshot(
        &self,
        reads: &mut dyn FnMut() -> Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        self.inner.snapshot(reads)
    }

    fn filter_is_exact(&self, filter: &Filter, ctx: &SchemaCtx<'_>) -> bool {
        self.inner.filter_is_exact(filter, ctx)
    }

    fn quick_read(&self, read: QuickRead<'_>, ctx: &SchemaCtx<'_>) -> bool {
        self.inner.quick_read(read, ctx)
    }

    fn can_sort(&self, path: &AttrPath, ctx: &SchemaCtx<'_>) -> bool {
        self.inner.can_sort(path, ctx)
    }

    fn count(&self, scan: &Scan<'_>) -> BackendResult<Option<u64>> {
        self.time("count", || self.inner.count(scan))
    }

    fn members(&self, group_type: &str, group_id: &str) -> BackendResult<Vec<MemberView>> {
        self.time("members", || self.inner.members(group_type, group_id))
    }

    fn groups_of(&self, member_id: &str) -> BackendResult<Vec<GroupRef>> {
        self.time("members", || self.inner.groups_of(member_id))
    }

    fn groups_of_many(&self, member_ids: &[&str]) -> BackendResult<HashMap<String, Vec<GroupRef>>> {
        self.time("members", || self.inner.groups_of_many(member_ids))
    }

    fn stores_passwords(&self) -> bool {
        self.inner.stores_passwords()
    }

    fn generation(&self) -> u64 {
        if !self.generation_queries {
            return self.inner.generation();
        }
        let start = Instant::now();
        let generation = self.inner.generation();
        self.report("generation", start, None);
        generation
    }

    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        let first_write = Cell::new(None);
        let savepoints = Cell::new(false);
        let start = Instant::now();
        let result = self.inner.write(&mut |tx| {
            work(&mut MeteredTx {
                inner: tx,
                first_write: &first_write,
                savepoints: &savepoints,
            })
        });
        let operation = match (savepoints.get(), first_write.get()) {
            (true, _) => "bulk",
            (false, Some(op)) => op,
            (false, None) => "write",
        };
        self.report(
            operation,
            start,
            result.as_ref().err().map(plugin_error_kind),
        );
        result
    }

    fn ready(&self) -> Result<(), String> {
        self.inner.ready()
    }

    fn changes(&self, after: u64, limit: usize) -> BackendResult<Option<Vec<Change>>> {
        self.time("changes", || self.inner.changes(after, limit))
    }

    fn newest_change(&self) -> BackendResult<Option<u64>> {
        self.time("changes", || self.inner.newest_change())
    }

    fn prune_changes(&self, before_ms: i64) -> BackendResult<u64> {
        self.time("prune", || self.inner.prune_changes(before_ms))
    }
}

/// The store's unit of work, noting what the engine does with it.
struct MeteredTx<'t> {
    inner: &'t mut dyn BackendTx,
    first_write: &'t Cell<Option<&'static str>>,
    savepoints: &'t Cell<bool>,
}

impl MeteredTx<'_> {
    fn wrote(&self, operation: &'static str) {
        if self.first_write.get().is_none() {
            self.first_write.set(Some(operation));
        }
    }
}

impl BackendTx for MeteredTx<'_> {
    fn get(&mut self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        self.inner.get(resource_type, id)
    }

    fn type_of(&mut self, types: &[String], id: &str) -> BackendResult<Option<String>> {
        self.inner.type_of(types, id)
    }

    fn insert(&mut self, record: &NewRecord) -> BackendResult<Record> {
        self.wrote("create");
        self.inner.insert(record)
    }

    fn update(&mut self, record: &NewRecord, expected_version: i64) -> BackendResult<Record> {
        self.wrote("replace");
        self.inner.update(record, expected_version)
    }

    fn update_by_patch(
        &mut self,
        old: &Record,
        new: &NewRecord,
        patch: &PatchRequest,
        expected_version: i64,
    ) -> BackendResult<Record> {
        self.wrote("patch");
        self.inner
            .update_by_patch(old, new, patch, expected_version)
    }

    fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
    ) -> BackendResult<bool> {
        self.wrote("delete");
        self.inner.delete(resource_type, id, expected_version)
    }

    fn taken(
        &mut self,
        resource_type: &str,
        column: UniqueColumn,
        value: &str,
        except_id: &str,
    ) -> BackendResult<bool> {
        self.inner.taken(resource_type, column, value, except_id)
    }

    fn set_members(&mut self, group_id: &str, members: &[Member]) -> BackendResult<()> {
        self.inner.set_members(group_id, members)
    }

    fn members(&mut self, group_id: &str) -> BackendResult<Vec<Member>> {
        self.inner.members(group_id)
    }

    fn group_ids_of(&mut self, member_id: &str) -> BackendResult<Vec<String>> {
        self.inner.group_ids_of(member_id)
    }

    fn touch(&mut self, ids: &[String], now: &str) -> BackendResult<()> {
        self.inner.touch(ids, now)
    }

    fn record_change(&mut self, entry: &Change) -> BackendResult<()> {
        self.inner.record_change(entry)
    }

    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError> {
        self.savepoints.set(true);
        let (first_write, savepoints) = (self.first_write, self.savepoints);
        self.inner.savepoint(&mut |tx| {
            work(&mut MeteredTx {
                inner: tx,
                first_write,
                savepoints,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn errors_are_classified_by_what_the_client_gets() {
        assert_eq!(
            plugin_error_kind(&PluginError::new(503, "down")),
            "unavailable"
        );
        assert_eq!(
            plugin_error_kind(&PluginError::internal("boom")),
            "internal"
        );
        assert_eq!(
            plugin_error_kind(&PluginError::new(409, "taken")),
            "conflict"
        );
        assert_eq!(
            plugin_error_kind(&PluginError::new(412, "etag")),
            "conflict"
        );
        assert_eq!(plugin_error_kind(&PluginError::new(404, "gone")), "client");
        for (error, kind) in [
            (BackendError::Conflict("userName".into()), "conflict"),
            (BackendError::VersionMismatch, "conflict"),
            (BackendError::Invalid("no".into(), "invalidValue"), "client"),
            (BackendError::Unavailable("down".into()), "unavailable"),
            (BackendError::Backend("disk".into()), "internal"),
        ] {
            assert_eq!(backend_error_kind(&error), kind, "{error:?}");
            // The same class as the error the client gets from it.
            assert_eq!(plugin_error_kind(&PluginError::from(error)), kind);
        }
    }

    #[test]
    fn the_wrapper_passes_every_call_through_outside_a_host() {
        // No host services in a unit test: reporting is a no-op, and the
        // wrapped store behaves as the store itself.
        let dir = std::env::temp_dir().join(format!("scim-metered-{}", std::process::id()));
        let store = SqliteStore::open(&dir.join("s.db")).unwrap();
        let metered = Metered::new(store).with_pool(Box::new(StorePool::default));
        let created = Cell::new(None);
        metered
            .write(&mut |tx| {
                let record = tx.insert(&NewRecord {
                    id: "u1".into(),
                    resource_type: "User".into(),
                    user_name: Some("a".into()),
                    external_id: None,
                    display_name: None,
                    emails: Vec::new(),
                    now: "2026-01-01T00:00:00.000Z".into(),
                    body: serde_json::json!({"userName": "a"}),
                })?;
                created.set(Some(record.version));
                Ok(())
            })
            .unwrap();
        assert!(created.get().is_some());
        assert_eq!(metered.get("User", "u1").unwrap().unwrap().id, "u1");
        assert!(metered.get("User", "nope").unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
