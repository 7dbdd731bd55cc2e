//! Resource validation for create (POST) and replace (PUT), RFC 7643 §2 and RFC 7644 §3.3/§3.5.1.
//!
//! The output is the cleaned resource: readOnly attributes dropped, attribute names
//! and schema URNs in the schema's canonical spelling, nulls and empty arrays removed.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ScimError;
use crate::object_keys;
use crate::registry::{Location, SchemaCtx};
use crate::schema::{AttrType, Attribute, Mutability, Schema};

/// Validates a resource for creation and returns it cleaned.
///
/// Checks types, required attributes, `primary` uniqueness, `schemas` (must list
/// the core schema; unknown URNs are `invalidValue`) and unknown attributes
/// (`invalidSyntax`, naming the attribute). readOnly attributes (`id`, `meta`,
/// `groups`, …) are dropped, as RFC 7644 §3.3 says they are ignored.
pub fn validate_create(context: &SchemaCtx<'_>, resource: &Value) -> Result<Value, ScimError> {
    clean_resource(context, resource, Mode::Input)
}

/// Validates a replacement (PUT) of `existing` and returns it cleaned.
///
/// As [`validate_create`], and: an immutable attribute that already has a value
/// must keep it (`mutability` otherwise); one omitted from the input keeps its
/// existing value. readOnly attributes are dropped; the server re-adds `id`/`meta`.
pub fn validate_replace(
    context: &SchemaCtx<'_>,
    resource: &Value,
    existing: &Value,
) -> Result<Value, ScimError> {
    let mut cleaned = clean_resource(context, resource, Mode::Input)?;
    let (Some(new), Some(old)) = (cleaned.as_object_mut(), existing.as_object()) else {
        return Ok(cleaned);
    };
    for (location, attribute) in all_attributes(context) {
        let container_key = match location {
            Location::Core => None,
            Location::Extension(schema) => Some(schema.id.as_str()),
        };
        check_immutable(new, old, container_key, attribute)?;
    }
    Ok(cleaned)
}

/// Re-checks a stored or patched resource: types, required attributes and
/// `primary`, keeping readOnly attributes. Used after PATCH.
pub fn validate_stored(context: &SchemaCtx<'_>, resource: &Value) -> Result<Value, ScimError> {
    clean_resource(context, resource, Mode::Stored)
}

/// [`validate_stored`] on a resource the caller owns: values are moved into the
/// result instead of copied (PATCH re-validates its working copy this way).
pub(crate) fn validate_stored_owned(
    context: &SchemaCtx<'_>,
    mut resource: Value,
) -> Result<Value, ScimError> {
    if let (Some(core), Value::Object(input)) = (context.core, &mut resource) {
        if let Some(kinds) = canonical_members(context, core, input) {
            clean_stored_in_place(context, core, input, &kinds)?;
            return Ok(resource);
        }
    }
    clean_resource_owned(context, resource, Mode::Stored)
}

/// What a top-level member of a resource is, for [`clean_stored_in_place`].
enum MemberKind<'a> {
    Schemas,
    Extension(&'a Schema),
    Core(&'a Attribute),
}

/// The kind of every member, when each key already is the canonical spelling
/// [`clean_resource`] would give it (so cleaning renames, merges and moves nothing
/// and can work in place); `None` otherwise.
fn canonical_members<'a>(
    context: &SchemaCtx<'a>,
    core: &'a Schema,
    input: &Map<String, Value>,
) -> Option<Vec<MemberKind<'a>>> {
    let mut kinds = Vec::with_capacity(input.len());
    for key in input.keys() {
        let kind = if key == "schemas" {
            MemberKind::Schemas
        } else if key.eq_ignore_ascii_case("schemas") {
            return None;
        } else if let Some(extension) = context.extension(key) {
            if extension.id != *key {
                return None;
            }
            MemberKind::Extension(extension)
        } else {
            match resolve_key(context, core, key) {
                Ok((Location::Core, attribute)) if attribute.name == *key => {
                    MemberKind::Core(attribute)
                }
                _ => return None,
            }
        };
        kinds.push(kind);
    }
    Some(kinds)
}

