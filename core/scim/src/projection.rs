//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) applied with the
//! `returned` rules of RFC 7643 §2.2: `always` kept, `never` dropped, `request` only
//! when asked for. [`strip_never`] removes `returned: never` values from any output.

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::AttrPath;
use crate::registry::{Location, SchemaCtx};
use crate::schema::{Attribute, Returned};

/// The parsed `attributes` and `excludedAttributes` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeSelection {
    /// `attributes`: when non-empty, only these (plus `returned: always`) are returned.
    pub attributes: Vec<AttrPath>,
    /// `excludedAttributes`: removed from the default set (unless `returned: always`).
    pub excluded: Vec<AttrPath>,
}

impl AttributeSelection {
    /// Parses the comma-separated query parameters; either may be absent. Errors are `invalidPath`.
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimError> {
        Ok(AttributeSelection {
            attributes: parse_list(attributes)?,
            excluded: parse_list(excluded)?,
        })
    }

    /// The selection from a SearchRequest body's `attributes`/`excludedAttributes` arrays.
    pub fn from_lists(attributes: &[String], excluded: &[String]) -> Result<Self, ScimError> {
        let parse_all = |items: &[String]| {
            items
                .iter()
                .map(|item| AttrPath::parse(item))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(AttributeSelection {
            attributes: parse_all(attributes)?,
            excluded: parse_all(excluded)?,
        })
    }
}

fn parse_list(text: Option<&str>) -> Result<Vec<AttrPath>, ScimError> {
    text.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(AttrPath::parse)
        .collect()
}

/// Returns the part of `resource` a client may see under `selection`.
///
/// `id` and `schemas` are always kept (their `returned` is `always`); `meta` is
/// `default`. `attributes=name.givenName` keeps only that sub-attribute of `name`;
/// naming an extension URN (`urn:…:enterprise:2.0:User`) selects the whole extension.
/// Members not in the schema follow the `default` rule.
pub fn project(context: &SchemaCtx<'_>, resource: &Value, selection: &AttributeSelection) -> Value {
    project_owned(context, resource.clone(), selection)
}

/// [`project`] of a resource the caller gives up: edited in place, kept
/// values neither copied nor moved into new maps (a rendered response is
/// projected once, then serialized).
pub fn project_owned(
    context: &SchemaCtx<'_>,
    resource: Value,
    selection: &AttributeSelection,
) -> Value {
    let Value::Object(mut object) = resource else {
        return resource;
    };
    object.retain(|key, value| {
        if key.eq_ignore_ascii_case("schemas") {
            return true;
        }
        if let Some(extension) = context.extension(key) {
            let Value::Object(members) = value else {
                return false;
            };
            let whole = selection
                .attributes
                .iter()
                .any(|path| names_extension(path, &extension.id));
            let excluded_whole = selection
                .excluded
                .iter()
                .any(|path| names_extension(path, &extension.id));
            members.retain(|name, member| {
                let attribute = extension.attribute(name);
                let location = Location::Extension(extension);
                replace_kept(member, |member| {
                    project_attribute(
                        context,
                        location,
                        name,
                        attribute,
                        member,
                        selection,
                        whole,
                        excluded_whole,
                    )
                })
            });
            return !members.is_empty();
        }
        let resolved = context
            .core
            .and_then(|core| context.resolve_name(Some(&core.id), key));
        let attribute = resolved.map(|(_, attribute)| attribute);
        replace_kept(value, |value| {
            project_attribute(
                context,
                Location::Core,
                key,
                attribute,
                value,
                selection,
                false,
                false,
            )
        })
    });
    Value::Object(object)
}

/// Puts what `keep` makes of `value` in its place; `false` when it keeps
/// nothing (the caller then removes the entry).
fn replace_kept(value: &mut Value, keep: impl FnOnce(Value) -> Option<Value>) -> bool {
    match keep(std::mem::take(value)) {
        Some(kept) => {
            *value = kept;
            true
        }
        None => false,
    }
}

/// Removes every `returned: never` attribute and sub-attribute (e.g. `password`).
pub fn strip_never(context: &SchemaCtx<'_>, resource: &Value) -> Value {
    strip_never_owned(context, resource.clone())
}

/// [`strip_never`] of a resource the caller gives up (edited in place).
pub fn strip_never_owned(context: &SchemaCtx<'_>, resource: Value) -> Value {
    let Value::Object(mut object) = resource else {
        return resource;
    };
    object.retain(|key, value| {
        if let (Some(extension), Value::Object(members)) = (context.extension(key), &mut *value) {
            members.retain(|name, member| match extension.attribute(name) {
                Some(attribute) => strip_never_value(attribute, member),
                None => true,
            });
            return true;
        }
        let attribute = context
            .core
            .and_then(|core| context.resolve_name(Some(&core.id), key))
            .map(|(_, attribute)| attribute);
        match attribute {
            Some(attribute) => strip_never_value(attribute, value),
            None => true,
        }
    });
    Value::Object(object)
}

/// Removes `value`'s `returned: never` sub-attributes; `false` when the
/// attribute itself is never returned.
fn strip_never_value(attribute: &Attribute, value: &mut Value) -> bool {
    if attribute.returned == Returned::Never {
        return false;
    }
    if attribute
        .sub_attributes
        .iter()
        .any(|sub| sub.returned == Returned::Never)
    {
        edit_elements(value, |element| {
            element.retain(|name, _| {
                attribute
                    .sub_attribute(name)
                    .is_none_or(|sub| sub.returned != Returned::Never)
            });
        });
    }
    true
}

fn names_extension(path: &AttrPath, extension_id: &str) -> bool {
    match &path.urn {
        Some(urn) if path.sub_attr.is_none() => {
            urn.len() + 1 + path.attr.len() == extension_id.len()
                && extension_id
                    .get(..urn.len())
                    .is_some_and(|prefix| prefix.eq_ignore_ascii_case(urn))
                && extension_id
                    .get(urn.len() + 1..)
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(&path.attr))
        }
        _ => false,
    }
}

