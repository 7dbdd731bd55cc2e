//! Group member completion for clients that map memberships from each
//! member's `type` and `$ref` (One Identity Manager): the `group_members`
//! setting of the profile engine, applied to group reads.

use scimgate_abi::Request;
use serde_json::{Map, Value};

use crate::mapping::{self, query};

/// Which member sub-attributes to fill in on a group read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemberSelection {
    kind: bool,
    reference: bool,
}

const GROUP_URN_PREFIX: &str = "urn:ietf:params:scim:schemas:core:2.0:Group:";

/// `Some` when the request reads groups and `members` is neither excluded nor left
/// out by `attributes` (query string, or the body of `POST /Groups/.search`).
pub(super) fn member_selection(req: &Request) -> Option<MemberSelection> {
    let search = mapping::path_is_search(&req.path);
    let (attributes, excluded) = match (req.method.as_str(), search) {
        ("GET", false) => (
            query::param(&req.query, "attributes"),
            query::param(&req.query, "excludedAttributes"),
        ),
        ("POST", true) => {
            let body = crate::body::parse_body(&req.body).ok()?;
            let list = |key: &str| {
                body.get(key).and_then(Value::as_array).map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
            };
            (list("attributes"), list("excludedAttributes"))
        }
        _ => return None,
    };
    let names = |list: &Option<String>| -> Vec<String> {
        list.as_deref()
            .unwrap_or("")
            .split(',')
            .map(|name| {
                let name = name.trim();
                match name.get(..GROUP_URN_PREFIX.len()) {
                    Some(prefix) if prefix.eq_ignore_ascii_case(GROUP_URN_PREFIX) => {
                        name[GROUP_URN_PREFIX.len()..].to_ascii_lowercase()
                    }
                    _ => name.to_ascii_lowercase(),
                }
            })
            .filter(|name| !name.is_empty())
            .collect()
    };
    let excluded = names(&excluded);
    if excluded.iter().any(|name| name == "members") {
        return None;
    }
    let mut selection = MemberSelection {
        kind: !excluded.iter().any(|name| name == "members.type"),
        reference: !excluded.iter().any(|name| name == "members.$ref"),
    };
    if attributes.is_some() {
        let attributes = names(&attributes);
        if !attributes.iter().any(|name| name == "members") {
            let kind = attributes.iter().any(|name| name == "members.type");
            let reference = attributes.iter().any(|name| name == "members.$ref");
            let any_member = attributes.iter().any(|name| name.starts_with("members."));
            if !any_member {
                return None;
            }
            selection.kind &= kind;
            selection.reference &= reference;
        }
    }
    Some(selection)
}

/// Adds `members: []` when missing and each member's missing `type` ("Group" when its
/// `$ref` points at /Groups/, else "User") and `$ref` (`{base}/Users/{value}`).
pub(super) fn complete_members(group: &mut Value, base: &str, selection: MemberSelection) -> bool {
    let Some(object) = group.as_object_mut() else {
        return false;
    };
    let key = object
        .keys()
        .find(|key| key.eq_ignore_ascii_case("members"))
        .cloned();
    let Some(key) = key else {
        object.insert("members".into(), Value::Array(Vec::new()));
        return true;
    };
    let Some(Value::Array(members)) = object.get_mut(&key) else {
        return false;
    };
    let mut changed = false;
    for member in members.iter_mut().filter_map(Value::as_object_mut) {
        changed |= complete_member(member, base, selection);
    }
    changed
}

fn complete_member(
    member: &mut Map<String, Value>,
    base: &str,
    selection: MemberSelection,
) -> bool {
    let find = |member: &Map<String, Value>, name: &str| {
        member
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str())
            .map(str::to_string)
    };
    let reference = find(member, "$ref");
    let mut kind = find(member, "type");
    let mut changed = false;
    if kind.is_none() && selection.kind {
        let is_group = reference
            .as_deref()
            .is_some_and(|reference| reference.contains("/Groups/"));
        let value = if is_group { "Group" } else { "User" };
        member.insert("type".into(), Value::String(value.into()));
        kind = Some(value.into());
        changed = true;
    }
    if reference.is_none() && selection.reference {
        if let Some(id) = find(member, "value") {
            let endpoint = match kind.as_deref() {
                Some(kind) if kind.eq_ignore_ascii_case("Group") => "Groups",
                _ => "Users",
            };
            member.insert(
                "$ref".into(),
                Value::String(format!("{base}/{endpoint}/{id}")),
            );
            changed = true;
        }
    }
    changed
}