/// [`clean_resource`] in [`Mode::Stored`] on a resource whose keys are canonical
/// (`kinds` from [`canonical_members`]): same checks in the same order, same result,
/// but values are cleaned where they are. Cleaned values are never `null`, so
/// `null` marks what cleaning drops.
fn clean_stored_in_place(
    context: &SchemaCtx<'_>,
    core: &Schema,
    input: &mut Map<String, Value>,
    kinds: &[MemberKind<'_>],
) -> Result<(), ScimError> {
    let mut schemas = declared_schemas(context, core, input)?;
    let mut dropped = false;
    for ((_, value), kind) in input.iter_mut().zip(kinds) {
        let kept = match kind {
            MemberKind::Schemas => true,
            MemberKind::Extension(extension) => match value {
                Value::Object(members) => clean_extension_in_place(extension, members)?,
                Value::Null => false,
                _ => {
                    return Err(ScimError::invalid_syntax(format!(
                        "extension '{}' must be a JSON object of its attributes",
                        extension.id
                    )))
                }
            },
            MemberKind::Core(attribute) => {
                clean_in_place(attribute, value, attribute.name.as_str())?
            }
        };
        if !kept {
            *value = Value::Null;
            dropped = true;
        }
    }
    if dropped {
        input.retain(|_, value| !value.is_null());
    }
    input.remove("schemas");
    check_required(&core.attributes, input, &core.id, Mode::Stored)?;
    for (extension, required) in &context.extensions {
        match input.get(&extension.id).and_then(Value::as_object) {
            Some(members) => {
                check_required(&extension.attributes, members, &extension.id, Mode::Stored)?;
                if !schemas.iter().any(|urn| extension.is(urn)) {
                    schemas.push(extension.id.clone());
                }
            }
            None if *required => {
                return Err(ScimError::invalid_value(format!(
                    "the required extension '{}' is missing",
                    extension.id
                )))
            }
            None => {}
        }
    }
    input.insert(
        "schemas".into(),
        Value::Array(schemas.into_iter().map(Value::String).collect()),
    );
    Ok(())
}

/// [`clean_extension`] in [`Mode::Stored`], in place; `false` when nothing is left.
fn clean_extension_in_place(
    extension: &Schema,
    members: &mut Map<String, Value>,
) -> Result<bool, ScimError> {
    let canonical = members.keys().all(|key| {
        extension
            .attribute(key)
            .is_some_and(|attribute| attribute.name == *key)
    });
    if !canonical {
        let cleaned =
            clean_extension(extension, Cow::Owned(std::mem::take(members)), Mode::Stored)?;
        *members = cleaned;
        return Ok(!members.is_empty());
    }
    let mut dropped = false;
    for (key, value) in members.iter_mut() {
        let Some(attribute) = extension.attribute(key) else {
            continue;
        };
        let kept = clean_in_place(attribute, value, attribute.name.as_str())
            .map_err(|error| relabel_prefix(error, &extension.id, &attribute.name))?;
        if !kept {
            *value = Value::Null;
            dropped = true;
        }
    }
    if dropped {
        members.retain(|_, value| !value.is_null());
    }
    Ok(!members.is_empty())
}

/// [`clean_any`] in [`Mode::Stored`], in place: on `Ok(true)` `value` holds what
/// `clean_any` would return; `Ok(false)` means "unassigned".
fn clean_in_place<P: fmt::Display + ?Sized>(
    attribute: &Attribute,
    value: &mut Value,
    path: &P,
) -> Result<bool, ScimError> {
    match value {
        Value::Null => Ok(false),
        Value::Array(items) if attribute.multi_valued => {
            let mut dropped = false;
            for item in items.iter_mut() {
                if item.is_array() {
                    return Err(ScimError::invalid_syntax(format!(
                        "values of '{path}' cannot be nested arrays"
                    )));
                }
                if !clean_single_in_place(attribute, item, path)? {
                    *item = Value::Null;
                    dropped = true;
                }
            }
            if dropped {
                items.retain(|item| !item.is_null());
            }
            if attribute.attr_type == AttrType::Complex {
                let primaries = items
                    .iter()
                    .filter(|item| {
                        item.as_object()
                            .and_then(|object| object_keys::get(object, "primary"))
                            == Some(&Value::Bool(true))
                    })
                    .count();
                if primaries > 1 {
                    return Err(ScimError::invalid_value(format!(
                        "at most one value of '{path}' may have \"primary\": true, found {primaries}"
                    )));
                }
            }
            Ok(!items.is_empty())
        }
        _ if attribute.multi_valued => {
            let cleaned = clean_any(
                attribute,
                Cow::Owned(std::mem::take(value)),
                path,
                Mode::Stored,
            )?;
            Ok(put_back(value, cleaned))
        }
        Value::Array(_) => Err(ScimError::invalid_syntax(format!(
            "attribute '{path}' is single-valued but an array was given"
        ))),
        _ => clean_single_in_place(attribute, value, path),
    }
}

/// [`clean_single`] in [`Mode::Stored`], in place.
fn clean_single_in_place<P: fmt::Display + ?Sized>(
    attribute: &Attribute,
    value: &mut Value,
    path: &P,
) -> Result<bool, ScimError> {
    if value.is_null() {
        return Ok(false);
    }
    if attribute.attr_type != AttrType::Complex {
        check_type(attribute.attr_type, value, path)?;
        return Ok(true);
    }
    let Value::Object(members) = value else {
        return Err(ScimError::invalid_value(format!(
            "attribute '{path}' is complex; expected a JSON object, found {}",
            json_kind(value)
        )));
    };
    let canonical = members.keys().all(|key| {
        attribute
            .sub_attribute(key)
            .is_some_and(|sub| sub.name == *key)
    });
    if !canonical {
        let cleaned = clean_single(
            attribute,
            Cow::Owned(std::mem::take(value)),
            path,
            Mode::Stored,
        )?;
        return Ok(put_back(value, cleaned));
    }
    let mut dropped = false;
    for (key, member) in members.iter_mut() {
        let Some(sub) = attribute.sub_attribute(key) else {
            continue;
        };
        let kept =
            clean_in_place(sub, member, "").map_err(|error| relabel(error, path, &sub.name))?;
        if !kept {
            *member = Value::Null;
            dropped = true;
        }
    }
    if dropped {
        members.retain(|_, member| !member.is_null());
    }
    if members.is_empty() {
        return Ok(false);
    }
    for sub in &attribute.sub_attributes {
        if sub.required
            && sub.mutability != Mutability::ReadOnly
            && !members.contains_key(&sub.name)
        {
            return Err(ScimError::invalid_value(format!(
                "required sub-attribute '{path}.{}' is missing",
                sub.name
            )));
        }
    }
    Ok(true)
}

fn put_back(slot: &mut Value, cleaned: Option<Value>) -> bool {
    match cleaned {
        Some(cleaned) => {
            *slot = cleaned;
            true
        }
        None => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Client input: readOnly attributes are dropped.
    Input,
    /// Server-side data: readOnly attributes are kept and checked.
    Stored,
}

/// Every top-level attribute of the resource type with where it lives.
pub(crate) fn all_attributes<'a>(context: &SchemaCtx<'a>) -> Vec<(Location<'a>, &'a Attribute)> {
    let mut out: Vec<(Location<'a>, &'a Attribute)> = crate::core_schemas::common_attributes()
        .attributes
        .iter()
        .filter(|attribute| attribute.name != "schemas")
        .map(|attribute| (Location::Core, attribute))
        .collect();
    if let Some(core) = context.core {
        out.extend(
            core.attributes
                .iter()
                .map(|attribute| (Location::Core, attribute)),
        );
    }
    for (schema, _) in &context.extensions {
        out.extend(
            schema
                .attributes
                .iter()
                .map(|attribute| (Location::Extension(schema), attribute)),
        );
    }
    out
}

fn clean_resource(
    context: &SchemaCtx<'_>,
    resource: &Value,
    mode: Mode,
) -> Result<Value, ScimError> {
    clean_resource_any(context, Cow::Borrowed(resource), mode)
}

/// [`clean_resource`] on an owned resource: kept values are moved (with their key,
/// when already canonical) into the output instead of copied.
fn clean_resource_owned(
    context: &SchemaCtx<'_>,
    resource: Value,
    mode: Mode,
) -> Result<Value, ScimError> {
    clean_resource_any(context, Cow::Owned(resource), mode)
}

fn clean_resource_any(
    context: &SchemaCtx<'_>,
    resource: Cow<'_, Value>,
    mode: Mode,
) -> Result<Value, ScimError> {
    let input = match resource {
        Cow::Borrowed(Value::Object(input)) => Cow::Borrowed(input),
        Cow::Owned(Value::Object(input)) => Cow::Owned(input),
        _ => {
            return Err(ScimError::invalid_syntax(
                "a resource must be a JSON object",
            ))
        }
    };
    let Some(core) = context.core else {
        return Ok(Value::Object(input.into_owned()));
    };
    let mut schemas = declared_schemas(context, core, &input)?;
    let mut output = Map::new();
    for (key, value) in members(input) {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(extension) = context.extension(&key) {
            let members = match value {
                Cow::Borrowed(Value::Object(members)) => Cow::Borrowed(members),
                Cow::Owned(Value::Object(members)) => Cow::Owned(members),
                value if value.is_null() => continue,
                _ => {
                    return Err(ScimError::invalid_syntax(format!(
                        "extension '{}' must be a JSON object of its attributes",
                        extension.id
                    )))
                }
            };
            let cleaned = clean_extension(extension, members, mode)?;
            merge_extension(&mut output, extension, cleaned);
            continue;
        }
        let (location, attribute) = resolve_key(context, core, &key)?;
        if attribute.mutability == Mutability::ReadOnly && mode == Mode::Input {
            continue;
        }
        let Some(cleaned) = clean_any(attribute, value, attribute.name.as_str(), mode)? else {
            continue;
        };
        match location {
            Location::Core => {
                object_keys::set_owned(&mut output, canonical_key(key, &attribute.name), cleaned)
            }
            Location::Extension(extension) => {
                let mut members = Map::new();
                members.insert(attribute.name.clone(), cleaned);
                merge_extension(&mut output, extension, members);
            }
        }
    }
    check_required(&core.attributes, &output, &core.id, mode)?;
    for (extension, required) in &context.extensions {
        match output.get(&extension.id).and_then(Value::as_object) {
            Some(members) => {
                check_required(&extension.attributes, members, &extension.id, mode)?;
                if !schemas.iter().any(|urn| extension.is(urn)) {
                    schemas.push(extension.id.clone());
                }
            }
            None if *required => {
                return Err(ScimError::invalid_value(format!(
                    "the required extension '{}' is missing",
                    extension.id
                )))
            }
            None => {}
        }
    }
    output.insert(
        "schemas".into(),
        Value::Array(schemas.into_iter().map(Value::String).collect()),
    );
    Ok(Value::Object(output))
}

/// `schemas`, checked and in canonical spelling: core first, known extensions only.
fn declared_schemas(
    context: &SchemaCtx<'_>,
    core: &Schema,
    input: &Map<String, Value>,
) -> Result<Vec<String>, ScimError> {
    let listed = match object_keys::get(input, "schemas") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ScimError::invalid_syntax(
                "'schemas' must be an array of schema URNs",
            ))
        }
        None => {
            return Err(ScimError::invalid_syntax(format!(
                "'schemas' is missing; it must list '{}'",
                core.id
            )))
        }
    };
    let mut schemas = vec![core.id.clone()];
    let mut has_core = false;
    for item in listed {
        let urn = item.as_str().ok_or_else(|| {
            ScimError::invalid_syntax("'schemas' must be an array of schema URNs")
        })?;
        if core.is(urn) {
            has_core = true;
        } else if let Some(extension) = context.extension(urn) {
            if !schemas.contains(&extension.id) {
                schemas.push(extension.id.clone());
            }
        } else {
            return Err(ScimError::invalid_value(format!(
                "unknown schema '{urn}' in 'schemas' for resource type '{}'",
                context
                    .resource_type
                    .map(|rt| rt.name.as_str())
                    .unwrap_or(core.name.as_str())
            )));
        }
    }
    if !has_core {
        return Err(ScimError::invalid_value(format!(
            "'schemas' must list the core schema '{}'",
            core.id
        )));
    }
    Ok(schemas)
}

