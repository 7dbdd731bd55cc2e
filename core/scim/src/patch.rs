//! RFC 7644 §3.5.2 PATCH: parse a PatchOp body ([`PatchRequest::parse`]) and apply it
//! to a resource under its schemas ([`apply_patch`]), all or nothing.
//!
//! Operations work on a clone; the result is re-validated (types, required
//! attributes, `primary`) before it is returned, so an error leaves nothing half-done.

use std::fmt;

use serde_json::{Map, Value};

use crate::error::{ScimError, ScimType};
use crate::filter::{AttrPath, CompValue, Filter, PatchPath};
use crate::object_keys;
use crate::registry::{Location, SchemaCtx};
use crate::schema::{AttrType, Attribute, Mutability, Schema};
use crate::urn;
use crate::validate::{self, Mode};

/// The three PATCH operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchOpKind {
    /// `add`
    Add,
    /// `remove`
    Remove,
    /// `replace`
    Replace,
}

impl PatchOpKind {
    /// The keyword (`"add"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }
}

/// One entry of `Operations`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    /// The operation.
    pub op: PatchOpKind,
    /// The target; `None` for pathless add/replace.
    pub path: Option<PatchPath>,
    /// The value, when given.
    pub value: Option<Value>,
}

/// A parsed PatchOp request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// The operations, applied in order.
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// Parses a PatchOp body. `schemas` must list
    /// `urn:ietf:params:scim:api:messages:2.0:PatchOp`, `Operations` must be a
    /// non-empty array, `op` one of `add`/`remove`/`replace` (ignoring ASCII
    /// case) and `path` a valid path (`invalidPath` otherwise). Client dialects
    /// beyond the RFC are rewritten before, by a route's profile ([`crate::profile`]).
    pub fn parse(body: &Value) -> Result<PatchRequest, ScimError> {
        let object = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a PatchOp request must be a JSON object"))?;
        let lists_patch_op = object_keys::get(object, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|schemas| {
                schemas.iter().any(|urn| {
                    urn.as_str()
                        .is_some_and(|urn| urn.eq_ignore_ascii_case(urn::PATCH_OP))
                })
            });
        if !lists_patch_op {
            return Err(ScimError::invalid_syntax(format!(
                "a PatchOp request must have \"schemas\": [\"{}\"]",
                urn::PATCH_OP
            )));
        }
        let items = match object_keys::get(object, "Operations") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            _ => {
                return Err(ScimError::invalid_syntax(
                    "a PatchOp request needs a non-empty 'Operations' array",
                ))
            }
        };
        let mut operations = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let operation = item.as_object().ok_or_else(|| {
                ScimError::invalid_syntax(format!("Operations[{index}] must be a JSON object"))
            })?;
            // Leniency the RFC allows lives here, in the parser, for every
            // route (with or without a profile): RFC 7644 names the three
            // operations but does not make their keyword case-exact, and
            // SCIM keywords (attribute names, filter operators, §3.4.2.2) are
            // case-insensitive, so `"op": "Replace"` is `replace`. What the
            // RFC does not allow (string booleans, dotted pathless keys,
            // value-array removals with a filter, …) is a client dialect and
            // is rewritten only by a route's profile
            // ([`crate::profile`]), where each rewrite is a setting.
            let op = match object_keys::get(operation, "op").and_then(Value::as_str) {
                Some(op) if op.eq_ignore_ascii_case("add") => PatchOpKind::Add,
                Some(op) if op.eq_ignore_ascii_case("remove") => PatchOpKind::Remove,
                Some(op) if op.eq_ignore_ascii_case("replace") => PatchOpKind::Replace,
                Some(other) => {
                    return Err(ScimError::invalid_syntax(format!(
                        "Operations[{index}]: unknown op '{other}'; expected add, remove or replace"
                    )))
                }
                None => {
                    return Err(ScimError::invalid_syntax(format!(
                        "Operations[{index}] needs a string 'op'"
                    )))
                }
            };
            let path = match object_keys::get(operation, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => {
                    Some(PatchPath::parse(text).map_err(|error| prefixed(index, error))?)
                }
                Some(_) => {
                    return Err(ScimError::invalid_path(format!(
                        "Operations[{index}]: 'path' must be a string"
                    )))
                }
            };
            let value = object_keys::get(operation, "value").cloned();
            operations.push(PatchOperation { op, path, value });
        }
        Ok(PatchRequest { operations })
    }
}

