//! The one reader of Bulk request bodies (RFC 7644 §3.7), shared by the
//! policies that judge each operation and the endpoint that runs it.
//!
//! Member names are read ignoring case (RFC 7643 §2.1) and a body in which
//! two names are equal ignoring case is refused (see [`crate::body`]). Each
//! operation's `path` is canonicalised with the same function the host
//! applies to request paths, so an operation means the same thing as the
//! request it stands for; [`BulkOperation::target`] says what it addresses.

use scimgate_abi::text::shown;
use serde_json::{Map, Value};

use crate::body::{has_unique_names, parse_body};
use crate::error::ScimError;
use crate::object_keys;
use crate::target::Target;
use crate::urn;

/// A Bulk request, read once. Operations that could not be read carry
/// their error, so that the response can report it at its position.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRequest {
    /// `failOnErrors`: stop after this many failed operations.
    pub fail_on_errors: Option<u64>,
    pub operations: Vec<Result<BulkOperation, ScimError>>,
}

/// One operation of a Bulk request.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkOperation {
    /// `POST`, `PUT`, `PATCH` or `DELETE` (upper-case).
    pub method: String,
    pub bulk_id: Option<String>,
    pub version: Option<String>,
    /// Canonical path below the SCIM base (`/Users`, `/Groups/bulkId:g1`).
    pub path: String,
    pub data: Option<Value>,
}

impl BulkOperation {
    /// What the operation addresses.
    pub fn target(&self) -> Target<'_> {
        Target::resolve(&self.path)
    }
}

const METHODS: [&str; 4] = ["POST", "PUT", "PATCH", "DELETE"];

impl BulkRequest {
    /// Reads a Bulk request from the raw body.
    pub fn from_slice(body: &[u8]) -> Result<BulkRequest, ScimError> {
        BulkRequest::parse(&parse_body(body)?)
    }

    /// Reads a Bulk request from a body already read with
    /// [`parse_body`]; a value built otherwise is checked for member names
    /// that repeat ignoring case.
    pub fn parse(body: &Value) -> Result<BulkRequest, ScimError> {
        let object = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a BulkRequest must be a JSON object"))?;
        if !has_unique_names(body) {
            return Err(ScimError::invalid_syntax(
                "the BulkRequest has two members whose names are equal ignoring case, so it has no single meaning",
            ));
        }
        let lists_urn = object_keys::get(object, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|schemas| {
                schemas.iter().any(|u| {
                    u.as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(urn::BULK_REQUEST))
                })
            });
        if !lists_urn {
            return Err(ScimError::invalid_syntax(format!(
                "a BulkRequest must have \"schemas\": [\"{}\"]",
                urn::BULK_REQUEST
            )));
        }
        let items = object_keys::get(object, "Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ScimError::invalid_syntax("a BulkRequest needs an 'Operations' array")
            })?;
        let fail_on_errors = match object_keys::get(object, "failOnErrors") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                ScimError::invalid_syntax("'failOnErrors' must be a positive integer")
            })?),
        };
        Ok(BulkRequest {
            fail_on_errors,
            operations: items.iter().map(parse_operation).collect(),
        })
    }
}

fn parse_operation(item: &Value) -> Result<BulkOperation, ScimError> {
    let object = item
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("each operation must be a JSON object"))?;
    let method = text(object, "method")?
        .ok_or_else(|| ScimError::invalid_syntax("an operation needs a 'method'"))?
        .to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(ScimError::invalid_syntax(format!(
            "unknown bulk method '{}'",
            shown(&method)
        )));
    }
    let raw_path = text(object, "path")?
        .ok_or_else(|| ScimError::invalid_syntax("an operation needs a 'path'"))?;
    // RFC 7644's paths start with `/`; `Users` has the same single meaning.
    let absolute = if raw_path.starts_with('/') {
        raw_path.to_string()
    } else {
        format!("/{raw_path}")
    };
    let path = scimgate_abi::path::canonicalize(&absolute).map_err(|e| {
        ScimError::invalid_path(format!("operation path '{}': {e}", shown(raw_path)))
    })?;
    let bulk_id = text(object, "bulkId")?.map(str::to_string);
    if method == "POST" && bulk_id.is_none() {
        return Err(ScimError::invalid_syntax(
            "a POST operation needs a 'bulkId'",
        ));
    }
    Ok(BulkOperation {
        method,
        bulk_id,
        version: text(object, "version")?.map(str::to_string),
        path,
        data: object_keys::get(object, "data").cloned(),
    })
}