/// Resolves a top-level member name: a common or core attribute, or a fully
/// qualified `urn:…:attr` name.
fn resolve_key<'a>(
    context: &SchemaCtx<'a>,
    core: &'a Schema,
    key: &str,
) -> Result<(Location<'a>, &'a Attribute), ScimError> {
    let unknown = || ScimError::invalid_syntax(format!("unknown attribute '{key}'"));
    if key.len() > 4
        && key
            .get(..4)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("urn:"))
    {
        let path = crate::filter::AttrPath::parse(key).map_err(|_| unknown())?;
        if path.sub_attr.is_some() {
            return Err(unknown());
        }
        return context
            .resolve_name(path.urn.as_deref(), &path.attr)
            .ok_or_else(unknown);
    }
    context
        .resolve_name(Some(&core.id), key)
        .ok_or_else(unknown)
}

fn clean_extension(
    extension: &Schema,
    input: Cow<'_, Map<String, Value>>,
    mode: Mode,
) -> Result<Map<String, Value>, ScimError> {
    let mut cleaned = Map::new();
    for (key, value) in members(input) {
        let Some(attribute) = extension.attribute(&key) else {
            return Err(ScimError::invalid_syntax(format!(
                "unknown attribute '{key}' in extension '{}'",
                extension.id
            )));
        };
        if attribute.mutability == Mutability::ReadOnly && mode == Mode::Input {
            continue;
        }
        let cleaned_value = clean_any(attribute, value, attribute.name.as_str(), mode)
            .map_err(|error| relabel_prefix(error, &extension.id, &attribute.name))?;
        if let Some(value) = cleaned_value {
            cleaned.insert(canonical_key(key, &attribute.name), value);
        }
    }
    Ok(cleaned)
}