fn prefixed(index: usize, error: ScimError) -> ScimError {
    ScimError {
        detail: format!("Operations[{index}]: {}", error.detail),
        ..error
    }
}

/// Applies `request` to `resource` and returns the new, re-validated resource.
///
/// Semantics (RFC 7644 §3.5.2): `add` appends to multi-valued attributes (skipping
/// values already present, matched on `value`), merges into complex ones and sets
/// simple ones; `replace` replaces multi-valued attributes wholesale and merges
/// complex ones; `remove` needs a path (`noTarget` otherwise). A value filter that
/// matches nothing is `noTarget`, except that `add` creates the element when the
/// filter is a conjunction of `eq` tests (`emails[type eq "work"].value`).
/// readOnly targets and immutable ones that already hold a different value are
/// `mutability`; removing a required attribute is `invalidValue`. `remove` of a
/// multi-valued attribute with a `value` array removes just those values.
/// Setting `primary: true` on one value clears it on the others.
pub fn apply_patch(
    context: &SchemaCtx<'_>,
    resource: &Value,
    request: &PatchRequest,
) -> Result<Value, ScimError> {
    let mut working = resource.clone();
    if !working.is_object() {
        return Err(ScimError::invalid_syntax(
            "the resource to patch must be a JSON object",
        ));
    }
    for (index, operation) in request.operations.iter().enumerate() {
        apply_operation(context, &mut working, operation)
            .map_err(|error| prefixed(index, error))?;
    }
    validate::validate_stored_owned(context, working)
}

fn apply_operation(
    context: &SchemaCtx<'_>,
    resource: &mut Value,
    operation: &PatchOperation,
) -> Result<(), ScimError> {
    match (&operation.path, operation.op) {
        (None, PatchOpKind::Remove) => Err(ScimError::no_target("'remove' requires a 'path'")),
        (None, op) => {
            let Some(Value::Object(members)) = &operation.value else {
                return Err(ScimError::invalid_value(format!(
                    "a '{}' without 'path' needs an object 'value'",
                    op.as_str()
                )));
            };
            for (key, value) in members {
                apply_keyed(context, resource, op, key, value)?;
            }
            Ok(())
        }
        (Some(path), op) => {
            let target = resolve_target(context, path)?;
            apply_target(resource, op, &target, operation.value.as_ref())
        }
    }
}

/// One member of a pathless add/replace value: an attribute, a URN-keyed extension
/// object, `schemas`, or an attribute path (`name.givenName`, `urn:…:department`).
fn apply_keyed(
    context: &SchemaCtx<'_>,
    resource: &mut Value,
    op: PatchOpKind,
    key: &str,
    value: &Value,
) -> Result<(), ScimError> {
    if key.eq_ignore_ascii_case("schemas") {
        return merge_schemas(context, resource, value);
    }
    if let Some(extension) = context.extension(key) {
        let Value::Object(members) = value else {
            return Err(ScimError::invalid_value(format!(
                "extension '{}' must be given as an object",
                extension.id
            )));
        };
        for (name, member) in extension_members(extension, members) {
            let attribute = extension.attribute(name).ok_or_else(|| {
                ScimError::invalid_path(format!(
                    "unknown attribute '{name}' in extension '{}'",
                    extension.id
                ))
            })?;
            let target = Target::attribute(Location::Extension(extension), attribute);
            apply_target(resource, op, &target, Some(member))?;
        }
        return Ok(());
    }
    let path = PatchPath::parse(key)
        .map_err(|_| ScimError::invalid_path(format!("unknown attribute '{key}'")))?;
    let target = resolve_target(context, &path)?;
    apply_target(resource, op, &target, Some(value))
}