/// A string member (ignoring case); present but not a string is an error.
fn text<'v>(object: &'v Map<String, Value>, name: &str) -> Result<Option<&'v str>, ScimError> {
    match object_keys::get(object, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ScimError::invalid_syntax(format!(
            "an operation's '{name}' must be a string"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bulk(operations: Value) -> Value {
        json!({"schemas": [urn::BULK_REQUEST], "Operations": operations})
    }

    #[test]
    fn reads_operations_ignoring_case() {
        let body = json!({"SCHEMAS": [urn::BULK_REQUEST], "operations": [
            {"METHOD": "post", "Path": "/Users", "BULKID": "a", "Data": {"userName": "x"}},
            {"method": "PATCH", "path": "Groups/bulkId:a", "version": "W/\"1\""},
            {"method": "DELETE", "path": "/%55sers/7"}
        ], "failonerrors": 2});
        let request = BulkRequest::parse(&body).unwrap();
        assert_eq!(request.fail_on_errors, Some(2));
        let ops: Vec<_> = request
            .operations
            .iter()
            .map(|o| o.as_ref().unwrap())
            .collect();
        assert_eq!(ops[0].method, "POST");
        assert_eq!(ops[0].bulk_id.as_deref(), Some("a"));
        assert_eq!(ops[0].data, Some(json!({"userName": "x"})));
        assert_eq!(ops[1].path, "/Groups/bulkId:a");
        assert_eq!(ops[1].version.as_deref(), Some("W/\"1\""));
        assert_eq!(ops[2].path, "/Users/7");
        assert_eq!(ops[2].target(), Target::Resource("Users", "7"));
    }

    #[test]
    fn refuses_bodies_without_a_single_meaning() {
        let err = BulkRequest::from_slice(
            format!(
                r#"{{"schemas": ["{}"], "Operations": [], "OPERATIONS": [{{"method": "POST", "path": "/Groups", "bulkId": "g"}}]}}"#,
                urn::BULK_REQUEST
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.status, 400);
        let err = BulkRequest::from_slice(
            format!(
                r#"{{"schemas": ["{}"], "Operations": [{{"method": "POST", "path": "/Users", "PATH": "/Groups", "bulkId": "g"}}]}}"#,
                urn::BULK_REQUEST
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert!(err.detail.contains("no single meaning"), "{}", err.detail);
        // A value built without parse_body is checked as well.
        let mut op = Map::new();
        op.insert("path".into(), json!("/Users"));
        op.insert("Path".into(), json!("/Groups"));
        op.insert("method".into(), json!("POST"));
        assert!(BulkRequest::parse(&bulk(json!([Value::Object(op)]))).is_err());
    }

    #[test]
    fn per_operation_errors_stay_at_their_position() {
        let request = BulkRequest::parse(&bulk(json!([
            {"method": "GET", "path": "/Users"},
            {"method": "POST", "path": "/Users"},
            {"method": "DELETE", "path": "/Users/%2F"},
            {"method": "DELETE", "path": "/Users/../Groups/1"},
            {"method": "DELETE", "path": 7},
            "not an object",
            {"method": "DELETE", "path": "/Users/1"}
        ])))
        .unwrap();
        let errors: Vec<Option<String>> = request
            .operations
            .iter()
            .map(|o| o.as_ref().err().map(|e| e.detail.clone()))
            .collect();
        assert!(errors[0]
            .as_deref()
            .unwrap()
            .contains("unknown bulk method"));
        assert!(errors[1].as_deref().unwrap().contains("bulkId"));
        assert!(errors[2].as_deref().unwrap().contains("encoded"));
        assert!(errors[3].as_deref().unwrap().contains("`..`"));
        assert!(errors[4].as_deref().unwrap().contains("must be a string"));
        assert!(errors[5].as_deref().unwrap().contains("JSON object"));
        assert!(errors[6].is_none());
    }

    #[test]
    fn whole_request_errors() {
        for (body, needle) in [
            (json!([]), "JSON object"),
            (json!({"Operations": []}), "schemas"),
            (json!({"schemas": [urn::BULK_REQUEST]}), "Operations"),
            (
                json!({"schemas": [urn::BULK_REQUEST], "Operations": [], "failOnErrors": 0}),
                "failOnErrors",
            ),
        ] {
            let err = BulkRequest::parse(&body).unwrap_err();
            assert!(err.detail.contains(needle), "{body}: {}", err.detail);
        }
    }
}