/// The members of an object, borrowed or moved out of it.
fn members(object: Cow<'_, Map<String, Value>>) -> Members<'_> {
    match object {
        Cow::Borrowed(object) => Members::Borrowed(object.iter()),
        Cow::Owned(object) => Members::Owned(object.into_iter()),
    }
}

enum Members<'v> {
    Borrowed(serde_json::map::Iter<'v>),
    Owned(serde_json::map::IntoIter),
}

impl<'v> Iterator for Members<'v> {
    type Item = (Cow<'v, str>, Cow<'v, Value>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Members::Borrowed(members) => members
                .next()
                .map(|(key, value)| (Cow::Borrowed(key.as_str()), Cow::Borrowed(value))),
            Members::Owned(members) => members
                .next()
                .map(|(key, value)| (Cow::Owned(key), Cow::Owned(value))),
        }
    }
}

/// An owned `key` when it already is the canonical `name` (no copy), else `name`.
fn canonical_key(key: Cow<'_, str>, name: &str) -> String {
    match key {
        Cow::Owned(key) if key == name => key,
        _ => name.to_string(),
    }
}

fn merge_extension(
    output: &mut Map<String, Value>,
    extension: &Schema,
    members: Map<String, Value>,
) {
    if members.is_empty() {
        return;
    }
    let entry = output
        .entry(extension.id.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(existing) = entry {
        existing.extend(members);
    }
}

fn check_required(
    attributes: &[Attribute],
    object: &Map<String, Value>,
    owner: &str,
    mode: Mode,
) -> Result<(), ScimError> {
    for attribute in attributes {
        if !attribute.required
            || (attribute.mutability == Mutability::ReadOnly && mode == Mode::Input)
        {
            continue;
        }
        if attribute.mutability == Mutability::ReadOnly {
            continue;
        }
        if object_keys::get(object, &attribute.name).is_none() {
            return Err(ScimError::invalid_value(format!(
                "required attribute '{}' of '{owner}' is missing",
                attribute.name
            )));
        }
    }
    Ok(())
}

/// Checks and normalises one attribute value; `None` means "unassigned". `path`
/// names the attribute in error messages and is only formatted on error.
pub(crate) fn clean_value<P: fmt::Display + ?Sized>(
    attribute: &Attribute,
    value: &Value,
    path: &P,
    mode: Mode,
) -> Result<Option<Value>, ScimError> {
    clean_any(attribute, Cow::Borrowed(value), path, mode)
}

/// [`clean_value`] on a borrowed or owned value; owned members are moved, not copied.
fn clean_any<P: fmt::Display + ?Sized>(
    attribute: &Attribute,
    value: Cow<'_, Value>,
    path: &P,
    mode: Mode,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attribute.multi_valued {
        let items: Vec<Cow<'_, Value>> = match value {
            Cow::Borrowed(Value::Array(items)) => items.iter().map(Cow::Borrowed).collect(),
            Cow::Owned(Value::Array(items)) => items.into_iter().map(Cow::Owned).collect(),
            single => vec![single],
        };
        let mut cleaned = Vec::with_capacity(items.len());
        for item in items {
            if item.is_array() {
                return Err(ScimError::invalid_syntax(format!(
                    "values of '{path}' cannot be nested arrays"
                )));
            }
            if let Some(item) = clean_single(attribute, item, path, mode)? {
                cleaned.push(item);
            }
        }
        if attribute.attr_type == AttrType::Complex {
            let primaries = cleaned
                .iter()
                .filter(|item| {
                    item.as_object()
                        .and_then(|object| object_keys::get(object, "primary"))
                        == Some(&Value::Bool(true))
                })
                .count();
            if primaries > 1 {
                return Err(ScimError::invalid_value(format!(
                    "at most one value of '{path}' may have \"primary\": true, found {primaries}"
                )));
            }
        }
        return Ok(if cleaned.is_empty() {
            None
        } else {
            Some(Value::Array(cleaned))
        });
    }
    if value.is_array() {
        return Err(ScimError::invalid_syntax(format!(
            "attribute '{path}' is single-valued but an array was given"
        )));
    }
    clean_single(attribute, value, path, mode)
}