fn merge_schemas(
    context: &SchemaCtx<'_>,
    resource: &mut Value,
    value: &Value,
) -> Result<(), ScimError> {
    let Value::Array(listed) = value else {
        return Err(ScimError::invalid_value(
            "'schemas' must be an array of URNs",
        ));
    };
    for urn in listed {
        let urn = urn
            .as_str()
            .ok_or_else(|| ScimError::invalid_value("'schemas' must be an array of URNs"))?;
        if context.is_core(urn) {
            continue;
        }
        let extension = context
            .extension(urn)
            .ok_or_else(|| ScimError::invalid_value(format!("unknown schema '{urn}'")))?;
        add_schema_urn(resource, &extension.id);
    }
    Ok(())
}

/// A resolved PATCH target.
struct Target<'a, 'p> {
    location: Location<'a>,
    /// `None` targets a whole extension object.
    attribute: Option<&'a Attribute>,
    /// Sub-attribute (`name.givenName`, or after a filter `emails[…].value`).
    sub: Option<&'a Attribute>,
    filter: Option<&'p Filter>,
}

impl<'a> Target<'a, '_> {
    fn attribute(location: Location<'a>, attribute: &'a Attribute) -> Self {
        Target {
            location,
            attribute: Some(attribute),
            sub: None,
            filter: None,
        }
    }
}

fn resolve_target<'a, 'p>(
    context: &SchemaCtx<'a>,
    path: &'p PatchPath,
) -> Result<Target<'a, 'p>, ScimError> {
    if path.filter.is_none() && path.attr.sub_attr.is_none() {
        if let Some(urn) = &path.attr.urn {
            if let Some(extension) = qualified_extension(context, urn, &path.attr.attr) {
                return Ok(Target {
                    location: Location::Extension(extension),
                    attribute: None,
                    sub: None,
                    filter: None,
                });
            }
        }
    }
    if path.attr.attr.eq_ignore_ascii_case("schemas") {
        return Err(ScimError::invalid_path("'schemas' cannot be a PATCH path"));
    }
    let (location, attribute) = context
        .resolve_name(path.attr.urn.as_deref(), &path.attr.attr)
        .ok_or_else(|| {
            ScimError::invalid_path(format!(
                "unknown attribute '{}' in path '{path}'",
                path.attr.attr
            ))
        })?;
    let sub_name = path.attr.sub_attr.as_deref().or(path.sub_attr.as_deref());
    let sub = match sub_name {
        Some(name) => Some(attribute.sub_attribute(name).ok_or_else(|| {
            ScimError::invalid_path(format!(
                "'{}' has no sub-attribute '{name}' (path '{path}')",
                attribute.name
            ))
        })?),
        None => None,
    };
    if sub.is_some() && attribute.attr_type != AttrType::Complex {
        return Err(ScimError::invalid_path(format!(
            "'{}' is not complex (path '{path}')",
            attribute.name
        )));
    }
    if path.filter.is_some()
        && !(attribute.multi_valued && attribute.attr_type == AttrType::Complex)
    {
        return Err(ScimError::invalid_path(format!(
            "a value filter needs a multi-valued complex attribute; '{}' is not (path '{path}')",
            attribute.name
        )));
    }
    Ok(Target {
        location,
        attribute: Some(attribute),
        sub,
        filter: path.filter.as_ref(),
    })
}

/// The extension whose URN is `urn:attr` (as `context.extension(&format!("{urn}:{attr}"))`,
/// without building the string).
fn qualified_extension<'a>(context: &SchemaCtx<'a>, urn: &str, attr: &str) -> Option<&'a Schema> {
    let (urn, attr) = (urn.as_bytes(), attr.as_bytes());
    context
        .extensions
        .iter()
        .map(|(schema, _)| *schema)
        .find(|schema| {
            let id = schema.id.as_bytes();
            id.len() == urn.len() + 1 + attr.len()
                && id
                    .get(..urn.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(urn))
                && id.get(urn.len()) == Some(&b':')
                && id
                    .get(urn.len() + 1..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(attr))
        })
}

/// How an error message names a PATCH target (`emails[type eq "work"].value`);
/// formatted only when an error is actually built.
enum Label<'a> {
    /// `attr.sub`
    Sub { attribute: &'a str, sub: &'a str },
    /// `attr[filter]` or `attr[filter].sub`
    Filtered {
        attribute: &'a str,
        filter: &'a Filter,
        sub: Option<&'a str>,
    },
}

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Sub { attribute, sub } => write!(f, "{attribute}.{sub}"),
            Label::Filtered {
                attribute,
                filter,
                sub: Some(sub),
            } => write!(f, "{attribute}[{filter}].{sub}"),
            Label::Filtered {
                attribute,
                filter,
                sub: None,
            } => write!(f, "{attribute}[{filter}]"),
        }
    }
}

