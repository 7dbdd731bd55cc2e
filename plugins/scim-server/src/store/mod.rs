//! The SQL back-ends of the SCIM endpoint: SQLite ([`sqlite`]) and
//! PostgreSQL ([`postgres`]) implement the engine's
//! [`Backend`](scimgate_scim_service::Backend) contract with every
//! capability (transactions, versions, keyset paging, native membership,
//! generation). Each keeps resources as JSON bodies plus the few indexed
//! columns the protocol needs (`userName`, `externalId`, `displayName`,
//! email values, memberships), answers narrowed scans in insertion order,
//! and runs every write in a transaction.
//!
//! The engine hands a scan the parsed filter; [`sql::translate`] turns its
//! indexable part into a [`Cond`] and says whether that is exact, and the
//! dialect-independent [`sql`] module turns a [`SqlScan`] into SQL text
//! with bound parameters.
//!
//! Both keep the change log (`scim_changes`): the entries a write unit
//! records are buffered in its transaction and written at its end, after
//! taking the next seqs from a one-row counter that is locked until COMMIT,
//! so seq order is commit order and seqs have no gaps (a rolled-back unit,
//! or a rolled-back Bulk operation, leaves no entry and consumes no seq).
//!
//! Both also keep the push subscribers' positions and delivery leases
//! (`scim_change_subscribers`, the `PositionStore` of `scimgate-changes`),
//! and their pruning never removes an entry a subscriber has not
//! acknowledged.
//!
//! The endpoint hands the engine its store wrapped in [`metered::Metered`],
//! which reports each store call to the host's metrics.

pub mod metered;
pub mod postgres;
pub mod sql;
pub mod sqlite;
#[cfg(test)]
pub mod suite;

use std::time::{Duration, Instant};

use scimgate_abi::PluginError;
use scimgate_changes::{Position, State};
use scimgate_scim::SortOrder;
pub use scimgate_scim_service::backend::{
    Backend, BackendError, BackendResult, BackendTx, Capabilities, Change, ChangeOp, GroupRef,
    Member, MemberView, NewRecord, QuickRead, Record, RecordText, Scan, TextVisitor, UniqueColumn,
    Visit, Visitor, Work, RETRY_AFTER_SECONDS,
};

/// A stored `op` column back to the record's [`ChangeOp`].
pub fn change_op(text: &str) -> Option<ChangeOp> {
    match text {
        "create" => Some(ChangeOp::Create),
        "replace" => Some(ChangeOp::Replace),
        "patch" => Some(ChangeOp::Patch),
        "delete" => Some(ChangeOp::Delete),
        _ => None,
    }
}

/// The stored `attributes` column (a JSON array of names).
pub fn attributes_json(attributes: &[String]) -> String {
    serde_json::to_string(attributes).unwrap_or_else(|_| "[]".into())
}

/// A `scim_change_subscribers` row as both stores read and write it:
/// `state` is `active` or `dead-lettered` (then `dead_seq` and
/// `dead_error` say where and why).
pub(crate) struct PositionRow {
    pub acked: i64,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub state: String,
    pub dead_seq: Option<i64>,
    pub dead_error: Option<String>,
    pub rev: i64,
}

impl PositionRow {
    pub(crate) fn of(pos: &Position) -> PositionRow {
        let (state, dead_seq, dead_error) = match &pos.state {
            State::Active => ("active", None, None),
            State::DeadLettered { seq, last_error } => (
                "dead-lettered",
                Some(i64::try_from(*seq).unwrap_or(i64::MAX)),
                Some(last_error.clone()),
            ),
        };
        PositionRow {
            acked: i64::try_from(pos.acked).unwrap_or(i64::MAX),
            attempts: i64::from(pos.attempts),
            next_attempt_ms: pos.next_attempt_ms,
            last_error: pos.last_error.clone(),
            state: state.into(),
            dead_seq,
            dead_error,
            rev: i64::try_from(pos.rev).unwrap_or(i64::MAX),
        }
    }
}

/// The [`Position`] a stored row describes.
pub(crate) fn position_of(row: PositionRow) -> Position {
    let state = match (row.state.as_str(), row.dead_seq) {
        ("dead-lettered", Some(seq)) => State::DeadLettered {
            seq: seq.max(0) as u64,
            last_error: row.dead_error.unwrap_or_default(),
        },
        _ => State::Active,
    };
    Position {
        acked: row.acked.max(0) as u64,
        attempts: u32::try_from(row.attempts.max(0)).unwrap_or(u32::MAX),
        next_attempt_ms: row.next_attempt_ms,
        last_error: row.last_error,
        state,
        rev: row.rev.max(0) as u64,
    }
}

/// The most change-log entries one read returns.
pub const MAX_CHANGES: usize = 1000;

/// What the SQL stores do: everything.
pub const CAPABILITIES: Capabilities = Capabilities {
    transactions: true,
    versions: true,
    keyset: true,
    native_members: true,
    generation: true,
};

/// Member ids per query of `groups_of_many` (bound parameters of one
/// `IN (…)` / `= ANY($1)`).
pub const BATCH: usize = 500;

/// The indexable part of a filter, as the SQL stores search it. Values of
/// the case-insensitive columns are already lower-cased.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Id(String),
    UserName(String),
    ExternalId(String),
    DisplayName(String),
    Email(String),
    /// `meta.lastModified <op> value` on the RFC 3339 ms text.
    LastModified(Cmp, String),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