fn clean_single<P: fmt::Display + ?Sized>(
    attribute: &Attribute,
    value: Cow<'_, Value>,
    path: &P,
    mode: Mode,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attribute.attr_type != AttrType::Complex {
        check_type(attribute.attr_type, &value, path)?;
        return Ok(Some(value.into_owned()));
    }
    let input = match value {
        Cow::Borrowed(Value::Object(input)) => Cow::Borrowed(input),
        Cow::Owned(Value::Object(input)) => Cow::Owned(input),
        other => {
            return Err(ScimError::invalid_value(format!(
                "attribute '{path}' is complex; expected a JSON object, found {}",
                json_kind(&other)
            )))
        }
    };
    let mut cleaned = Map::new();
    for (key, member) in members(input) {
        let Some(sub) = attribute.sub_attribute(&key) else {
            return Err(ScimError::invalid_syntax(format!(
                "unknown sub-attribute '{key}' of '{path}'"
            )));
        };
        if sub.mutability == Mutability::ReadOnly && mode == Mode::Input {
            continue;
        }
        let member =
            clean_any(sub, member, "", mode).map_err(|error| relabel(error, path, &sub.name))?;
        if let Some(member) = member {
            cleaned.insert(canonical_key(key, &sub.name), member);
        }
    }
    if cleaned.is_empty() {
        return Ok(None);
    }
    for sub in &attribute.sub_attributes {
        if sub.required
            && sub.mutability != Mutability::ReadOnly
            && !cleaned.contains_key(&sub.name)
        {
            return Err(ScimError::invalid_value(format!(
                "required sub-attribute '{path}.{}' is missing",
                sub.name
            )));
        }
    }
    Ok(Some(Value::Object(cleaned)))
}

