//! SCIM 2.0 protocol library (RFC 7643 schemas, RFC 7644 protocol rules) for scimgate.
//! No I/O: `serde_json::Value` in, values and typed [`ScimError`]s out.
//!
//! **Model.** A [`Registry`] holds [`Schema`]s (core User, Group, Enterprise User via
//! [`Registry::core`], plus custom schemas read from the RFC's own JSON with
//! [`Registry::add_schema_json`]) and [`ResourceType`]s (name, endpoint, core schema,
//! extensions). [`Registry::context`] gives a [`SchemaCtx`]: the schema view of one
//! resource type, which every other module takes. Attribute names and schema URNs
//! are case-insensitive and may be fully qualified (`urn:…:User:userName`); extension
//! attributes live under their URN key in a resource.
//!
//! **Requests.** [`validate`] checks create/replace bodies and returns them cleaned
//! (readOnly dropped, names canonical). [`filter`] parses RFC 7644 filters into a
//! public AST that stores may translate to SQL, prints them back, and evaluates them
//! with the schema's types and `caseExact`. [`patch`] parses and applies PatchOp
//! bodies atomically; [`dialect`] holds the rewrites of what IGA clients (One
//! Identity, Entra ID, Okta, …) send into RFC form, which the profile engine
//! ([`profile`]) runs as settings of a route's profile (an IGA client is a
//! preset of those settings). [`projection`] applies `attributes` /
//! `excludedAttributes` with the `returned` rules and [`sort`] orders results.
//!
//! **Responses.** [`ScimError::to_json`] renders RFC 7644 §3.12 error bodies,
//! [`list_response`] ListResponse bodies, and [`discovery`] the `/Schemas`,
//! `/ResourceTypes` and `/ServiceProviderConfig` documents.
//!
//! Filtering:
//!
//! ```
//! use scimgate_scim::{parse_filter, Registry};
//! use serde_json::json;
//!
//! let registry = Registry::core();
//! let users = registry.context_for("User")?;
//! let filter = parse_filter(r#"userType eq "Employee" and emails[type eq "work" and value co "@EXAMPLE.com"]"#)?;
//! let user = json!({
//!     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
//!     "userName": "bjensen", "userType": "Employee",
//!     "emails": [{"type": "work", "value": "bjensen@example.com"}]
//! });
//! assert!(filter.matches(&user, &users)?);
//! // Printing gives text that parses back to the same AST.
//! assert_eq!(parse_filter(&filter.to_string())?, filter);
//! # Ok::<(), scimgate_scim::ScimError>(())
//! ```
//!
//! PATCH:
//!
//! ```
//! use scimgate_scim::{apply_patch, PatchRequest, Registry, ScimType};
//! use serde_json::json;
//!
//! let registry = Registry::core();
//! let groups = registry.context_for("Group")?;
//! let group = json!({
//!     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
//!     "id": "g1", "displayName": "Tour Guides",
//!     "members": [{"value": "u1"}, {"value": "u2"}, {"value": "u3"}]
//! });
//! let request = PatchRequest::parse(&json!({
//!     "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
//!     "Operations": [
//!         {"op": "remove", "path": "members[value eq \"u1\" or value eq \"u3\"]"},
//!         {"op": "add", "path": "members", "value": [{"value": "u4"}]}
//!     ]
//! }))?;
//! let patched = apply_patch(&groups, &group, &request)?;
//! assert_eq!(patched["members"], json!([{"value": "u2"}, {"value": "u4"}]));
//!
//! // All or nothing: a failing operation leaves no trace and names the RFC error.
//! let failing = PatchRequest::parse(&json!({
//!     "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
//!     "Operations": [{"op": "remove", "path": "members[value eq \"nobody\"]"}]
//! }))?;
//! let error = apply_patch(&groups, &group, &failing).unwrap_err();
//! assert_eq!(error.scim_type, Some(ScimType::NoTarget));
//! assert_eq!(error.to_json()["status"], "400");
//! # Ok::<(), scimgate_scim::ScimError>(())
//! ```

pub mod body;
pub mod bulk;
pub mod core_schemas;
pub mod dialect;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod mapping;
pub mod message;
mod object_keys;
pub mod patch;
pub mod profile;
pub mod projection;
pub mod redact;
pub mod registry;
pub mod schema;
pub mod sort;
pub mod target;
pub mod urn;
pub mod validate;

pub use body::parse_body;
pub use bulk::{BulkOperation, BulkRequest};
pub use error::{ScimError, ScimType};
pub use filter::{parse_filter, AttrPath, CompValue, CompareOp, Filter, PatchPath};
pub use mapping::{Mapping, MappingIssue};
pub use message::list_response;
pub use patch::{apply_patch, PatchOpKind, PatchOperation, PatchRequest};
pub use projection::{project, project_owned, strip_never, strip_never_owned, AttributeSelection};
pub use registry::{Registry, ResourceType, SchemaCtx, SchemaExtension};
pub use schema::{AttrType, Attribute, Mutability, Returned, Schema, Uniqueness};
pub use sort::SortOrder;
pub use target::Target;
pub use validate::{validate_create, validate_replace};
