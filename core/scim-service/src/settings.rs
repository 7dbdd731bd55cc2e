//! The engine's settings: paging limits, Bulk limits, PATCH responses,
//! uniqueness of group names, `/Me`, cursor lifetime, password storage and
//! the bound on in-memory evaluation, plus the ServiceProviderConfig
//! document they advertise. [`Settings::default`] holds the documented
//! defaults.
//!
//! [`EngineSettings`] is the same settings as config keys, declared once for
//! every plugin that serves SCIM with this engine (`scim-server/scim`,
//! `ldap/directory`): each flattens it into its stage table with
//! `#[serde(flatten)]`, so the keys (`max_results`, `bulk.*`,
//! `cursor_timeout`, …), their defaults, grammar (sizes and durations of
//! `scimgate_abi::units`) and docs exist here only. Flattening keeps the keys
//! at the top of the stage table (existing configs stay valid); the outer
//! struct's `deny_unknown_fields` still refuses unknown keys, and the derived
//! JSON Schema lists the engine keys among the plugin's own.

use schemars::JsonSchema;
use scimgate_abi::units::{Seconds, Size};
use scimgate_scim::discovery::{AuthenticationScheme, ServiceProviderConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::password::PasswordStorage;

/// What a successful PATCH answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PatchResponse {
    /// 200 with the resource.
    #[default]
    Resource,
    /// 204 without a body.
    NoContent,
}

/// `POST /Bulk` limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkSettings {
    /// Serve `/Bulk` (501 otherwise). Default `true`.
    pub enabled: bool,
    /// Most operations in one request (413 above). Default 1000.
    pub max_operations: u64,
    /// Largest request body in bytes (413 above). Default 1 MiB.
    pub max_payload_size: u64,
}

impl Default for BulkSettings {
    fn default() -> Self {
        BulkSettings {
            enabled: true,
            max_operations: 1000,
            max_payload_size: 1024 * 1024,
        }
    }
}

/// Default of [`Settings::max_scan`].
pub const DEFAULT_MAX_SCAN: u64 = 100_000;

/// Everything the engine needs besides the schemas and the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The most resources one list/search response returns (`count` above
    /// it is clamped); advertised as `filter.maxResults` and `maxPageSize`.
    /// Default 200.
    pub max_results: u64,
    /// Page size when the client sends no `count`. Default 100.
    pub default_page_size: u64,
    pub bulk: BulkSettings,
    /// Default [`PatchResponse::Resource`].
    pub patch_response: PatchResponse,
    /// Group `displayName`s are unique (case-insensitive), 409 otherwise.
    /// Default `true`.
    pub unique_group_names: bool,
    /// Serve `/Me` as the User whose `userName` is the caller's subject.
    /// Default `false`.
    pub me: bool,
    /// How long an RFC 9865 cursor stays valid, in seconds. Default 600.
    pub cursor_timeout_secs: u64,
    /// What a write does with a `password`. Default [`PasswordStorage::Hash`].
    pub password_storage: PasswordStorage,
    /// The most rows the engine reads from the backend for one list or
    /// search when it must evaluate the filter or the sort itself (the
    /// backend could not narrow exactly, or `sortBy` is given); beyond it
    /// the request is refused with 400 `tooMany`. Default
    /// [`DEFAULT_MAX_SCAN`] (100000).
    pub max_scan: u64,
    /// Advertised in `authenticationSchemes` (`None`: one `oauthbearertoken`).
    pub authentication_schemes: Option<Vec<AuthenticationScheme>>,
    /// `documentationUri` of the ServiceProviderConfig.
    pub documentation_uri: Option<String>,
    /// The change feed ([`ChangeSettings`]).
    pub changes: ChangeSettings,
}

/// The change log and its pull feed, `GET /Changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSettings {
    /// Record every write in the backend's change log (when it keeps one)
    /// and serve `/Changes`; `false`: nothing is recorded and `/Changes`
    /// answers 501. Default `true`.
    pub enabled: bool,
    /// Entries older than this are pruned (by a writer, at most once a
    /// minute), in seconds. Default 7 days.
    pub retention_secs: u64,
    /// The longest `wait` a long poll may ask for, in seconds (larger
    /// values are clamped). Default 20 (below the host's default
    /// `request_timeout` of 30 s); at most [`MAX_CHANGE_WAIT_SECS`].
    pub max_wait_secs: u64,
    /// How many long polls may wait at once; beyond it a request answers at
    /// once as if it had asked for no wait (the client polls again), so
    /// waiting feed readers never hold more than this many of the host's
    /// pipeline slots. Default 4.
    pub max_waiters: usize,
}

/// The ceiling of [`ChangeSettings::max_wait_secs`].
pub const MAX_CHANGE_WAIT_SECS: u64 = 60;