/// Sub-attribute errors are built with an empty path (no allocation on the happy
/// path) and get their `parent.sub` label here.
fn relabel<P: fmt::Display + ?Sized>(error: ScimError, parent: &P, sub: &str) -> ScimError {
    let detail = error.detail.replacen("''", &format!("'{parent}.{sub}'"), 1);
    ScimError { detail, ..error }
}

fn relabel_prefix(error: ScimError, urn: &str, name: &str) -> ScimError {
    let detail = error
        .detail
        .replacen(&format!("'{name}"), &format!("'{urn}:{name}"), 1);
    ScimError { detail, ..error }
}

/// Checks a simple value against its type; `invalidValue` names the attribute.
pub(crate) fn check_type<P: fmt::Display + ?Sized>(
    attr_type: AttrType,
    value: &Value,
    path: &P,
) -> Result<(), ScimError> {
    let ok = match attr_type {
        AttrType::String | AttrType::Reference => value.is_string(),
        AttrType::Boolean => value.is_boolean(),
        AttrType::Decimal => value.is_number(),
        AttrType::Integer => value.is_i64() || value.is_u64(),
        AttrType::DateTime => value
            .as_str()
            .is_some_and(|text| OffsetDateTime::parse(text, &Rfc3339).is_ok()),
        AttrType::Binary => value.as_str().is_some_and(is_base64),
        AttrType::Complex => value.is_object(),
    };
    if ok {
        return Ok(());
    }
    let wanted = match attr_type {
        AttrType::DateTime => "an RFC 3339 date-time string".to_string(),
        AttrType::Binary => "a base64 string".to_string(),
        other => format!("a value of type {}", other.as_str()),
    };
    Err(ScimError::invalid_value(format!(
        "attribute '{path}' must be {wanted}, found {}",
        json_kind(value)
    )))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// RFC 4648 §4 base64 (standard alphabet, padded).
fn is_base64(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|&&byte| byte == b'=').count();
    if padding > 2 {
        return false;
    }
    bytes[..bytes.len() - padding]
        .iter()
        .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'+' || *byte == b'/')
}