fn apply_target(
    resource: &mut Value,
    op: PatchOpKind,
    target: &Target<'_, '_>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(attribute) = target.attribute else {
        return apply_whole_extension(resource, op, target, value);
    };
    let value = match (op, value) {
        (PatchOpKind::Remove, value) => value.filter(|value| !value.is_null()),
        (PatchOpKind::Replace, None | Some(Value::Null)) => {
            return apply_target(resource, PatchOpKind::Remove, target, None).or_else(|error| {
                match error.scim_type {
                    Some(ScimType::NoTarget) => Ok(()),
                    _ => Err(error),
                }
            })
        }
        (PatchOpKind::Add, None | Some(Value::Null)) => {
            return Err(ScimError::invalid_value(format!(
                "'add' of '{}' needs a value",
                attribute.name
            )))
        }
        (_, value) => value,
    };
    if let Location::Extension(extension) = target.location {
        if op != PatchOpKind::Remove {
            add_schema_urn(resource, &extension.id);
        }
    }
    let Some(container) = container_mut(resource, target.location, op != PatchOpKind::Remove)
    else {
        return Ok(());
    };
    // An extension object this leaves empty is dropped by the final
    // validation (`validate_stored_owned`); no later operation of the request
    // can tell an empty extension object from a missing one.
    match (target.filter, target.sub) {
        (Some(filter), sub) => apply_filtered(container, op, attribute, filter, sub, value),
        (None, Some(sub)) => apply_sub(container, op, attribute, sub, value),
        (None, None) => apply_attribute(container, op, attribute, value),
    }
}

fn apply_whole_extension(
    resource: &mut Value,
    op: PatchOpKind,
    target: &Target<'_, '_>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Location::Extension(extension) = target.location else {
        return Err(ScimError::invalid_path("no attribute in path"));
    };
    match op {
        PatchOpKind::Remove => {
            if let Some(object) = resource.as_object_mut() {
                object_keys::remove(object, &extension.id);
            }
            remove_schema_urn(resource, &extension.id);
            Ok(())
        }
        PatchOpKind::Add | PatchOpKind::Replace => {
            let Some(Value::Object(members)) = value else {
                return Err(ScimError::invalid_value(format!(
                    "the value of extension '{}' must be an object",
                    extension.id
                )));
            };
            for (name, member) in extension_members(extension, members) {
                let attribute = extension.attribute(name).ok_or_else(|| {
                    ScimError::invalid_path(format!(
                        "unknown attribute '{name}' in extension '{}'",
                        extension.id
                    ))
                })?;
                apply_target(
                    resource,
                    op,
                    &Target::attribute(target.location, attribute),
                    Some(member),
                )?;
            }
            Ok(())
        }
    }
}

/// The members of an extension object given as a PATCH value, without a
/// `schemas` member that only names the extension itself: clients that
/// serialise the extension as a model (the public compliance suite among
/// them) repeat its URN there. That member restates the key the object is
/// under, so it is RFC leniency and read here, for every route; any other
/// `schemas` member stays an unknown attribute.
fn extension_members<'v>(
    extension: &Schema,
    members: &'v Map<String, Value>,
) -> impl Iterator<Item = (&'v String, &'v Value)> {
    let id = extension.id.clone();
    members.iter().filter(move |(name, member)| {
        let restates_id = member.as_array().is_some_and(|urns| {
            urns.iter().all(|urn| {
                urn.as_str()
                    .is_some_and(|urn| urn.eq_ignore_ascii_case(&id))
            })
        });
        !(name.eq_ignore_ascii_case("schemas") && restates_id)
    })
}

/// The object holding the attribute: the resource, or its extension object.
fn container_mut<'r>(
    resource: &'r mut Value,
    location: Location<'_>,
    create: bool,
) -> Option<&'r mut Map<String, Value>> {
    let object = resource.as_object_mut()?;
    match location {
        Location::Core => Some(object),
        Location::Extension(extension) => {
            if object_keys::get(object, &extension.id).is_none_or(|value| !value.is_object()) {
                if !create {
                    return None;
                }
                object_keys::set(object, &extension.id, Value::Object(Map::new()));
            }
            object_keys::get_mut(object, &extension.id)?.as_object_mut()
        }
    }
}