impl Default for ChangeSettings {
    fn default() -> Self {
        ChangeSettings {
            enabled: true,
            retention_secs: 7 * 86_400,
            max_wait_secs: 20,
            max_waiters: 4,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_results: 200,
            default_page_size: 100,
            bulk: BulkSettings::default(),
            patch_response: PatchResponse::Resource,
            unique_group_names: true,
            me: false,
            cursor_timeout_secs: 600,
            password_storage: PasswordStorage::Hash,
            max_scan: DEFAULT_MAX_SCAN,
            authentication_schemes: None,
            documentation_uri: None,
            changes: ChangeSettings::default(),
        }
    }
}

/// The engine's settings as keys of a stage table (flattened into the
/// plugin's config). Every key is optional; the defaults are those of
/// [`Settings::default`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct EngineSettings {
    /// The most resources one list/search response returns (`count` above
    /// it is clamped); advertised as `filter.maxResults` and `maxPageSize`.
    pub max_results: u64,
    /// Page size when the client sends no `count`; at most `max_results`.
    pub default_page_size: u64,
    /// `POST /Bulk` limits.
    pub bulk: BulkConfig,
    /// What a successful PATCH answers: `resource` (200 with the resource)
    /// or `no-content` (204).
    pub patch_response: PatchResponse,
    /// Group `displayName`s are unique (case-insensitive), 409 otherwise.
    pub unique_group_names: bool,
    /// Serve `/Me` as the User whose `userName` is the caller's subject.
    pub me: bool,
    /// How long an RFC 9865 cursor stays valid (`"30s"`, `"10m"`, `"1h"`,
    /// or seconds).
    pub cursor_timeout: Seconds,
    /// What a write does with a `password`: `hash` (store an argon2id PHC
    /// string), `drop` (store nothing), `refuse` (400 `invalidValue`) or
    /// `backend` (the backend stores it its own way, where it can).
    pub password_storage: PasswordStorage,
    /// The most rows one list or search reads when the filter or the sort
    /// must be evaluated in memory; beyond it 400 `tooMany`.
    pub max_scan: u64,
    /// Advertised in `authenticationSchemes` (default: one `oauthbearertoken`).
    pub authentication_schemes: Option<Vec<AuthSchemeConfig>>,
    /// `documentationUri` of the ServiceProviderConfig.
    pub documentation_uri: Option<String>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        let defaults = Settings::default();
        EngineSettings {
            max_results: defaults.max_results,
            default_page_size: defaults.default_page_size,
            bulk: BulkConfig::default(),
            patch_response: defaults.patch_response,
            unique_group_names: defaults.unique_group_names,
            me: defaults.me,
            cursor_timeout: Seconds(defaults.cursor_timeout_secs),
            password_storage: defaults.password_storage,
            max_scan: defaults.max_scan,
            authentication_schemes: None,
            documentation_uri: None,
        }
    }
}

/// `bulk` of [`EngineSettings`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BulkConfig {
    /// Serve `/Bulk` (501 otherwise).
    pub enabled: bool,
    /// Most operations in one Bulk request (413 above).
    pub max_operations: u64,
    /// Largest Bulk request body: bytes, or `"1MiB"`, `"512KiB"`, `"1MB"`.
    pub max_payload_size: Size,
}

impl Default for BulkConfig {
    fn default() -> Self {
        let defaults = BulkSettings::default();
        BulkConfig {
            enabled: defaults.enabled,
            max_operations: defaults.max_operations,
            max_payload_size: Size(defaults.max_payload_size),
        }
    }
}

/// One advertised authentication scheme (`authentication_schemes`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSchemeConfig {
    /// `oauthbearertoken`, `httpbasic`, …
    #[serde(rename = "type")]
    pub scheme_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_uri: Option<String>,
    #[serde(default)]
    pub primary: bool,
}

impl AuthSchemeConfig {
    /// The advertised scheme: the known types with their RFC texts, any
    /// other as named; `name`, `description` and URIs override.
    pub fn scheme(&self) -> AuthenticationScheme {
        let known = match self.scheme_type.to_ascii_lowercase().as_str() {
            "oauthbearertoken" => Some(AuthenticationScheme::oauth_bearer_token(self.primary)),
            "httpbasic" => Some(AuthenticationScheme::http_basic(self.primary)),
            _ => None,
        };
        let mut scheme = known.unwrap_or(AuthenticationScheme {
            scheme_type: self.scheme_type.clone(),
            name: self.scheme_type.clone(),
            description: String::new(),
            spec_uri: None,
            documentation_uri: None,
            primary: self.primary,
        });
        if let Some(name) = &self.name {
            scheme.name = name.clone();
        }
        if let Some(d) = &self.description {
            scheme.description = d.clone();
        }
        if self.spec_uri.is_some() {
            scheme.spec_uri = self.spec_uri.clone();
        }
        if self.documentation_uri.is_some() {
            scheme.documentation_uri = self.documentation_uri.clone();
        }
        scheme
    }
}

