//! The change record: one durable, ordered entry per change to a SCIM
//! resource, as the store writes it and the feed delivers it.
//!
//! A record names the changed attributes, never their values: a secret
//! (a password, anything marked `returned: never`) cannot leak through the
//! feed because no value ever goes in. Membership changes are recorded on
//! the group and, derived, on each user concerned ([`Change::derived_for_member`]),
//! with `via` naming the group.

use serde::{Deserialize, Serialize};

/// What happened to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// POST: the resource was created.
    Create,
    /// PUT: the resource was replaced.
    Replace,
    /// PATCH: some attributes were modified.
    Patch,
    /// DELETE: the resource is gone.
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Replace => "replace",
            Op::Patch => "patch",
            Op::Delete => "delete",
        }
    }
}

/// One entry of the change log. The JSON field names are stable (they are
/// what the pull endpoint and the stores serialise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Position in the log: strictly increasing, assigned by the store.
    pub seq: u64,
    /// When the change was made, Unix time in milliseconds.
    pub at: i64,
    /// SCIM resource type name, e.g. `User`, `Group`.
    pub resource_type: String,
    /// The resource's SCIM `id`.
    pub resource_id: String,
    pub op: Op,
    /// The resource's version (ETag value) after the change; `None` for a
    /// delete or when the backend has no versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The IGA provider (the caller's `[[provider]]` id) that made the
    /// change; empty when the route lets unauthenticated callers write.
    pub provider_id: String,
    /// The OAuth2 client that made the change, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Names (SCIM attribute paths) of the attributes added, replaced or
    /// removed. Names only: values never go in a change record.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// For an entry derived from a group's membership change: the group's
    /// id. `None` for a direct change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl Change {
    /// The resource's path relative to the SCIM base URL, as the SCIM
    /// events draft puts it in `sub_id.uri`: `/Users/<id>`, `/Groups/<id>`,
    /// otherwise `/<resourceType>s/<id>`.
    pub fn resource_path(&self) -> String {
        let endpoint = match self.resource_type.as_str() {
            "User" => "Users".to_owned(),
            "Group" => "Groups".to_owned(),
            other => format!("{other}s"),
        };
        format!("/{endpoint}/{}", self.resource_id)
    }

    /// The entry recorded on a member when this (group) change adds or
    /// removes it: a `patch` of the user's `groups`, `via` this group, by
    /// the same provider and client at the same time. `seq` is left 0 for
    /// the store to assign; `version` is unknown (the user's own version
    /// does not change).
    pub fn derived_for_member(&self, user_id: &str) -> Change {
        Change {
            seq: 0,
            at: self.at,
            resource_type: "User".to_owned(),
            resource_id: user_id.to_owned(),
            op: Op::Patch,
            version: None,
            provider_id: self.provider_id.clone(),
            client_id: self.client_id.clone(),
            attributes: vec!["groups".to_owned()],
            via: Some(self.resource_id.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_patch() -> Change {
        Change {
            seq: 7,
            at: 1_700_000_000_123,
            resource_type: "Group".into(),
            resource_id: "g1".into(),
            op: Op::Patch,
            version: Some("W/\"3\"".into()),
            provider_id: "sql".into(),
            client_id: Some("iga".into()),
            attributes: vec!["members".into()],
            via: None,
        }
    }

    #[test]
    fn json_field_names_are_stable() {
        let v = serde_json::to_value(group_patch()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "seq": 7, "at": 1_700_000_000_123_i64, "resourceType": "Group",
                "resourceId": "g1", "op": "patch", "version": "W/\"3\"",
                "providerId": "sql", "clientId": "iga", "attributes": ["members"]
            })
        );
        let back: Change = serde_json::from_value(v).unwrap();
        assert_eq!(back, group_patch());
    }

    #[test]
    fn ops_serialise_in_lowercase() {
        for (op, s) in [
            (Op::Create, "create"),
            (Op::Replace, "replace"),
            (Op::Patch, "patch"),
            (Op::Delete, "delete"),
        ] {
            assert_eq!(serde_json::to_value(op).unwrap(), s);
            assert_eq!(op.as_str(), s);
        }
    }

    #[test]
    fn derived_member_entry_points_back_at_the_group() {
        let d = group_patch().derived_for_member("u9");
        assert_eq!(d.resource_path(), "/Users/u9");
        assert_eq!(d.via.as_deref(), Some("g1"));
        assert_eq!(d.op, Op::Patch);
        assert_eq!(d.attributes, vec!["groups".to_owned()]);
        assert_eq!(d.client_id.as_deref(), Some("iga"));
        assert_eq!(d.version, None);
        assert_eq!(group_patch().resource_path(), "/Groups/g1");
        let mut other = group_patch();
        other.resource_type = "Device".into();
        assert_eq!(other.resource_path(), "/Devices/g1");
    }
}