fn add_schema_urn(resource: &mut Value, urn: &str) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    if object_keys::get(object, "schemas").is_none() {
        object.insert("schemas".into(), Value::Array(Vec::new()));
    }
    if let Some(Value::Array(schemas)) = object_keys::get_mut(object, "schemas") {
        if !schemas.iter().any(|known| {
            known
                .as_str()
                .is_some_and(|known| known.eq_ignore_ascii_case(urn))
        }) {
            schemas.push(Value::String(urn.to_string()));
        }
    }
}

fn remove_schema_urn(resource: &mut Value, urn: &str) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(schemas)) = object_keys::get_mut(object, "schemas") {
        schemas.retain(|known| {
            !known
                .as_str()
                .is_some_and(|known| known.eq_ignore_ascii_case(urn))
        });
    }
}

/// Refuses to change a readOnly attribute, or an immutable one that already has a
/// different value. Returns `true` when the write is a no-op (same value).
fn check_mutability<L: fmt::Display + ?Sized>(
    attribute: &Attribute,
    label: &L,
    existing: Option<&Value>,
    new: Option<&Value>,
) -> Result<bool, ScimError> {
    if matches!(
        attribute.mutability,
        Mutability::ReadWrite | Mutability::WriteOnly
    ) {
        return Ok(false);
    }
    let existing = existing.filter(|value| !value.is_null());
    let unchanged = match (existing, new) {
        (Some(existing), Some(new)) => validate::values_equal(attribute, existing, new),
        (None, None) => true,
        _ => false,
    };
    match attribute.mutability {
        Mutability::ReadOnly if unchanged => Ok(true),
        Mutability::ReadOnly => Err(ScimError::mutability(format!(
            "attribute '{label}' is readOnly"
        ))),
        Mutability::Immutable if existing.is_some() && !unchanged => Err(ScimError::mutability(
            format!("attribute '{label}' is immutable and already has a value"),
        )),
        _ => Ok(unchanged),
    }
}

fn refuse_required_removal<L: fmt::Display + ?Sized>(
    attribute: &Attribute,
    label: &L,
) -> Result<(), ScimError> {
    if attribute.required {
        return Err(ScimError::invalid_value(format!(
            "attribute '{label}' is required and cannot be removed"
        )));
    }
    Ok(())
}