/// Whether two values are equal under the attribute's case rule.
pub(crate) fn values_equal(attribute: &Attribute, left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::String(left), Value::String(right)) if !attribute.case_exact => {
            left == right
                || if left.is_ascii() && right.is_ascii() {
                    left.eq_ignore_ascii_case(right)
                } else {
                    left.to_lowercase() == right.to_lowercase()
                }
        }
        (Value::Object(left), Value::Object(right)) if attribute.attr_type == AttrType::Complex => {
            left.len() == right.len()
                && left.iter().all(|(key, value)| {
                    match (attribute.sub_attribute(key), right.get(key)) {
                        (Some(sub), Some(other)) => values_equal(sub, value, other),
                        (None, Some(other)) => value == other,
                        _ => false,
                    }
                })
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .zip(right)
                    .all(|(left, right)| values_equal(attribute, left, right))
        }
        _ => left == right,
    }
}

fn check_immutable(
    new: &mut Map<String, Value>,
    old: &Map<String, Value>,
    container_key: Option<&str>,
    attribute: &Attribute,
) -> Result<(), ScimError> {
    let old_container = match container_key {
        None => Some(old),
        Some(key) => object_keys::get(old, key).and_then(Value::as_object),
    };
    let Some(old_value) =
        old_container.and_then(|container| object_keys::get(container, &attribute.name))
    else {
        return Ok(());
    };
    if old_value.is_null() {
        return Ok(());
    }
    let new_container = match container_key {
        None => Some(&mut *new),
        Some(key) => object_keys::get_mut(new, key).and_then(Value::as_object_mut),
    };
    let new_value = new_container
        .as_ref()
        .and_then(|container| object_keys::get(container, &attribute.name))
        .cloned();
    if attribute.mutability == Mutability::Immutable {
        match new_value {
            Some(new_value) if !values_equal(attribute, &new_value, old_value) => {
                return Err(ScimError::mutability(format!(
                    "attribute '{}' is immutable and already has a value",
                    attribute.name
                )))
            }
            Some(_) => {}
            None => {
                let carried = old_value.clone();
                match container_key {
                    None => {
                        new.insert(attribute.name.clone(), carried);
                    }
                    Some(key) => {
                        let entry = new
                            .entry(key.to_string())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(members) = entry {
                            members.insert(attribute.name.clone(), carried);
                        }
                    }
                }
            }
        }
        return Ok(());
    }
    // Immutable sub-attributes of a single-valued complex attribute.
    if attribute.attr_type != AttrType::Complex || attribute.multi_valued {
        return Ok(());
    }
    for sub in attribute
        .sub_attributes
        .iter()
        .filter(|sub| sub.mutability == Mutability::Immutable)
    {
        let Some(old_sub) = old_value
            .as_object()
            .and_then(|object| object_keys::get(object, &sub.name))
        else {
            continue;
        };
        let new_sub = new_value
            .as_ref()
            .and_then(Value::as_object)
            .and_then(|object| object_keys::get(object, &sub.name));
        if let Some(new_sub) = new_sub {
            if !values_equal(sub, new_sub, old_sub) {
                return Err(ScimError::mutability(format!(
                    "sub-attribute '{}.{}' is immutable and already has a value",
                    attribute.name, sub.name
                )));
            }
        }
    }
    Ok(())
}
