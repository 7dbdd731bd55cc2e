//! IGA client dialects: small rewrites that turn what One Identity, Entra ID, Okta
//! and other IGA clients actually send into RFC 7644 PatchOp bodies. Each function
//! edits a PatchOp JSON in place and leaves anything it does not recognise
//! untouched. The profile engine ([`crate::profile`]) is their one caller on a
//! request's way: each rewrite is one of its settings, run in the order of
//! [`crate::profile::Settings`]; [`normalize_patch_request`] applies the six
//! shared ones (a profile's defaults) to a copy. The SCIM service itself parses
//! RFC PatchOp only ([`crate::patch::PatchRequest::parse`]).

use serde_json::{Map, Value};

use crate::filter::{AttrPath, CompValue, PatchPath};
use crate::object_keys;
use crate::registry::{Location, SchemaCtx};
use crate::schema::{AttrType, Attribute};
use crate::urn;

/// Applies every rewrite of this module, in a sensible order, to a copy of `body`.
pub fn normalize_patch_request(body: &Value, context: &SchemaCtx<'_>) -> Value {
    let mut body = body.clone();
    normalize_op_case(&mut body);
    drop_extension_schemas(&mut body, context);
    expand_pathless_paths(&mut body, context);
    value_array_removal_to_filter(&mut body);
    drop_value_of_filtered_removal(&mut body);
    coerce_string_booleans(&mut body, context);
    body
}

fn operations_mut(body: &mut Value) -> Option<&mut Vec<Value>> {
    let object = body.as_object_mut()?;
    object_keys::get_mut(object, "Operations")?.as_array_mut()
}

/// `"op": "Replace"` → `"op": "replace"` (Entra ID capitalises operations).
pub fn normalize_op_case(body: &mut Value) {
    let Some(operations) = operations_mut(body) else {
        return;
    };
    for operation in operations.iter_mut().filter_map(Value::as_object_mut) {
        if let Some(Value::String(op)) = object_keys::get_mut(operation, "op") {
            let lower = op.to_ascii_lowercase();
            *op = lower;
        }
    }
}

/// Pathless add/replace whose value keys are paths become one operation per key:
/// `{"op":"replace","value":{"name.givenName":"x","urn:…:enterprise:2.0:User:department":"y"}}`
/// → `{"op":"replace","path":"name.givenName","value":"x"}` and
/// `{"op":"replace","path":"urn:…:enterprise:2.0:User:department","value":"y"}`.
/// Plain attribute names and URN-keyed extension objects stay in the pathless operation.
pub fn expand_pathless_paths(body: &mut Value, context: &SchemaCtx<'_>) {
    let Some(operations) = operations_mut(body) else {
        return;
    };
    let mut rewritten = Vec::with_capacity(operations.len());
    for operation in operations.drain(..) {
        let Some(object) = operation.as_object() else {
            rewritten.push(operation);
            continue;
        };
        let pathless = object_keys::get(object, "path").is_none_or(Value::is_null);
        let (Some(op), Some(Value::Object(members)), true) = (
            object_keys::get(object, "op").cloned(),
            object_keys::get(object, "value"),
            pathless,
        ) else {
            rewritten.push(operation);
            continue;
        };
        let is_path_key = |key: &str| {
            context.extension(key).is_none()
                && !key.eq_ignore_ascii_case("schemas")
                && (key.contains('.') || key.contains(':'))
        };
        if !members.keys().any(|key| is_path_key(key)) {
            rewritten.push(operation);
            continue;
        }
        let mut plain = Map::new();
        let mut expanded = Vec::new();
        for (key, value) in members {
            if is_path_key(key) {
                let mut single = Map::new();
                single.insert("op".into(), op.clone());
                single.insert("path".into(), Value::String(key.clone()));
                single.insert("value".into(), value.clone());
                expanded.push(Value::Object(single));
            } else {
                plain.insert(key.clone(), value.clone());
            }
        }
        if !plain.is_empty() {
            let mut rest = Map::new();
            rest.insert("op".into(), op.clone());
            rest.insert("value".into(), Value::Object(plain));
            rewritten.push(Value::Object(rest));
        }
        rewritten.extend(expanded);
    }
    *operations = rewritten;
}

/// An extension object given as a whole may carry its own `schemas` member
/// (clients serialising the extension model): `{"op":"add","path":"urn:…:enterprise:2.0:User",
/// "value":{"schemas":[…],"department":"x"}}` → the same without `schemas`, also
/// for URN-keyed objects inside a pathless value.
pub fn drop_extension_schemas(body: &mut Value, context: &SchemaCtx<'_>) {
    let Some(operations) = operations_mut(body) else {
        return;
    };
    for operation in operations.iter_mut().filter_map(Value::as_object_mut) {
        let path = object_keys::get(operation, "path")
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(value) = object_keys::get_mut(operation, "value") else {
            continue;
        };
        match path {
            Some(path) if context.extension(&path).is_some() => {
                if let Value::Object(members) = value {
                    object_keys::remove(members, "schemas");
                }
            }
            Some(_) => {}
            None => {
                if let Value::Object(members) = value {
                    for (key, member) in members.iter_mut() {
                        if let (Some(_), Value::Object(inner)) = (context.extension(key), member) {
                            object_keys::remove(inner, "schemas");
                        }
                    }
                }
            }
        }
    }
}

