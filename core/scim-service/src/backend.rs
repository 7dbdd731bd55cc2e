//! The contract between the SCIM service engine and the system that keeps
//! the resources: a [`Backend`] stores and finds, the engine does the
//! protocol (validation, PATCH, filters, sorting, paging, cursors, Bulk,
//! ETags, discovery, `/Me`, derived `members`/`groups`).
//!
//! A backend declares what it can do ([`Capabilities`]); the engine does the
//! rest itself. In particular:
//! - **Filters.** The engine hands the parsed filter to [`Backend::scan`];
//!   the backend narrows by what it can push down and returns a superset,
//!   and says through [`Backend::filter_is_exact`] whether that superset is
//!   exact. When it is not, the engine evaluates `Filter::matches` on every
//!   row (a bounded number of rows: beyond it a list is refused with
//!   `tooMany`).
//! - **Order and paging.** Rows come in the backend's stable natural order
//!   (insertion order for the SQL stores). `offset`/`limit` are applied by
//!   the backend; a backend with keyset paging (`Capabilities::keyset`)
//!   also honours `after`/`before` on [`Record::seq`], which keeps a full
//!   sequential sync linear. A backend that can sort by an attribute
//!   exactly as the engine would says so through [`Backend::can_sort`];
//!   then a `sortBy` on it is passed down in [`Scan::sort`] and pages come
//!   from the backend's order (else the engine sorts in memory).
//! - **Transactions.** [`Backend::write`] runs a unit of work; with
//!   `Capabilities::transactions` it is atomic and [`BackendTx::savepoint`]
//!   undoes a failed step. Without, each step is applied as it runs (Bulk is
//!   best-effort, as documented).
//! - **Versions.** With `Capabilities::versions` the backend keeps a version
//!   per resource and checks `expected_version` on update; without, the
//!   engine derives a version from the resource's content.
//! - **Membership.** With `Capabilities::native_members` the backend keeps
//!   group members itself ([`BackendTx::set_members`] …); without, the engine
//!   keeps `members` inside the group's body and derives `User.groups` by a
//!   scan, through the provided default methods.
//!
//! - **Change log.** A backend that can keep a durable log records the
//!   entries the engine hands [`BackendTx::record_change`] in the same unit
//!   of work as the change (so a rolled-back write leaves none), assigns
//!   each a `seq` in commit order, and serves them through
//!   [`Backend::changes`] (the pull feed `/Changes`; push delivery reads
//!   the same). The defaults keep no log.
//!
//! The trait is plain Rust: a backend lives in the same plugin `.so` as the
//! engine, so nothing here crosses the plugin ABI.

use std::collections::HashMap;
use std::fmt;

use scimgate_abi::PluginError;
pub use scimgate_changes::{Change, Op as ChangeOp};
use scimgate_scim::sort::SortOrder;
use scimgate_scim::{AttrPath, Filter, PatchRequest, SchemaCtx};
use serde_json::Value;

/// A stored resource: the body (without `id`, `meta`, and, for backends
/// with native membership, without `members`/`groups`) and its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub resource_type: String,
    /// The backend's natural order; with keyset paging, the paging key
    /// (increasing, never reused). Backends without keyset paging may
    /// leave it 0.
    pub seq: i64,
    /// The resource's version; backends without versions return 0 and the
    /// engine derives one from the content.
    pub version: i64,
    /// RFC 3339, UTC, millisecond precision (sorts as text).
    pub created: String,
    pub last_modified: String,
    pub body: Value,
}

/// A stored resource with its body as JSON text ([`Backend::get_text`]):
/// `record.body` is `Value::Null`, `text` is the body, a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordText {
    pub record: Record,
    pub text: String,
}

impl RecordText {
    /// The record with its body serialized (the default
    /// [`Backend::get_text`]).
    pub fn from_record(mut record: Record) -> RecordText {
        let text = std::mem::take(&mut record.body).to_string();
        RecordText { record, text }
    }

    /// The record with its body parsed (when the text cannot be copied
    /// as is). A text that is not JSON is the store's fault: an internal
    /// error.
    pub fn into_record(self) -> BackendResult<Record> {
        let RecordText { mut record, text } = self;
        record.body = serde_json::from_str(&text).map_err(|e| {
            BackendError::Backend(format!("stored body of '{}' is not JSON: {e}", record.id))
        })?;
        Ok(record)
    }
}

