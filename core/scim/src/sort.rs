//! `sortBy` / `sortOrder` (RFC 7644 §3.4.2.3): the sort value of a resource and a comparator.
//!
//! A multi-valued attribute sorts by its primary value, else its first value. The
//! RFC does not say where missing values go; here a missing value is greater than
//! any value, so it sorts last ascending and first descending (descending is the
//! exact reverse of ascending, which keeps paging stable).

use serde_json::Value;
use std::cmp::Ordering;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ScimError;
use crate::filter::{is_never_returned, AttrPath};
use crate::object_keys;
use crate::registry::{Location, SchemaCtx};
use crate::schema::{AttrType, Attribute};

/// The sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Smallest first (the default).
    #[default]
    Ascending,
    /// Largest first.
    Descending,
}

impl SortOrder {
    /// Parses `sortOrder` (`ascending` / `descending`, case-insensitive; absent ⇒ ascending).
    pub fn parse(text: Option<&str>) -> Result<SortOrder, ScimError> {
        match text.map(str::trim) {
            None | Some("") => Ok(SortOrder::Ascending),
            Some(text) if text.eq_ignore_ascii_case("ascending") => Ok(SortOrder::Ascending),
            Some(text) if text.eq_ignore_ascii_case("descending") => Ok(SortOrder::Descending),
            Some(other) => Err(ScimError::invalid_value(format!(
                "sortOrder must be 'ascending' or 'descending', not '{other}'"
            ))),
        }
    }
}

/// Refuses, with `invalidValue`, a `sortBy` naming a `returned: never` attribute
/// (e.g. `password`): the order of results would reveal the hidden values.
pub fn check_sortable(context: &SchemaCtx<'_>, sort_by: &AttrPath) -> Result<(), ScimError> {
    if is_never_returned(context, sort_by) {
        return Err(ScimError::invalid_value(format!(
            "cannot sort by '{sort_by}': the attribute is never returned"
        )));
    }
    Ok(())
}

/// The value `resource` sorts by for `sort_by`: for a multi-valued attribute the
/// primary value, else the first; for a multi-valued complex attribute without
/// sub-attribute its `value`.
pub fn sort_value<'v>(
    context: &SchemaCtx<'_>,
    resource: &'v Value,
    sort_by: &AttrPath,
) -> Option<&'v Value> {
    let resolved = context.resolve(sort_by);
    let object = resource.as_object()?;
    let container = match resolved.map(|resolved| resolved.location) {
        Some(Location::Extension(extension)) => {
            object_keys::get(object, &extension.id)?.as_object()?
        }
        _ => match &sort_by.urn {
            Some(urn) if !context.is_core(urn) => object_keys::get(object, urn)
                .and_then(Value::as_object)
                .unwrap_or(object),
            _ => object,
        },
    };
    let raw = object_keys::get(container, &sort_by.attr)?;
    let chosen = match raw {
        Value::Array(items) => items
            .iter()
            .find(|item| is_primary(item))
            .or_else(|| items.first())?,
        other => other,
    };
    let leaf = match (&sort_by.sub_attr, chosen) {
        (Some(sub), Value::Object(element)) => object_keys::get(element, sub)?,
        (Some(_), _) => return None,
        (None, Value::Object(element)) if raw.is_array() => object_keys::get(element, "value")?,
        (None, other) => other,
    };
    (!leaf.is_null()).then_some(leaf)
}

fn is_primary(item: &Value) -> bool {
    item.as_object()
        .and_then(|object| object_keys::get(object, "primary"))
        == Some(&Value::Bool(true))
}

/// Compares two resources by `sort_by` in `order`, following the attribute's type
/// and `caseExact` (case-insensitive strings compare lowercased).
pub fn compare(
    context: &SchemaCtx<'_>,
    left: &Value,
    right: &Value,
    sort_by: &AttrPath,
    order: SortOrder,
) -> Ordering {
    let leaf = leaf_attribute(context, sort_by);
    let ascending = match (
        sort_value(context, left, sort_by),
        sort_value(context, right, sort_by),
    ) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(left), Some(right)) => compare_values(leaf, left, right),
    };
    match order {
        SortOrder::Ascending => ascending,
        SortOrder::Descending => ascending.reverse(),
    }
}

/// Sorts `resources` in place (stable).
pub fn sort_resources(
    context: &SchemaCtx<'_>,
    resources: &mut [Value],
    sort_by: &AttrPath,
    order: SortOrder,
) {
    resources.sort_by(|left, right| compare(context, left, right, sort_by, order));
}

fn leaf_attribute<'a>(context: &SchemaCtx<'a>, path: &AttrPath) -> Option<&'a Attribute> {
    let resolved = context.resolve(path)?;
    match resolved.sub_attribute {
        Some(sub) => Some(sub),
        None if resolved.attribute.multi_valued
            && resolved.attribute.attr_type == AttrType::Complex =>
        {
            resolved.attribute.sub_attribute("value")
        }
        None => Some(resolved.attribute),
    }
}

fn compare_values(attribute: Option<&Attribute>, left: &Value, right: &Value) -> Ordering {
    match (left, right) {
        (Value::String(left), Value::String(right)) => {
            if attribute.is_some_and(|attribute| attribute.attr_type == AttrType::DateTime) {
                if let (Ok(left), Ok(right)) = (
                    OffsetDateTime::parse(left, &Rfc3339),
                    OffsetDateTime::parse(right, &Rfc3339),
                ) {
                    return left.cmp(&right);
                }
            }
            if attribute.is_some_and(|attribute| attribute.case_exact) {
                left.cmp(right)
            } else {
                left.to_lowercase()
                    .cmp(&right.to_lowercase())
                    .then_with(|| left.cmp(right))
            }
        }
        (Value::Number(left), Value::Number(right)) => match (left.as_i64(), right.as_i64()) {
            (Some(left), Some(right)) => left.cmp(&right),
            _ => left
                .as_f64()
                .partial_cmp(&right.as_f64())
                .unwrap_or(Ordering::Equal),
        },
        (Value::Bool(left), Value::Bool(right)) => left.cmp(right),
        _ => kind_rank(left).cmp(&kind_rank(right)),
    }
}

fn kind_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}
