//! The SCIM 2.0 service provider engine, generic over a [`Backend`]: put
//! SCIM in front of any system by implementing one trait. The engine does
//! everything the protocol demands; the backend stores and finds.
//!
//! A plugin builds one [`ScimService`] from [`Settings`], a
//! [`scimgate_scim::Registry`] (the schemas and resource types it serves)
//! and an `Arc<dyn Backend>`, and hands it every request of its endpoint:
//!
//! ```ignore
//! let service = ScimService::new(Settings::default(), registry, backend);
//! let response = service.handle(&request, caller)?;
//! ```
//!
//! Modules: [`backend`] (the contract), [`service`] (routing, discovery,
//! `/Me`), `changes` (the change log's entries and the `/Changes` feed),
//! `list` (filters, sorting, paging, cursors), `resources` (writes,
//! rendering, derived attributes), `ready` (a stored JSON text copied
//! into a response), `bulk`, [`errors`], [`password`], [`pool`] (a
//! bounded connection pool for backends) and [`settings`].
//! With the cargo feature `conformance`, `conformance` is the differential
//! test a backend runs against itself.

pub mod backend;
mod bulk;
mod changes;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod errors;
mod list;
pub mod password;
pub mod pool;
mod ready;
mod resources;
pub mod service;
pub mod settings;

pub use backend::{
    Backend, BackendError, BackendResult, BackendTx, Capabilities, Change, ChangeOp, GroupRef,
    Member, MemberView, NewRecord, QuickRead, Record, RecordText, Scan, TextVisitor, UniqueColumn,
    Visit, Visitor, Work,
};
pub use changes::ChangePush;
pub use list::ListParams;
pub use resources::{display_of, etag, etag_matches, timestamp};
pub use service::{content_version, ScimService, SCIM_JSON};
pub use settings::{
    BulkSettings, ChangeSettings, PasswordStorage, PatchResponse, Settings, DEFAULT_MAX_SCAN,
};