/// What a write stores. The indexed values are derived by the engine, for
/// backends that keep index columns (the SQL stores); others ignore them.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub id: String,
    pub resource_type: String,
    /// Lower-cased `userName` (unique per resource type), if any.
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    /// Lower-cased `displayName`, if any.
    pub display_name: Option<String>,
    /// Lower-cased `emails[].value`.
    pub emails: Vec<String>,
    /// When this write happens (RFC 3339, ms).
    pub now: String,
    pub body: Value,
}

impl NewRecord {
    /// The record this write became, stored with `seq`, `version` and
    /// `created` (`now` is its `lastModified`): what a backend returns
    /// without reading the row back. A creation's `created` is `now`.
    pub fn stored(&self, seq: i64, version: i64, created: String) -> Record {
        Record {
            id: self.id.clone(),
            resource_type: self.resource_type.clone(),
            seq,
            version,
            created,
            last_modified: self.now.clone(),
            body: self.body.clone(),
        }
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// `User` or `Group` (the member's resource type).
    pub member_type: String,
    /// The client's `display`, if it sent one (else derived on read).
    pub display: Option<String>,
}

/// A member as read back, with what `display` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub id: String,
    pub member_type: String,
    pub display: Option<String>,
    /// The member's body (for `display`), when it still exists.
    pub body: Option<Value>,
}

/// A group a resource is a direct member of.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRef {
    pub id: String,
    pub resource_type: String,
    pub body: Value,
}

/// Attributes a uniqueness check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueColumn {
    UserName,
    DisplayName,
}

/// A narrowed read in the backend's natural order.
#[derive(Debug, Clone, Default)]
pub struct Scan<'a> {
    /// Resource types to include (at least one).
    pub resource_types: Vec<String>,
    /// The filter, with the schema view it is read with; the backend
    /// narrows by what it can push down (a superset is fine, see
    /// [`Backend::filter_is_exact`]). Only set for scans of one type.
    pub filter: Option<(&'a Filter, &'a SchemaCtx<'a>)>,
    /// Keyset paging: only rows with `seq > after` (needs `keyset`).
    pub after: Option<i64>,
    /// Keyset paging: only rows with `seq < before` (needs `keyset`).
    pub before: Option<i64>,
    /// Newest first instead of oldest first (needs `keyset`).
    pub descending: bool,
    pub offset: u64,
    pub limit: Option<u64>,
    /// Sort push-down: visit the rows in this order instead of the natural
    /// one, exactly as `scimgate_scim::sort::compare` orders the rendered
    /// resources (missing values last ascending and first descending, ties
    /// in natural order), then apply `offset`/`limit`. Only set for scans
    /// of one type when [`Backend::can_sort`] said yes for this path; never
    /// together with `after`/`before`/`descending`.
    pub sort: Option<(&'a AttrPath, SortOrder)>,
}

/// What a backend can do; the engine does the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Writes of one unit of work are atomic and savepoints undo a step.
    pub transactions: bool,
    /// The backend keeps versions and checks them on update and delete.
    pub versions: bool,
    /// `after`/`before`/`descending` on `seq`.
    pub keyset: bool,
    /// The backend keeps group members itself.
    pub native_members: bool,
    /// [`Backend::generation`] changes on every committed write, so the
    /// engine may cache totals keyed by it.
    pub generation: bool,
}

impl Capabilities {
    /// What the smallest backend offers: nothing but storing and finding.
    pub const MINIMAL: Capabilities = Capabilities {
        transactions: false,
        versions: false,
        keyset: false,
        native_members: false,
        generation: false,
    };
}

/// Backend failures. Conflicts and version mismatches are the engine's to
/// interpret (409 / 412); the rest are internal or unavailability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// A unique value is already taken.
    Conflict(String),
    /// `expected_version` did not match (or the resource is gone).
    VersionMismatch,
    /// The client asked for something this backend refuses (a constraint
    /// of the target system): 400 with this message and `scimType`.
    Invalid(String, &'static str),
    /// The target system cannot be reached: 503 with `Retry-After`.
    Unavailable(String),
    Backend(String),
    /// During an inline call ([`in_inline_call`]) a read would have to wait
    /// (every pooled connection is lent out). Not a failure: the host runs
    /// the request again on its blocking pool (`PluginError::would_block`).
    /// Only reads return it, and only inline, where nothing has been
    /// written.
    WouldBlock,
}

