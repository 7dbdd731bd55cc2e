//! A [`Change`] as a Security Event Token (RFC 8417) in the shape of the
//! SCIM events profile (draft-ietf-scim-events, published as RFC 9967),
//! "notice" form: the event names the changed attributes, the receiver GETs
//! the resource if it wants the values.
//!
//! Claims of every SET:
//! - `iss`: the instance's SCIM base URL ([`Issuer::iss`]).
//! - `iat`: when this SET was issued (signed), Unix seconds. A redelivery
//!   carries a later `iat` but the same `jti` and `txn`.
//! - `jti`: `<instance>-<seq>`: unique per change and instance, stable
//!   across redeliveries, so a receiver can drop duplicates with it.
//! - `aud`: the subscriber's configured audience.
//! - `txn`: the change's sequence number, as a string (the draft makes
//!   `txn` a string naming the originating transaction).
//! - `toe`: when the change was made, Unix seconds (RFC 8417 §2.2).
//! - `sub_id`: `{"format": "scim", "uri": "/Users/<id>"}`: the resource's
//!   path relative to `iss` (draft §2.1).
//! - `events`: one member, keyed by the event URI:
//!   `urn:ietf:params:scim:event:prov:create:notice` (POST),
//!   `…:prov:put:notice` (PUT), `…:prov:patch:notice` (PATCH), each with
//!   `attributes` (changed attribute names) and `version` (new ETag value,
//!   when known); `urn:ietf:params:scim:event:prov:delete` with `{}`.
//! - `scimgate`: a private claim with what the draft has no place for:
//!   `seq` (number), `resourceType`, `provider`, `client` (when known) and
//!   `via` (the group id of a derived membership entry, when any).

use serde_json::{json, Map, Value};

use crate::record::{Change, Op};

pub const CREATE_NOTICE: &str = "urn:ietf:params:scim:event:prov:create:notice";
pub const PUT_NOTICE: &str = "urn:ietf:params:scim:event:prov:put:notice";
pub const PATCH_NOTICE: &str = "urn:ietf:params:scim:event:prov:patch:notice";
pub const DELETE: &str = "urn:ietf:params:scim:event:prov:delete";

/// Who issues the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// `iss`: the SCIM base URL, e.g. `https://scim.example.com/scim/v2`.
    pub iss: String,
    /// The instance name, the `jti` prefix.
    pub instance: String,
}

/// The event URI for an operation.
pub fn event_uri(op: Op) -> &'static str {
    match op {
        Op::Create => CREATE_NOTICE,
        Op::Replace => PUT_NOTICE,
        Op::Patch => PATCH_NOTICE,
        Op::Delete => DELETE,
    }
}

/// The SET claims for `change`, addressed to `audience`, issued at
/// `iat_secs`.
pub fn set_claims(change: &Change, issuer: &Issuer, audience: &str, iat_secs: i64) -> Value {
    let mut payload = Map::new();
    if change.op != Op::Delete {
        payload.insert("attributes".into(), json!(change.attributes));
        if let Some(version) = &change.version {
            payload.insert("version".into(), json!(version));
        }
    }
    let mut private = Map::new();
    private.insert("seq".into(), json!(change.seq));
    private.insert("resourceType".into(), json!(change.resource_type));
    private.insert("provider".into(), json!(change.provider_id));
    if let Some(client) = &change.client_id {
        private.insert("client".into(), json!(client));
    }
    if let Some(via) = &change.via {
        private.insert("via".into(), json!(via));
    }
    json!({
        "iss": issuer.iss,
        "iat": iat_secs,
        "jti": format!("{}-{}", issuer.instance, change.seq),
        "aud": audience,
        "txn": change.seq.to_string(),
        "toe": change.at.div_euclid(1000),
        "sub_id": {"format": "scim", "uri": change.resource_path()},
        "events": { event_uri(change.op): Value::Object(payload) },
        "scimgate": Value::Object(private),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(op: Op) -> Change {
        Change {
            seq: 42,
            at: 1_700_000_001_999,
            resource_type: "User".into(),
            resource_id: "2819c223".into(),
            op,
            version: Some("W/\"a330bc54\"".into()),
            provider_id: "pg".into(),
            client_id: Some("iga".into()),
            attributes: vec!["userName".into(), "name.familyName".into()],
            via: None,
        }
    }

    fn issuer() -> Issuer {
        Issuer {
            iss: "https://scim.example.com/scim/v2".into(),
            instance: "node-a".into(),
        }
    }

    #[test]
    fn patch_notice_has_every_claim() {
        let c = set_claims(
            &change(Op::Patch),
            &issuer(),
            "https://rx.example.com",
            1_700_000_100,
        );
        assert_eq!(
            c,
            json!({
                "iss": "https://scim.example.com/scim/v2",
                "iat": 1_700_000_100,
                "jti": "node-a-42",
                "aud": "https://rx.example.com",
                "txn": "42",
                "toe": 1_700_000_001,
                "sub_id": {"format": "scim", "uri": "/Users/2819c223"},
                "events": {PATCH_NOTICE: {
                    "attributes": ["userName", "name.familyName"],
                    "version": "W/\"a330bc54\""
                }},
                "scimgate": {"seq": 42, "resourceType": "User", "provider": "pg", "client": "iga"}
            })
        );
    }

    #[test]
    fn each_op_has_its_event_uri() {
        let uris = |op| {
            let c = set_claims(&change(op), &issuer(), "a", 0);
            c["events"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(uris(Op::Create), [CREATE_NOTICE]);
        assert_eq!(uris(Op::Replace), [PUT_NOTICE]);
        assert_eq!(uris(Op::Patch), [PATCH_NOTICE]);
        assert_eq!(uris(Op::Delete), [DELETE]);
    }

    #[test]
    fn delete_has_an_empty_payload_and_derived_entries_say_via() {
        let c = set_claims(&change(Op::Delete), &issuer(), "a", 0);
        assert_eq!(c["events"][DELETE], json!({}));
        let mut g = change(Op::Patch);
        g.resource_type = "Group".into();
        g.resource_id = "g1".into();
        let d = g.derived_for_member("u1");
        let c = set_claims(&d, &issuer(), "a", 0);
        assert_eq!(c["sub_id"]["uri"], "/Users/u1");
        assert_eq!(c["scimgate"]["via"], "g1");
        assert_eq!(c["events"][PATCH_NOTICE]["attributes"], json!(["groups"]));
        assert!(c["events"][PATCH_NOTICE].get("version").is_none());
    }
}
