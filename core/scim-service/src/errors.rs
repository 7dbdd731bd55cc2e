//! The one place where protocol errors become [`PluginError`]s (the host
//! renders them as RFC 7644 §3.12 bodies: `status`, `scimType`, `detail`).

use scimgate_abi::PluginError;
use scimgate_scim::ScimError;

/// A `scimgate-scim` error, with its status and `scimType`.
pub fn from_scim(error: ScimError) -> PluginError {
    let out = PluginError::new(error.status, error.detail);
    match error.scim_type {
        Some(kind) => out.with_code(kind.as_str()),
        None => out,
    }
}

/// A 4xx with an RFC `scimType` keyword.
pub fn bad(status: u16, scim_type: &str, detail: impl Into<String>) -> PluginError {
    PluginError::new(status, detail).with_code(scim_type)
}

pub fn invalid_syntax(detail: impl Into<String>) -> PluginError {
    bad(400, "invalidSyntax", detail)
}

pub fn invalid_value(detail: impl Into<String>) -> PluginError {
    bad(400, "invalidValue", detail)
}

pub fn not_found(detail: impl Into<String>) -> PluginError {
    PluginError::new(404, detail)
}

pub fn precondition_failed(detail: impl Into<String>) -> PluginError {
    PluginError::new(412, detail)
}

/// The RFC 7644 §3.12 body of an error, for places that embed one (Bulk).
pub fn to_json(error: &PluginError) -> serde_json::Value {
    let mut body = serde_json::json!({
        "schemas": [scimgate_scim::urn::ERROR],
        "status": error.status.to_string(),
        "detail": if error.status >= 500 { "internal error".to_string() } else { error.message.to_string() },
    });
    if let (Some(code), true) = (error.code(), error.status < 500) {
        body["scimType"] = serde_json::Value::String(code.to_string());
    }
    body
}

/// 400 `tooMany`: the engine would have to evaluate a filter or sort over
/// more than `max_scan` resources itself.
pub fn too_many(max_scan: u64) -> PluginError {
    bad(
        400,
        "tooMany",
        format!(
            "this filter or sort must be evaluated by the service over more than {max_scan} \
             resources (max_scan); narrow it with conditions the backend can search itself \
             (for the SQL stores: eq on id, userName, externalId, displayName, emails)"
        ),
    )
}