/// Seconds a client is asked to wait after a 503 from the backend.
pub const RETRY_AFTER_SECONDS: &str = "2";

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Conflict(what) => write!(f, "{what} is already in use"),
            BackendError::VersionMismatch => write!(f, "the resource was modified concurrently"),
            BackendError::Invalid(message, _) => f.write_str(message),
            BackendError::Unavailable(message) => {
                write!(f, "the store is unavailable: {message}")
            }
            BackendError::Backend(message) => write!(f, "store: {message}"),
            BackendError::WouldBlock => {
                f.write_str("the store would block an inline call (no free connection)")
            }
        }
    }
}

impl std::error::Error for BackendError {}

impl From<BackendError> for PluginError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::Conflict(_) => {
                PluginError::new(409, error.to_string()).with_code("uniqueness")
            }
            BackendError::VersionMismatch => PluginError::new(409, error.to_string()),
            BackendError::Invalid(message, scim_type) => {
                PluginError::new(400, message).with_code(scim_type)
            }
            BackendError::Unavailable(_) => PluginError::new(503, error.to_string())
                .with_header("retry-after", RETRY_AFTER_SECONDS)
                .with_context("store"),
            BackendError::Backend(message) => PluginError::internal(message).with_context("store"),
            BackendError::WouldBlock => PluginError::would_block(),
        }
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// What a scan visitor says after each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    Continue,
    Stop,
}

/// A read-side visitor; its error aborts the scan and is returned as is.
pub type Visitor<'a> = dyn FnMut(Record) -> Result<Visit, PluginError> + 'a;

/// What [`Backend::scan_text`] calls for each row.
pub type TextVisitor<'a> = dyn FnMut(RecordText) -> Result<Visit, PluginError> + 'a;

/// The work of one write unit.
pub type Work<'a> = dyn FnMut(&mut dyn BackendTx) -> Result<(), PluginError> + 'a;

