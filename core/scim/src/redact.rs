//! Log-safe renderings of request bodies. Profiles and endpoints log what a
//! client sent at debug level so real traffic can be studied; these functions
//! show the PATCH operations, their paths and the *shape* of their values
//! (attribute names and JSON types), never a value itself, and mark sensitive
//! attributes (`password`, anything `returned: never` in the schema, and
//! configured extra names) as redacted, wherever they appear.
//!
//! ```
//! use scimgate_scim::redact::{body_for_log, Sensitive};
//! use scimgate_scim::Registry;
//! use serde_json::json;
//!
//! let registry = Registry::core();
//! let sensitive = Sensitive::new(&registry.context_for("User")?, &[]);
//! let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
//!     "Operations": [{"op": "replace", "path": "password", "value": "s3cret!"},
//!                    {"op": "replace", "value": {"active": false, "password": "s3cret!"}}]});
//! let line = body_for_log(&body, &sensitive);
//! assert_eq!(line, "replace password (redacted); replace (no path) {active: boolean, password: redacted}");
//! assert!(!line.contains("s3cret"));
//! # Ok::<(), scimgate_scim::ScimError>(())
//! ```

use serde_json::Value;

use crate::filter::{CompValue, Filter, PatchPath};
use crate::registry::SchemaCtx;
use crate::schema::{Attribute, Returned};

/// How deep value shapes are described before `…`.
const MAX_DEPTH: usize = 4;
/// Most operations or members listed before `…`.
const MAX_ITEMS: usize = 32;

/// The attribute names whose values are never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sensitive {
    /// Lower-case names.
    names: Vec<String>,
}

impl Default for Sensitive {
    /// Only `password`.
    fn default() -> Self {
        Sensitive {
            names: vec!["password".to_string()],
        }
    }
}

impl Sensitive {
    /// `password`, every attribute and sub-attribute of `context` with
    /// `returned: never`, and `extra` (names compare ignoring case).
    pub fn new(context: &SchemaCtx<'_>, extra: &[String]) -> Sensitive {
        let mut sensitive = Sensitive::default();
        let schemas = context
            .core
            .into_iter()
            .chain(context.extensions.iter().map(|(schema, _)| *schema));
        for schema in schemas {
            for attribute in &schema.attributes {
                sensitive.add_never(attribute);
            }
        }
        for name in extra {
            sensitive.add(name);
        }
        sensitive
    }

    /// Adds one name.
    pub fn add(&mut self, name: &str) {
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() && !self.names.contains(&name) {
            self.names.push(name);
        }
    }

    fn add_never(&mut self, attribute: &Attribute) {
        if attribute.returned == Returned::Never {
            self.add(&attribute.name);
        }
        for sub in &attribute.sub_attributes {
            self.add_never(sub);
        }
    }

    /// Whether a member name or attribute path names a sensitive attribute:
    /// `password`, `urn:…:User:password`, `x.secret` all do when the last
    /// URN component or any dotted segment is sensitive.
    pub fn is_sensitive(&self, name: &str) -> bool {
        let tail = name.rsplit(':').next().unwrap_or(name);
        tail.split('.').any(|segment| {
            self.names
                .iter()
                .any(|known| known.eq_ignore_ascii_case(segment.trim()))
        })
    }

    /// Whether `text` mentions a sensitive name anywhere (for text that does not parse).
    fn mentioned_in(&self, text: &str) -> bool {
        let lower = text.to_ascii_lowercase();
        self.names.iter().any(|name| lower.contains(name.as_str()))
    }
}

/// A request body for a log line. A PatchOp body becomes its operations,
/// `op path (shape)` joined by `; ` (`(no path)` and the value object's
/// member names for pathless operations); anything else becomes the shape of
/// the whole body. Values never appear, except the literals of a path's value
/// filter (`members[value eq "…"]`) unless they compare a sensitive attribute.
pub fn body_for_log(body: &Value, sensitive: &Sensitive) -> String {
    let operations = body.as_object().and_then(|object| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("Operations"))
            .map(|(_, operations)| operations)
    });
    let Some(Value::Array(operations)) = operations else {
        return shape(body, sensitive, 0);
    };
    let mut parts: Vec<String> = operations
        .iter()
        .take(MAX_ITEMS)
        .map(|operation| operation_for_log(operation, sensitive))
        .collect();
    if operations.len() > MAX_ITEMS {
        parts.push(format!("… {} more", operations.len() - MAX_ITEMS));
    }
    if parts.is_empty() {
        return "no operations".to_string();
    }
    parts.join("; ")
}

fn operation_for_log(operation: &Value, sensitive: &Sensitive) -> String {
    let Some(object) = operation.as_object() else {
        return format!("not an operation ({})", kind(operation));
    };
    let member = |name: &str| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    };
    let op = match member("op") {
        Some(Value::String(op))
            if op.len() <= 16 && op.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            op.clone()
        }
        Some(Value::String(_)) => "(unknown op)".to_string(),
        Some(other) => format!("(op: {})", kind(other)),
        None => "(no op)".to_string(),
    };
    let value = member("value");
    match member("path") {
        None | Some(Value::Null) => match value {
            Some(value) => format!("{op} (no path) {}", shape(value, sensitive, 0)),
            None => format!("{op} (no path)"),
        },
        Some(Value::String(path)) => {
            let (shown, hidden) = path_for_log(path, sensitive);
            match value {
                Some(_) if hidden => format!("{op} {shown} (redacted)"),
                Some(value) => format!("{op} {shown} ({})", shape(value, sensitive, 0)),
                None => format!("{op} {shown}"),
            }
        }
        Some(other) => format!("{op} (path: {})", kind(other)),
    }
}

