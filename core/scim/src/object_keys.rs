//! Case-insensitive access to JSON object members (SCIM attribute names ignore case).

use serde_json::{Map, Value};

/// The actual key in `object` that equals `name` ignoring ASCII case.
pub(crate) fn find_key<'m>(object: &'m Map<String, Value>, name: &str) -> Option<&'m String> {
    if object.contains_key(name) {
        return object.get_key_value(name).map(|(key, _)| key);
    }
    object.keys().find(|key| key.eq_ignore_ascii_case(name))
}

/// The member named `name` (ignoring case).
pub(crate) fn get<'m>(object: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    match object.get(name) {
        Some(value) => Some(value),
        None => object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value),
    }
}

/// The member named `name` (ignoring case), mutably.
pub(crate) fn get_mut<'m>(object: &'m mut Map<String, Value>, name: &str) -> Option<&'m mut Value> {
    if object.contains_key(name) {
        return object.get_mut(name);
    }
    let key = find_key(object, name)?.clone();
    object.get_mut(&key)
}

/// Removes every member named `name` (ignoring case); returns the last removed value.
pub(crate) fn remove(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    if let Some(removed) = object.remove(name) {
        if !object.keys().any(|key| key.eq_ignore_ascii_case(name)) {
            return Some(removed);
        }
    } else if !object.keys().any(|key| key.eq_ignore_ascii_case(name)) {
        return None;
    }
    let keys: Vec<String> = object
        .keys()
        .filter(|key| key.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    let mut removed = None;
    for key in keys {
        removed = object.remove(&key);
    }
    removed
}

/// Sets `name` to `value`, replacing any member whose name differs only in case.
pub(crate) fn set(object: &mut Map<String, Value>, name: &str, value: Value) {
    if !has_other_spelling(object, name) {
        // Nothing to remove but `name` itself: overwrite in place (no key copy).
        match object.get_mut(name) {
            Some(slot) => *slot = value,
            None => {
                object.insert(name.to_string(), value);
            }
        }
        return;
    }
    remove(object, name);
    object.insert(name.to_string(), value);
}

/// Whether a member is named `name` in a different letter case.
fn has_other_spelling(object: &Map<String, Value>, name: &str) -> bool {
    object
        .keys()
        .any(|key| key.eq_ignore_ascii_case(name) && key != name)
}

/// [`set`] with an owned name (no copy of the key).
pub(crate) fn set_owned(object: &mut Map<String, Value>, name: String, value: Value) {
    if has_other_spelling(object, &name) {
        remove(object, &name);
    }
    object.insert(name, value);
}

/// Takes out the member [`get`] would return; other members whose names differ
/// only in case stay (a following [`set`] removes them).
pub(crate) fn take(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    if let Some(value) = object.remove(name) {
        return Some(value);
    }
    let key = object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))?
        .clone();
    object.remove(&key)
}