/// `{"op":"remove","path":"members","value":[{"value":"id1"},{"value":"id2"}]}` →
/// `{"op":"remove","path":"members[value eq \"id1\" or value eq \"id2\"]"}`.
/// Applies to any unfiltered path whose value lists objects with a string `value`.
pub fn value_array_removal_to_filter(body: &mut Value) {
    let Some(operations) = operations_mut(body) else {
        return;
    };
    for operation in operations.iter_mut().filter_map(Value::as_object_mut) {
        let is_remove = object_keys::get(operation, "op")
            .and_then(Value::as_str)
            .is_some_and(|op| op.eq_ignore_ascii_case("remove"));
        let Some(path) = object_keys::get(operation, "path")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        if !is_remove || path.contains('[') {
            continue;
        }
        let Ok(attr) = AttrPath::parse(&path) else {
            continue;
        };
        if attr.sub_attr.is_some() {
            continue;
        }
        let items: Vec<&Value> = match object_keys::get(operation, "value") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(item @ Value::Object(_)) => vec![item],
            _ => continue,
        };
        let values: Option<Vec<String>> = items
            .iter()
            .map(|item| {
                item.as_object()
                    .and_then(|object| object_keys::get(object, "value"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        let Some(values) = values.filter(|values| !values.is_empty()) else {
            continue;
        };
        let clauses: Vec<String> = values
            .into_iter()
            .map(|value| format!("value eq {}", CompValue::String(value)))
            .collect();
        let filtered = format!("{path}[{}]", clauses.join(" or "));
        object_keys::set(operation, "path", Value::String(filtered));
        object_keys::remove(operation, "value");
    }
}

/// `{"op":"remove","path":"members[value eq \"x\"]","value":…}` → the same without
/// `value` (One Identity repeats the removed member in `value`; RFC removal has none).
pub fn drop_value_of_filtered_removal(body: &mut Value) {
    let Some(operations) = operations_mut(body) else {
        return;
    };
    for operation in operations.iter_mut().filter_map(Value::as_object_mut) {
        let is_remove = object_keys::get(operation, "op")
            .and_then(Value::as_str)
            .is_some_and(|op| op.eq_ignore_ascii_case("remove"));
        let filtered = object_keys::get(operation, "path")
            .and_then(Value::as_str)
            .is_some_and(|path| path.contains('['));
        if is_remove && filtered {
            object_keys::remove(operation, "value");
        }
    }
}

/// `"True"`/`"False"` (any case) → `true`/`false`, only where the schema says the
/// target is boolean: `{"op":"replace","path":"active","value":"False"}`, pathless
/// `{"active":"False"}`, `emails[…].primary`, and `primary` inside complex values.
pub fn coerce_string_booleans(body: &mut Value, context: &SchemaCtx<'_>) {
    let Some(operations) = operations_mut(body) else {
        return;
    };
    for operation in operations.iter_mut().filter_map(Value::as_object_mut) {
        let path = object_keys::get(operation, "path")
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(value) = object_keys::get_mut(operation, "value") else {
            continue;
        };
        match path {
            Some(path) => {
                let Ok(parsed) = PatchPath::parse(&path) else {
                    continue;
                };
                if let Some(extension) = parsed
                    .attr
                    .urn
                    .as_ref()
                    .and_then(|urn| context.extension(&format!("{urn}:{}", parsed.attr.attr)))
                    .filter(|_| parsed.filter.is_none() && parsed.attr.sub_attr.is_none())
                {
                    coerce_members(value, &extension.attributes);
                    continue;
                }
                let Some(resolved) = context.resolve(&AttrPath {
                    sub_attr: None,
                    ..parsed.attr.clone()
                }) else {
                    continue;
                };
                let sub_name = parsed
                    .attr
                    .sub_attr
                    .as_deref()
                    .or(parsed.sub_attr.as_deref());
                match sub_name.and_then(|name| resolved.attribute.sub_attribute(name)) {
                    Some(sub) => coerce_value(sub, value),
                    None if sub_name.is_none() && parsed.filter.is_some() => {
                        coerce_members(value, &resolved.attribute.sub_attributes)
                    }
                    None if sub_name.is_none() => coerce_value(resolved.attribute, value),
                    None => {}
                }
            }
            None => {
                let Value::Object(members) = value else {
                    continue;
                };
                for (key, member) in members.iter_mut() {
                    if let Some(extension) = context.extension(key) {
                        coerce_members(member, &extension.attributes);
                    } else if let Ok(path) = AttrPath::parse(key) {
                        if let Some(resolved) = context.resolve(&path) {
                            if resolved.location == Location::Core || path.urn.is_some() {
                                coerce_value(
                                    resolved.sub_attribute.unwrap_or(resolved.attribute),
                                    member,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

fn coerce_members(value: &mut Value, attributes: &[Attribute]) {
    let Value::Object(members) = value else {
        return;
    };
    for (key, member) in members.iter_mut() {
        if let Some(attribute) = attributes
            .iter()
            .find(|attribute| attribute.name.eq_ignore_ascii_case(key))
        {
            coerce_value(attribute, member);
        }
    }
}

fn coerce_value(attribute: &Attribute, value: &mut Value) {
    match (attribute.attr_type, value) {
        (AttrType::Boolean, value @ Value::String(_)) => {
            let parsed = match value.as_str() {
                Some(text) if text.eq_ignore_ascii_case("true") => Some(true),
                Some(text) if text.eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            };
            if let Some(flag) = parsed {
                *value = Value::Bool(flag);
            }
        }
        (_, Value::Array(items)) => {
            for item in items {
                coerce_value(attribute, item);
            }
        }
        (AttrType::Complex, value @ Value::Object(_)) => {
            coerce_members(value, &attribute.sub_attributes)
        }
        _ => {}
    }
}

/// The Enterprise User `manager`, fully qualified.
const MANAGER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";

fn is_manager_path(path: &str) -> bool {
    path.eq_ignore_ascii_case(MANAGER) || path.eq_ignore_ascii_case("manager")
}

/// Entra ID sends the Enterprise User manager as `"value": "<id>"`,
/// `{"value": "<id>"}` or `[{"value": "<id>"}]`; the schema wants
/// `{"value": id}`. A `remove` of the manager with a value removes the
/// manager (the value is dropped). Run before [`value_array_removal_to_filter`].
pub fn normalize_manager(body: &mut Value) {
    let Some(operations) = operations_mut(body) else {
        return;
    };
    for operation in operations.iter_mut().filter_map(Value::as_object_mut) {
        let path = object_keys::get(operation, "path")
            .and_then(Value::as_str)
            .map(str::to_string);
        let is_remove = object_keys::get(operation, "op")
            .and_then(Value::as_str)
            .is_some_and(|op| op.eq_ignore_ascii_case("remove"));
        match path {
            Some(path) if is_manager_path(&path) => {
                if is_remove {
                    object_keys::remove(operation, "value");
                } else if let Some(value) = object_keys::get_mut(operation, "value") {
                    manager_value(value);
                }
            }
            Some(_) => {}
            None => {
                if let Some(Value::Object(members)) = object_keys::get_mut(operation, "value") {
                    manager_in_object(members);
                }
            }
        }
    }
}

fn manager_in_object(members: &mut Map<String, Value>) {
    for (key, value) in members.iter_mut() {
        if is_manager_path(key) {
            manager_value(value);
        } else if key.eq_ignore_ascii_case(urn::ENTERPRISE_USER) {
            if let Value::Object(extension) = value {
                for (name, inner) in extension.iter_mut() {
                    if name.eq_ignore_ascii_case("manager") {
                        manager_value(inner);
                    }
                }
            }
        }
    }
}

fn manager_value(value: &mut Value) {
    match value {
        Value::String(id) => {
            let mut object = Map::new();
            object.insert("value".into(), Value::String(std::mem::take(id)));
            *value = Value::Object(object);
        }
        Value::Array(items) if items.len() == 1 => {
            let mut item = items.remove(0);
            manager_value(&mut item);
            *value = item;
        }
        _ => {}
    }
}

/// Okta's group push repeats the group's `id` in a pathless replace; `id` is
/// read-only and the URL names the resource, so it is dropped from pathless
/// values (an operation left with an empty value goes too, unless it is the
/// only one).
pub fn drop_pathless_ids(body: &mut Value) {
    let Some(operations) = operations_mut(body) else {
        return;
    };
    for operation in operations.iter_mut().filter_map(Value::as_object_mut) {
        let pathless = object_keys::get(operation, "path").is_none_or(Value::is_null);
        if let (true, Some(Value::Object(value))) =
            (pathless, object_keys::get_mut(operation, "value"))
        {
            object_keys::remove(value, "id");
        }
    }
    if operations.len() > 1 {
        operations.retain(|operation| {
            !operation
                .as_object()
                .and_then(|operation| object_keys::get(operation, "value"))
                .and_then(Value::as_object)
                .is_some_and(|value| value.is_empty())
        });
    }
}
