//! The engine's settings: paging limits, Bulk limits, PATCH responses,
//! uniqueness of group names, `/Me`, cursor lifetime, password storage and
//! the bound on in-memory evaluation, plus the ServiceProviderConfig
//! document they advertise. A plugin maps its own configuration onto
//! [`Settings`]; [`Settings::default`] holds the documented defaults.

use scimgate_scim::discovery::{AuthenticationScheme, ServiceProviderConfig};
use serde::Deserialize;
use serde_json::Value;

pub use crate::password::PasswordStorage;

/// What a successful PATCH answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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