impl EngineSettings {
    /// The engine settings these keys describe.
    pub fn settings(&self) -> Settings {
        Settings {
            max_results: self.max_results,
            default_page_size: self.default_page_size,
            bulk: BulkSettings {
                enabled: self.bulk.enabled,
                max_operations: self.bulk.max_operations,
                max_payload_size: self.bulk.max_payload_size.0,
            },
            patch_response: self.patch_response,
            unique_group_names: self.unique_group_names,
            me: self.me,
            cursor_timeout_secs: self.cursor_timeout.0,
            password_storage: self.password_storage,
            max_scan: self.max_scan,
            authentication_schemes: self
                .authentication_schemes
                .as_ref()
                .map(|schemes| schemes.iter().map(AuthSchemeConfig::scheme).collect()),
            documentation_uri: self.documentation_uri.clone(),
            changes: ChangeSettings::default(),
        }
    }
}

impl Settings {
    /// Problems with the values, as (setting, message) pairs.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut issues = Vec::new();
        if self.max_results == 0 {
            issues.push(("max_results", "must be at least 1".to_string()));
        }
        if self.default_page_size == 0 {
            issues.push(("default_page_size", "must be at least 1".to_string()));
        } else if self.default_page_size > self.max_results {
            issues.push((
                "default_page_size",
                format!("must not exceed max_results ({})", self.max_results),
            ));
        }
        if self.bulk.max_operations == 0 {
            issues.push(("bulk.max_operations", "must be at least 1".to_string()));
        }
        if self.bulk.max_payload_size == 0 {
            issues.push(("bulk.max_payload_size", "must be at least 1".to_string()));
        }
        if self.cursor_timeout_secs == 0 {
            issues.push(("cursor_timeout", "must be at least 1s".to_string()));
        }
        if self.max_scan == 0 {
            issues.push(("max_scan", "must be at least 1".to_string()));
        }
        if self.changes.retention_secs == 0 {
            issues.push(("change_retention", "must be at least 1s".to_string()));
        }
        if self.changes.max_wait_secs > MAX_CHANGE_WAIT_SECS {
            issues.push((
                "change_max_wait",
                format!("must be at most {MAX_CHANGE_WAIT_SECS}s"),
            ));
        }
        issues
    }

    /// The cursor lifetime in milliseconds (saturating).
    pub(crate) fn cursor_timeout_ms(&self) -> i64 {
        (self.cursor_timeout_secs.min(i64::MAX as u64 / 1000) as i64) * 1000
    }

    /// The ServiceProviderConfig body (without `meta.location`), including
    /// the RFC 9865 `pagination` object.
    pub fn service_provider_config(&self) -> Value {
        let mut spc = ServiceProviderConfig::default()
            .with_patch()
            .with_filter(self.max_results)
            .with_sort()
            .with_etag();
        if self.bulk.enabled {
            spc = spc.with_bulk(self.bulk.max_operations, self.bulk.max_payload_size);
        }
        spc.documentation_uri = self.documentation_uri.clone();
        match &self.authentication_schemes {
            None => {
                spc = spc.with_authentication_scheme(AuthenticationScheme::oauth_bearer_token(true))
            }
            Some(schemes) => {
                for scheme in schemes {
                    spc = spc.with_authentication_scheme(scheme.clone());
                }
            }
        }
        let mut body = spc.to_json(None);
        body["pagination"] = serde_json::json!({
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": self.default_page_size,
            "maxPageSize": self.max_results,
            "cursorTimeout": self.cursor_timeout_secs,
        });
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_keys_default_to_the_engine_defaults() {
        let keys: EngineSettings = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(keys, EngineSettings::default());
        assert_eq!(keys.settings(), Settings::default());
        let keys: EngineSettings = serde_json::from_value(serde_json::json!({
            "bulk": {"max_payload_size": "512KiB"}, "cursor_timeout": "2h", "patch_response": "no-content"
        }))
        .unwrap();
        let settings = keys.settings();
        assert_eq!(settings.bulk.max_payload_size, 512 * 1024);
        assert_eq!(settings.cursor_timeout_secs, 7200);
        assert_eq!(settings.patch_response, PatchResponse::NoContent);
    }

    #[test]
    fn the_schema_lists_every_engine_key_with_its_default() {
        let schema = serde_json::to_value(schemars::schema_for!(EngineSettings)).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        for key in [
            "max_results",
            "default_page_size",
            "bulk",
            "patch_response",
            "unique_group_names",
            "me",
            "cursor_timeout",
            "password_storage",
            "max_scan",
            "authentication_schemes",
            "documentation_uri",
        ] {
            assert!(properties.contains_key(key), "{key}");
        }
        assert_eq!(properties["cursor_timeout"]["default"], "10m");
        assert_eq!(properties["max_results"]["default"], 200);
    }
}
