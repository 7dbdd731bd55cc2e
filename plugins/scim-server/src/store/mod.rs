//! The storage contract of the SCIM endpoint: a [`Store`] keeps resources as
//! JSON bodies plus the few indexed columns the protocol needs (`userName`,
//! `externalId`, `displayName`, email values, memberships), answers narrowed
//! scans in insertion order, and runs every write in a transaction.
//!
//! SQL dialects stay inside the implementations ([`sqlite`], [`postgres`]),
//! which share the dialect-independent translation in [`sql`]; the endpoint
//! only speaks [`Cond`], [`Scan`] and [`StoreTx`].

pub mod postgres;
pub mod sql;
pub mod sqlite;
#[cfg(test)]
pub mod suite;

use std::fmt;

use scimgate_abi::PluginError;
use serde_json::Value;

/// A stored resource: the body (without `meta`, `members` and `groups`, which
/// are rebuilt on read) and its bookkeeping columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub resource_type: String,
    /// Insertion order; never reused. The default order and the paging key.
    pub seq: i64,
    pub version: i64,
    /// RFC 3339, UTC, millisecond precision (sorts as text).
    pub created: String,
    pub last_modified: String,
    pub body: Value,
}

/// What a write stores: the indexed columns are derived by the caller.
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
    /// The client's `display`, if it sent one.
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

/// Columns a uniqueness check can look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueColumn {
    UserName,
    DisplayName,
}

/// The indexable part of a filter, translated by the endpoint. Values of the
/// case-insensitive columns are already lower-cased.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// A narrowed scan in `seq` order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
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
}

/// Store failures. Conflicts and version mismatches are the caller's to
/// interpret (409 / 412); the rest are internal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A unique column already holds this value.
    Conflict(String),
    /// `expected_version` did not match (or the row is gone).
    VersionMismatch,
    /// The database cannot be reached (or is shutting down): 503 with
    /// `Retry-After`, worth retrying shortly.
    Unavailable(String),
    Backend(String),
}

/// Seconds a client is asked to wait after a 503 from the store.
pub const RETRY_AFTER_SECONDS: &str = "2";

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict(what) => write!(f, "{what} is already in use"),
            StoreError::VersionMismatch => write!(f, "the resource was modified concurrently"),
            StoreError::Unavailable(message) => {
                write!(f, "the store is unavailable: {message}")
            }
            StoreError::Backend(message) => write!(f, "store: {message}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for PluginError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(_) => {
                PluginError::new(409, error.to_string()).with_code("uniqueness")
            }
            StoreError::VersionMismatch => PluginError::new(409, error.to_string()),
            StoreError::Unavailable(_) => PluginError::new(503, error.to_string())
                .with_header("retry-after", RETRY_AFTER_SECONDS)
                .with_context("store"),
            StoreError::Backend(message) => PluginError::internal(message).with_context("store"),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a scan visitor says after each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    Continue,
    Stop,
}

/// A read-side visitor; its error aborts the scan and is returned as is.
pub type Visitor<'a> = dyn FnMut(Record) -> Result<Visit, PluginError> + 'a;

/// The work of one write transaction.
pub type Work<'a> = dyn FnMut(&mut dyn StoreTx) -> Result<(), PluginError> + 'a;

/// A resource store. Reads may run in parallel; each [`Store::write`] is one
/// atomic transaction (SQLite serialises them; PostgreSQL runs them in
/// parallel, across nodes, with optimistic concurrency on `version`).
pub trait Store: Send + Sync {
    fn get(&self, resource_type: &str, id: &str) -> StoreResult<Option<Record>>;
    /// Visits the rows of `scan` in order until the visitor says stop.
    fn scan(&self, scan: &Scan, visit: &mut Visitor<'_>) -> Result<(), PluginError>;
    /// How many rows `scan` selects (ignoring offset/limit/after/before).
    fn count(&self, scan: &Scan) -> StoreResult<u64>;
    fn members(&self, group_id: &str) -> StoreResult<Vec<MemberView>>;
    fn groups_of(&self, member_id: &str) -> StoreResult<Vec<GroupRef>>;
    /// A counter that changes on every committed write (by any node sharing
    /// the store). Read data is at least as new as the generation read
    /// before it, so caches keyed by it never serve older data.
    fn generation(&self) -> u64;
    /// Runs `work` in one transaction: committed if it returns `Ok`, rolled
    /// back (nothing written) otherwise.
    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError>;
    /// Whether the store can serve requests.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The write side, inside a transaction (sees its own writes).
pub trait StoreTx {
    fn get(&mut self, resource_type: &str, id: &str) -> StoreResult<Option<Record>>;
    /// The resource type of `id`, whatever it is.
    fn type_of(&mut self, id: &str) -> StoreResult<Option<String>>;
    fn insert(&mut self, record: &NewRecord) -> StoreResult<Record>;
    /// Replaces a row if its version is still `expected_version`; bumps the
    /// version and `lastModified`.
    fn update(&mut self, record: &NewRecord, expected_version: i64) -> StoreResult<Record>;
    /// Deletes a row (and its memberships, both ways); `false` if absent.
    /// With `expected_version`, a different version is a `VersionMismatch`.
    fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
    ) -> StoreResult<bool>;
    /// Whether another row of this type holds `value` in a unique column.
    fn taken(
        &mut self,
        resource_type: &str,
        column: UniqueColumn,
        value: &str,
        except_id: &str,
    ) -> StoreResult<bool>;
    /// Replaces the member list of a group.
    fn set_members(&mut self, group_id: &str, members: &[Member]) -> StoreResult<()>;
    fn members(&mut self, group_id: &str) -> StoreResult<Vec<Member>>;
    /// The groups `member_id` is a direct member of.
    fn group_ids_of(&mut self, member_id: &str) -> StoreResult<Vec<String>>;
    /// Bumps version and `lastModified` of these rows (their derived
    /// attributes changed).
    fn touch(&mut self, ids: &[String], now: &str) -> StoreResult<()>;
    /// Runs `work` in a nested savepoint: on `Err` its writes are undone and
    /// the outer transaction goes on.
    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError>;
}