/// `path` is a plain attribute.
fn apply_attribute(
    container: &mut Map<String, Value>,
    op: PatchOpKind,
    attribute: &Attribute,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = attribute.name.as_str();
    if op == PatchOpKind::Remove {
        if let (Some(selection), true) = (value, attribute.multi_valued) {
            return remove_listed_values(container, attribute, selection);
        }
        let existing = object_keys::get(container, name);
        if existing.is_none_or(Value::is_null) {
            return Ok(());
        }
        check_mutability(attribute, name, existing, None)?;
        refuse_required_removal(attribute, name)?;
        object_keys::remove(container, name);
        return Ok(());
    }
    let Some(value) = value else { return Ok(()) };
    if attribute.mutability == Mutability::ReadOnly {
        let unchanged = object_keys::get(container, name)
            .is_some_and(|existing| validate::values_equal(attribute, existing, value));
        return if unchanged {
            Ok(())
        } else {
            Err(ScimError::mutability(format!(
                "attribute '{name}' is readOnly"
            )))
        };
    }
    let Some(cleaned) = validate::clean_value(attribute, value, name, Mode::Input)? else {
        if op == PatchOpKind::Replace {
            return apply_attribute(container, PatchOpKind::Remove, attribute, None);
        }
        return Ok(());
    };
    if matches!(
        attribute.mutability,
        Mutability::ReadWrite | Mutability::WriteOnly
    ) {
        // `check_mutability` lets these through unexamined: merge into the existing
        // value taken out of the container instead of a copy of it.
        let merged = match (op, attribute.multi_valued, attribute.attr_type) {
            (PatchOpKind::Add, true, _) => {
                let Value::Array(new_items) = cleaned else {
                    return Ok(());
                };
                let mut items = match object_keys::take(container, name) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                for item in new_items {
                    add_element(&mut items, attribute, item);
                }
                Value::Array(items)
            }
            (_, false, AttrType::Complex) => match (object_keys::take(container, name), cleaned) {
                (Some(Value::Object(mut merged)), Value::Object(new)) => {
                    for (key, member) in new {
                        object_keys::set(&mut merged, &key, member);
                    }
                    Value::Object(merged)
                }
                (_, new) => new,
            },
            (_, _, _) => cleaned,
        };
        object_keys::set(container, name, merged);
        return Ok(());
    }
    let existing = object_keys::get(container, name);
    let merged = match (op, attribute.multi_valued, attribute.attr_type) {
        (PatchOpKind::Add, true, _) => {
            let mut items = match existing {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            let Value::Array(new_items) = cleaned else {
                return Ok(());
            };
            for item in new_items {
                add_element(&mut items, attribute, item);
            }
            Value::Array(items)
        }
        (_, false, AttrType::Complex) => match (existing, cleaned) {
            (Some(Value::Object(old)), Value::Object(new)) => {
                let mut merged = old.clone();
                for (key, member) in new {
                    object_keys::set(&mut merged, &key, member);
                }
                Value::Object(merged)
            }
            (_, new) => new,
        },
        (_, _, _) => cleaned,
    };
    if check_mutability(attribute, name, existing, Some(&merged))? {
        return Ok(());
    }
    object_keys::set(container, name, merged);
    Ok(())
}

/// Adds one element to a multi-valued attribute: an element with the same `value`
/// (and `type`) is merged instead of duplicated; a new `primary: true` demotes the others.
fn add_element(items: &mut Vec<Value>, attribute: &Attribute, item: Value) {
    let same = items
        .iter()
        .position(|existing| same_element(attribute, existing, &item));
    let index = match same {
        Some(index) => {
            if let (Some(Value::Object(old)), Value::Object(new)) = (items.get_mut(index), &item) {
                for (key, member) in new {
                    old.insert(key.clone(), member.clone());
                }
            }
            index
        }
        None => {
            items.push(item);
            items.len() - 1
        }
    };
    demote_other_primaries(items, index);
}

fn same_element(attribute: &Attribute, existing: &Value, new: &Value) -> bool {
    if attribute.attr_type != AttrType::Complex {
        return validate::values_equal(attribute, existing, new);
    }
    let (Some(old), Some(new_object)) = (existing.as_object(), new.as_object()) else {
        return false;
    };
    match (
        object_keys::get(old, "value"),
        object_keys::get(new_object, "value"),
        attribute.sub_attribute("value"),
    ) {
        (Some(left), Some(right), Some(value_attribute)) => {
            validate::values_equal(value_attribute, left, right) && {
                let type_attribute = attribute.sub_attribute("type");
                match (
                    object_keys::get(old, "type"),
                    object_keys::get(new_object, "type"),
                    type_attribute,
                ) {
                    (Some(left), Some(right), Some(type_attribute)) => {
                        validate::values_equal(type_attribute, left, right)
                    }
                    _ => true,
                }
            }
        }
        _ => existing == new,
    }
}

fn is_primary(item: &Value) -> bool {
    item.as_object()
        .and_then(|object| object_keys::get(object, "primary"))
        == Some(&Value::Bool(true))
}

fn demote_other_primaries(items: &mut [Value], keep: usize) {
    if !items.get(keep).is_some_and(is_primary) {
        return;
    }
    for (index, item) in items.iter_mut().enumerate() {
        if index != keep && is_primary(item) {
            if let Some(object) = item.as_object_mut() {
                object_keys::set(object, "primary", Value::Bool(false));
            }
        }
    }
}

/// `remove` of a multi-valued attribute with a `value` (as Entra ID sends for
/// members): removes the listed values, matched on `value` for complex attributes.
fn remove_listed_values(
    container: &mut Map<String, Value>,
    attribute: &Attribute,
    selection: &Value,
) -> Result<(), ScimError> {
    let wanted: Vec<&Value> = match selection {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let name = attribute.name.clone();
    let Some(Value::Array(items)) = object_keys::get_mut(container, &name) else {
        return Ok(());
    };
    if attribute.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!(
            "attribute '{name}' is readOnly"
        )));
    }
    items.retain(|item| {
        !wanted
            .iter()
            .any(|wanted| same_element(attribute, item, wanted) || *wanted == item)
    });
    if items.is_empty() {
        refuse_required_removal(attribute, &name)?;
        object_keys::remove(container, &name);
    }
    Ok(())
}