/// Whether `path` names the attribute `name` at `location`.
fn path_names(
    context: &SchemaCtx<'_>,
    path: &AttrPath,
    location: Location<'_>,
    name: &str,
) -> bool {
    if !path.attr.eq_ignore_ascii_case(name) {
        return false;
    }
    match (&path.urn, location) {
        (None, Location::Core) => true,
        (None, Location::Extension(extension)) => {
            // An unqualified name reaches an extension attribute only when the core does not define it.
            context
                .resolve_name(None, name)
                .is_some_and(|(found, _)| found == Location::Extension(extension))
        }
        (Some(urn), Location::Core) => context.is_core(urn),
        (Some(urn), Location::Extension(extension)) => extension.is(urn),
    }
}

#[allow(clippy::too_many_arguments)]
fn project_attribute(
    context: &SchemaCtx<'_>,
    location: Location<'_>,
    name: &str,
    attribute: Option<&Attribute>,
    value: Value,
    selection: &AttributeSelection,
    whole_extension_requested: bool,
    whole_extension_excluded: bool,
) -> Option<Value> {
    let returned = attribute.map_or(Returned::Default, |attribute| attribute.returned);
    match returned {
        Returned::Never => return None,
        Returned::Always => return Some(strip_subs(attribute, value, |_| true)),
        _ => {}
    }
    let requested: Vec<&AttrPath> = selection
        .attributes
        .iter()
        .filter(|path| path_names(context, path, location, name))
        .collect();
    if !selection.attributes.is_empty() {
        if whole_extension_requested || requested.iter().any(|path| path.sub_attr.is_none()) {
            return Some(strip_subs(attribute, value, |sub| {
                sub.returned != Returned::Request
            }));
        }
        if requested.is_empty() {
            return None;
        }
        let wanted: Vec<&str> = requested
            .iter()
            .filter_map(|path| path.sub_attr.as_deref())
            .collect();
        let kept = map_elements(value, |element| {
            element.retain(|key, _| {
                let sub = attribute.and_then(|attribute| attribute.sub_attribute(key));
                let returned = sub.map_or(Returned::Default, |sub| sub.returned);
                returned == Returned::Always
                    || (returned != Returned::Never
                        && wanted.iter().any(|wanted| wanted.eq_ignore_ascii_case(key)))
            });
        });
        return if is_empty_projection(&kept) {
            None
        } else {
            Some(kept)
        };
    }
    if returned == Returned::Request || whole_extension_excluded {
        return None;
    }
    let excluded: Vec<&AttrPath> = selection
        .excluded
        .iter()
        .filter(|path| path_names(context, path, location, name))
        .collect();
    if excluded.iter().any(|path| path.sub_attr.is_none()) {
        return None;
    }
    let dropped: Vec<&str> = excluded
        .iter()
        .filter_map(|path| path.sub_attr.as_deref())
        .collect();
    let kept = map_elements(value, |element| {
        element.retain(|key, _| {
            let sub = attribute.and_then(|attribute| attribute.sub_attribute(key));
            let returned = sub.map_or(Returned::Default, |sub| sub.returned);
            match returned {
                Returned::Always => true,
                Returned::Never | Returned::Request => false,
                Returned::Default => !dropped
                    .iter()
                    .any(|dropped| dropped.eq_ignore_ascii_case(key)),
            }
        });
    });
    if is_empty_projection(&kept) {
        None
    } else {
        Some(kept)
    }
}

/// Keeps the sub-attributes for which `keep` holds (never `returned: never` ones).
fn strip_subs(
    attribute: Option<&Attribute>,
    value: Value,
    keep: impl Fn(&Attribute) -> bool,
) -> Value {
    let Some(attribute) = attribute else {
        return value;
    };
    if attribute.sub_attributes.is_empty() {
        return value;
    }
    map_elements(value, |element| {
        element.retain(|key, _| {
            attribute.sub_attribute(key).is_none_or(|sub| {
                sub.returned != Returned::Never && (sub.returned == Returned::Always || keep(sub))
            })
        });
    })
}

/// Applies `edit` to a complex value or to each complex element of a
/// multi-valued one; elements left empty are removed.
fn map_elements(mut value: Value, edit: impl Fn(&mut Map<String, Value>)) -> Value {
    edit_elements(&mut value, edit);
    value
}

/// [`map_elements`] in place.
fn edit_elements(value: &mut Value, edit: impl Fn(&mut Map<String, Value>)) {
    match value {
        Value::Object(object) => edit(object),
        Value::Array(items) => {
            for item in items.iter_mut() {
                if let Value::Object(object) = item {
                    edit(object);
                }
            }
            items.retain(|item| !matches!(item, Value::Object(object) if object.is_empty()));
        }
        _ => {}
    }
}

fn is_empty_projection(value: &Value) -> bool {
    match value {
        Value::Object(object) => object.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}