/// The path as shown, and whether it targets a sensitive attribute.
fn path_for_log(path: &str, sensitive: &Sensitive) -> (String, bool) {
    match PatchPath::parse(path) {
        Ok(parsed) => {
            let hidden_attr = sensitive.is_sensitive(&parsed.attr.to_string());
            let hidden = hidden_attr
                || parsed
                    .sub_attr
                    .as_deref()
                    .is_some_and(|sub| sensitive.is_sensitive(sub));
            let shown = PatchPath {
                filter: parsed.filter.map(|filter| {
                    if hidden_attr {
                        redact_all(filter)
                    } else {
                        redact_filter(filter, sensitive)
                    }
                }),
                ..parsed
            };
            (shown.to_string(), hidden)
        }
        Err(_) if sensitive.mentioned_in(path) => ("(invalid path)".to_string(), true),
        Err(_) => {
            let short: String = path.chars().take(100).collect();
            let more = if short.len() < path.len() { "…" } else { "" };
            (format!("(invalid path {:?}{more})", short), false)
        }
    }
}

/// The filter with every literal compared to a sensitive attribute replaced.
fn redact_filter(filter: Filter, sensitive: &Sensitive) -> Filter {
    match filter {
        Filter::Compare { path, op, value } => {
            let value = if sensitive.is_sensitive(&path.to_string()) {
                CompValue::String("(redacted)".to_string())
            } else {
                value
            };
            Filter::Compare { path, op, value }
        }
        Filter::Present(path) => Filter::Present(path),
        Filter::And(left, right) => Filter::And(
            Box::new(redact_filter(*left, sensitive)),
            Box::new(redact_filter(*right, sensitive)),
        ),
        Filter::Or(left, right) => Filter::Or(
            Box::new(redact_filter(*left, sensitive)),
            Box::new(redact_filter(*right, sensitive)),
        ),
        Filter::Not(inner) => Filter::Not(Box::new(redact_filter(*inner, sensitive))),
        Filter::ValuePath { attr, filter } => {
            let filter = if sensitive.is_sensitive(&attr.to_string()) {
                Box::new(redact_all(*filter))
            } else {
                Box::new(redact_filter(*filter, sensitive))
            };
            Filter::ValuePath { attr, filter }
        }
    }
}

/// Every literal replaced (inside a sensitive multi-valued attribute).
fn redact_all(filter: Filter) -> Filter {
    match filter {
        Filter::Compare { path, op, .. } => Filter::Compare {
            path,
            op,
            value: CompValue::String("(redacted)".to_string()),
        },
        Filter::Present(path) => Filter::Present(path),
        Filter::And(left, right) => {
            Filter::And(Box::new(redact_all(*left)), Box::new(redact_all(*right)))
        }
        Filter::Or(left, right) => {
            Filter::Or(Box::new(redact_all(*left)), Box::new(redact_all(*right)))
        }
        Filter::Not(inner) => Filter::Not(Box::new(redact_all(*inner))),
        Filter::ValuePath { attr, filter } => Filter::ValuePath {
            attr,
            filter: Box::new(redact_all(*filter)),
        },
    }
}

/// The JSON type of a value, for a log line.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The shape of a value: member names with their shapes, array lengths, JSON
/// types; sensitive members are `redacted`.
fn shape(value: &Value, sensitive: &Sensitive, depth: usize) -> String {
    match value {
        Value::Object(object) => {
            if depth >= MAX_DEPTH {
                return "{…}".to_string();
            }
            let mut parts: Vec<String> = object
                .iter()
                .take(MAX_ITEMS)
                .map(|(key, member)| {
                    let key_shown = if key.chars().count() > 120 {
                        "(long name)".to_string()
                    } else {
                        key.clone()
                    };
                    if sensitive.is_sensitive(key) {
                        format!("{key_shown}: redacted")
                    } else {
                        format!("{key_shown}: {}", shape(member, sensitive, depth + 1))
                    }
                })
                .collect();
            if object.len() > MAX_ITEMS {
                parts.push(format!("… {} more", object.len() - MAX_ITEMS));
            }
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(items) => match items.first() {
            None => "[]".to_string(),
            Some(first) if depth < MAX_DEPTH => {
                format!("[{} × {}]", items.len(), shape(first, sensitive, depth + 1))
            }
            Some(_) => format!("[{} items]", items.len()),
        },
        other => kind(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_hide_every_value() {
        let sensitive = Sensitive::default();
        let body = json!({"userName": "bjensen", "emails": [{"value": "b@example.com"}], "password": "pw"});
        let line = body_for_log(&body, &sensitive);
        assert_eq!(
            line,
            "{emails: [1 × {value: string}], password: redacted, userName: string}"
        );
    }
}