/// `path` is `attr.sub` without a filter.
fn apply_sub(
    container: &mut Map<String, Value>,
    op: PatchOpKind,
    attribute: &Attribute,
    sub: &Attribute,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let label = Label::Sub {
        attribute: &attribute.name,
        sub: &sub.name,
    };
    if attribute.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!(
            "attribute '{}' is readOnly",
            attribute.name
        )));
    }
    if attribute.multi_valued {
        let Some(Value::Array(items)) = object_keys::get_mut(container, &attribute.name) else {
            return match op {
                PatchOpKind::Remove => Ok(()),
                _ => Err(ScimError::no_target(format!(
                    "'{}' has no values to set '{label}' on",
                    attribute.name
                ))),
            };
        };
        let indices: Vec<usize> = (0..items.len()).collect();
        return set_sub_on_elements(items, &indices, op, sub, &label, value).map(|_| ());
    }
    let parent_missing =
        object_keys::get(container, &attribute.name).is_none_or(|parent| !parent.is_object());
    if parent_missing {
        if op == PatchOpKind::Remove {
            return Ok(());
        }
        object_keys::set(container, &attribute.name, Value::Object(Map::new()));
    }
    let Some(Value::Object(parent)) = object_keys::get_mut(container, &attribute.name) else {
        return Ok(());
    };
    set_sub(parent, op, sub, &label, value)?;
    if parent.is_empty() {
        refuse_required_removal(attribute, &attribute.name)?;
        object_keys::remove(container, &attribute.name);
    }
    Ok(())
}

