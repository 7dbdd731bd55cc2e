//! The one error type of the crate, [`ScimError`], and its RFC 7644 §3.12 wire form.
//!
//! Every fallible function returns a `ScimError` that already knows its HTTP
//! status and `scimType`, so a server can render it with [`ScimError::to_json`].

use serde_json::{json, Value};
use std::fmt;

use crate::urn;

/// The `scimType` error keywords of RFC 7644 §3.12 (Table 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    /// The filter syntax was invalid or the attribute and comparison are not supported.
    InvalidFilter,
    /// The filter yields more results than the server will return.
    TooMany,
    /// One or more attribute values are already in use or reserved.
    Uniqueness,
    /// The modification is incompatible with the attribute's mutability.
    Mutability,
    /// The request body was malformed or did not conform to the schema.
    InvalidSyntax,
    /// The `path` attribute was invalid or malformed.
    InvalidPath,
    /// The `path` did not yield an attribute or value that could be operated on.
    NoTarget,
    /// A required value was missing or the value was not compatible with the attribute type.
    InvalidValue,
    /// The specified SCIM protocol version is not supported.
    InvalidVers,
    /// The request cannot be completed because it contains sensitive information in the URL.
    Sensitive,
}

impl ScimType {
    /// The keyword as written in the `scimType` member, e.g. `"invalidFilter"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }

    /// Parses a `scimType` keyword (case-insensitive).
    pub fn parse(keyword: &str) -> Option<ScimType> {
        const ALL: [ScimType; 10] = [
            ScimType::InvalidFilter,
            ScimType::TooMany,
            ScimType::Uniqueness,
            ScimType::Mutability,
            ScimType::InvalidSyntax,
            ScimType::InvalidPath,
            ScimType::NoTarget,
            ScimType::InvalidValue,
            ScimType::InvalidVers,
            ScimType::Sensitive,
        ];
        ALL.into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(keyword))
    }

    /// The HTTP status RFC 7644 associates with this keyword (409 for uniqueness, else 400).
    pub fn status(self) -> u16 {
        match self {
            ScimType::Uniqueness => 409,
            _ => 400,
        }
    }
}

impl fmt::Display for ScimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SCIM error: HTTP status, optional `scimType` and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    /// HTTP status code (400, 404, 409, …).
    pub status: u16,
    /// The RFC 7644 `scimType`, when one applies.
    pub scim_type: Option<ScimType>,
    /// Human-readable explanation, naming the offending attribute or position.
    pub detail: String,
}

impl ScimError {
    /// An error with the status RFC 7644 gives to `scim_type`.
    pub fn new(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError {
            status: scim_type.status(),
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// An error with an explicit status and no `scimType` (404, 412, 500, …).
    pub fn with_status(status: u16, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// `400 invalidFilter`.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new(ScimType::InvalidFilter, detail)
    }
    /// `400 tooMany`.
    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::new(ScimType::TooMany, detail)
    }
    /// `409 uniqueness`.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(ScimType::Uniqueness, detail)
    }
    /// `400 mutability`.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::new(ScimType::Mutability, detail)
    }
    /// `400 invalidSyntax`.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(ScimType::InvalidSyntax, detail)
    }
    /// `400 invalidPath`.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(ScimType::InvalidPath, detail)
    }
    /// `400 noTarget`.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::new(ScimType::NoTarget, detail)
    }
    /// `400 invalidValue`.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(ScimType::InvalidValue, detail)
    }
    /// `400 invalidVers`.
    pub fn invalid_vers(detail: impl Into<String>) -> Self {
        Self::new(ScimType::InvalidVers, detail)
    }
    /// `403 sensitive` (RFC 7644 §3.12 gives 403 for sensitive data in the URL).
    pub fn sensitive(detail: impl Into<String>) -> Self {
        ScimError {
            status: 403,
            scim_type: Some(ScimType::Sensitive),
            detail: detail.into(),
        }
    }
    /// `404` without `scimType`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::with_status(404, detail)
    }

    /// The RFC 7644 §3.12 error body: `schemas`, `status` (a string), `scimType`, `detail`.
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "schemas": [urn::ERROR],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(kind), Some(object)) = (self.scim_type, body.as_object_mut()) {
            object.insert("scimType".into(), Value::String(kind.as_str().into()));
        }
        body
    }
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scim_type {
            Some(kind) => write!(f, "{} {}: {}", self.status, kind, self.detail),
            None => write!(f, "{}: {}", self.status, self.detail),
        }
    }
}

impl std::error::Error for ScimError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc_error_body() {
        let error = ScimError::mutability("Attribute 'id' is readOnly");
        assert_eq!(
            error.to_json(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "scimType": "mutability",
                "detail": "Attribute 'id' is readOnly",
                "status": "400"
            })
        );
    }

    #[test]
    fn body_without_scim_type_omits_member() {
        let body = ScimError::not_found("Resource 2819c223 not found").to_json();
        assert_eq!(body["status"], "404");
        assert!(body.get("scimType").is_none());
    }

    #[test]
    fn keywords_round_trip_and_statuses() {
        for keyword in [
            "invalidFilter",
            "tooMany",
            "uniqueness",
            "mutability",
            "invalidSyntax",
            "invalidPath",
            "noTarget",
            "invalidValue",
            "invalidVers",
            "sensitive",
        ] {
            let kind = ScimType::parse(keyword);
            assert_eq!(kind.map(ScimType::as_str), Some(keyword));
        }
        assert_eq!(ScimError::uniqueness("taken").status, 409);
        assert_eq!(ScimError::sensitive("x").status, 403);
        assert_eq!(ScimError::invalid_filter("x").status, 400);
    }
}