thread_local! {
    /// Set while the engine answers an inline call on this thread.
    static INLINE_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the engine is answering an inline call on this thread: the host
/// runs it on an async worker, which must not wait. A backend's read that
/// would wait (for a pooled connection, say) returns
/// [`BackendError::WouldBlock`] instead, and the host runs the request
/// again on its blocking pool, where waiting is allowed.
pub fn in_inline_call() -> bool {
    INLINE_CALL.with(std::cell::Cell::get)
}

/// Marks the calls made on this thread while `f` runs as inline
/// ([`in_inline_call`]) when `inline` holds; the mark is restored after,
/// even if `f` panics.
pub(crate) fn inline_call<T>(inline: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INLINE_CALL.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(INLINE_CALL.with(|cell| cell.replace(inline)));
    f()
}

/// A read the engine asks [`Backend::quick_read`] about.
#[derive(Debug, Clone, Copy)]
pub enum QuickRead<'a> {
    /// One resource by id (with the groups it is a member of).
    Get,
    /// A list of the resources `filter` selects (one page and the total).
    Filter(&'a Filter),
}

/// The engine's view of a target system. Reads may run in parallel; each
/// [`Backend::write`] is one unit of work (atomic with `transactions`).
pub trait Backend: Send + Sync {
    /// What this backend does itself; the engine does the rest.
    fn capabilities(&self) -> Capabilities;

    fn get(&self, resource_type: &str, id: &str) -> BackendResult<Option<Record>>;

    /// Whether the store keeps each body as the JSON text
    /// [`Backend::get_text`] and [`Backend::scan_text`] return without
    /// parsing it. Then a `GET` by id, and a list page of an exact filter,
    /// copy that text into the response instead of parsing and
    /// re-serializing it, whenever nothing in it needs editing (no
    /// `attributes`/`excludedAttributes`, no `returned: never` or
    /// `request` sub-attribute, no empty value). Default `false`.
    fn keeps_json_text(&self) -> bool {
        false
    }

    /// [`Backend::get`] with the body as the JSON text of an object, as
    /// stored ([`RecordText`]). Only called when
    /// [`Backend::keeps_json_text`]; the default serializes what `get`
    /// returns, for wrappers and tests.
    fn get_text(&self, resource_type: &str, id: &str) -> BackendResult<Option<RecordText>> {
        Ok(self.get(resource_type, id)?.map(RecordText::from_record))
    }

    /// Visits the rows of `scan` in natural order until the visitor says
    /// stop. Rows must include every row that matches `scan.filter`; with
    /// [`Backend::filter_is_exact`] they must be exactly those.
    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError>;

    /// [`Backend::scan`] with each body as the JSON text of an object, as
    /// stored. Only called when [`Backend::keeps_json_text`], for a page
    /// whose filter is exact; the default serializes what `scan` visits.
    fn scan_text(&self, scan: &Scan<'_>, visit: &mut TextVisitor<'_>) -> Result<(), PluginError> {
        self.scan(scan, &mut |rec| visit(RecordText::from_record(rec)))
    }

    /// Runs `reads`, the store reads that answer one list request (its
    /// page, its count, the page's derived `groups`), on one snapshot where
    /// the backend can: every read inside sees the same committed state,
    /// and a local store takes one connection and one read transaction for
    /// all of them instead of one per read. The default runs `reads` as it
    /// is, each read on its own, which is always correct.
    fn snapshot(
        &self,
        reads: &mut dyn FnMut() -> Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        reads()
    }

    /// Whether [`Backend::scan`] selects exactly what `filter` matches (then
    /// the engine trusts counts and pages from the backend and skips its own
    /// evaluation). The default, `false`, is always correct.
    fn filter_is_exact(&self, _filter: &Filter, _ctx: &SchemaCtx<'_>) -> bool {
        false
    }

    /// Whether this read is quick: answered from memory or a local file in
    /// well under a millisecond, never waiting on a network, a lock a
    /// writer holds or a scan of the whole store. The engine then lets the
    /// host answer it inline, on an async worker, without a hand-off to the
    /// blocking pool (`Endpoint::blocks_on`). The default, `false`, is
    /// always correct; a backend behind a network keeps it.
    fn quick_read(&self, _read: QuickRead<'_>, _ctx: &SchemaCtx<'_>) -> bool {
        false
    }

    /// Whether [`Backend::scan`] can order its rows by `path` (read with
    /// `ctx`) exactly as `scimgate_scim::sort::compare` orders the rendered
    /// resources, ties in natural order ([`Scan::sort`]). Then the engine
    /// pages from the backend's order instead of sorting in memory. The
    /// default, `false`, is always correct.
    fn can_sort(&self, _path: &AttrPath, _ctx: &SchemaCtx<'_>) -> bool {
        false
    }

    /// How many rows `scan` selects, ignoring offset, limit and keyset
    /// bounds; `None` when the backend cannot count cheaply (the engine then
    /// counts by scanning). Not asked for a first page that came back with
    /// room to spare: its length is the total.
    fn count(&self, _scan: &Scan<'_>) -> BackendResult<Option<u64>> {
        Ok(None)
    }

    /// Native membership: the members of a group.
    fn members(&self, _group_type: &str, _group_id: &str) -> BackendResult<Vec<MemberView>> {
        Err(no_native_members())
    }

    /// Native membership: the groups `member_id` is a direct member of.
    fn groups_of(&self, _member_id: &str) -> BackendResult<Vec<GroupRef>> {
        Err(no_native_members())
    }

    /// Native membership, for a page of resources at once: the groups each
    /// of `member_ids` is a direct member of, keyed by member id (an id
    /// without groups may be absent), each list exactly what
    /// [`Backend::groups_of`] returns for it. The engine calls it when it
    /// renders several resources with derived `groups` (a list page); the
    /// default asks [`Backend::groups_of`] once per id, a backend that can
    /// answer in one round trip (one query, one search) overrides it.
    fn groups_of_many(&self, member_ids: &[&str]) -> BackendResult<HashMap<String, Vec<GroupRef>>> {
        let mut out = HashMap::with_capacity(member_ids.len());
        for id in member_ids {
            if !out.contains_key(*id) {
                out.insert(id.to_string(), self.groups_of(id)?);
            }
        }
        Ok(out)
    }

    /// Whether the backend takes `password` in clear (with
    /// `password_storage = "backend"`) and stores it the way the target
    /// system expects: hashed by the target, never returned, never kept in
    /// clear. Default `false`: the engine never hands it a clear password.
    fn stores_passwords(&self) -> bool {
        false
    }

    /// With `Capabilities::generation`: a counter that changes on every
    /// committed write (by any node sharing the backend).
    fn generation(&self) -> u64 {
        0
    }

    /// Runs `work`; with `transactions`, committed if it returns `Ok` and
    /// rolled back otherwise.
    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError>;

    /// Whether the backend can serve requests (feeds `/readyz`).
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// The change log: at most `limit` entries with `seq > after`, in `seq`
    /// order. A backend that keeps a log must never let an entry become
    /// visible after one with a larger `seq` (seq order is commit order),
    /// so a reader that resumes after the last `seq` it saw misses nothing;
    /// and its seqs have no gaps (a missing seq means pruned). `None`: this
    /// backend keeps no log (the default).
    fn changes(&self, _after: u64, _limit: usize) -> BackendResult<Option<Vec<Change>>> {
        Ok(None)
    }

    /// The newest committed `seq` (0 for an empty log), cheaply; `None`
    /// without a log.
    fn newest_change(&self) -> BackendResult<Option<u64>> {
        Ok(None)
    }

    /// Retention: removes the oldest log entries (in `seq` order) up to the
    /// first one written at or after `before_ms` (Unix milliseconds), so the
    /// log stays one gapless run of seqs; returns how many. The newest
    /// `seq` stays known, so seqs keep increasing.
    fn prune_changes(&self, _before_ms: i64) -> BackendResult<u64> {
        Ok(0)
    }
}

/// The write side of one unit of work (sees its own writes).
pub trait BackendTx {
    fn get(&mut self, resource_type: &str, id: &str) -> BackendResult<Option<Record>>;

    /// The resource type of `id` among `types`; the default tries each.
    fn type_of(&mut self, types: &[String], id: &str) -> BackendResult<Option<String>> {
        for resource_type in types {
            if self.get(resource_type, id)?.is_some() {
                return Ok(Some(resource_type.clone()));
            }
        }
        Ok(None)
    }

    /// Stores a new resource under `record.id`: the engine assigns ids (UUID
    /// v4), and the backend keeps that id as the resource's stable id (the
    /// LDAP backend writes it to `entryUUID`).
    fn insert(&mut self, record: &NewRecord) -> BackendResult<Record>;

    /// Replaces a resource. With `versions`, only if its version is still
    /// `expected_version` (else [`BackendError::VersionMismatch`]); bumps
    /// the version and `lastModified`.
    fn update(&mut self, record: &NewRecord, expected_version: i64) -> BackendResult<Record>;

    /// Native PATCH: stores the result of a PATCH request. The engine has
    /// already applied `patch` to `old` and validated the result, `new`,
    /// which the default stores with [`BackendTx::update`]. A backend that
    /// applies PATCH operations natively (a SCIM API, an LDAP modify of the
    /// changed values only, a large group's member table) overrides this
    /// and applies `patch` instead, with the same version rule; the engine
    /// answers with the resource it returns.
    fn update_by_patch(
        &mut self,
        old: &Record,
        new: &NewRecord,
        patch: &PatchRequest,
        expected_version: i64,
    ) -> BackendResult<Record> {
        let _ = (old, patch);
        self.update(new, expected_version)
    }

    /// Deletes a resource (and, with native membership, its memberships
    /// both ways); `false` if absent.
    fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
    ) -> BackendResult<bool>;

    /// Whether another resource of this type holds `value` (compared
    /// ignoring case) in a unique attribute.
    fn taken(
        &mut self,
        resource_type: &str,
        column: UniqueColumn,
        value: &str,
        except_id: &str,
    ) -> BackendResult<bool>;

    /// Native membership: replaces the member list of a group.
    fn set_members(&mut self, _group_id: &str, _members: &[Member]) -> BackendResult<()> {
        Err(no_native_members())
    }

    /// Native membership: the members of a group.
    fn members(&mut self, _group_id: &str) -> BackendResult<Vec<Member>> {
        Err(no_native_members())
    }

    /// Native membership: the groups `member_id` is a direct member of.
    fn group_ids_of(&mut self, _member_id: &str) -> BackendResult<Vec<String>> {
        Err(no_native_members())
    }

    /// Native membership: bumps version and `lastModified` of these
    /// resources (their derived attributes changed).
    fn touch(&mut self, _ids: &[String], _now: &str) -> BackendResult<()> {
        Ok(())
    }

    /// Appends `entry` to the change log inside this unit of work (its
    /// `seq` is ignored: the backend assigns the next one when the unit
    /// commits in order). The default records nothing (no log).
    fn record_change(&mut self, _entry: &Change) -> BackendResult<()> {
        Ok(())
    }

    /// Runs `work` so that on `Err` its writes are undone and the outer unit
    /// goes on. A backend without transactions cannot undo: it runs `work`
    /// as is (`work(self)`).
    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError>;
}

fn no_native_members() -> BackendError {
    BackendError::Backend("this backend keeps no native membership".into())
}
