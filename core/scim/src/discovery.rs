//! Discovery documents (RFC 7643 §5): the [`ServiceProviderConfig`] builder, and
//! helpers rendering every schema and resource type of a [`Registry`].

use serde_json::{json, Value};

use crate::registry::Registry;
use crate::urn;

/// An authentication scheme advertised in `authenticationSchemes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationScheme {
    /// `oauthbearertoken`, `httpbasic`, …
    pub scheme_type: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Specification URI.
    pub spec_uri: Option<String>,
    /// Documentation URI.
    pub documentation_uri: Option<String>,
    /// Whether this is the preferred scheme.
    pub primary: bool,
}

impl AuthenticationScheme {
    /// OAuth 2.0 bearer tokens (RFC 6750).
    pub fn oauth_bearer_token(primary: bool) -> Self {
        AuthenticationScheme {
            scheme_type: "oauthbearertoken".into(),
            name: "OAuth Bearer Token".into(),
            description: "Authentication scheme using the OAuth Bearer Token Standard".into(),
            spec_uri: Some("https://www.rfc-editor.org/info/rfc6750".into()),
            documentation_uri: None,
            primary,
        }
    }

    /// HTTP Basic (RFC 7617).
    pub fn http_basic(primary: bool) -> Self {
        AuthenticationScheme {
            scheme_type: "httpbasic".into(),
            name: "HTTP Basic".into(),
            description: "Authentication scheme using the HTTP Basic Standard".into(),
            spec_uri: Some("https://www.rfc-editor.org/info/rfc7617".into()),
            documentation_uri: None,
            primary,
        }
    }

    fn to_json(&self) -> Value {
        let mut body = json!({
            "type": self.scheme_type,
            "name": self.name,
            "description": self.description,
            "primary": self.primary,
        });
        if let Some(uri) = &self.spec_uri {
            body["specUri"] = json!(uri);
        }
        if let Some(uri) = &self.documentation_uri {
            body["documentationUri"] = json!(uri);
        }
        body
    }
}

/// What the service provider supports (RFC 7643 §5). Defaults: everything off,
/// limits zero; set what is really on so discovery tells the truth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceProviderConfig {
    /// Human-readable help URI.
    pub documentation_uri: Option<String>,
    /// PATCH supported.
    pub patch: bool,
    /// Bulk supported.
    pub bulk: bool,
    /// Bulk: maximum operations per request.
    pub bulk_max_operations: u64,
    /// Bulk: maximum payload size in bytes.
    pub bulk_max_payload_size: u64,
    /// Filtering supported.
    pub filter: bool,
    /// Filtering: maximum results returned.
    pub filter_max_results: u64,
    /// Password change supported.
    pub change_password: bool,
    /// Sorting supported.
    pub sort: bool,
    /// ETags supported.
    pub etag: bool,
    /// Authentication schemes.
    pub authentication_schemes: Vec<AuthenticationScheme>,
}

impl ServiceProviderConfig {
    /// Enables PATCH.
    pub fn with_patch(mut self) -> Self {
        self.patch = true;
        self
    }
    /// Enables bulk with its limits.
    pub fn with_bulk(mut self, max_operations: u64, max_payload_size: u64) -> Self {
        self.bulk = true;
        self.bulk_max_operations = max_operations;
        self.bulk_max_payload_size = max_payload_size;
        self
    }
    /// Enables filtering with a result limit.
    pub fn with_filter(mut self, max_results: u64) -> Self {
        self.filter = true;
        self.filter_max_results = max_results;
        self
    }
    /// Enables sorting.
    pub fn with_sort(mut self) -> Self {
        self.sort = true;
        self
    }
    /// Enables ETags.
    pub fn with_etag(mut self) -> Self {
        self.etag = true;
        self
    }
    /// Enables password change.
    pub fn with_change_password(mut self) -> Self {
        self.change_password = true;
        self
    }
    /// Adds an authentication scheme.
    pub fn with_authentication_scheme(mut self, scheme: AuthenticationScheme) -> Self {
        self.authentication_schemes.push(scheme);
        self
    }

    /// The body served at `/ServiceProviderConfig`.
    pub fn to_json(&self, base_url: Option<&str>) -> Value {
        let schemes: Vec<Value> = self
            .authentication_schemes
            .iter()
            .map(AuthenticationScheme::to_json)
            .collect();
        let mut body = json!({
            "schemas": [urn::SERVICE_PROVIDER_CONFIG],
            "patch": { "supported": self.patch },
            "bulk": {
                "supported": self.bulk,
                "maxOperations": self.bulk_max_operations,
                "maxPayloadSize": self.bulk_max_payload_size,
            },
            "filter": { "supported": self.filter, "maxResults": self.filter_max_results },
            "changePassword": { "supported": self.change_password },
            "sort": { "supported": self.sort },
            "etag": { "supported": self.etag },
            "authenticationSchemes": schemes,
            "meta": { "resourceType": "ServiceProviderConfig" },
        });
        if let Some(uri) = &self.documentation_uri {
            body["documentationUri"] = json!(uri);
        }
        if let Some(base) = base_url {
            body["meta"]["location"] = json!(format!(
                "{}/ServiceProviderConfig",
                base.trim_end_matches('/')
            ));
        }
        body
    }
}

/// Every schema of `registry` as served at `/Schemas` (one JSON per schema).
pub fn schemas_json(registry: &Registry, base_url: Option<&str>) -> Vec<Value> {
    registry
        .schemas()
        .iter()
        .map(|schema| schema.to_json(base_url))
        .collect()
}

/// Every resource type of `registry` as served at `/ResourceTypes`.
pub fn resource_types_json(registry: &Registry, base_url: Option<&str>) -> Vec<Value> {
    registry
        .resource_types()
        .iter()
        .map(|resource_type| resource_type.to_json(base_url))
        .collect()
}