impl Cond {
    /// Whether the condition selects by a point index (id, userName,
    /// externalId, an email value): few rows, found without a scan.
    pub fn is_point_lookup(&self) -> bool {
        match self {
            Cond::Id(_) | Cond::UserName(_) | Cond::ExternalId(_) | Cond::Email(_) => true,
            Cond::DisplayName(_) | Cond::LastModified(..) => false,
            Cond::And(a, b) => a.is_point_lookup() || b.is_point_lookup(),
            Cond::Or(a, b) => a.is_point_lookup() && b.is_point_lookup(),
        }
    }
}

/// What the SQL stores sort by (`Backend::can_sort`, [`sql::sort_key`]):
/// the indexed columns whose order is exactly the engine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// The lower-cased `user_name` column, ties by the body's `userName`.
    UserName,
    /// The lower-cased `display_name` column, ties by the body's `displayName`.
    DisplayName,
    /// `meta.created` (RFC 3339 ms text).
    Created,
    /// `meta.lastModified` (RFC 3339 ms text).
    LastModified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// A narrowed scan in `seq` order, as SQL: a [`Scan`] with its filter
/// translated to a [`Cond`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlScan {
    /// Resource types to include (at least one).
    pub resource_types: Vec<String>,
    pub cond: Option<Cond>,
    /// Only rows with `seq > after` (keyset continuation).
    pub after: Option<i64>,
    /// Only rows with `seq < before` (scanning backwards).
    pub before: Option<i64>,
    /// Newest first instead of oldest first.
    pub descending: bool,
    pub offset: u64,
    pub limit: Option<u64>,
    /// Sorted by this key (`true`: descending) instead of `seq`; ties in
    /// `seq` order, missing values last ascending and first descending.
    /// Then `after`/`before`/`descending` are not used.
    pub sort: Option<(SortKey, bool)>,
}

impl SqlScan {
    /// The SQL form of an engine scan (its filter through [`sql::translate`]).
    pub fn from_scan(scan: &Scan<'_>) -> SqlScan {
        SqlScan {
            resource_types: scan.resource_types.clone(),
            cond: scan
                .filter
                .and_then(|(filter, ctx)| sql::translate(filter, ctx).0),
            after: scan.after,
            before: scan.before,
            descending: scan.descending,
            offset: scan.offset,
            limit: scan.limit,
            sort: scan.sort.and_then(|(path, order)| {
                let key = sql::sort_key_by_name(path)?;
                Some((key, order == SortOrder::Descending))
            }),
        }
    }
}

/// The SQL stores' own entry points, by condition (the engine goes through
/// [`Backend`]; the store suite tests these directly).
pub trait SqlStore: Backend {
    /// Visits the rows of `scan` in order until the visitor says stop.
    fn scan_sql(&self, scan: &SqlScan, visit: &mut Visitor<'_>) -> Result<(), PluginError>;
    /// How many rows `scan` selects (ignoring offset/limit/after/before).
    fn count_sql(&self, scan: &SqlScan) -> BackendResult<u64>;
    /// This store's key in the groups stash ([`stash`]): its address.
    fn stash_key(&self) -> usize {
        self as *const Self as *const () as usize
    }
}

/// The rows of a GET's one statement, each a record and whether it is the
/// resource asked for (else one of its groups): the resource, and its
/// groups in `seq` order (the order of [`Backend::groups_of`]); `None`
/// when the resource is not there, whatever its groups.
fn split_record_and_groups(rows: Vec<(bool, Record)>) -> Option<(Record, Vec<GroupRef>)> {
    let mut found = None;
    let mut groups = Vec::new();
    for (asked, rec) in rows {
        if asked {
            found = Some(rec);
        } else {
            groups.push(rec);
        }
    }
    found.map(|rec| (rec, group_refs(groups)))
}

/// The groups a record is a direct member of, in their stored order.
fn group_refs(mut groups: Vec<Record>) -> Vec<GroupRef> {
    groups.sort_by_key(|group| group.seq);
    groups
        .into_iter()
        .map(|group| GroupRef {
            id: group.id,
            resource_type: group.resource_type,
            body: group.body,
        })
        .collect()
}

/// How long the groups read with a record stay usable for the
/// `groups_of` that follows it on the same thread.
const STASH_FOR: Duration = Duration::from_millis(100);

/// The groups of the record the last [`Backend::get`] on this thread read,
/// in the same statement (one round trip, one snapshot): (store, member
/// id, groups, when). Any other store call drops them.
type Stash = Option<(usize, String, Vec<GroupRef>, Instant)>;

thread_local! {
    static STASH: std::cell::RefCell<Stash> = const { std::cell::RefCell::new(None) };
}

/// Keeps the groups `get` read with record `id` of the store `key`
/// ([`SqlStore::stash_key`]) for the `groups_of` the engine asks next.
fn stash(key: usize, id: &str, groups: Vec<GroupRef>) {
    STASH.with(|s| *s.borrow_mut() = Some((key, id.to_string(), groups, Instant::now())));
}

/// Drops stashed groups (every store call but `get` and `groups_of`).
fn unstash() {
    STASH.with(|s| s.borrow_mut().take());
}

/// The groups of `id` if the last call on this thread was a `get` of `id`
/// on the store `key`, moments ago.
fn take_stash(key: usize, id: &str) -> Option<Vec<GroupRef>> {
    match STASH.with(|s| s.borrow_mut().take()) {
        Some((k, stashed, groups, at)) if k == key && stashed == id && at.elapsed() < STASH_FOR => {
            Some(groups)
        }
        _ => None,
    }
}