fn set_sub<L: fmt::Display + ?Sized>(
    parent: &mut Map<String, Value>,
    op: PatchOpKind,
    sub: &Attribute,
    label: &L,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if op == PatchOpKind::Remove {
        let existing = object_keys::get(parent, &sub.name);
        if existing.is_none() {
            return Ok(());
        }
        check_mutability(sub, label, existing, None)?;
        refuse_required_removal(sub, label)?;
        object_keys::remove(parent, &sub.name);
        return Ok(());
    }
    let Some(value) = value else { return Ok(()) };
    let cleaned = validate::clean_value(sub, value, label, Mode::Input)?;
    let merged = match (op, sub.multi_valued, cleaned) {
        (_, _, None) => return set_sub(parent, PatchOpKind::Remove, sub, label, None),
        (PatchOpKind::Add, true, Some(Value::Array(new))) => {
            let mut items = match object_keys::get(parent, &sub.name) {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            for item in new {
                if !items
                    .iter()
                    .any(|known| validate::values_equal(sub, known, &item))
                {
                    items.push(item);
                }
            }
            Value::Array(items)
        }
        (_, _, Some(new)) => new,
    };
    let existing = object_keys::get(parent, &sub.name);
    if check_mutability(sub, label, existing, Some(&merged))? {
        return Ok(());
    }
    object_keys::set(parent, &sub.name, merged);
    Ok(())
}

fn set_sub_on_elements<L: fmt::Display + ?Sized>(
    items: &mut [Value],
    indices: &[usize],
    op: PatchOpKind,
    sub: &Attribute,
    label: &L,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    for &index in indices {
        let Some(Value::Object(element)) = items.get_mut(index) else {
            continue;
        };
        set_sub(element, op, sub, label, value)?;
        if sub.name == "primary" && op != PatchOpKind::Remove {
            demote_other_primaries(items, index);
        }
    }
    Ok(())
}

/// `path` is `attr[filter]` or `attr[filter].sub`.
fn apply_filtered(
    container: &mut Map<String, Value>,
    op: PatchOpKind,
    attribute: &Attribute,
    filter: &Filter,
    sub: Option<&Attribute>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if attribute.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!(
            "attribute '{}' is readOnly",
            attribute.name
        )));
    }
    // Taken out of the container: on error the whole (cloned) resource is discarded.
    let taken = object_keys::remove(container, &attribute.name);
    let existed = taken.is_some();
    let mut items = match taken {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let mut matched = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if filter
            .matches_element(item, Some(attribute))
            .map_err(|error| ScimError::invalid_path(error.detail))?
        {
            matched.push(index);
        }
    }
    let label = Label::Filtered {
        attribute: &attribute.name,
        filter,
        sub: sub.map(|sub| sub.name.as_str()),
    };
    if matched.is_empty() {
        match (op, filter.equality_assignments()) {
            (PatchOpKind::Add, Some(assignments)) => {
                let element =
                    element_from_assignments(attribute, &assignments, sub, value, &label)?;
                add_element(&mut items, attribute, element);
                object_keys::set(container, &attribute.name, Value::Array(items));
                return Ok(());
            }
            _ => {
                // Put the values back: a `replace` with no value turns this
                // error into "nothing to do", and must not lose them.
                if existed {
                    object_keys::set(container, &attribute.name, Value::Array(items));
                }
                return Err(ScimError::no_target(format!(
                    "no value of '{}' matches '{label}'",
                    attribute.name
                )));
            }
        }
    }
    match (op, sub) {
        (_, Some(sub)) => set_sub_on_elements(&mut items, &matched, op, sub, &label, value)?,
        (PatchOpKind::Remove, None) => {
            let mut index = 0;
            items.retain(|_| {
                let keep = !matched.contains(&index);
                index += 1;
                keep
            });
        }
        (_, None) => {
            let Some(Value::Object(members)) = value else {
                return Err(ScimError::invalid_value(format!(
                    "the value for '{label}' must be an object"
                )));
            };
            for &index in &matched {
                for (key, member) in members {
                    let sub = attribute.sub_attribute(key).ok_or_else(|| {
                        ScimError::invalid_syntax(format!(
                            "unknown sub-attribute '{key}' of '{}'",
                            attribute.name
                        ))
                    })?;
                    let Some(Value::Object(element)) = items.get_mut(index) else {
                        continue;
                    };
                    set_sub(element, PatchOpKind::Replace, sub, &label, Some(member))?;
                }
                demote_other_primaries(&mut items, index);
            }
        }
    }
    if items.is_empty() {
        refuse_required_removal(attribute, &attribute.name)?;
        object_keys::remove(container, &attribute.name);
    } else {
        object_keys::set(container, &attribute.name, Value::Array(items));
    }
    Ok(())
}

/// Builds the element an `add` to `attr[a eq x and b eq y](.sub)` creates when none matches.
fn element_from_assignments<L: fmt::Display + ?Sized>(
    attribute: &Attribute,
    assignments: &[(&AttrPath, &CompValue)],
    sub: Option<&Attribute>,
    value: Option<&Value>,
    label: &L,
) -> Result<Value, ScimError> {
    let mut element = Map::new();
    for (path, literal) in assignments {
        let literal = match literal {
            CompValue::Null => Value::Null,
            CompValue::Bool(flag) => Value::Bool(*flag),
            CompValue::Number(number) => Value::Number(number.clone()),
            CompValue::String(text) => Value::String(text.clone()),
        };
        element.insert(path.attr.clone(), literal);
    }
    match (sub, value) {
        (Some(sub), Some(value)) => {
            element.insert(sub.name.clone(), value.clone());
        }
        (None, Some(Value::Object(members))) => {
            for (key, member) in members {
                element.insert(key.clone(), member.clone());
            }
        }
        _ => {
            return Err(ScimError::invalid_value(format!(
                "'add' to '{label}' needs a value"
            )))
        }
    }
    let cleaned = validate::clean_value(
        attribute,
        &Value::Array(vec![Value::Object(element)]),
        &attribute.name,
        Mode::Input,
    )?;
    // One element in, at most one out (`None` when cleaning left nothing).
    let element = match cleaned {
        Some(Value::Array(items)) => items.into_iter().next(),
        _ => None,
    };
    element.ok_or_else(|| ScimError::invalid_value(format!("'add' to '{label}' produced no value")))
}
